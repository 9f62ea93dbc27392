"""Read a Sanity dataset export (`sanity dataset export`): documents and the asset files they point to.

A pure reader: it never writes to the database, never extracts to disk and never downloads.

Formats:
- `<name>.tar.gz` / `.tgz`: `<folder>/data.ndjson` (one document per line), `<folder>/images/`,
  `<folder>/files/` and, in recent CLIs, `<folder>/assets.json` (asset metadata such as the original
  file name, keyed `image-<sha1>`).
- a bare `data.ndjson`; asset files are read from `images/` and `files/` beside it when they are there
  (an unpacked export), otherwise every asset is reported missing.

Asset fields come in two forms:
- default export: `{"_sanityAsset": "image@file://./images/<sha1>-<w>x<h>.<ext>"}`;
- `--raw` export: `{"asset": {"_ref": "image-<sha1>-<w>x<h>-<ext>"}}` plus `sanity.imageAsset` /
  `sanity.fileAsset` documents (`originalFilename`, `mimeType`, `url`, ...). A raw export has no files;
  they are looked for under the names the default export would give them, and never fetched from `url`.

Drafts: `drafts.X` is the newer, unpublished edit of `X`. When both are in the export the draft wins and
is returned under the id `X` (`Document.draft` says so); `versions.*` (release versions) and the
`system.*` / `sanity.*` documents other than assets are left out and listed in `skipped`.
"""

import json
import mimetypes
import posixpath
import re
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

DATA_FILE = "data.ndjson"
ASSETS_FILE = "assets.json"
ASSET_TYPES = {"sanity.imageAsset": "image", "sanity.fileAsset": "file"}
SANITY_ASSET_RE = re.compile(r"^(image|file)@(.+)$")
# Sanity's own asset ids: image-<sha1>-<w>x<h>-<ext>, file-<sha1>-<ext>.
IMAGE_ID_RE = re.compile(r"^image-([a-f0-9]{40})-(\d+x\d+)-([a-z0-9]+)$")
FILE_ID_RE = re.compile(r"^file-([a-f0-9]{40})-([a-z0-9]+)$")


class ExportError(Exception):
    """The export cannot be read at all (not an archive, no data.ndjson, an unsafe member path)."""


@dataclass
class Document:
    id: str  # the published id, the one references use: `drafts.` stripped
    type: str
    data: dict
    source_id: str  # the id of the line actually read: `drafts.X` when the draft won
    draft: bool = False  # the draft was imported
    published_too: bool = False  # and a published version was in the export as well
    line: int = 0

    @property
    def title(self) -> str:
        for key in ("title", "name", "role"):
            value = self.data.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
        return ""


@dataclass
class Asset:
    """One image or file a document points to: readable bytes, or why it cannot be had."""

    kind: str  # "image" or "file"
    ref: str  # what the document said: the _sanityAsset string or the asset _ref
    filename: str = ""  # the best name: the original upload's name where the export kept it
    mime: str = ""
    member: str = ""  # where it was found, for messages
    missing: str = ""  # why it cannot be read; empty when it can
    opener: Callable[[], bytes] | None = field(default=None, repr=False)

    def read(self) -> bytes:
        if self.opener is None:
            raise ExportError(f"{self.ref}: {self.missing}")
        return self.opener()


@dataclass
class SkippedDocument:
    id: str
    type: str
    reason: str


def _safe_relative(name: str) -> str | None:
    """`name` normalised inside the archive, or None when it is absolute or climbs out with `..`."""
    if not name or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or "\\" in name:
        return None
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if any(part == ".." for part in parts):
        return None
    return "/".join(parts)


