"""Builds real Sanity exports for the import tests: the layout `sanity dataset export` writes.

A default export is `<folder>/data.ndjson` plus `<folder>/images/<sha1>-<w>x<h>.<ext>` and
`<folder>/files/<sha1>.<ext>`, with asset fields rewritten to `{"_sanityAsset": "image@file://./images/…"}`.
A `--raw` export keeps `{"asset": {"_ref": "image-<sha1>-<w>x<h>-<ext>"}}` and adds the
`sanity.imageAsset` / `sanity.fileAsset` documents (and has no files unless a test adds them).
"""

import hashlib
import io
import json
import tarfile
from pathlib import Path

from PIL import Image

from tests.factories import png_bytes, wav_bytes


def ref(doc_id: str, key: str | None = None) -> dict:
    value = {"_type": "reference", "_ref": doc_id}
    if key:
        value["_key"] = key
    return value


class ExportBuilder:
    def __init__(self, *, raw: bool = False, folder: str = "production-export-2026-03-01t00-00-00-000z"):
        self.raw = raw
        self.folder = folder
        self.docs: list[dict] = []
        self.files: dict[str, bytes] = {}  # path under the folder -> bytes
        self.assets_json: dict[str, dict] = {}

    def add(self, doc: dict) -> dict:
        self.docs.append(doc)
        return doc

    # ------------------------------------------------------------------ assets

    def image(self, data: bytes | None = None, *, name: str = "picture.png", include_file: bool = True, **extra):
        """An image field value; its file goes into images/ (or, raw, a sanity.imageAsset document)."""
        data = png_bytes() if data is None else data
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            ext = (img.format or "png").lower().replace("jpeg", "jpg")
        sha1 = hashlib.sha1(data).hexdigest()  # noqa: S324 - Sanity names assets by sha1
        asset_id = f"image-{sha1}-{width}x{height}-{ext}"
        stored = f"images/{sha1}-{width}x{height}.{ext}"
        return self._asset(
            "image", data, asset_id, stored, name, include_file, "image/" + ext.replace("jpg", "jpeg"), extra
        )

    def file(
        self, data: bytes | None = None, *, ext: str = "wav", name: str = "sample.wav", include_file=True, **extra
    ):
        data = wav_bytes() if data is None else data
        sha1 = hashlib.sha1(data).hexdigest()  # noqa: S324
        asset_id = f"file-{sha1}-{ext}"
        stored = f"files/{sha1}.{ext}"
        mime = {"wav": "audio/wav", "mp4": "video/mp4", "png": "image/png"}.get(ext, "application/octet-stream")
        return self._asset("file", data, asset_id, stored, name, include_file, mime, extra)

    def _asset(self, kind, data, asset_id, stored, name, include_file, mime, extra) -> dict:
        if include_file:
            self.files[stored] = data
        if self.raw:
            if not any(doc["_id"] == asset_id for doc in self.docs):
                self.add(
                    {
                        "_id": asset_id,
                        "_type": f"sanity.{kind}Asset",
                        "originalFilename": name,
                        "mimeType": mime,
                        "sha1hash": asset_id.split("-")[1],
                        "path": f"{kind}s/proj/production/{stored.split('/')[1]}",
                        "url": f"https://cdn.sanity.io/{kind}s/proj/production/{stored.split('/')[1]}",
                    }
                )
            return {"_type": kind, "asset": {"_type": "reference", "_ref": asset_id}, **extra}
        self.assets_json[f"{kind}-{asset_id.split('-')[1]}"] = {"originalFilename": name}
        return {"_type": kind, "_sanityAsset": f"{kind}@file://./{stored}", **extra}

    # ------------------------------------------------------------------ writing

    def ndjson(self) -> bytes:
        return "".join(json.dumps(doc, ensure_ascii=False) + "\n" for doc in self.docs).encode()

    def write_tar(self, path: Path, *, extra_members: dict[str, bytes] | None = None) -> Path:
        with tarfile.open(path, "w:gz") as tar:
            members = {f"{self.folder}/data.ndjson": self.ndjson()}
            if self.assets_json:
                members[f"{self.folder}/assets.json"] = json.dumps(self.assets_json).encode()
            members.update({f"{self.folder}/{name}": data for name, data in self.files.items()})
            members.update(extra_members or {})
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return path

    def write_ndjson(self, path: Path) -> Path:
        path.write_bytes(self.ndjson())
        return path


# --------------------------------------------------------------------------- the old studio's documents


