"""Backup and restore of the whole site: every row and every media file in one archive.

The archive is one gzip-compressed tar, written and read as a stream:

    db/<app_label>.<model>.jsonl   every row of one model, Django's portable JSON Lines (SQLite <-> PostgreSQL)
    media/<path>                   every file under MEDIA_ROOT
    manifest.json                  last: versions, migration state, rows per model, sha256 and size of every member

Content types and permissions are not copied: `migrate` makes them on the target, with other ids, so rows
that point at them (admin log, group and user permissions) and at users and groups are written with
natural keys. Sessions are not copied either: everyone signs in again after a restore.

The manifest cannot hold its own checksum: `backup_create` returns the sha256 of the whole archive and
writes it beside it as `<archive>.sha256` (the `sha256sum` format), which `restore` checks when present.
"""

import dataclasses
import datetime as dt
import hashlib
import io
import json
import os
import platform
import secrets
import shutil
import stat
import subprocess
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import django
from django.apps import apps
from django.conf import settings
from django.core import serializers
from django.core.management import call_command
from django.core.management.color import no_style
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DEFAULT_DB_ALIAS, connections, models, transaction
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder

FORMAT = "mcn-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class ExactJSONEncoder(DjangoJSONEncoder):
    """DjangoJSONEncoder keeps milliseconds of datetimes and times; a backup keeps every microsecond."""

    def default(self, o):
        if isinstance(o, dt.datetime | dt.time):
            text = o.isoformat()
            return text.removesuffix("+00:00") + "Z" if text.endswith("+00:00") else text
        return super().default(o)


# Made again by `migrate` on the target (post_migrate), never copied; see the module docstring.
EXCLUDED = frozenset({"contenttypes.contenttype", "auth.permission", "sessions.session"})

# Tables a fresh `migrate` fills: the staff roles (posts/migrations/0002_roles.py and the later sync_roles
# migrations) and the director's default prompts (posts/migrations/0007_default_prompts.py). A database
# holding only these rows still counts as empty; the restore replaces them with the archive's.
MIGRATION_SEEDED = ("auth.group", "posts.prompttemplate")

# Files a writer is still filling: the factory downloads to `<name>.tmp`, TTS and render write `.<name>...part`,
# then rename. The finished file is what a backup wants; a half-written one could change under the reader.
IN_PROGRESS_SUFFIXES = (".tmp", ".part")
# Working folders of our own (a restore staging its files under MEDIA_ROOT, a backup its dumps): never archived.
STAGING_PREFIX = ".mcn-"

CHUNK = 1024 * 1024
BATCH = 2000  # rows fetched per round trip while dumping a table


class BackupError(Exception):
    """A backup or restore that cannot go on; the message says why and what to do about it."""


@dataclasses.dataclass
class BackupResult:
    path: Path
    sha256: str
    size: int
    rows: dict[str, int]
    files: int
    media_bytes: int
    warnings: list[str]


@dataclasses.dataclass
class ArchiveCheck:
    path: Path
    sha256: str
    manifest: dict
    problems: list[str]  # why this code cannot restore it (migrations); empty when it can


@dataclasses.dataclass
class RestoreResult:
    check: ArchiveCheck
    rows: dict[str, int]
    files: int
    media_bytes: int


# --------------------------------------------------------------------------------------------- backup