class SanityExport:
    """An opened export. Use as a context manager: the archive stays open while assets are read."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._tar: tarfile.TarFile | None = None
        self._members: dict[str, tarfile.TarInfo] = {}
        self._root = ""  # folder of data.ndjson inside the archive ("" for a bare file)
        self._dir: Path | None = None  # folder of a bare data.ndjson on disk
        self.documents: list[Document] = []
        self.skipped: list[SkippedDocument] = []
        self.problems: list[str] = []  # lines that are not documents
        self.asset_docs: dict[str, dict] = {}
        self.asset_meta: dict[str, dict] = {}
        self.archive = False

    # ------------------------------------------------------------------ opening

    def __enter__(self) -> "SanityExport":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()
            self._tar = None

    def open(self) -> None:
        if not self.path.is_file():
            raise ExportError(f"{self.path}: no such file.")
        name = self.path.name.lower()
        if name.endswith((".tar.gz", ".tgz", ".tar")):
            self._open_archive()
        elif name.endswith((".ndjson", ".json", ".jsonl")):
            self._dir = self.path.parent
            self._read_lines(self.path.read_bytes())
        else:
            raise ExportError(f"{self.path}: expected a .tar.gz export or a data.ndjson file.")

    def _open_archive(self) -> None:
        try:
            self._tar = tarfile.open(self.path, "r:*")  # noqa: SIM115 - kept open to read assets, closed in close()
            members = self._tar.getmembers()
        except (tarfile.TarError, OSError, EOFError) as error:
            raise ExportError(f"{self.path}: not a readable tar.gz archive ({error}).") from None
        self.archive = True
        for member in members:
            safe = _safe_relative(member.name)
            if safe is None:
                raise ExportError(f"{self.path}: refused: the archive holds an unsafe path {member.name!r}.")
            if member.issym() or member.islnk():
                target = member.linkname
                if member.issym():
                    target = posixpath.join(posixpath.dirname(safe), target)
                if target.startswith("/") or _safe_relative(target) is None:
                    raise ExportError(
                        f"{self.path}: refused: {member.name!r} links outside the archive ({member.linkname!r})."
                    )
            if member.isfile() or member.issym() or member.islnk():
                self._members[safe] = member
        candidates = sorted(
            (path for path in self._members if posixpath.basename(path) == DATA_FILE and path.count("/") <= 1),
            key=lambda path: path.count("/"),
        )
        if not candidates:
            raise ExportError(f"{self.path}: no {DATA_FILE} in the archive: is this a `sanity dataset export`?")
        if len(candidates) > 1 and candidates[0].count("/") == candidates[1].count("/"):
            raise ExportError(f"{self.path}: more than one {DATA_FILE} ({', '.join(candidates)}).")
        data_path = candidates[0]
        self._root = posixpath.dirname(data_path)
        assets_json = self._member_bytes(posixpath.join(self._root, ASSETS_FILE))
        if assets_json is not None:
            try:
                meta = json.loads(assets_json)
                self.asset_meta = meta if isinstance(meta, dict) else {}
            except ValueError:
                self.problems.append(f"{ASSETS_FILE}: not JSON; original file names are not known.")
        self._read_lines(self._member_bytes(data_path) or b"")

    def _member_bytes(self, path: str) -> bytes | None:
        member = self._members.get(path)
        if member is None or self._tar is None:
            return None
        handle = self._tar.extractfile(member)
        return handle.read() if handle is not None else None

    # ------------------------------------------------------------------ documents

    def _read_lines(self, raw: bytes) -> None:
        published: dict[str, Document] = {}
        drafts: dict[str, Document] = {}
        for number, line in enumerate(raw.decode("utf-8-sig", errors="replace").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except ValueError as error:
                self.problems.append(f"{DATA_FILE} line {number}: not a JSON document ({error}).")
                continue
            if not isinstance(data, dict) or not isinstance(data.get("_id"), str) or not data.get("_type"):
                self.problems.append(f"{DATA_FILE} line {number}: not a Sanity document (no _id or _type).")
                continue
            doc_id, doc_type = data["_id"], str(data["_type"])
            if doc_type in ASSET_TYPES:
                self.asset_docs[doc_id] = data
                continue
            if doc_type.startswith(("system.", "sanity.")) or doc_id.startswith("_."):
                self.skipped.append(SkippedDocument(doc_id, doc_type, "Sanity system document"))
                continue
            if doc_id.startswith("versions."):
                self.skipped.append(
                    SkippedDocument(doc_id, doc_type, "release version: only published documents and drafts")
                )
                continue
            if doc_id.startswith("drafts."):
                base = doc_id.removeprefix("drafts.")
                drafts[base] = Document(base, doc_type, data, doc_id, draft=True, line=number)
            else:
                published[doc_id] = Document(doc_id, doc_type, data, doc_id, line=number)
        merged = dict(published)
        for base, draft in drafts.items():
            # The draft is the newer edit: it wins over the published version.
            draft.published_too = base in published
            merged[base] = draft
        self.documents = sorted(merged.values(), key=lambda doc: doc.line)

    def of_type(self, doc_type: str) -> Iterator[Document]:
        return (doc for doc in self.documents if doc.type == doc_type)

    # ------------------------------------------------------------------ assets

    def asset(self, value) -> Asset | None:
        """The asset an image/file field points to; None when the field holds none."""
        if not isinstance(value, dict):
            return None
        pointer = value.get("_sanityAsset")
        if isinstance(pointer, str):
            return self._from_pointer(pointer)
        ref = (value.get("asset") or {}).get("_ref") if isinstance(value.get("asset"), dict) else None
        if isinstance(ref, str) and ref:
            return self._from_ref(ref)
        return None

    def _from_pointer(self, pointer: str) -> Asset:
        match = SANITY_ASSET_RE.match(pointer)
        kind = match.group(1) if match else "file"
        asset = Asset(kind=kind, ref=pointer)
        location = match.group(2) if match else ""
        if not location.startswith("file://"):
            asset.missing = "points to a URL, which the importer never downloads"
            return asset
        relative = _safe_relative(location.removeprefix("file://"))
        if relative is None or not relative.startswith(("images/", "files/")):
            asset.missing = "refused: the path leaves the export's images/ and files/ folders"
            return asset
        name = posixpath.basename(relative)
        # assets.json keys the original metadata by image-<sha1> / file-<sha1>.
        sha1 = re.split(r"[-.]", name, maxsplit=1)[0]
        meta = self.asset_meta.get(f"{kind}-{sha1}") or {}
        asset.filename = _filename(meta.get("originalFilename"), fallback=name)
        asset.mime = str(meta.get("mimeType") or mimetypes.guess_type(name)[0] or "")
        self._locate(asset, [relative])
        return asset

    def _from_ref(self, ref: str) -> Asset:
        kind = "image" if ref.startswith("image-") else "file"
        asset = Asset(kind=kind, ref=ref)
        doc = self.asset_docs.get(ref) or {}
        candidates = []
        if match := IMAGE_ID_RE.match(ref):
            sha1, size, ext = match.groups()
            candidates = [f"images/{sha1}-{size}.{ext}", f"images/{sha1}.{ext}"]
        elif match := FILE_ID_RE.match(ref):
            sha1, ext = match.groups()
            # @sanity/export names a file whose extension has a digit (mp3, mp4) "<sha1>-<ext>.bin".
            candidates = [f"files/{sha1}.{ext}", f"files/{sha1}-{ext}.bin"]
        if isinstance(doc.get("path"), str):
            candidates.append(f"{kind}s/{posixpath.basename(doc['path'])}")
        fallback = posixpath.basename(candidates[0]) if candidates else ref
        asset.filename = _filename(doc.get("originalFilename"), fallback=fallback)
        asset.mime = str(doc.get("mimeType") or mimetypes.guess_type(asset.filename)[0] or "")
        self._locate(asset, candidates)
        if asset.missing and not doc:
            asset.missing = f"the asset document {ref} is not in the export and neither is its file"
        return asset

    def _locate(self, asset: Asset, candidates: list[str]) -> None:
        for relative in candidates:
            if self._tar is not None:
                path = posixpath.join(self._root, relative) if self._root else relative
                if path in self._members:
                    asset.member = path
                    asset.opener = lambda path=path: self._member_bytes(path) or b""
                    return
            elif self._dir is not None:
                base = self._dir.resolve()
                path = (base / relative).resolve()
                # resolve() follows symlinks: a link pointing out of the export folder is not read.
                if path.is_relative_to(base) and path.is_file():
                    asset.member = relative
                    asset.opener = path.read_bytes
                    return
        where = "the archive" if self.archive else f"the folder of {self.path.name}"
        shown = candidates[0] if candidates else asset.ref
        asset.missing = f"file {shown} is not in {where}"


def _filename(original, *, fallback: str) -> str:
    name = posixpath.basename(str(original).replace("\\", "/")) if isinstance(original, str) and original else ""
    return name or fallback
