"""manage.py backup / restore: an archive restores into a fresh database row for row and byte for byte.

The backup runs in this process (it sees the test's rows); every restore runs as `manage.py restore` in a
subprocess against a database of its own (a new SQLite file or a new PostgreSQL database) and a new
MEDIA_ROOT, then `manage.py dumpdata` there is compared with dumpdata here.
"""

import gzip
import hashlib
import io
import json
import os
import re
import secrets
import sqlite3
import subprocess
import sys
import tarfile
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from django.apps import apps
from django.conf import settings
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.auth.models import Group, Permission, User
from django.contrib.contenttypes.models import ContentType
from django.core.files.base import ContentFile
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.utils import timezone

from artists.models import ArtistImage
from artists.services import api_token_create
from factory.models import JobEvent
from mcn_site.backup import format_bytes
from mcn_site.lib import roles
from posts.models import Post, PromptTemplate, Shot, Webhook, WebhookDelivery, WebhookEvent
from tests.factories import (
    make_artist,
    make_gpu_worker,
    make_job,
    make_job_output,
    make_media_file,
    make_post,
    make_postevent,
    make_schedule,
    make_schedule_run,
    make_shot_workflow,
    make_source,
    make_user,
    make_voice,
    make_wardrobe,
    mp4_bytes,
    png_bytes,
    wav_bytes,
)

ROOT = Path(__file__).resolve().parent.parent
# Not copied by a backup (migrate makes them on the target): dumpdata leaves them out on both sides too,
# and django_rq's one model, which has no table.
NOT_BACKED_UP = ["contenttypes", "auth.permission", "sessions", "django_rq"]
# Where the test makes a PostgreSQL database to restore into, when the suite itself runs on SQLite.
POSTGRES_URL = os.environ.get("MCN_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")


# --------------------------------------------------------------------------------------------- helpers


def varied_data() -> dict:
    """Some of everything: roles and a custom group, tokens, artists with media, schedules, posts, jobs, hooks."""
    ops = make_user(role=roles.OPS, username="ops-ann")
    producer = make_user(role=roles.PRODUCER, username="pro-bo")
    reviewer = make_user(role=roles.REVIEWER, username="rev-cy")
    User.objects.create_superuser(username="root", email="root@example.com", password="pw-for-tests-1")
    night = Group.objects.create(name="Night shift")
    night.permissions.set(Permission.objects.filter(codename__in=["view_post", "review_post"]))
    producer.groups.add(night)
    producer.user_permissions.add(Permission.objects.get(codename="view_job"))
    api_token_create(user=producer, name="n8n publishing")

    voice = make_voice()
    voice.sample_audio.save("sample.wav", ContentFile(wav_bytes(0.5)))
    wardrobe = make_wardrobe()
    source = make_source()
    artist = make_artist(
        members=[producer, reviewer], wardrobes=[wardrobe], voice=voice, content_focus=["stocks", "加密货币"]
    )
    artist.default_sources.set([source])
    image = ArtistImage(artist=artist, kind=ArtistImage.Kind.POSE, caption="waving")
    image.image.save("pose.png", ContentFile(png_bytes(64, 64)), save=False)
    image.save()
    second = make_artist(members=[producer])

    schedule = make_schedule(artist=artist)
    schedule.source_override.set([source])
    post = make_post(artist=artist, shots=3, wardrobe=wardrobe, created_from_schedule=schedule, updated_by=producer)
    make_schedule_run(schedule=schedule, slot_at=timezone.now() - timedelta(days=1), post=post)
    make_postevent(post=post, actor=producer, note="made by hand")
    shot = post.shots.get(position=2)
    shot.manual_asset.save("clip.mp4", ContentFile(mp4_bytes()))
    done = make_post(artist=second, shots=1)
    done.final_video.save("final.mp4", ContentFile(mp4_bytes()))

    # Sub-millisecond times survive too (JSON's usual encoding keeps milliseconds: 12:00:00.000456 came back
    # as 12:00:00 and failed the round trip about once in a thousand rows).
    exact = make_postevent(post=post, actor=producer, note="at a sub-millisecond time")
    post.events.filter(pk=exact.pk).update(created_at=datetime(2026, 3, 1, 12, 0, 0, 456, tzinfo=UTC))
    job = make_job(status="succeeded", attempts=1, created_by=ops)
    make_job_output(job=job)
    JobEvent.objects.create(job=job, kind="succeeded", message="done", data={"seconds": 1.5, "nodes": ["2"]})
    make_gpu_worker(current_job=job)
    make_shot_workflow()

    webhook = Webhook.objects.create(
        name="n8n", url="https://example.com/hook", event_types=[WebhookEvent.POST_STATUS_CHANGED], artist=artist
    )
    WebhookDelivery.objects.create(
        webhook=webhook,
        uuid=uuid.uuid4(),
        event_id=uuid.uuid4(),
        event_type=WebhookEvent.POST_STATUS_CHANGED,
        event_at=timezone.now(),
        payload={"post": {"id": post.pk, "title": "标题"}, "to": "review"},
        response_code=500,
        attempts=2,
    )
    PromptTemplate.objects.filter(role=PromptTemplate.Role.WRITER).update(template="Write it {{brief}} shorter.")
    LogEntry.objects.create(
        user=ops,
        content_type=ContentType.objects.get_for_model(Post),
        object_id=str(post.pk),
        object_repr=str(post),
        action_flag=ADDITION,
        change_message="[]",
    )
    make_media_file("uploads/封面 1.png")  # a file no row names: backed up all the same
    return {"post": post, "artist": artist}