def backup_create(*, output: Path, using: str = DEFAULT_DB_ALIAS, now: datetime | None = None) -> BackupResult:
    """Write one archive of the database and MEDIA_ROOT while the site runs; return where and what it holds.

    `output` is a folder (the archive is named `mcn-backup-<UTC time>.tar.gz` in it) or a path ending in
    `.tar.gz`. Every table is read in one transaction that sees one snapshot, so the rows agree with each
    other however many writers run meanwhile. The archive appears at its name only once complete.
    """
    now = now or datetime.now(UTC)
    if str(output).endswith(".tar.gz"):
        path = Path(output).absolute()
    else:
        path = Path(output).absolute() / f"mcn-backup-{now:%Y%m%dT%H%M%SZ}.tar.gz"
    if not path.parent.is_dir():
        raise BackupError(f"{path.parent} is not a folder: create it or choose another --output.")
    if path.exists():
        raise BackupError(f"{path} already exists; a backup never overwrites one.")
    _refuse_unapplied_migrations(using)

    warnings: list[str] = []
    members: dict[str, dict] = {}
    tables: list[dict] = []
    referenced: list[tuple[str, object, str, str]] = []  # (model, pk, field, file name) to look for in media

    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}backup-", dir=path.parent))
    partial = staging / path.name
    try:
        with open(partial, "wb") as raw:
            hashing = _HashingWriter(raw)
            with tarfile.open(fileobj=hashing, mode="w|gz", format=tarfile.PAX_FORMAT) as tar:
                # Rows first, in one snapshot; media after, so every file a row names was there when it
                # was read (one deleted since is reported). Files added since are harmless extras.
                dumps = staging / "db"
                dumps.mkdir()
                with _snapshot(using):
                    for model in dump_models():
                        label = model._meta.label_lower
                        dump = dumps / f"{label}.jsonl"
                        rows = _dump_table(model, dump, using=using, referenced=referenced)
                        tables.append({"model": label, "rows": rows, "member": f"db/{label}.jsonl"})
                for table in tables:
                    with open(dumps / f"{table['model']}.jsonl", "rb") as handle:
                        members[table["member"]] = _add(tar, table["member"], handle, mtime=now.timestamp())
                archived = _add_media(tar, members, warnings, skip={partial})
                for model, pk, field, name in referenced:
                    if name not in archived:
                        warnings.append(f"{model} {pk} {field}: {name} is not in MEDIA_ROOT")
                manifest = _manifest(now=now, using=using, tables=tables, members=members, warnings=warnings)
                _add(tar, MANIFEST, io.BytesIO(manifest), mtime=now.timestamp(), size=len(manifest))
            raw.flush()
            os.fsync(raw.fileno())
        if path.exists():
            raise BackupError(f"{path} appeared while the backup ran; a backup never overwrites one.")
        os.replace(partial, path)
        digest = hashing.sha256.hexdigest()
        _write_atomically(Path(f"{path}.sha256"), f"{digest}  {path.name}\n".encode())
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    media = [m for name, m in members.items() if name.startswith("media/")]
    return BackupResult(
        path=path,
        sha256=digest,
        size=path.stat().st_size,
        rows={table["model"]: table["rows"] for table in tables},
        files=len(media),
        media_bytes=sum(m["size"] for m in media),
        warnings=warnings,
    )


def dump_models() -> list[type[models.Model]]:
    """Every model whose rows a backup holds, in an order that loads: natural-key targets before their users."""
    app_list = [
        (
            config,
            [
                model
                for model in config.get_models()
                if model._meta.managed and not model._meta.proxy and model._meta.label_lower not in EXCLUDED
            ],
        )
        for config in apps.get_app_configs()
    ]
    return serializers.sort_dependencies(app_list, allow_cycles=True)


@contextmanager
def _snapshot(using: str) -> Iterator[None]:
    """Run the block's reads in one transaction that sees one snapshot of the database and writes nothing."""
    connection = connections[using]
    if connection.in_atomic_block:
        # Already inside the caller's transaction (a test's): read in it.
        yield
    elif connection.vendor == "postgresql":
        with transaction.atomic(using=using):
            with connection.cursor() as cursor:
                # Must be the transaction's first statement. REPEATABLE READ: every query sees the snapshot
                # taken at the first one; READ ONLY: no locks beyond those of plain reads, writers go on.
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield
    elif connection.vendor == "sqlite":
        # Not transaction.atomic(): settings make SQLite transactions BEGIN IMMEDIATE, which takes the write
        # lock and would stop every writer for the whole backup. A DEFERRED transaction that only reads
        # sees one snapshot in WAL mode (settings turn it on) and blocks nobody.
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("BEGIN DEFERRED")
            try:
                yield
            finally:
                cursor.execute("ROLLBACK")
    else:
        raise BackupError(f"Backups support SQLite and PostgreSQL, not {connection.vendor}.")


