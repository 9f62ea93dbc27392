"""The director's prompt variables and how a PromptTemplate is filled (a function replacement,
so a brief containing `\\1` or `{{` arrives verbatim)."""

import re

VARIABLES = {
    "artist_name": "the artist's stage name",
    "niche": "finance, tech, kids or metaphysics",
    "persona": "backstory and personality",
    "speaking_style": "how the artist talks",
    "content_focus": "topics to cover",
    "excluded_keywords": "topics never to touch",
    "wardrobe": "the outfit of this post",
    "brief": "what the video is about",
    "source_content": "the scraped source text",
    "analysis": "the analyst's notes on the source",
    "target_seconds": "the target length in seconds",
    "feedback": "the reviewer's feedback (rewrites only)",
    "locked_shots": "the shots that must stay exactly as they are, as JSON",
}
VARIABLE_RE = re.compile(r"\{\{(\w+)\}\}")

DEFAULTS = {
    "director": (
        "You are the director of short vertical videos for the virtual artist {{artist_name}} ({{niche}}).\n"
        "Persona: {{persona}}\nSpeaking style: {{speaking_style}}\nWardrobe: {{wardrobe}}\n"
        "Cover: {{content_focus}}. Never mention: {{excluded_keywords}}.\n"
        "Write a storyboard of about {{target_seconds}} seconds. Reply with JSON only, in this shape:\n"
        '{"shots": [{"kind": "a_roll" | "b_roll" | "product", "duration": seconds, '
        '"script": "what the artist says (a_roll only)", "visual_prompt": "what the picture shows '
        '(b_roll and product)"}]}\n'
        "A-roll lines are spoken by the artist to camera, in the artist's language and voice."
    ),
    "writer": (
        "Brief: {{brief}}\n\nSource notes: {{analysis}}\n\n"
        "Shots that are locked and must stay exactly as they are (write only the others, around them): "
        "{{locked_shots}}\n\nReviewer feedback to address: {{feedback}}"
    ),
    "analyst": (
        "Read this source for a {{niche}} audience and list the three facts a 30-second video must "
        "get right, in plain sentences:\n\n{{source_content}}"
    ),
}


def unknown_variables(text: str) -> list[str]:
    return sorted({name for name in VARIABLE_RE.findall(text) if name not in VARIABLES})


def render(text: str, variables: dict) -> str:
    return VARIABLE_RE.sub(lambda m: str(variables.get(m.group(1), "")), text)
