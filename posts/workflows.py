"""The parameters production offers a shot's workflow templates: a published contract.

A template's placeholders (`{{NAME}}`) are filled from these, by the same name or through the shot
workflow mapping's `bindings` (template placeholder -> parameter). docs/workflows.md documents them;
posts.pipeline computes them for each shot and step.
"""

PARAMETERS: dict[str, str] = {
    "PROMPT": "The shot's visual prompt (its script when it has none), with the wardrobe's trigger word.",
    "NEGATIVE_PROMPT": "What the picture must not show (the artist's negative prompt; may be empty).",
    "SCRIPT": "The words the artist says in this shot.",
    "FACE_IMAGE": "The artist's face anchor, uploaded to the ComfyUI server (an input file name).",
    "SOURCE_IMAGE": "The shot's still (its manual image or its made picture), uploaded: image-to-video's start.",
    "VOICE_AUDIO": "The shot's voice (WAV), uploaded: what an avatar's lips follow.",
    "DURATION": "The shot's length in seconds (its voice's real length when it has one).",
    "FPS": "Frames per second the step's clip is made at (the template's own rate).",
    "FRAMES": "Frames in the clip: DURATION x FPS, rounded up.",
    "WIDTH": "Frame width in pixels for the post's aspect ratio.",
    "HEIGHT": "Frame height in pixels for the post's aspect ratio.",
    "SEED": "A seed derived from the shot's content: the same inputs give the same picture.",
    "ARTIST": "The artist's stage name.",
    "LORA_NAME": "The wardrobe's LoRA file name (may be empty).",
    "TRIGGER_WORD": "The wardrobe's trigger word (may be empty).",
    "LORA_STRENGTH": "The wardrobe's LoRA strength (0.8 when it names none).",
}