def _dump_table(model, path: Path, *, using: str, referenced: list) -> int:
    label = model._meta.label_lower
    natural_fks = [
        f.name for f in model._meta.fields if f.remote_field and hasattr(f.remote_field.model, "natural_key")
    ]
    many = [f.name for f in model._meta.many_to_many if f.remote_field.through._meta.auto_created]
    file_fields = [f for f in model._meta.fields if isinstance(f, models.FileField)]
    queryset = model._base_manager.using(using).order_by("pk")
    if natural_fks:
        queryset = queryset.select_related(*natural_fks)  # natural keys would cost one query per row each
    if many:
        queryset = queryset.prefetch_related(*many)
    count = 0

    def rows():
        nonlocal count
        for obj in queryset.iterator(chunk_size=BATCH):  # never the whole table in memory
            count += 1
            for field in file_fields:
                name = field.value_from_object(obj).name
                if name:
                    referenced.append((label, obj.pk, field.name, name))
            yield obj

    with open(path, "w", encoding="utf-8") as stream:
        serializers.serialize("jsonl", rows(), stream=stream, use_natural_foreign_keys=True, cls=ExactJSONEncoder)
    return count


def _add_media(tar: tarfile.TarFile, members: dict, warnings: list[str], *, skip: set[Path]) -> set[str]:
    """Add every file under MEDIA_ROOT as media/<path>; return the names (relative to MEDIA_ROOT) added."""
    root = Path(settings.MEDIA_ROOT)
    archived: set[str] = set()
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith(STAGING_PREFIX))
        for name in sorted(files):
            path = Path(folder) / name
            if name.endswith(IN_PROGRESS_SUFFIXES) or path in skip:
                continue
            relative = path.relative_to(root).as_posix()
            try:
                handle = open(path, "rb")  # noqa: SIM115 - closed below; fstat needs the open file
            except FileNotFoundError:
                warnings.append(f"{relative} was deleted while the backup ran")
                continue
            with handle:
                status = os.fstat(handle.fileno())
                if not stat.S_ISREG(status.st_mode):
                    warnings.append(f"{relative} is not a regular file: left out")
                    continue
                # The size of the file as opened: writers replace files by rename, so this one stays whole.
                members[f"media/{relative}"] = _add(
                    tar, f"media/{relative}", handle, mtime=status.st_mtime, size=status.st_size
                )
            archived.add(relative)
    return archived


def _add(tar: tarfile.TarFile, name: str, handle, *, mtime: float, size: int | None = None) -> dict:
    """Stream one member into the archive, hashing it on the way; return its manifest entry."""
    info = tarfile.TarInfo(name)
    info.size = os.fstat(handle.fileno()).st_size if size is None else size
    info.mtime = int(mtime)
    info.mode = 0o644
    reader = _HashingReader(handle)
    try:
        tar.addfile(info, reader)
    except OSError as error:  # tarfile: "unexpected end of data"
        raise BackupError(f"{name} changed while it was being read ({error}); run the backup again.") from None
    return {"sha256": reader.sha256.hexdigest(), "size": info.size}


def _manifest(*, now: datetime, using: str, tables: list[dict], members: dict, warnings: list[str]) -> bytes:
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created_at": now.isoformat().replace("+00:00", "Z"),
        "mcn_version": mcn_version(),
        "django_version": django.get_version(),
        "python_version": platform.python_version(),
        "database_vendor": connections[using].vendor,
        "migrations": applied_migrations(using),
        "tables": tables,
        "members": members,
        "excluded": sorted(EXCLUDED),
        "warnings": warnings,
    }
    return json.dumps(manifest, indent=1, ensure_ascii=False).encode()


