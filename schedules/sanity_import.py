"""Import a Sanity dataset export of the old studio (voice, source, wardrobe, prompt_config, artist,
studio, schedule, post) into MCN OS. Used by `manage.py import_sanity`; docs/migrating.md has the
field-by-field mapping.

Guarantees:
- All or nothing: one transaction. Any per-document error, or a dry run, rolls everything back and
  deletes every file this run wrote to storage.
- Idempotent: rows are found again by their Sanity `_id` (`sanity_id`; shots by their storyboard
  `_key`), so a re-import updates, never duplicates. A file whose bytes did not change is not stored
  again.
- Never invents: a file that is not in the export is reported and the field left empty (an existing
  file is kept). A file field is set from the export, never cleared by it.
- Rows the old studio required a file for but whose file is missing (an artist's face anchor, a voice
  with neither sample nor speaker id) are imported but cannot run: such artists come in inactive.

Lives in schedules: the top of the import graph, it may use artists' and posts' models and services.
"""

import hashlib
import json
import re
import zoneinfo
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import F, Max
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.text import slugify

from artists.models import Artist, ArtistImage, Source, Voice, Wardrobe
from mcn_site.lib.sanity_export import Document, SanityExport
from posts.director.prompts import VARIABLES, unknown_variables
from posts.models import EDITABLE_STATUSES, Post, PostEvent, PostStatus, PromptTemplate, Shot, ShotKind
from posts.services import StoryboardChange, post_create, post_update, storyboard_apply
from schedules.models import Schedule
from schedules.services import schedule_save

# Dependency order: everything a document references is imported before it.
ORDER = ["voice", "source", "wardrobe", "prompt_config", "artist", "studio", "schedule", "post"]
MODELS = {
    "voice": Voice,
    "source": Source,
    "wardrobe": Wardrobe,
    "prompt_config": PromptTemplate,
    "artist": Artist,
    "schedule": Schedule,
    "post": Post,
}
OUTCOMES = ["created", "updated", "unchanged", "skipped", "failed"]

# Sanity post status -> ours. "rendering" means somebody approved it in the old studio, but nothing was
# ever produced here: approved is the last state before production, and nothing runs until an operator
# presses Produce. The other values are drift found in the old code and documents.
STATUS_MAP = {
    "draft": PostStatus.DRAFT,
    "review": PostStatus.REVIEW,
    "rejected": PostStatus.REJECTED,
    "rendering": PostStatus.APPROVED,
    "done": PostStatus.DONE,
    "approved": PostStatus.APPROVED,
    "pending_approval": PostStatus.REVIEW,
    "generating": PostStatus.DRAFT,
    "published": PostStatus.DONE,
}
ROLE_MAP = {role.value: role for role in PromptTemplate.Role}  # Sanity: "Analyst" | "Writer" | "Director"
# The old Orchestrator's placeholders and, where there is one, ours that says the same.
OLD_PLACEHOLDERS = {"artist_persona": "persona", "source_type": None, "post_type": None, "usp": None}
# Fields each type knows; anything else in a document is listed as "not imported".
KNOWN_FIELDS = {
    "voice": {"name", "cosyvoice_id", "sample_audio", "sample_transcription", "gender", "style"},
    "source": {"name", "category", "url", "platform", "rsshub_route", "extraction_config"},
    "wardrobe": {"name", "category", "preview", "comfy_payload"},
    "prompt_config": {"role", "template", "version", "description"},
    "artist": {
        "name",
        "niche",
        "backstory",
        "subtitle",
        "voiceStyle",
        "contentFocus",
        "excludeKeywords",
        "master_visuals",
        "voice",
        "available_wardrobes",
        "available_studios",
        "studio_images",
        "default_sources",
    },
    "studio": {"name", "preview"},
    "schedule": {
        "title",
        "artist",
        "active",
        "type",
        "routine_config",
        "trigger_at",
        "source_override",
        "last_executed",
    },
    "post": {
        "title",
        "artist",
        "production_config",
        "created_from_source",
        "source_content",
        "storyboard",
        "status",
        "feedback",
        "created_from_schedule",
    },
}


# --------------------------------------------------------------------------- the report


def short_id(doc_id: str) -> str:
    """A Sanity id short enough for a report line: drafts.1a2b3c4d…"""
    prefix = "drafts." if doc_id.startswith("drafts.") else ""
    base = doc_id.removeprefix("drafts.")
    return prefix + (base if len(base) <= 20 else base[:8] + "…")


@dataclass
class DocumentResult:
    type: str
    id: str
    source_id: str
    title: str
    outcome: str = ""
    pk: int | None = None
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        label = f"{self.type} {short_id(self.id)}"
        if self.source_id != self.id:
            label += f" ({short_id(self.source_id)})"
        return f'{label} "{self.title}"' if self.title else label