def backup(output: Path) -> tuple[Path, str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("backup", "--output", str(output), stdout=out, stderr=err)
    archive = Path(re.search(r"^Archive: (.+) \(", out.getvalue(), re.M).group(1))
    return archive, out.getvalue(), err.getvalue()


def manage(*args: str, database_url: str, media_root: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "MEDIA_ROOT": str(media_root),
        "REDIS_URL": settings.REDIS_URL,
        "SECRET_KEY": "tests-only",
        "DEBUG": "0",
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def normalised(dump: list[dict]) -> dict:
    """dumpdata's rows by (model, pk), many-to-many lists sorted (their order is the database's)."""
    rows = {}
    for row in dump:
        model = apps.get_model(row["model"])
        fields = dict(row["fields"])
        for field in model._meta.many_to_many:
            if field.name in fields:
                fields[field.name] = sorted(fields[field.name], key=json.dumps)
        rows[(row["model"], json.dumps(row.get("pk")))] = fields
    return rows


def rows_here() -> dict:
    out = io.StringIO()
    call_command("dumpdata", "--natural-foreign", *[f"--exclude={label}" for label in NOT_BACKED_UP], stdout=out)
    return normalised(json.loads(out.getvalue()))


def rows_there(database_url: str, media_root: Path) -> dict:
    answer = manage(
        "dumpdata",
        "--natural-foreign",
        *[f"--exclude={label}" for label in NOT_BACKED_UP],
        database_url=database_url,
        media_root=media_root,
    )
    assert answer.returncode == 0, answer.stderr
    return normalised(json.loads(answer.stdout))


def files(root: Path) -> dict[str, bytes]:
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def expected_rows() -> tuple[int, int]:
    """(rows, tables) a backup should hold, counted here without the backup's own code."""
    counted = [
        model._base_manager.count()
        for model in apps.get_models()
        if model._meta.managed
        and model._meta.label_lower not in {"contenttypes.contenttype", "auth.permission"}
        and model._meta.app_label != "sessions"
    ]
    return sum(counted), len(counted)


def read_member(archive: Path, name: str) -> bytes:
    with tarfile.open(archive, "r:gz") as tar:
        return tar.extractfile(name).read()


def rewrite(archive: Path, target: Path, change) -> Path:
    """A copy of the archive with change(name, data) -> data applied to every member, re-tarred (no .sha256)."""
    with tarfile.open(archive, "r:gz") as source, tarfile.open(target, "w:gz", format=tarfile.PAX_FORMAT) as out:
        for info in source:
            data = change(info.name, source.extractfile(info).read())
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
    return target


def postgres_admin_url() -> str:
    """A URL to the PostgreSQL server's `postgres` database (the suite's own server when it runs on PostgreSQL)."""
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
        return f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/postgres"
    return POSTGRES_URL


@pytest.fixture
def fresh_database(tmp_path):
    """make(engine) -> DATABASE_URL of a database nobody has used: a new SQLite file or a new PostgreSQL database."""
    created: list[str] = []
    admin = postgres_admin_url()

    def make(engine: str) -> str:
        if engine == "sqlite":
            return f"sqlite:///{tmp_path / f'restored-{secrets.token_hex(4)}.sqlite3'}"
        name = f"mcn_restore_{secrets.token_hex(6)}"
        try:
            with psycopg.connect(admin, autocommit=True) as server:
                server.execute(f'CREATE DATABASE "{name}"')
        except psycopg.OperationalError as error:
            pytest.skip(f"No PostgreSQL server to restore into at {admin} (MCN_TEST_POSTGRES_URL): {error}")
        created.append(name)
        return admin.rsplit("/", 1)[0] + f"/{name}"

    yield make
    for name in created:
        with psycopg.connect(admin, autocommit=True) as server:
            server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def tables_in(database_url: str) -> list[str]:
    if database_url.startswith("sqlite:///"):
        path = database_url.removeprefix("sqlite:///")
        if not os.path.exists(path):
            return []
        with sqlite3.connect(path) as db:
            return [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    with psycopg.connect(database_url) as db:
        return [row[0] for row in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]


def new_rows_get_new_ids(database_url: str, media_root: Path) -> None:
    """After a restore the id sequences are past the restored rows (links of many-to-many fields too)."""
    answer = manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import Group, User; from artists.models import Voice; "
        "user = User.objects.create_user(username='after-restore'); user.groups.add(Group.objects.get(name='Ops')); "
        "Voice.objects.create(name='After restore', speaker_id='x'); print('ok')",
        database_url=database_url,
        media_root=media_root,
    )
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip().endswith("ok")


def other_engine() -> str:
    return "postgresql" if connection.vendor == "sqlite" else "sqlite"


# --------------------------------------------------------------------------------------------- round trips


@pytest.mark.django_db
def test_a_backup_restores_into_a_fresh_database_row_for_row_and_byte_for_byte(tmp_path, fresh_database):
    varied_data()
    rows, tables = expected_rows()
    media_root = Path(settings.MEDIA_ROOT)
    media = files(media_root)

    archive, out, err = backup(tmp_path)

    assert archive.parent == tmp_path
    assert re.fullmatch(r"mcn-backup-\d{8}T\d{6}Z\.tar\.gz", archive.name)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert out.splitlines() == [
        f"Backed up {rows:,} rows of {tables} tables and {len(media)} media files "
        f"({format_bytes(sum(map(len, media.values())))}).",
        f"Archive: {archive} ({format_bytes(archive.stat().st_size)})",
        f"sha256:  {digest} (also in {archive.name}.sha256)",
    ]
    assert err == ""
    assert Path(f"{archive}.sha256").read_text() == f"{digest}  {archive.name}\n"  # `sha256sum -c` reads it

    # The target was migrated already (as a deploy that runs migrate would leave it): the roles and
    # default prompts migrations made are replaced by the archive's.
    target = fresh_database(connection.vendor)
    restored_media = tmp_path / "restored-media"
    assert manage("migrate", database_url=target, media_root=restored_media).returncode == 0
    answer = manage("restore", str(archive), database_url=target, media_root=restored_media)

    assert answer.returncode == 0, answer.stderr
    assert f"Restored {rows:,} rows:" in answer.stdout.splitlines()
    assert re.search(r"^  posts\.shot +4$", answer.stdout, re.M)
    assert f"Restored {len(media)} media files (" in answer.stdout
    assert answer.stdout.endswith("Sessions are not in backups: everyone signs in again.\n")
    assert rows_there(target, restored_media) == rows_here()
    assert files(restored_media) == media
    new_rows_get_new_ids(target, restored_media)


@pytest.mark.django_db
def test_a_backup_made_on_one_database_engine_restores_on_the_other(tmp_path, fresh_database):
    varied_data()
    archive, _, _ = backup(tmp_path)
    target = fresh_database(other_engine())  # SQLite -> PostgreSQL, or PostgreSQL -> SQLite
    restored_media = tmp_path / "restored-media"

    answer = manage("restore", str(archive), database_url=target, media_root=restored_media)

    assert answer.returncode == 0, answer.stderr
    assert f", {connection.vendor})." in answer.stdout  # "Made ... (Django 5.2.19, Python 3.11.7, sqlite)."
    assert rows_there(target, restored_media) == rows_here()
    assert files(restored_media) == files(Path(settings.MEDIA_ROOT))
    new_rows_get_new_ids(target, restored_media)


@pytest.mark.django_db(transaction=True)
def test_a_backup_taken_while_posts_are_written_holds_one_consistent_snapshot(tmp_path, fresh_database):
    artist = make_artist()
    for _ in range(30):
        make_post(artist=artist, shots=3)
    written = [0]
    stop = threading.Event()

    def writer():
        # Another client of the site: each post arrives with its three shots in one transaction.
        try:
            while not stop.is_set():
                with transaction.atomic():
                    make_post(artist=artist, shots=3)
                written[0] += 1
        finally:
            connection.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while written[0] < 3:
            stop.wait(0.01)
        before = written[0]
        archive, _, _ = backup(tmp_path)
        during = written[0] - before
    finally:
        stop.set()
        thread.join()
    assert during > 0, "no post was written while the backup ran: the test proved nothing"

    manifest = json.loads(read_member(archive, "manifest.json"))
    counts = {table["model"]: table["rows"] for table in manifest["tables"]}
    assert counts["posts.shot"] == 3 * counts["posts.post"]
    assert Post.objects.count() > counts["posts.post"]  # the writer went on after the snapshot
    target = fresh_database(connection.vendor)
    restored_media = tmp_path / "restored-media"
    answer = manage("restore", str(archive), database_url=target, media_root=restored_media)
    assert answer.returncode == 0, answer.stderr
    restored = rows_there(target, restored_media)
    posts = {pk for model, pk in restored if model == "posts.post"}
    shots = [fields for (model, _), fields in restored.items() if model == "posts.shot"]
    assert len(posts) == counts["posts.post"]
    assert all(json.dumps(shot["post"]) in posts for shot in shots)
    assert len(shots) == 3 * len(posts)


# --------------------------------------------------------------------------------------------- refusals


@pytest.mark.django_db
def test_restore_refuses_an_archive_with_one_altered_byte_names_the_member_and_writes_nothing(tmp_path, fresh_database):
    make_artist()
    archive, _, _ = backup(tmp_path)
    face = next(name for name in json.loads(read_member(archive, "manifest.json"))["members"] if "faces" in name)

    def flip_one_byte(name: str, data: bytes) -> bytes:
        return data[:-1] + bytes([data[-1] ^ 1]) if name == face else data

    tampered = rewrite(archive, tmp_path / "tampered.tar.gz", flip_one_byte)
    target = fresh_database(connection.vendor)
    restored_media = tmp_path / "restored-media"

    answer = manage("restore", str(tampered), database_url=target, media_root=restored_media)

    assert answer.returncode == 1
    assert answer.stderr.endswith(
        f"CommandError: {face} does not match its checksum in the manifest: the archive is damaged or was altered.\n"
    )
    assert tables_in(target) == []
    assert not restored_media.exists()


@pytest.mark.django_db
def test_restore_refuses_an_archive_that_differs_from_its_sha256_file(tmp_path):
    make_artist()
    archive, _, _ = backup(tmp_path)
    # Recompressed: every member intact, the archive file itself different from what the backup wrote.
    archive.write_bytes(gzip.compress(gzip.decompress(archive.read_bytes()), compresslevel=1))

    with pytest.raises(CommandError, match=rf"^{re.escape(archive.name)} does not match {re.escape(archive.name)}"):
        call_command("restore", "--check", str(archive))


@pytest.mark.django_db
def test_restore_refuses_a_database_that_holds_data(tmp_path):
    make_artist()
    archive, _, _ = backup(tmp_path)
    media = files(Path(settings.MEDIA_ROOT))

    with pytest.raises(CommandError) as refused:
        call_command("restore", str(archive))

    assert str(refused.value) == (
        "The database is not empty (1 row in artists.voice, 1 row in artists.artist). A restore only writes "
        "into an empty database: create a new one (PostgreSQL: `createdb mcn_restored`; SQLite: a new file), "
        "point DATABASE_URL at it and run restore again."
    )
    assert files(Path(settings.MEDIA_ROOT)) == media


@pytest.mark.django_db
def test_restore_refuses_a_media_root_with_other_files_at_the_archives_paths(tmp_path):
    make_media_file("uploads/logo.png", b"the archive's logo")
    archive, _, _ = backup(tmp_path)  # the database holds only what migrations made: it counts as empty
    make_media_file("uploads/logo.png", b"a newer logo")

    with pytest.raises(CommandError, match=r"^MEDIA_ROOT already holds different files at the archive's paths \("):
        call_command("restore", str(archive))

    assert (Path(settings.MEDIA_ROOT) / "uploads/logo.png").read_bytes() == b"a newer logo"


@pytest.mark.django_db
def test_restore_refuses_an_archive_made_by_newer_or_older_code(tmp_path):
    archive, _, _ = backup(tmp_path)
    version = json.loads(read_member(archive, "manifest.json"))["mcn_version"]

    def with_migrations(edit):
        def change(name: str, data: bytes) -> bytes:
            if name != "manifest.json":
                return data
            manifest = json.loads(data)
            edit(manifest["migrations"])
            return json.dumps(manifest).encode()

        return change

    newer = rewrite(archive, tmp_path / "newer.tar.gz", with_migrations(lambda m: m["posts"].append("0099_future")))
    older = rewrite(archive, tmp_path / "older.tar.gz", with_migrations(lambda m: m["posts"].remove("0001_initial")))

    with pytest.raises(CommandError) as refused:
        call_command("restore", str(newer))
    assert str(refused.value) == (
        "The archive was made by newer code: this code lacks its migrations posts.0099_future. "
        f"Restore it with MCN OS {version}, then upgrade."
    )
    with pytest.raises(CommandError) as refused:
        call_command("restore", str(older))
    assert str(refused.value) == (
        "The archive was made by older code: it lacks this code's migrations posts.0001_initial. "
        f"Restore it with MCN OS {version}, then upgrade and run `manage.py migrate`."
    )


# --------------------------------------------------------------------------------------------- reporting


@pytest.mark.django_db
def test_backup_warns_about_a_file_a_row_names_that_is_not_in_media_root(tmp_path):
    artist = make_artist()
    Path(artist.face_anchor.path).unlink()

    archive, _, err = backup(tmp_path / "nightly.tar.gz")

    assert archive == tmp_path / "nightly.tar.gz"
    warning = f"artists.artist {artist.pk} face_anchor: {artist.face_anchor.name} is not in MEDIA_ROOT"
    assert err == f"Warning: {warning}\n"
    assert json.loads(read_member(archive, "manifest.json"))["warnings"] == [warning]


@pytest.mark.django_db
def test_restore_check_verifies_the_archive_and_prints_its_manifest_without_writing(tmp_path):
    make_artist()
    archive, _, _ = backup(tmp_path)
    rows, tables = expected_rows()
    manifest = json.loads(read_member(archive, "manifest.json"))
    out = io.StringIO()

    call_command("restore", "--check", str(archive), stdout=out)

    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    media = files(Path(settings.MEDIA_ROOT))
    media_bytes = sum(map(len, media.values()))
    assert out.getvalue().splitlines() == [
        f"{archive.name}: every member matches the manifest (archive sha256 {digest}).",
        f"Made {manifest['created_at']} by MCN OS {manifest['mcn_version']} (Django {manifest['django_version']}, "
        f"Python {manifest['python_version']}, {connection.vendor}).",
        f"Holds {rows} rows of {tables} tables and {len(media)} media files ({format_bytes(media_bytes)}).",
        "This code can restore it.",
    ]
    assert datetime.fromisoformat(manifest["created_at"]) > datetime.now(UTC) - timedelta(minutes=5)
    assert manifest["database_vendor"] == connection.vendor
    assert "0001_initial" in manifest["migrations"]["posts"]
    assert Shot.objects.count() == 0  # nothing restored: the database is as it was