def mcn_version() -> str:
    """`git describe` of the code (tag, commits since, commit, -dirty), or "unknown" outside a checkout."""
    try:
        answer = subprocess.run(
            ["git", "describe", "--always", "--tags", "--dirty"],  # noqa: S607 - git from PATH on purpose
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return answer.stdout.strip() or "unknown"


def applied_migrations(using: str) -> dict[str, list[str]]:
    """The migrations the database has applied, per app that has migrations in this code."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    applied: dict[str, list[str]] = {}
    for app_label, name in sorted(MigrationRecorder(connections[using]).applied_migrations()):
        if app_label in loader.migrated_apps:
            applied.setdefault(app_label, []).append(name)
    return applied


def _refuse_unapplied_migrations(using: str) -> None:
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connections[using])
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if plan:
        names = ", ".join(f"{m.app_label}.{m.name}" for m, _ in plan[:5])
        raise BackupError(f"The database has unapplied migrations ({names}): run `manage.py migrate` first.")


# --------------------------------------------------------------------------------------------- verify


def archive_verify(*, path: Path) -> ArchiveCheck:
    """Read the whole archive and check every member against the manifest; return the manifest.

    Raises BackupError for anything wrong with the archive itself (damaged, altered, not ours). Whether this
    code can restore it is in `problems`: migrations the archive has and this code lacks, or the reverse.
    """
    path = Path(path)
    if not path.is_file():
        raise BackupError(f"{path} does not exist.")
    found: dict[str, dict] = {}
    manifest_bytes = None
    with open(path, "rb") as raw:
        hashing = _HashingReader(raw)
        try:
            with tarfile.open(fileobj=hashing, mode="r|gz") as tar:
                for info in tar:
                    name = _member_name(info)
                    if name in found:
                        raise BackupError(f"{path.name} holds {name} twice: it is not an MCN OS backup.")
                    digest = hashlib.sha256()
                    data = bytearray() if name == MANIFEST else None
                    source = tar.extractfile(info)
                    while chunk := source.read(CHUNK):
                        digest.update(chunk)
                        if data is not None:
                            data += chunk
                    found[name] = {"sha256": digest.hexdigest(), "size": info.size}
                    if data is not None:
                        manifest_bytes = bytes(data)
            while hashing.read(CHUNK):  # the rest of the gzip stream, for the archive's own checksum
                pass
        except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
            raise BackupError(f"{path.name} cannot be read as a backup archive ({error}).") from None
    archive_sha256 = hashing.sha256.hexdigest()
    _check_sidecar(path, archive_sha256)
    if manifest_bytes is None:
        raise BackupError(f"{path.name} has no {MANIFEST}: it is not an MCN OS backup, or it was cut short.")
    try:
        manifest = json.loads(manifest_bytes)
    except ValueError:
        raise BackupError(f"{path.name}: {MANIFEST} is not valid JSON.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{path.name} is not an MCN OS backup (its manifest names no {FORMAT!r} format).")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise BackupError(
            f"{path.name} is backup format {manifest['format_version']}; this code reads format {FORMAT_VERSION}. "
            f"Restore it with MCN OS {manifest.get('mcn_version', 'unknown')} or later."
        )
    expected = manifest.get("members", {})
    del found[MANIFEST]
    for name, entry in expected.items():
        if name not in found:
            raise BackupError(f"{name} is in the manifest but not in the archive: the archive is incomplete.")
        if found[name] != {"sha256": entry.get("sha256"), "size": entry.get("size")}:
            raise BackupError(
                f"{name} does not match its checksum in the manifest: the archive is damaged or was altered."
            )
    for name in found:
        if name not in expected:
            raise BackupError(f"{name} is in the archive but not in the manifest: the archive was altered.")
    return ArchiveCheck(path=path, sha256=archive_sha256, manifest=manifest, problems=_migration_problems(manifest))


def _member_name(info: tarfile.TarInfo) -> str:
    """The member's name, when it is one an archive of ours holds: a plain file, no absolute path, no '..'."""
    name = info.name
    parts = PurePosixPath(name).parts
    ours = (
        name == MANIFEST
        or (len(parts) == 2 and parts[0] == "db" and name.endswith(".jsonl"))
        or (len(parts) >= 2 and parts[0] == "media")
    )
    if not info.isfile() or name.startswith("/") or ".." in parts or "\\" in name or not ours:
        raise BackupError(f"Unexpected member {name!r}: this is not an MCN OS backup.")
    return name


def _check_sidecar(path: Path, archive_sha256: str) -> None:
    sidecar = Path(f"{path}.sha256")
    if not sidecar.is_file():
        return
    recorded = sidecar.read_text(encoding="utf-8").split()
    if recorded and recorded[0].lower() != archive_sha256:
        raise BackupError(
            f"{path.name} does not match {sidecar.name}: the archive is damaged or was altered "
            f"(sha256 {archive_sha256}, recorded {recorded[0]})."
        )


def _migration_problems(manifest: dict) -> list[str]:
    loader = MigrationLoader(None, ignore_no_migrations=True)
    disk = {key: migration for key, migration in loader.disk_migrations.items() if key[0] in loader.migrated_apps}
    archived = {(app, name) for app, names in manifest.get("migrations", {}).items() for name in names}
    replaced = {key for migration in disk.values() for key in migration.replaces}
    unknown = sorted(archived - set(disk) - replaced)
    missing = sorted(
        key
        for key in set(disk) - archived
        if not (disk[key].replaces and set(disk[key].replaces) <= archived)  # a squash of what it applied
    )
    made_with = manifest.get("mcn_version", "unknown")
    problems = []
    if unknown:
        problems.append(
            f"The archive was made by newer code: this code lacks its migrations {_names(unknown)}. "
            f"Restore it with MCN OS {made_with}, then upgrade."
        )
    if missing:
        problems.append(
            f"The archive was made by older code: it lacks this code's migrations {_names(missing)}. "
            f"Restore it with MCN OS {made_with}, then upgrade and run `manage.py migrate`."
        )
    return problems


def _names(keys: list[tuple[str, str]]) -> str:
    shown = ", ".join(f"{app}.{name}" for app, name in keys[:5])
    return shown + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")


# --------------------------------------------------------------------------------------------- restore


def restore(*, path: Path, using: str = DEFAULT_DB_ALIAS) -> RestoreResult:
    """Restore an archive into an empty database and MEDIA_ROOT; return what was restored.

    Nothing is written until the whole archive has been checked against its manifest, this code has the
    archive's migrations, the database holds no data and MEDIA_ROOT holds no different file at any of the
    archive's paths. The rows load in one transaction; the media files are staged in MEDIA_ROOT and moved
    into place before it commits.
    """
    check = archive_verify(path=path)
    if check.problems:
        raise BackupError(" ".join(check.problems))
    manifest = check.manifest
    tables = manifest.get("tables", [])
    for table in tables:
        try:
            apps.get_model(table["model"])
        except (LookupError, ValueError):
            raise BackupError(f"The archive holds rows of {table['model']}, a model this code does not have.") from None
        if table.get("member") != f"db/{table['model']}.jsonl" or table["member"] not in manifest["members"]:
            raise BackupError(f"The manifest lists {table['model']} without its member: the archive was altered.")
    _refuse_non_empty_database(using)
    media_root = Path(settings.MEDIA_ROOT)
    media = [name for name in manifest["members"] if name.startswith("media/")]
    _refuse_conflicting_media(media_root, media, manifest["members"])

    call_command("migrate", database=using, interactive=False, verbosity=0)

    # Staged on MEDIA_ROOT's disk (room for the media anyway, and a rename away from their places).
    staging = media_root / f"{STAGING_PREFIX}restore-{secrets.token_hex(4)}"
    db_staging, media_staging = staging / "db", staging / "media"
    db_staging.mkdir(parents=True)
    try:
        _extract(check, db_staging=db_staging, media_staging=media_staging)
        with transaction.atomic(using=using):
            rows = _load(tables, db_staging, using=using)
            for name in media:
                relative = name.removeprefix("media/")
                target = media_root / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(media_staging / relative, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return RestoreResult(
        check=check,
        rows=rows,
        files=len(media),
        media_bytes=sum(manifest["members"][name]["size"] for name in media),
    )


def _refuse_non_empty_database(using: str) -> None:
    connection = connections[using]
    existing = set(connection.introspection.table_names())
    filled = []
    for model in dump_models():
        label = model._meta.label_lower
        if label in MIGRATION_SEEDED or model._meta.db_table not in existing:
            continue
        count = model._base_manager.using(using).count()
        if count:
            filled.append(f"{count} {'row' if count == 1 else 'rows'} in {label}")
    if filled:
        raise BackupError(
            f"The database is not empty ({', '.join(filled[:5])}). A restore only writes into an empty database: "
            f"create a new one (PostgreSQL: `createdb mcn_restored`; SQLite: a new file), point DATABASE_URL "
            f"at it and run restore again."
        )


def _refuse_conflicting_media(media_root: Path, media: list[str], members: dict) -> None:
    conflicts = []
    for name in media:
        target = media_root / name.removeprefix("media/")
        exists = target.exists() or target.is_symlink()
        if exists and (not target.is_file() or _sha256_file(target) != members[name]["sha256"]):
            conflicts.append(str(target))  # the same bytes already there are no conflict
    if conflicts:
        shown = ", ".join(conflicts[:5]) + (f" and {len(conflicts) - 5} more" if len(conflicts) > 5 else "")
        raise BackupError(
            f"MEDIA_ROOT already holds different files at the archive's paths ({shown}). "
            f"Restore into an empty MEDIA_ROOT."
        )


def _extract(check: ArchiveCheck, *, db_staging: Path, media_staging: Path) -> None:
    """Second pass: write every member to its staging folder, checking it again against the manifest."""
    members = check.manifest["members"]
    with open(check.path, "rb") as raw, tarfile.open(fileobj=raw, mode="r|gz") as tar:
        for info in tar:
            name = _member_name(info)
            if name == MANIFEST:
                continue
            if name.startswith("db/"):
                target = db_staging / PurePosixPath(name).name
            else:
                target = media_staging / name.removeprefix("media/")
            target.parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            source = tar.extractfile(info)
            with open(target, "wb") as out:
                while chunk := source.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            if name not in members or digest.hexdigest() != members[name]["sha256"]:
                raise BackupError(f"{name} changed since it was checked: the archive is being altered.")


def _load(tables: list[dict], staging: Path, *, using: str) -> dict[str, int]:
    """Replace the rows migrations made, load every table, check every reference; return rows per model."""
    connection = connections[using]
    for label in MIGRATION_SEEDED:
        apps.get_model(label)._base_manager.using(using).all().delete()
    rows: dict[str, int] = {}
    loaded = []
    deferred = []
    # As loaddata does: references are checked once everything is in (PostgreSQL defers its foreign keys to
    # commit; SQLite's are deferrable too), so rows may point at rows of a later table.
    with connection.constraint_checks_disabled():
        for table in tables:
            label = table["model"]
            model = apps.get_model(label)
            loaded.append(model)
            count = 0
            with open(staging / f"{label}.jsonl", encoding="utf-8") as stream:
                for obj in serializers.deserialize("jsonl", stream, using=using, handle_forward_references=True):
                    if obj.object._meta.label_lower != label:
                        raise BackupError(f"db/{label}.jsonl holds a row of {obj.object._meta.label_lower}.")
                    obj.save(using=using)
                    if obj.deferred_fields:
                        deferred.append(obj)
                    count += 1
            if count != table["rows"]:
                raise BackupError(f"db/{label}.jsonl holds {count} rows; the manifest says {table['rows']}.")
            rows[label] = count
        for obj in deferred:
            obj.save_deferred_fields(using=using)
    with_links = loaded + [
        field.remote_field.through
        for model in loaded
        for field in model._meta.many_to_many
        if field.remote_field.through._meta.auto_created
    ]
    connection.check_constraints(table_names=[model._meta.db_table for model in with_links])
    # Rows came with their ids: move each id sequence past them, or the next insert collides (PostgreSQL;
    # SQLite's AUTOINCREMENT follows by itself). Many-to-many links were added afresh, with new ids.
    with connection.cursor() as cursor:
        for sql in connection.ops.sequence_reset_sql(no_style(), loaded):
            cursor.execute(sql)
    return rows


# --------------------------------------------------------------------------------------------- helpers


class _HashingWriter:
    def __init__(self, raw) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()

    def write(self, data) -> int:
        self.sha256.update(data)
        return self.raw.write(data)


class _HashingReader:
    def __init__(self, raw) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.sha256.update(data)
        return data


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_name(f"{STAGING_PREFIX}{path.name}.{secrets.token_hex(4)}")
    partial.write_bytes(data)
    os.replace(partial, path)


def format_bytes(size: int) -> str:
    """A size for people: 1,234 bytes / 12.3 MB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size:,} bytes"