@dataclass
class ImportReport:
    path: str
    dry_run: bool
    timezone: str
    documents: list[DocumentResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # errors not tied to one document
    skipped: list[dict] = field(default_factory=list)  # documents left out, and why
    ignored_fields: Counter = field(default_factory=Counter)  # "artist.scoringWeights" -> documents
    notes: list[str] = field(default_factory=list)
    committed: bool = False

    @property
    def errors(self) -> list[str]:
        return self.problems + [f"{doc.label}: {line}" for doc in self.documents for line in doc.errors]

    @property
    def warnings(self) -> list[str]:
        return [f"{doc.label}: {line}" for doc in self.documents for line in doc.warnings]

    @property
    def ok(self) -> bool:
        return not self.errors

    def counts(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        for doc in self.documents:
            counts.setdefault(doc.type, dict.fromkeys(OUTCOMES, 0))[doc.outcome or "failed"] += 1
        for skipped in self.skipped:
            if not skipped["type"].startswith(("system.", "sanity.")):
                counts.setdefault(skipped["type"], dict.fromkeys(OUTCOMES, 0))["skipped"] += 1
        order = {name: index for index, name in enumerate(ORDER)}
        return dict(sorted(counts.items(), key=lambda item: (order.get(item[0], len(order)), item[0])))

    def as_dict(self) -> dict:
        return {
            "path": self.path,
            "dry_run": self.dry_run,
            "committed": self.committed,
            "timezone": self.timezone,
            "counts": self.counts(),
            "errors": self.errors,
            "warnings": self.warnings,
            "notes": self.notes,
            "ignored_fields": dict(sorted(self.ignored_fields.items())),
            "skipped": self.skipped,
            "documents": [asdict(doc) for doc in self.documents],
        }

    def lines(self) -> list[str]:
        """The report as a person reads it."""
        if self.dry_run:
            head = "Dry run: nothing was written."
        elif self.committed:
            head = "Imported."
        else:
            head = "Nothing was imported: every document is rolled back."
        lines = [f"Sanity import of {self.path}. {head}", f"Schedule times are read in {self.timezone}.", ""]
        counts = self.counts()
        if counts:
            lines.append(f"{'':<14}" + "".join(f"{name:>10}" for name in OUTCOMES))
            for doc_type, row in counts.items():
                lines.append(f"{doc_type:<14}" + "".join(f"{row[name]:>10}" for name in OUTCOMES))
        else:
            lines.append("No documents of the old studio's types in this export.")
        notes = [f"{doc.label}: {note}" for doc in self.documents for note in doc.notes] + self.notes
        if self.ignored_fields:
            fields = ", ".join(f"{name} ({n})" for name, n in sorted(self.ignored_fields.items()))
            notes.append(f"Fields with no place in MCN OS, not imported: {fields}.")
        skipped = Counter(f"{s['type']} ({s['reason']})" for s in self.skipped)
        if skipped:
            notes.append("Documents left out: " + "; ".join(f"{n} × {what}" for what, n in sorted(skipped.items())))
        for title, items in (("Notes", notes), ("Warnings", self.warnings), ("Errors", self.errors)):
            if items:
                lines += ["", f"{title} ({len(items)}):", *(f"  {item}" for item in items)]
        if self.errors:
            lines += ["", "Nothing was imported. Fix these in Sanity (or in the export) and run the import again."]
        return lines


# --------------------------------------------------------------------------- the import


class _Rollback(Exception):
    """Leave the import's transaction without keeping anything (dry run or errors)."""


class _DocumentFailed(Exception):
    """This document has errors: undo its savepoint and go on to the next one."""


class _Context:
    """One document's result, with helpers to add lines to it."""

    def __init__(self, doc: Document, result: DocumentResult):
        self.doc = doc
        self.result = result

    def error(self, path: str, message: str) -> None:
        self.result.errors.append(f"{path}: {message}" if path else message)

    def warn(self, path: str, message: str) -> None:
        self.result.warnings.append(f"{path}: {message}" if path else message)

    def note(self, message: str) -> None:
        self.result.notes.append(message)

    def fail_if_errors(self) -> None:
        if self.result.errors:
            raise _DocumentFailed


def sanity_import(
    *,
    path: str | Path,
    dry_run: bool = False,
    timezone_name: str | None = None,
    members=(),
    now: datetime | None = None,
) -> ImportReport:
    """Import the export at `path`; returns the report. Writes nothing when `dry_run` or on any error.

    `timezone_name` is the IANA zone of routine schedules made by this run (Sanity keeps times without
    a zone); the default is MCN_DEFAULT_SCHEDULE_TIMEZONE. `members`: users added to every imported
    artist. Raises ValueError for a bad zone and sanity_export.ExportError for an unreadable export.
    """
    zone = timezone_name or settings.MCN_DEFAULT_SCHEDULE_TIMEZONE
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"“{zone}” is not an IANA time zone such as Asia/Shanghai or Europe/Paris.") from None
    report = ImportReport(path=str(path), dry_run=dry_run, timezone=zone)
    with SanityExport(path) as export:
        importer = _Importer(export, report=report, zone=zone, members=list(members), now=now or timezone.now())
        try:
            with transaction.atomic():
                importer.run()
                if dry_run or not report.ok:
                    raise _Rollback
            report.committed = True
        except _Rollback:
            importer.discard_files()
        except BaseException:
            importer.discard_files()
            raise
    return report


class _Importer:
    def __init__(self, export: SanityExport, *, report: ImportReport, zone: str, members: list, now: datetime):
        self.export = export
        self.report = report
        self.zone = zone
        self.members = members
        self.now = now
        self.rows: dict[str, dict[str, object]] = {name: {} for name in ORDER}  # type -> sanity id -> row
        self.failed: set[str] = set()  # ids of documents that could not be imported
        self.types = {doc.id: doc.type for doc in export.documents}
        self.attached: list[tuple[object, str]] = []  # (row, file field) given a new file by this run
        self.incomplete_voices: set[int] = set()  # voice pks that cannot speak yet
        self.studio_users: dict[str, list[Artist]] = {}  # studio id -> artists listing it

    # ------------------------------------------------------------------ driving

    def run(self) -> None:
        report, export = self.report, self.export
        report.problems += export.problems
        report.skipped += [{"id": s.id, "type": s.type, "reason": s.reason} for s in export.skipped]
        for doc in export.documents:
            if doc.type not in ORDER:
                reason = f"type {doc.type} has no place in MCN OS"
                report.skipped.append({"id": doc.id, "type": doc.type, "reason": reason})
        for doc_type in ORDER:
            for doc in export.of_type(doc_type):
                self._one(doc, getattr(self, f"_{doc_type}"))
        self._closing_notes()

    def _one(self, doc: Document, mapper) -> None:
        result = DocumentResult(type=doc.type, id=doc.id, source_id=doc.source_id, title=doc.title)
        self.report.documents.append(result)
        ctx = _Context(doc, result)
        if doc.draft:
            ctx.note(
                "imported from its unpublished draft, newer than the published version"
                if doc.published_too
                else "imported from its draft (never published)"
            )
        for name in sorted(set(doc.data) - KNOWN_FIELDS.get(doc.type, set())):
            if not name.startswith("_") and doc.data[name] not in (None, "", [], {}):
                self.report.ignored_fields[f"{doc.type}.{name}"] += 1
        try:
            # A savepoint per document: a refused row undoes only its own writes, and the run goes on
            # to list every other document's problems too (the outer transaction is rolled back anyway).
            with transaction.atomic():
                mapper(doc, ctx)
                ctx.fail_if_errors()
        except _DocumentFailed:
            pass
        except ValidationError as error:
            self._validation_errors(ctx, error, {})
        except IntegrityError as error:
            ctx.error("", f"the database refused it ({error}).")
        if result.errors:
            result.outcome, result.pk = "failed", None
            self.failed.add(doc.id)

    def discard_files(self) -> None:
        """Delete every file this run stored: its rows were rolled back, nothing refers to them."""
        for row, name in self.attached:
            stored = getattr(row, name)
            if stored and getattr(stored, "_committed", False) and stored.name:
                stored.storage.delete(stored.name)
        self.attached.clear()

    def _closing_notes(self) -> None:
        report = self.report
        artists = [doc for doc in report.documents if doc.type == "artist" and doc.outcome in ("created", "updated")]
        if artists and not self.members:
            report.notes.append(
                "Imported artists have no members: only ops and superusers see them. "
                "Run again with --member USERNAME (repeatable) to give producers access."
            )
        active = Schedule.objects.filter(pk__in=self._pks("schedule"), active=True).count()
        if active:
            report.notes.append(
                f"{active} imported schedule(s) are active and fire from their next slot: switch the old "
                "stack's n8n polling off first, or both systems will make the same posts."
            )

    def _pks(self, doc_type: str) -> list[int]:
        return [
            doc.pk
            for doc in self.report.documents
            if doc.type == doc_type and doc.pk and doc.outcome in ("created", "updated")
        ]

    # ------------------------------------------------------------------ helpers

    def _existing(self, model, doc: Document):
        return model.objects.filter(sanity_id=doc.id).first()

    def _finish(self, ctx: _Context, row, *, created: bool, changed: bool) -> None:
        ctx.result.outcome = "created" if created else ("updated" if changed else "unchanged")
        ctx.result.pk = row.pk
        self.rows[ctx.doc.type][ctx.doc.id] = row

    @staticmethod
    def _assign(row, values: dict) -> list[str]:
        """Set `values` on `row`; the names of those that changed."""
        changed = []
        for name, value in values.items():
            model_field = row._meta.get_field(name)
            if model_field.many_to_one:  # compare ids: an unsaved row has no related object to read yet
                if getattr(row, model_field.attname) != (value.pk if value is not None else None):
                    changed.append(name)
            elif getattr(row, name) != value:
                changed.append(name)
        for name, value in values.items():
            setattr(row, name, value)
        return changed

    def _validation_errors(self, ctx: _Context, error: ValidationError, paths: dict, *, tolerated=None) -> None:
        """Errors (or, for `tolerated` fields, warnings) named by the Sanity field they come from."""
        tolerated = tolerated or {}
        if not hasattr(error, "error_dict"):
            for message in error.messages:
                ctx.error("", message)
            return
        for name, messages in error.message_dict.items():
            path = paths.get(name, name if name != "__all__" else "")
            if name in tolerated:
                ctx.warn(path, tolerated[name])
                continue
            for message in messages:
                ctx.error(path, message)

    def _validate(self, ctx: _Context, row, paths: dict, *, exclude=(), tolerated=None) -> list[str]:
        """full_clean `row`; its error fields (tolerated ones become warnings), [] when it is valid."""
        try:
            row.full_clean(exclude=list(exclude))
        except ValidationError as error:
            self._validation_errors(ctx, error, paths, tolerated=tolerated)
            return list(error.message_dict) if hasattr(error, "error_dict") else ["__all__"]
        return []

    def _ref(self, ctx: _Context, value, target: str, path: str, *, required: bool = False):
        """The row a `{_ref: ...}` points to (imported now or by an earlier run), or None, reported."""
        ref = value.get("_ref") if isinstance(value, dict) else None
        if not isinstance(ref, str) or not ref:
            if required:
                ctx.error(path, f"required: a reference to a {target}.")
            return None
        ref = ref.removeprefix("drafts.")
        if ref in self.rows[target]:
            return self.rows[target][ref]
        report = ctx.error if required else ctx.warn
        left = "" if required else " Left empty."
        if ref in self.failed:
            report(path, f"points to {target} {short_id(ref)}, which could not be imported (see its error).{left}")
            return None
        if ref in self.types and self.types[ref] != target:
            report(path, f"points to {ref}, a {self.types[ref]}, not a {target}.{left}")
            return None
        row = MODELS[target].objects.filter(sanity_id=ref).first()  # imported by an earlier run
        if row is None:
            report(path, f"points to {target} {ref}, which is not in the export.{left}")
            return None
        self.rows[target][ref] = row
        return row

    def _refs(self, ctx: _Context, values, target: str, path: str) -> list:
        rows = []
        for index, value in enumerate(values if isinstance(values, list) else []):
            row = self._ref(ctx, value, target, f"{path}[{index}]")
            if row is not None and row not in rows:
                rows.append(row)
        return rows

    @staticmethod
    def _checksum_matches(stored, data: bytes) -> bool:
        if not stored:
            return False
        try:
            with stored.storage.open(stored.name, "rb") as handle:
                return hashlib.sha256(handle.read()).digest() == hashlib.sha256(data).digest()
        except OSError:
            return False

    def _load(self, ctx: _Context, value, path: str, *, validators, had_file: bool) -> ContentFile | None:
        """The export's file for an image/file field, validated like an upload; None (reported) if unusable."""
        asset = self.export.asset(value)
        if asset is None:
            return None
        kept = " The file already here is kept." if had_file else " Left empty."
        if asset.missing:
            ctx.warn(path, f"{asset.missing}.{kept}")
            return None
        upload = ContentFile(asset.read(), name=asset.filename)
        try:
            for validator in validators:
                validator(upload)
        except ValidationError as error:
            ctx.warn(path, f"{asset.filename}: {' '.join(error.messages)} Not imported.{kept}")
            return None
        upload.seek(0)
        return upload

    def _file(self, ctx: _Context, row, name: str, value, path: str) -> str:
        """Give `row.<name>` the export's file unless it already holds the same bytes.

        Returns "set", "same", or "" (nothing usable in the export: the field keeps what it has).
        """
        current = getattr(row, name)
        validators = row._meta.get_field(name).validators
        upload = self._load(ctx, value, path, validators=validators, had_file=bool(current))
        if upload is None:
            return ""
        if self._checksum_matches(current, upload.read()):
            return "same"
        upload.seek(0)
        setattr(row, name, upload)
        self.attached.append((row, name))
        return "set"

    def _library_image(self, ctx: _Context, artist: Artist, kind: str, value, path: str, caption: str) -> bool:
        """Add one pose or backdrop to the artist's library unless the same picture is there; True if added."""
        validators = ArtistImage._meta.get_field("image").validators
        upload = self._load(ctx, value, path, validators=validators, had_file=False)
        if upload is None:
            return False
        data = upload.read()
        for existing in artist.images.filter(kind=kind):
            if self._checksum_matches(existing.image, data):
                return False
        image = ArtistImage(artist=artist, kind=kind, image=ContentFile(data, name=upload.name), caption=caption[:200])
        image.full_clean()
        image.save()
        self.attached.append((image, "image"))
        return True

    # ------------------------------------------------------------------ voice

    def _voice(self, doc: Document, ctx: _Context) -> None:
        data = doc.data
        voice = self._existing(Voice, doc)
        created = voice is None
        voice = voice or Voice(sanity_id=doc.id)
        changed = self._assign(
            voice,
            {
                "name": _text(data.get("name")),
                "speaker_id": _text(data.get("cosyvoice_id")),
                "sample_transcription": _text(data.get("sample_transcription")),
            },
        )
        if created:
            extra = [f"{key} {data[key]}" for key in ("gender", "style") if isinstance(data.get(key), str)]
            voice.notes = f"Imported from Sanity ({', '.join(extra)})." if extra else ""
        file_state = self._file(ctx, voice, "sample_audio", data.get("sample_audio"), "sample_audio")
        paths = {"name": "name", "speaker_id": "cosyvoice_id", "sample_audio": "sample_audio"}
        paths["sample_transcription"] = "sample_transcription"
        tolerated = {
            "sample_audio": "no usable sample and no cosyvoice_id: this voice cannot speak until you upload a "
            "3-30 s sample (or give a speaker id). Its artists are imported inactive.",
            "sample_transcription": "no sample_transcription: type the exact words of the sample before this "
            "voice can clone. Its artists are imported inactive.",
        }
        problems = self._validate(ctx, voice, paths, tolerated=tolerated)
        ctx.fail_if_errors()
        voice.save()
        if set(problems) & set(tolerated):
            self.incomplete_voices.add(voice.pk)
        self._finish(ctx, voice, created=created, changed=bool(changed) or file_state == "set")

    # ------------------------------------------------------------------ source

    def _source(self, doc: Document, ctx: _Context) -> None:
        data = doc.data
        config = data.get("extraction_config") if isinstance(data.get("extraction_config"), dict) else {}
        max_items = config.get("max_items", 5)
        if isinstance(max_items, float) and max_items.is_integer():
            max_items = int(max_items)
        if isinstance(max_items, bool) or not isinstance(max_items, int):
            ctx.error("extraction_config.max_items", f"must be a whole number (got {max_items!r}).")
            max_items = 5
        source = self._existing(Source, doc)
        created = source is None
        source = source or Source(sanity_id=doc.id)
        changed = self._assign(
            source,
            {
                "name": _text(data.get("name")),
                "category": _text(data.get("category")),
                "url": _text(data.get("url")),
                "instruction": _text(config.get("ai_instruction")),
                "max_items": max_items,
            },
        )
        platform, route = _text(data.get("platform")), _text(data.get("rsshub_route"))
        if (platform and platform != "web") or route:
            ctx.warn(
                "platform",
                f"{platform or 'web'}{f' (rsshub_route {route})' if route else ''}: MCN OS reads the url only; "
                "check that it is a page or feed it can read.",
            )
        paths = {"instruction": "extraction_config.ai_instruction", "max_items": "extraction_config.max_items"}
        self._validate(ctx, source, paths)
        ctx.fail_if_errors()
        source.save()
        self._finish(ctx, source, created=created, changed=bool(changed))

    # ------------------------------------------------------------------ wardrobe

    def _wardrobe(self, doc: Document, ctx: _Context) -> None:
        data = doc.data
        raw = data.get("comfy_payload")
        payload = {}
        if isinstance(raw, dict):
            payload = raw
        elif not isinstance(raw, str) or not raw.strip():
            ctx.error("comfy_payload", 'required: a JSON object such as {"lora_name": "suit_v1.safetensors"}.')
        else:
            try:
                payload = _json_loads(raw)
            except ValueError as error:
                ctx.error("comfy_payload", f"not valid JSON ({error}).")
        category = _text(data.get("category"))
        if not category:
            category = Wardrobe.Category.CASUAL
            ctx.warn("category", "empty in Sanity: set to casual.")
        wardrobe = self._existing(Wardrobe, doc)
        created = wardrobe is None
        wardrobe = wardrobe or Wardrobe(sanity_id=doc.id)
        changed = self._assign(
            wardrobe, {"name": _text(data.get("name")), "category": category, "comfy_payload": payload}
        )
        file_state = self._file(ctx, wardrobe, "preview", data.get("preview"), "preview")
        ctx.fail_if_errors()
        self._validate(ctx, wardrobe, {})
        ctx.fail_if_errors()
        wardrobe.save()
        self._finish(ctx, wardrobe, created=created, changed=bool(changed) or file_state == "set")

    # ------------------------------------------------------------------ prompt_config

    def _prompt_config(self, doc: Document, ctx: _Context) -> None:
        data = doc.data
        role = ROLE_MAP.get(_text(data.get("role")).lower())
        if role is None:
            ctx.error("role", f"“{_text(data.get('role'))}” is not Analyst, Writer or Director.")
            raise _DocumentFailed
        raw_version = _text(data.get("version")) or "v1"
        match = re.match(r"^\s*v?(\d+)", raw_version, re.IGNORECASE)
        wanted = int(match.group(1)) if match else None
        prompt = self._existing(PromptTemplate, doc)
        created = prompt is None
        others = PromptTemplate.objects.filter(role=role)
        if prompt is not None:
            others = others.exclude(pk=prompt.pk)
        if wanted and not others.filter(version=wanted).exists():
            version = wanted
        elif prompt is not None and prompt.role == role:
            version = prompt.version  # placed on an earlier run; said so then
        else:
            version = (others.aggregate(top=Max("version"))["top"] or 0) + 1
            why = f"{role.label.split()[0]} v{wanted} exists already" if wanted else f"“{raw_version}” is no version"
            ctx.warn("version", f"{why}: imported as v{version}.")
        description = _text(data.get("description"))
        if len(description) > 200:
            ctx.warn("description", "longer than 200 characters: cut.")
            description = description[:200]
        prompt = prompt or PromptTemplate(sanity_id=doc.id, active=False)
        template = _text(data.get("template"))
        changed = self._assign(
            prompt, {"role": role, "version": version, "template": template, "description": description}
        )
        unknown = unknown_variables(template)
        tolerated = {}
        if unknown:
            hints = [
                f"{{{{{name}}}}}" + (f" (ours: {{{{{OLD_PLACEHOLDERS[name]}}}}})" if OLD_PLACEHOLDERS.get(name) else "")
                for name in unknown
            ]
            tolerated["template"] = (
                f"placeholders the director does not fill: {', '.join(hints)}. The text is kept as it was; "
                f"edit it before activating (known: {', '.join(sorted(VARIABLES))})."
            )
        self._validate(ctx, prompt, {}, tolerated=tolerated)
        ctx.fail_if_errors()
        prompt.save()
        if created:
            ctx.note("imported inactive: the director keeps its own prompt until you activate this one.")
        self._finish(ctx, prompt, created=created, changed=bool(changed))

    # ------------------------------------------------------------------ artist

    def _artist(self, doc: Document, ctx: _Context) -> None:
        data = doc.data
        visuals = data.get("master_visuals") if isinstance(data.get("master_visuals"), dict) else {}
        voice = self._ref(ctx, data.get("voice"), "voice", "voice", required=True)
        wardrobes = self._refs(ctx, data.get("available_wardrobes"), "wardrobe", "available_wardrobes")
        sources = self._refs(ctx, data.get("default_sources"), "source", "default_sources")
        artist = self._existing(Artist, doc)
        created = artist is None
        name = _text(data.get("name"))
        if created:
            artist = Artist(sanity_id=doc.id, slug=self._free_slug(name, doc.id))
        style = [_text(data.get("subtitle"))]
        if _text(data.get("voiceStyle")):
            style.append(f"Voice style: {_text(data.get('voiceStyle'))}")
        values = {
            "stage_name": name,
            "niche": _text(data.get("niche")),
            "persona": _text(data.get("backstory")),
            "speaking_style": "\n".join(part for part in style if part),
            "content_focus": _words(data.get("contentFocus")),
            "excluded_keywords": _words(data.get("excludeKeywords")),
        }
        if voice is not None:
            values["voice"] = voice
        changed = self._assign(artist, values)
        files = {"face_anchor": "face_anchor", "full_body": "full_body", "three_view_sheet": "three_views"}
        for ours, theirs in files.items():
            if self._file(ctx, artist, ours, visuals.get(theirs), f"master_visuals.{theirs}") == "set":
                changed.append(ours)
        paths = {
            "stage_name": "name",
            "persona": "backstory",
            "speaking_style": "subtitle",
            "content_focus": "contentFocus",
            "excluded_keywords": "excludeKeywords",
            **{ours: f"master_visuals.{theirs}" for ours, theirs in files.items()},
        }
        tolerated = {
            "face_anchor": "no usable face anchor: the artist is imported inactive. Upload a square face "
            "close-up (at least 512x512) in the admin, then tick Active."
        }
        exclude = ["voice"] if voice is None else []
        problems = self._validate(ctx, artist, paths, exclude=exclude, tolerated=tolerated)
        ctx.fail_if_errors()
        unusable = "face_anchor" in problems or (voice is not None and voice.pk in self.incomplete_voices)
        if created and unusable:
            artist.active = False
            if "face_anchor" not in problems:
                ctx.warn("voice", "its voice cannot speak yet (see the voice's warning): imported inactive.")
        elif unusable and artist.active:
            ctx.warn("", "cannot be produced yet (face anchor or voice missing): check it before the next post.")
        artist.save()
        if self._sync_m2m(artist.allowed_wardrobes, wardrobes) | self._sync_m2m(artist.default_sources, sources):
            changed.append("references")
        if self.members:
            artist.members.add(*self.members)
        for key, kind in (("poses", ArtistImage.Kind.POSE), ("studio_images", ArtistImage.Kind.BACKDROP)):
            source = visuals.get(key) if key == "poses" else data.get(key)
            for index, item in enumerate(source if isinstance(source, list) else []):
                caption = _text(item.get("caption") or item.get("alt")) if isinstance(item, dict) else ""
                path = f"master_visuals.poses[{index}]" if key == "poses" else f"studio_images[{index}]"
                if self._library_image(ctx, artist, kind, item, path, caption):
                    changed.append(key)
        for index, value in enumerate(data.get("available_studios") or []):
            ref = value.get("_ref") if isinstance(value, dict) else None
            if isinstance(ref, str) and ref:
                self.studio_users.setdefault(ref.removeprefix("drafts."), []).append(artist)
            else:
                ctx.warn(f"available_studios[{index}]", "not a reference: ignored.")
        self._finish(ctx, artist, created=created, changed=bool(changed))

    @staticmethod
    def _sync_m2m(manager, rows: list) -> bool:
        if set(manager.values_list("pk", flat=True)) == {row.pk for row in rows}:
            return False
        manager.set(rows)
        return True

    @staticmethod
    def _free_slug(name: str, doc_id: str) -> str:
        base = slugify(name)[:70] or "artist-" + (re.sub(r"[^a-z0-9]", "", doc_id.lower())[:8] or "imported")
        slug, n = base, 1
        while Artist.objects.filter(slug=slug).exists():
            n += 1
            slug = f"{base}-{n}"
        return slug

    # ------------------------------------------------------------------ studio (v1.0)

    def _studio(self, doc: Document, ctx: _Context) -> None:
        # MCN OS has no studios: from e3daf92 on the old studio replaced them by artist.studio_images too.
        # A studio's preview becomes a backdrop in the library of each artist that listed it.
        artists = self.studio_users.get(doc.id, [])
        if not artists:
            ctx.result.outcome = "skipped"
            ctx.note("skipped: no imported artist lists this studio in available_studios.")
            return
        if self.export.asset(doc.data.get("preview")) is None:
            ctx.result.outcome = "skipped"
            ctx.note("skipped: it has no preview image to use as a backdrop.")
            return
        added = [
            artist.stage_name
            for artist in artists
            if self._library_image(
                ctx, artist, ArtistImage.Kind.BACKDROP, doc.data.get("preview"), "preview", doc.title
            )
        ]
        if ctx.result.warnings and not added:
            ctx.result.outcome = "skipped"
            return
        ctx.result.outcome = "created" if added else "unchanged"
        if added:
            ctx.note(f"preview added as a studio backdrop of {', '.join(added)}.")

    # ------------------------------------------------------------------ schedule

    def _schedule(self, doc: Document, ctx: _Context) -> None:
        data = doc.data
        artist = self._ref(ctx, data.get("artist"), "artist", "artist", required=True)
        overrides = self._refs(ctx, data.get("source_override"), "source", "source_override")
        routine = data.get("routine_config") if isinstance(data.get("routine_config"), dict) else {}
        trigger_at = self._datetime(ctx, data.get("trigger_at"), "trigger_at")
        last_executed = self._datetime(ctx, data.get("last_executed"), "last_executed")
        month_days = [
            int(day) if isinstance(day, float) and day.is_integer() else day for day in routine.get("month_days") or []
        ]
        schedule = self._existing(Schedule, doc)
        created = schedule is None
        schedule = schedule or Schedule(sanity_id=doc.id, timezone=self.zone, last_executed_at=last_executed)
        values = {
            "title": _text(data.get("title")),
            "active": data.get("active") is not False,
            "kind": _text(data.get("type")) or Schedule.Kind.ROUTINE,
            "period": _text(routine.get("period")) or Schedule.Period.WEEKLY,
            "weekdays": list(routine.get("days") or []),
            "month_days": month_days,
            "times": list(routine.get("times") or []),
            "trigger_at": trigger_at,
        }
        if artist is not None:
            values["artist"] = artist
        changed = self._assign(schedule, values)
        paths = {
            "kind": "type",
            "period": "routine_config.period",
            "weekdays": "routine_config.days",
            "month_days": "routine_config.month_days",
            "times": "routine_config.times",
            "trigger_at": "trigger_at",
        }
        self._validate(ctx, schedule, paths, exclude=["artist"] if artist is None else [])
        ctx.fail_if_errors()
        if created or changed:
            schedule_save(schedule=schedule, now=self.now)
        later = last_executed and (schedule.last_executed_at is None or schedule.last_executed_at < last_executed)
        if not created and later:
            # Both systems write it (the old stack's mark-executed, our scheduler): keep the later one.
            Schedule.objects.filter(pk=schedule.pk).update(last_executed_at=last_executed)
            changed.append("last_executed_at")
        if self._sync_m2m(schedule.source_override, overrides):
            changed.append("source_override")
        if schedule.kind == Schedule.Kind.ONE_OFF and schedule.active and trigger_at and trigger_at < self.now:
            ctx.note(
                "one-off whose time has passed: the scheduler records it as missed "
                "(or fires it, if it is within the grace window)."
            )
        self._finish(ctx, schedule, created=created, changed=bool(changed))

    @staticmethod
    def _datetime(ctx: _Context, value, path: str) -> datetime | None:
        if value in (None, ""):
            return None
        try:
            moment = parse_datetime(str(value))
        except ValueError:
            moment = None
        if moment is None:
            ctx.error(path, f"“{value}” is not an ISO 8601 date and time.")
            return None
        return moment if timezone.is_aware(moment) else timezone.make_aware(moment, timezone.UTC)

    # ------------------------------------------------------------------ post

    def _post(self, doc: Document, ctx: _Context) -> None:
        data = doc.data
        config = data.get("production_config") if isinstance(data.get("production_config"), dict) else {}
        artist = self._ref(ctx, data.get("artist"), "artist", "artist", required=True)
        wardrobe = self._ref(ctx, config.get("selected_wardrobe"), "wardrobe", "production_config.selected_wardrobe")
        source = self._ref(ctx, data.get("created_from_source"), "source", "created_from_source")
        schedule = self._ref(ctx, data.get("created_from_schedule"), "schedule", "created_from_schedule")
        if config.get("selected_studio"):
            ctx.note("production_config.selected_studio not imported: MCN OS infers the studio from the artist.")
        if _text(data.get("local_render_path")):
            ctx.note(f"the rendered video stayed on the old machine ({data['local_render_path']}): not imported.")
        if data.get("source_evidence"):
            ctx.note("source_evidence (a screenshot) not imported: MCN OS has no field for it.")
        raw_status = _text(data.get("status")) or "draft"
        status = STATUS_MAP.get(raw_status)
        if status is None:
            ctx.warn("status", f"“{raw_status}” is not a status of the old studio: imported as draft.")
            status = PostStatus.DRAFT
        ctx.fail_if_errors()  # without its artist there is nothing to check the rest against
        if wardrobe is not None and not artist.allowed_wardrobes.filter(pk=wardrobe.pk).exists():
            ctx.warn(
                "production_config.selected_wardrobe",
                f"“{wardrobe}” is not in {artist}'s available_wardrobes: left empty.",
            )
            wardrobe = None
        fields = {
            "title": _text(data.get("title")),
            "artist": artist,
            "wardrobe": wardrobe,
            "source_content": _text(data.get("source_content")),
            "created_from_source": source,
        }
        extra = {"feedback": _text(data.get("feedback")), "created_from_schedule": schedule}
        paths = {"title": "title", "wardrobe": "production_config.selected_wardrobe", "feedback": "feedback"}
        post = self._existing(Post, doc)
        if post is None:
            self._create_post(doc, ctx, fields, extra, status, paths, raw_status)
        else:
            self._update_post(doc, ctx, post, fields, extra, status, paths, raw_status)

    def _create_post(self, doc, ctx, fields, extra, status, paths, raw_status) -> None:
        self._validate(ctx, Post(**fields, **extra, sanity_id=doc.id), paths)
        shots, _deleted, _changed = self._storyboard(ctx, None, doc.data.get("storyboard"))
        ctx.fail_if_errors()
        post = post_create(actor=None, brief="", sanity_id=doc.id, **fields, **extra)
        if shots:
            post = storyboard_apply(
                post=post, actor=None, expected_version=post.version, change=StoryboardChange(shots)
            )
        if status != PostStatus.DRAFT:
            Post.objects.filter(pk=post.pk).update(status=status, status_changed_at=self.now, version=F("version") + 1)
            PostEvent.objects.create(
                post=post,
                kind=PostEvent.Kind.STATUS,
                from_status=PostStatus.DRAFT,
                to_status=status,
                note=f"Imported from Sanity (status “{raw_status}”).",
            )
        if raw_status == "rendering":
            ctx.note(
                "“rendering” in Sanity: imported as approved. Nothing was produced here yet; "
                "production starts when someone presses Produce."
            )
        self._finish(ctx, post, created=True, changed=True)

    def _update_post(self, doc, ctx, post, fields, extra, status, paths, raw_status) -> None:
        probe = Post.objects.get(pk=post.pk)
        edits = self._assign(probe, fields)
        others = self._assign(probe, extra)
        self._validate(ctx, probe, paths)
        # Storyboards are edited only where MCN OS lets anyone edit them (draft, rejected, failed).
        editable = post.status in EDITABLE_STATUSES
        shots, deleted, shots_changed = [], [], False
        if editable:
            shots, deleted, shots_changed = self._storyboard(ctx, post, doc.data.get("storyboard"))
        ctx.fail_if_errors()
        if edits:
            post = post_update(
                post=post, actor=None, expected_version=post.version, data={name: fields[name] for name in edits}
            )
        if others:
            Post.objects.filter(pk=post.pk).update(**{name: extra[name] for name in others}, version=F("version") + 1)
            PostEvent.objects.create(
                post=post, kind=PostEvent.Kind.EDITED, note=f"Re-imported from Sanity: {', '.join(others)}."
            )
            post.refresh_from_db()
        if editable and shots_changed:
            post = storyboard_apply(
                post=post,
                actor=None,
                expected_version=post.version,
                change=StoryboardChange(shots=shots, deleted=deleted),
            )
        elif not editable and self._storyboard_differs(post, doc.data.get("storyboard")):
            why = "in review" if post.status == PostStatus.REVIEW else "produced here"
            ctx.note(f"storyboard kept: {why} ({post.get_status_display().lower()}); Sanity's changes not applied.")
            shots_changed = False
        if post.status != status:
            ctx.note(
                f"status kept: {post.get_status_display().lower()} here, “{raw_status}” in Sanity "
                "(a re-import never moves a post through the workflow)."
            )
        self._finish(ctx, post, created=False, changed=bool(edits or others or shots_changed))

    def _storyboard(self, ctx: _Context, post: Post | None, items) -> tuple[list[Shot], list[Shot], bool]:
        """The shots the Sanity storyboard describes, matched by _key to `post`'s (None: a new post).

        Returns (shots in playing order, shots to delete, whether anything changed). Shots added here
        (no Sanity key) stay, after Sanity's; a shot locked here that Sanity changed keeps our version.
        """
        if items is not None and not isinstance(items, list):
            ctx.error("storyboard", "not a list of shots.")
            return [], [], False
        existing = list(post.shots.order_by("position")) if post else []
        by_key = {shot.sanity_key: shot for shot in existing if shot.sanity_key}
        ordered: list[Shot] = []
        changed = False
        seen: set[str] = set()
        for index, item in enumerate(items or []):
            path = f"storyboard[{index}]"
            if not isinstance(item, dict):
                ctx.error(path, "not a shot.")
                continue
            key = _text(item.get("_key")) or f"index-{index}"
            if key in seen:
                ctx.error(f"{path}._key", f"“{key}” appears twice in the storyboard.")
                continue
            seen.add(key)
            values = self._shot_values(ctx, item, index, path)
            if values is None:
                continue
            shot = by_key.pop(key, None)
            if shot is None:
                shot, changed = Shot(sanity_key=key), True
            elif shot.locked and values["locked"] and any(getattr(shot, k) != v for k, v in values.items()):
                ctx.warn(path, f"kept: shot {shot.position} is locked here, Sanity's edits not applied.")
                ordered.append(shot)
                continue
            changed = bool(self._assign(shot, values)) or changed
            asset_state = self._file(ctx, shot, "manual_asset", item.get("manual_asset"), f"{path}.manual_asset")
            changed = changed or asset_state == "set"
            problems = self._validate(
                ctx,
                shot,
                {
                    "kind": f"{path}.type",
                    "duration_seconds": f"{path}.duration",
                    "script": f"{path}.script",
                    "visual_prompt": f"{path}.ai_prompt",
                    "manual_asset": f"{path}.manual_asset",
                },
                exclude=["post", "position"],
            )
            if "visual_prompt" in problems and item.get("manual_asset") and not shot.manual_asset:
                # Say why: the picture Sanity had for this shot did not come with the export.
                ctx.result.errors = [line for line in ctx.result.errors if not line.startswith(f"{path}.ai_prompt:")]
                ctx.error(
                    f"{path}.manual_asset",
                    "its file could not be imported (see the warning) and the shot has no ai_prompt to make the "
                    "picture from: export with assets, or give the shot an ai_prompt in Sanity.",
                )
            ordered.append(shot)
        deleted = []
        for shot in by_key.values():  # in MCN OS, no longer in Sanity
            if shot.locked:
                ctx.warn("storyboard", f"kept: shot {shot.position} is locked here but gone from Sanity.")
                ordered.append(shot)
            else:
                deleted.append(shot)
                changed = True
        local = [shot for shot in existing if not shot.sanity_key]
        if local:
            ctx.note(f"{len(local)} shot(s) added in MCN OS kept after Sanity's.")
        ordered += local
        if [shot.pk for shot in ordered] != [shot.pk for shot in existing]:
            changed = True
        return ordered, deleted, changed

    def _shot_values(self, ctx: _Context, item: dict, index: int, path: str) -> dict | None:
        kind = _text(item.get("type")) or ShotKind.A_ROLL
        if kind not in ShotKind.values:
            ctx.error(f"{path}.type", f"“{kind}” is not a_roll, b_roll or product.")
            return None
        duration = item.get("duration")
        try:
            seconds = Decimal(str(duration)).quantize(Decimal("0.01"))
        except (InvalidOperation, ValueError):
            seconds = None
        if duration is None or isinstance(duration, bool) or seconds is None or not seconds.is_finite():
            ctx.error(f"{path}.duration", "required: the shot's length in seconds.")
            return None
        if seconds <= 0:
            ctx.error(f"{path}.duration", "must be positive.")
            return None
        if seconds > 60:
            ctx.error(f"{path}.duration", f"{duration} s: MCN OS shots are at most 60 s.")
            return None
        script = _text(item.get("script"))
        if kind != ShotKind.A_ROLL and script:
            # Hidden in the old studio for anything but A-roll; here a script is spoken aloud.
            ctx.warn(
                f"{path}.script", f"a {kind} shot's script was hidden in Sanity: not imported (it would be spoken)."
            )
            script = ""
        number = item.get("shot_number")
        if number is not None and number != index + 1:
            ctx.note(f"{path}: shot_number {number}, imported as shot {index + 1} (the storyboard's order).")
        return {
            "kind": kind,
            "duration_seconds": seconds,
            "script": script,
            "visual_prompt": _text(item.get("ai_prompt")),
            "locked": item.get("is_locked") is True,
        }

    def _storyboard_differs(self, post: Post, items) -> bool:
        """Whether Sanity's storyboard says something other than the post's shots."""
        scratch = _Context(Document("", "post", {}, ""), DocumentResult("post", "", "", ""))
        shots = list(post.shots.order_by("position"))
        theirs = [(index, item) for index, item in enumerate(items or []) if isinstance(item, dict)]
        keys = [_text(item.get("_key")) or f"index-{index}" for index, item in theirs]
        if keys != [shot.sanity_key for shot in shots if shot.sanity_key]:
            return True
        by_key = {shot.sanity_key: shot for shot in shots}
        for key, (index, item) in zip(keys, theirs, strict=True):
            values = self._shot_values(scratch, item, index, "")
            if values is None or any(getattr(by_key[key], name) != value for name, value in values.items()):
                return True
        return False


# --------------------------------------------------------------------------- value helpers


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool | int | float):
        return str(value)
    return ""


def _words(value) -> list:
    """A Sanity array of strings as a list (anything else is kept for Artist.clean to refuse)."""
    if value is None:
        return []
    return [item.strip() if isinstance(item, str) else item for item in value] if isinstance(value, list) else value


def _json_loads(text: str) -> dict:
    payload = json.loads(text)
    if not isinstance(payload, dict):
        raise ValueError("it is JSON, but not an object")
    return payload