def studio_export(export: ExportBuilder) -> ExportBuilder:
    """One of everything, shaped like the old studio's schemas at HEAD (plus a v1.0 studio)."""
    export.add(
        {
            "_id": "voice-luna",
            "_type": "voice",
            "name": "Luna 温柔女声",
            "cosyvoice_id": "",
            "sample_audio": export.file(name="luna.wav"),
            "sample_transcription": "大家好，我是露娜。",
        }
    )
    export.add(
        {
            "_id": "source-36kr",
            "_type": "source",
            "name": "36Kr 快讯",
            "category": "tech",
            "url": "https://36kr.com/newsflashes",
            "platform": "web",
            "extraction_config": {"method": "firecrawl", "ai_instruction": "Only AI chips.", "max_items": 7},
        }
    )
    export.add(
        {
            "_id": "wardrobe-suit",
            "_type": "wardrobe",
            "name": "Navy Suit",
            "category": "formal",
            "preview": export.image(png_bytes(256, 256, "#1e3a8a"), name="suit.png"),
            "comfy_payload": '{"lora_name": "suit_v1.safetensors", "trigger_word": "navy suit", "strength": 0.8}',
        }
    )
    export.add(
        {
            "_id": "prompt-writer",
            "_type": "prompt_config",
            "role": "Writer",
            "version": "v1.0",
            "description": "Old writer",
            "template": "You are {{artist_name}}. Persona: {{artist_persona}}. USP: {{usp}}",
        }
    )
    export.add(
        {
            "_id": "studio-office",
            "_type": "studio",
            "name": "Office Set",
            "category": "office",
            "preview": export.image(png_bytes(640, 360, "#334155"), name="office.png"),
            "comfy_payload": '{"background_prompt": "office"}',
        }
    )
    export.add(
        {
            "_id": "artist-luna",
            "_type": "artist",
            "name": "Luna Chen",
            "niche": "finance",
            "backstory": "Former analyst.",
            "subtitle": "财经分析师",
            "voiceStyle": "professional",
            "contentFocus": ["macro", "gold"],
            "excludeKeywords": ["stock tips"],
            "master_visuals": {
                "face_anchor": export.image(png_bytes(512, 512, "#f3d2b8"), name="luna-face.png"),
                "full_body": export.image(png_bytes(300, 600, "#0e7490"), name="luna-body.png"),
                "three_views": export.image(png_bytes(600, 300, "#0e7491"), name="luna-sheet.png"),
                "poses": [export.image(png_bytes(300, 600, "#0e7492"), name="wave.png", _key="p1")],
            },
            "studio_images": [export.image(png_bytes(640, 360, "#0e7493"), name="set.png", _key="s1")],
            "voice": ref("voice-luna"),
            "available_wardrobes": [ref("wardrobe-suit", "w1")],
            "available_studios": [ref("studio-office", "st1")],
            "default_sources": [ref("source-36kr", "d1")],
            "scoringWeights": {"recency": 0.3},
        }
    )
    export.add(
        {
            "_id": "schedule-weekly",
            "_type": "schedule",
            "title": "Luna 早报",
            "artist": ref("artist-luna"),
            "active": True,
            "type": "routine",
            "routine_config": {"period": "weekly", "days": ["monday", "friday"], "times": ["9:00", "18:30"]},
            "source_override": [ref("source-36kr", "o1")],
            "last_executed": "2026-02-27T10:30:00.000Z",
        }
    )
    export.add(
        {
            "_id": "schedule-breaking",
            "_type": "schedule",
            "title": "Breaking",
            "artist": ref("artist-luna"),
            "active": False,
            "type": "one_off",
            "trigger_at": "2030-01-02T03:04:00.000Z",
        }
    )
    export.add(
        {
            "_id": "post-rates",
            "_type": "post",
            "title": "降息三条主线",
            "artist": ref("artist-luna"),
            "production_config": {"selected_wardrobe": ref("wardrobe-suit")},
            "created_from_source": ref("source-36kr"),
            "created_from_schedule": ref("schedule-weekly"),
            "source_content": "Fed minutes ...",
            "status": "review",
            "storyboard": [
                {
                    "_key": "k1",
                    "_type": "shot",
                    "shot_number": 1,
                    "duration": 4.5,
                    "type": "a_roll",
                    "script": "利率一降，钱会搬家。",
                    "is_locked": True,
                },
                {
                    "_key": "k2",
                    "_type": "shot",
                    "shot_number": 2,
                    "duration": 5,
                    "type": "b_roll",
                    "ai_prompt": "A falling rate chart",
                },
                {
                    "_key": "k3",
                    "_type": "shot",
                    "shot_number": 4,
                    "duration": 3,
                    "type": "product",
                    "manual_asset": export.file(png_bytes(400, 400, "#eab308"), ext="png", name="gold.png"),
                },
            ],
        }
    )
    return export
