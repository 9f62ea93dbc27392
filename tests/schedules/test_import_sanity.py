"""manage.py import_sanity: real Sanity exports (tar.gz with images/ and files/, raw mode, bare ndjson)
imported all-or-nothing, idempotently, and shown in the admin."""

import io
import json
import tarfile
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from artists.models import Artist, ArtistImage, Source, Voice, Wardrobe
from factory.models import Job
from mcn_site.lib import roles
from mcn_site.lib.sanity_export import SanityExport
from posts.models import Post, PostEvent, PostStatus, PromptTemplate, Shot, ShotKind
from schedules.models import Schedule
from tests.factories import make_user, mp4_bytes, png_bytes
from tests.schedules.sanity_export_builder import ExportBuilder, ref, studio_export

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    """import_sanity's output; raises CommandError (exit code 1) like the command line does."""
    out = io.StringIO()
    try:
        call_command("import_sanity", *map(str, args), stdout=out, stderr=io.StringIO())
    except CommandError as error:
        error.output = out.getvalue()
        raise
    return out.getvalue()


def media_files() -> list[Path]:
    root = Path(django_settings.MEDIA_ROOT)
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def full_export(tmp_path, **kwargs) -> Path:
    return studio_export(ExportBuilder(**kwargs)).write_tar(tmp_path / "production.tar.gz")


def row_counts() -> dict:
    models = [Voice, Source, Wardrobe, PromptTemplate, Artist, ArtistImage, Schedule, Post, Shot]
    return {model.__name__: model.objects.count() for model in models}


# --------------------------------------------------------------------------- a whole studio


def test_a_default_export_imports_every_type_with_its_files(tmp_path):
    out = run(full_export(tmp_path))

    voice = Voice.objects.get(sanity_id="voice-luna")
    assert voice.name == "Luna 温柔女声" and voice.sample_audio.name.startswith("voices/luna")
    assert voice.sample_transcription == "大家好，我是露娜。"
    source = Source.objects.get(sanity_id="source-36kr")
    assert (source.category, source.instruction, source.max_items) == ("tech", "Only AI chips.", 7)
    wardrobe = Wardrobe.objects.get(sanity_id="wardrobe-suit")
    assert wardrobe.comfy_payload == {"lora_name": "suit_v1.safetensors", "trigger_word": "navy suit", "strength": 0.8}
    assert wardrobe.preview.name.startswith("wardrobes/suit")

    artist = Artist.objects.get(sanity_id="artist-luna")
    assert (artist.stage_name, artist.slug, artist.niche, artist.active) == ("Luna Chen", "luna-chen", "finance", True)
    assert artist.persona == "Former analyst."
    assert artist.speaking_style == "财经分析师\nVoice style: professional"
    assert (artist.content_focus, artist.excluded_keywords) == (["macro", "gold"], ["stock tips"])
    assert artist.face_anchor.name.startswith("artists/faces/luna-face")
    assert artist.full_body and artist.three_view_sheet
    assert artist.voice == voice
    assert list(artist.allowed_wardrobes.all()) == [wardrobe] and list(artist.default_sources.all()) == [source]
    library = sorted((image.kind, image.caption) for image in artist.images.all())
    # The pose, the studio image, and the v1.0 studio's preview as a backdrop named after it.
    assert library == [("backdrop", ""), ("backdrop", "Office Set"), ("pose", "")]

    weekly = Schedule.objects.get(sanity_id="schedule-weekly")
    assert (weekly.kind, weekly.period, weekly.weekdays, weekly.times) == (
        "routine", "weekly", ["monday", "friday"], ["9:00", "18:30"],
    )  # fmt: skip
    assert weekly.timezone == "Asia/Shanghai" and weekly.active and weekly.next_slot_at is not None
    assert weekly.last_executed_at.isoformat() == "2026-02-27T10:30:00+00:00"
    assert list(weekly.source_override.all()) == [source]
    breaking = Schedule.objects.get(sanity_id="schedule-breaking")
    assert breaking.kind == "one_off" and not breaking.active and breaking.trigger_at.year == 2030

    post = Post.objects.get(sanity_id="post-rates")
    assert (post.title, post.artist, post.wardrobe, post.status) == ("降息三条主线", artist, wardrobe, "review")
    assert (post.created_from_source, post.created_from_schedule) == (source, weekly)
    shots = list(post.shots.order_by("position"))
    assert [(s.position, s.sanity_key, s.kind, s.duration_seconds, s.locked) for s in shots] == [
        (1, "k1", ShotKind.A_ROLL, Decimal("4.50"), True),
        (2, "k2", ShotKind.B_ROLL, Decimal("5.00"), False),
        (3, "k3", ShotKind.PRODUCT, Decimal("3.00"), False),
    ]
    assert shots[0].script == "利率一降，钱会搬家。" and shots[1].visual_prompt == "A falling rate chart"
    assert shots[2].manual_asset.name.startswith("shots/manual/gold")
    assert [e.kind for e in post.events.all()] == ["created", "storyboard", "status"]

    prompt = PromptTemplate.objects.get(sanity_id="prompt-writer")
    # v1 of each role is the director's built-in prompt (posts migration 0007): the old one comes in as v2.
    assert (prompt.role, prompt.version, prompt.active) == ("writer", 2, False)
    assert prompt.template == "You are {{artist_name}}. Persona: {{artist_persona}}. USP: {{usp}}"

    assert "Imported." in out
    assert "storyboard[2]: shot_number 4, imported as shot 3" in out
    assert 'prompt_config prompt-writer "Writer": version: Writer v1 exists already: imported as v2.' in out
    assert 'prompt_config prompt-writer "Writer": template: placeholders the director does not fill: ' in out
    assert "{{artist_persona}} (ours: {{persona}}), {{usp}}" in out
    assert "Fields with no place in MCN OS, not imported: artist.scoringWeights (1)" in out
    assert "only ops and superusers see them" in out and "--member USERNAME" in out
    assert "1 imported schedule(s) are active" in out
    assert not Job.objects.exists()  # importing starts no production


def test_the_report_counts_each_type(tmp_path):
    out = run(full_export(tmp_path))

    table = {line.split()[0]: line.split()[1:] for line in out.splitlines()[3:12] if line.strip()}
    assert table["created"] == ["updated", "unchanged", "skipped", "failed"]
    assert table["voice"] == ["1", "0", "0", "0", "0"]
    assert table["schedule"] == ["2", "0", "0", "0", "0"]
    assert table["studio"] == ["1", "0", "0", "0", "0"]
    assert table["post"] == ["1", "0", "0", "0", "0"]


def test_every_imported_row_is_visible_in_the_admin_with_its_sanity_id(tmp_path, client):
    run(full_export(tmp_path))
    client.force_login(make_user(role=None, is_superuser=True))

    pages = [
        ("artists", "voice", Voice, "voice-luna", "Luna 温柔女声"),
        ("artists", "source", Source, "source-36kr", "36Kr 快讯"),
        ("artists", "wardrobe", Wardrobe, "wardrobe-suit", "Navy Suit"),
        ("artists", "artist", Artist, "artist-luna", "Luna Chen"),
        ("schedules", "schedule", Schedule, "schedule-weekly", "Luna 早报"),
        ("posts", "post", Post, "post-rates", "降息三条主线"),
        ("posts", "prompttemplate", PromptTemplate, "prompt-writer", "Old writer"),
    ]
    for app, model_name, model, sanity_id, name in pages:
        row = model.objects.get(sanity_id=sanity_id)
        changelist = client.get(reverse(f"admin:{app}_{model_name}_changelist"))
        assert changelist.status_code == 200 and name in changelist.content.decode(), model_name
        found = client.get(reverse(f"admin:{app}_{model_name}_changelist"), {"q": row.sanity_id})
        assert name in found.content.decode(), f"{model_name}: not found by its sanity id"
        change = client.get(reverse(f"admin:{app}_{model_name}_change", args=[row.pk]))
        assert change.status_code == 200, model_name
        page = change.content.decode()
        assert name in page and row.sanity_id in page, model_name
        assert 'name="sanity_id"' not in page, f"{model_name}: the sanity id must be read-only"


def test_producers_see_imported_artists_only_when_made_members(tmp_path):
    producer = make_user(role=roles.PRODUCER, username="lin")

    out = run(full_export(tmp_path), "--member", "lin")

    assert list(Artist.objects.get(sanity_id="artist-luna").members.all()) == [producer]
    assert "only ops and superusers see them" not in out
    with pytest.raises(CommandError, match="--member: no such user: nobody"):
        run(full_export(tmp_path), "--member", "nobody")


def test_timezone_option_sets_the_zone_of_new_schedules(tmp_path):
    run(full_export(tmp_path), "--timezone", "Europe/Paris")

    assert set(Schedule.objects.values_list("timezone", flat=True)) == {"Europe/Paris"}
    with pytest.raises(CommandError, match="“Mars/Olympus” is not an IANA time zone"):
        run(full_export(tmp_path), "--timezone", "Mars/Olympus")


def test_json_report_for_scripts(tmp_path):
    report = json.loads(run(full_export(tmp_path), "--json"))

    assert report["committed"] is True and report["dry_run"] is False and report["errors"] == []
    assert report["counts"]["artist"] == {"created": 1, "updated": 0, "unchanged": 0, "skipped": 0, "failed": 0}
    post = next(doc for doc in report["documents"] if doc["type"] == "post")
    assert post["id"] == "post-rates" and post["pk"] == Post.objects.get().pk and post["outcome"] == "created"


# --------------------------------------------------------------------------- idempotency


def test_a_second_import_changes_nothing_and_stores_no_file_twice(tmp_path):
    path = full_export(tmp_path)
    run(path)
    pks = {model: sorted(model.objects.values_list("pk", flat=True)) for model in (Artist, Post, Shot, Schedule)}
    counts, files = row_counts(), media_files()
    versions = dict(Post.objects.values_list("pk", "version"))

    report = json.loads(run(path, "--json"))

    assert {doc["outcome"] for doc in report["documents"]} == {"unchanged"}
    assert row_counts() == counts and media_files() == files
    assert {model: sorted(model.objects.values_list("pk", flat=True)) for model in pks} == pks
    assert dict(Post.objects.values_list("pk", "version")) == versions


def test_a_reimport_updates_what_changed_in_sanity_and_keeps_the_rows(tmp_path):
    builder = studio_export(ExportBuilder())
    run(builder.write_tar(tmp_path / "first.tar.gz"))
    post = Post.objects.get()
    Post.objects.filter(pk=post.pk).update(status=PostStatus.DRAFT)  # a producer took it back to draft
    shot_pks = list(post.shots.order_by("position").values_list("pk", flat=True))
    old_face = Artist.objects.get().face_anchor.name
    docs = {doc["_id"]: doc for doc in builder.docs}
    docs["artist-luna"]["backstory"] = "Now a fund manager."
    docs["artist-luna"]["master_visuals"]["face_anchor"] = builder.image(png_bytes(600, 600, "#aa0000"), name="new.png")
    docs["post-rates"]["title"] = "降息之后"
    storyboard = docs["post-rates"]["storyboard"]
    storyboard[1]["ai_prompt"] = "A rising rate chart"
    storyboard.reverse()  # k3, k2, k1
    storyboard.pop()  # k1 is gone from Sanity, but it is locked here: kept

    report = json.loads(run(builder.write_tar(tmp_path / "second.tar.gz"), "--json"))

    outcomes = {doc["id"]: doc["outcome"] for doc in report["documents"]}
    assert outcomes["artist-luna"] == "updated" and outcomes["post-rates"] == "updated"
    assert outcomes["voice-luna"] == "unchanged" and outcomes["schedule-weekly"] == "unchanged"
    artist = Artist.objects.get()
    assert artist.persona == "Now a fund manager." and artist.face_anchor.name != old_face
    post.refresh_from_db()
    assert post.title == "降息之后" and post.status == PostStatus.DRAFT
    shots = list(post.shots.order_by("position"))
    assert [s.sanity_key for s in shots] == ["k3", "k2", "k1"]
    assert sorted(s.pk for s in shots) == sorted(shot_pks)
    assert shots[1].visual_prompt == "A rising rate chart"
    assert any("kept: shot 1 is locked here but gone from Sanity" in line for line in report["warnings"])
    assert any("status kept: draft here, “review” in Sanity" in line for line in report["notes"] + _notes(report))


def _notes(report: dict) -> list[str]:
    return [note for doc in report["documents"] for note in doc["notes"]]


def test_a_reimport_updates_schedules_and_post_feedback_and_keeps_the_later_last_run(tmp_path):
    builder = studio_export(ExportBuilder())
    run(builder.write_tar(tmp_path / "first.tar.gz"))
    weekly = Schedule.objects.get(sanity_id="schedule-weekly")
    Schedule.objects.filter(pk=weekly.pk).update(timezone="Europe/Paris")  # an operator fixed the zone
    docs = {doc["_id"]: doc for doc in builder.docs}
    docs["schedule-weekly"]["routine_config"]["times"] = ["08:00"]
    docs["schedule-weekly"]["last_executed"] = "2026-01-01T00:00:00Z"  # older than the one stored
    docs["post-rates"]["feedback"] = "Shorter hook"

    report = json.loads(run(builder.write_tar(tmp_path / "second.tar.gz"), "--json"))

    weekly.refresh_from_db()
    assert weekly.times == ["08:00"] and weekly.timezone == "Europe/Paris"
    assert weekly.last_executed_at.isoformat() == "2026-02-27T10:30:00+00:00"
    post = Post.objects.get()
    assert post.feedback == "Shorter hook" and post.version == 4  # created, storyboard, status, re-import
    assert post.events.last().note == "Re-imported from Sanity: feedback."
    outcomes = {doc["id"]: doc["outcome"] for doc in report["documents"]}
    assert outcomes["schedule-weekly"] == outcomes["post-rates"] == "updated"


def test_a_studio_no_artist_lists_is_skipped_with_the_reason(tmp_path):
    builder = studio_export(ExportBuilder())
    next(doc for doc in builder.docs if doc["_id"] == "artist-luna")["available_studios"] = []

    report = json.loads(run(builder.write_tar(tmp_path / "studio.tar.gz"), "--json"))

    studio = next(doc for doc in report["documents"] if doc["type"] == "studio")
    assert studio["outcome"] == "skipped"
    assert studio["notes"] == ["skipped: no imported artist lists this studio in available_studios."]
    assert not ArtistImage.objects.filter(caption="Office Set").exists()


def test_a_post_produced_here_keeps_its_storyboard_on_reimport(tmp_path):
    builder = studio_export(ExportBuilder())
    run(builder.write_tar(tmp_path / "first.tar.gz"))
    post = Post.objects.get()
    Post.objects.filter(pk=post.pk).update(status=PostStatus.DONE)
    before = list(post.shots.values_list("pk", "script", "visual_prompt", "position"))
    docs = {doc["_id"]: doc for doc in builder.docs}
    docs["post-rates"]["storyboard"][1]["ai_prompt"] = "Something else"

    report = json.loads(run(builder.write_tar(tmp_path / "second.tar.gz"), "--json"))

    assert list(post.shots.values_list("pk", "script", "visual_prompt", "position")) == before
    assert "storyboard kept: produced here (done); Sanity's changes not applied." in _notes(report)


# --------------------------------------------------------------------------- dry run and failures


def test_dry_run_reports_what_it_would_do_and_writes_nothing(tmp_path):
    before = row_counts()

    out = run(full_export(tmp_path), "--dry-run")

    assert "Dry run: nothing was written." in out
    assert "voice                  1         0" in out
    assert row_counts() == before
    assert media_files() == []


def test_one_bad_document_fails_the_whole_import_names_it_and_leaves_nothing(tmp_path):
    builder = studio_export(ExportBuilder())
    docs = {doc["_id"]: doc for doc in builder.docs}
    docs["wardrobe-suit"]["comfy_payload"] = '{"lora_name": "suit.safetensors",'
    post = dict(docs["post-rates"], _id="drafts.post-rates")
    post["storyboard"] = [dict(shot) for shot in post["storyboard"]]
    post["storyboard"][1]["duration"] = -2
    builder.add(post)
    before = row_counts()

    with pytest.raises(CommandError, match=r"2 error\(s\): nothing was imported") as caught:
        run(builder.write_tar(tmp_path / "bad.tar.gz"))

    out = caught.value.output
    errors = out.split("Errors (2):\n")[1].splitlines()[:2]
    assert errors[0].startswith('  wardrobe wardrobe-suit "Navy Suit": comfy_payload: not valid JSON (')
    assert (
        errors[1] == '  post post-rates (drafts.post-rates) "降息三条主线": storyboard[1].duration: must be positive.'
    )
    # The artist lists the broken wardrobe: a warning only, as the run is refused anyway.
    assert 'artist artist-luna "Luna Chen": available_wardrobes[0]: points to wardrobe wardrobe-suit, which' in out
    assert "Nothing was imported. Fix these in Sanity" in out
    assert row_counts() == before
    assert media_files() == []  # the voice sample and the pictures stored on the way were deleted


def test_a_bad_shot_is_named_by_its_storyboard_index(tmp_path):
    builder = studio_export(ExportBuilder())
    post = next(doc for doc in builder.docs if doc["_id"] == "post-rates")
    post["storyboard"][1]["duration"] = 0
    post["storyboard"][0]["script"] = ""

    with pytest.raises(CommandError) as caught:
        run(builder.write_tar(tmp_path / "bad.tar.gz"))

    out = caught.value.output
    assert 'post post-rates "降息三条主线": storyboard[1].duration: must be positive' in out
    assert 'post post-rates "降息三条主线": storyboard[0].script: An A-roll shot needs a script' in out
    assert not Post.objects.exists() and not Artist.objects.exists()


# --------------------------------------------------------------------------- drafts, raw, bare


def test_a_draft_wins_over_its_published_version_and_is_imported_under_the_published_id(tmp_path):
    builder = studio_export(ExportBuilder())
    published = next(doc for doc in builder.docs if doc["_id"] == "source-36kr")
    builder.add(dict(published, _id="drafts.source-36kr", name="36Kr 快讯 (edited)"))
    builder.add({"_id": "drafts.source-new", "_type": "source", "name": "New", "category": "all",
                 "url": "https://example.com/feed"})  # fmt: skip

    out = run(builder.write_tar(tmp_path / "drafts.tar.gz"))

    assert Source.objects.get(sanity_id="source-36kr").name == "36Kr 快讯 (edited)"
    assert Source.objects.get(sanity_id="source-new").category == "all"
    assert not Source.objects.filter(sanity_id__startswith="drafts.").exists()
    assert (
        'source source-36kr (drafts.source-36kr) "36Kr 快讯 (edited)": imported from its unpublished draft, '
        "newer than the published version" in out
    )
    assert 'source source-new (drafts.source-new) "New": imported from its draft (never published)' in out


def test_a_raw_export_finds_asset_files_by_their_asset_id_and_reports_the_missing_ones(tmp_path):
    builder = ExportBuilder(raw=True)
    builder.add({"_id": "v1", "_type": "voice", "name": "SFT voice", "cosyvoice_id": "中文女"})
    builder.add(
        {
            "_id": "a1",
            "_type": "artist",
            "name": "Kai Nova",
            "niche": "tech",
            "voice": ref("v1"),
            "master_visuals": {
                "face_anchor": builder.image(png_bytes(512, 512), name="kai.png"),
                "full_body": builder.image(png_bytes(200, 400), name="kai-body.png", include_file=False),
            },
        }
    )
    builder.add({"_id": "system.group.admin", "_type": "system.group", "members": []})

    out = run(builder.write_tar(tmp_path / "raw.tar.gz"))

    artist = Artist.objects.get()
    assert artist.face_anchor.name.startswith("artists/faces/kai") and artist.active
    assert not artist.full_body
    assert 'artist a1 "Kai Nova": master_visuals.full_body: file images/' in out
    assert "is not in the archive. Left empty." in out
    assert "system.group" not in out.split("Documents left out")[0].split("Notes")[0]


def test_a_bare_ndjson_imports_without_files_reports_them_and_keeps_artists_inactive(tmp_path):
    builder = studio_export(ExportBuilder())
    post = next(doc for doc in builder.docs if doc["_id"] == "post-rates")
    post["status"] = "draft"  # editable here, so the full export can fill its storyboard in later
    # The picture of this product shot is a manual asset the bare export lacks; its prompt stands in.
    post["storyboard"][2]["ai_prompt"] = "Gold bars"
    ndjson = builder.write_ndjson(tmp_path / "data.ndjson")
    path = builder.write_tar(tmp_path / "production.tar.gz")

    out = run(ndjson)

    artist = Artist.objects.get()
    assert not artist.face_anchor and not artist.active
    voice = Voice.objects.get()
    assert not voice.sample_audio and voice.sample_transcription
    assert Post.objects.get().shots.count() == 3
    assert 'artist artist-luna "Luna Chen": master_visuals.face_anchor: file images/' in out
    assert "no usable face anchor: the artist is imported inactive" in out
    assert 'voice voice-luna "Luna 温柔女声": sample_audio: file files/' in out
    assert "storyboard[2].manual_asset: file files/" in out
    assert not ArtistImage.objects.exists() and media_files() == []

    # The real export afterwards fills in the files: same rows, now with their pictures.
    run(path)
    artist.refresh_from_db()
    assert artist.face_anchor and Artist.objects.count() == 1 and ArtistImage.objects.count() == 3
    assert Post.objects.get().shots.get(sanity_key="k3").manual_asset


def test_a_shot_whose_only_picture_is_a_missing_manual_asset_cannot_be_imported(tmp_path):
    ndjson = studio_export(ExportBuilder()).write_ndjson(tmp_path / "data.ndjson")

    with pytest.raises(CommandError) as caught:
        run(ndjson)

    assert (
        'post post-rates "降息三条主线": storyboard[2].manual_asset: its file could not be imported (see the '
        "warning) and the shot has no ai_prompt to make the picture from" in caught.value.output
    )
    assert "storyboard[2].ai_prompt" not in caught.value.output
    assert not Artist.objects.exists()


def test_an_unpacked_export_folder_reads_files_beside_data_ndjson(tmp_path):
    builder = studio_export(ExportBuilder())
    for name, data in builder.files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)

    run(builder.write_ndjson(tmp_path / "data.ndjson"))

    assert Artist.objects.get().face_anchor and Voice.objects.get().sample_audio


# --------------------------------------------------------------------------- mapping rules


def test_a_post_rendering_in_sanity_imports_approved_and_starts_no_production(tmp_path):
    builder = studio_export(ExportBuilder())
    post = next(doc for doc in builder.docs if doc["_id"] == "post-rates")
    post["status"] = "rendering"
    post["local_render_path"] = "/data/renders/rates.mp4"

    out = run(builder.write_tar(tmp_path / "rendering.tar.gz"))

    imported = Post.objects.get()
    assert imported.status == PostStatus.APPROVED and not imported.final_video
    event = imported.events.get(kind=PostEvent.Kind.STATUS)
    assert (event.from_status, event.to_status, event.actor) == ("draft", "approved", None)
    assert not Job.objects.exists()
    assert "“rendering” in Sanity: imported as approved. Nothing was produced here yet" in out
    assert "the rendered video stayed on the old machine (/data/renders/rates.mp4): not imported." in out


def test_references_to_documents_missing_from_the_export(tmp_path):
    builder = studio_export(ExportBuilder())
    docs = {doc["_id"]: doc for doc in builder.docs}
    docs["post-rates"]["created_from_source"] = ref("source-gone")
    routine = {"period": "weekly", "days": ["monday"], "times": ["09:00"]}
    builder.add(
        {"_id": "schedule-orphan", "_type": "schedule", "title": "Orphan", "artist": ref("artist-gone"),
         "type": "routine", "routine_config": routine}
    )  # fmt: skip

    with pytest.raises(CommandError) as caught:
        run(builder.write_tar(tmp_path / "refs.tar.gz"))

    out = caught.value.output
    assert 'schedule schedule-orphan "Orphan": artist: points to artist artist-gone, which is not in the export.' in out
    assert (
        'post post-rates "降息三条主线": created_from_source: points to source source-gone, which is not in the '
        "export. Left empty." in out
    )
    assert not Schedule.objects.exists()


def test_a_manual_asset_that_is_neither_image_nor_video_is_reported_and_left_out(tmp_path):
    builder = studio_export(ExportBuilder())
    post = next(doc for doc in builder.docs if doc["_id"] == "post-rates")
    post["storyboard"][2]["manual_asset"] = builder.file(b"%PDF-1.4 not a picture", ext="pdf", name="brief.pdf")
    post["storyboard"][2]["ai_prompt"] = "Gold bars"
    post["storyboard"].append(
        {
            "_key": "k4",
            "duration": 2,
            "type": "b_roll",
            "manual_asset": builder.file(mp4_bytes(), ext="mp4", name="c.mp4"),
        }
    )

    out = run(builder.write_tar(tmp_path / "assets.tar.gz"))

    shots = {shot.sanity_key: shot for shot in Shot.objects.all()}
    assert not shots["k3"].manual_asset and shots["k3"].visual_prompt == "Gold bars"
    assert shots["k4"].manual_asset.name.endswith(".mp4")
    assert "storyboard[2].manual_asset: brief.pdf: Upload an image (JPEG, PNG, WebP) or a video" in out


def test_a_face_anchor_that_is_not_square_imports_the_artist_inactive(tmp_path):
    builder = studio_export(ExportBuilder())
    artist = next(doc for doc in builder.docs if doc["_id"] == "artist-luna")
    artist["master_visuals"]["face_anchor"] = builder.image(png_bytes(512, 700), name="tall.png")

    out = run(builder.write_tar(tmp_path / "tall.tar.gz"))

    imported = Artist.objects.get()
    assert not imported.face_anchor and not imported.active
    assert "master_visuals.face_anchor: tall.png: The face anchor must be square (1:1); this image is 512x700." in out


def test_unknown_types_and_system_documents_are_left_out_and_counted(tmp_path):
    builder = studio_export(ExportBuilder())
    builder.add({"_id": "topic-1", "_type": "topic", "title": "A topic"})
    builder.add({"_id": "_.groups.administrator", "_type": "system.group"})
    builder.add({"_id": "versions.r1.post-rates", "_type": "post", "title": "Release"})

    report = json.loads(run(builder.write_tar(tmp_path / "extra.tar.gz"), "--json"))

    assert report["counts"]["topic"]["skipped"] == 1
    reasons = {item["id"]: item["reason"] for item in report["skipped"]}
    assert reasons["topic-1"] == "type topic has no place in MCN OS"
    assert reasons["_.groups.administrator"] == "Sanity system document"
    assert reasons["versions.r1.post-rates"].startswith("release version")
    assert Post.objects.get().title == "降息三条主线"


# --------------------------------------------------------------------------- unsafe and broken archives


@pytest.mark.parametrize("evil", ["../outside.png", "/etc/passwd", "export/images/../../up.png"])
def test_an_archive_with_a_path_leaving_it_is_refused(tmp_path, evil):
    builder = studio_export(ExportBuilder())
    path = builder.write_tar(tmp_path / "evil.tar.gz", extra_members={evil: b"x"})

    with pytest.raises(CommandError, match=r"refused: the archive holds an unsafe path"):
        run(path)
    assert not Artist.objects.exists()


def test_an_archive_with_a_symlink_leaving_it_is_refused(tmp_path):
    path = tmp_path / "link.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        data = b'{"_id": "v", "_type": "voice", "name": "V", "cosyvoice_id": "x"}\n'
        info = tarfile.TarInfo("export/data.ndjson")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("export/images/face.png")
        link.type, link.linkname = tarfile.SYMTYPE, "../../../etc/passwd"
        tar.addfile(link)

    with pytest.raises(CommandError, match="links outside the archive"):
        run(path)


def test_broken_lines_and_missing_files_are_clear_errors(tmp_path):
    builder = studio_export(ExportBuilder())
    ndjson = tmp_path / "data.ndjson"
    ndjson.write_bytes(builder.ndjson() + b"{not json\n")

    with pytest.raises(CommandError) as caught:
        run(ndjson)
    assert "data.ndjson line 10: not a JSON document" in caught.value.output
    assert not Artist.objects.exists()
    with pytest.raises(CommandError, match=r"nowhere\.tar\.gz: no such file"):
        run(tmp_path / "nowhere.tar.gz")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CommandError, match=r"expected a \.tar\.gz export or a data\.ndjson file"):
        run(tmp_path / "notes.txt")


def test_raw_file_assets_are_found_under_the_names_the_exporter_gives_them(tmp_path):
    sha1 = "a" * 40
    path = tmp_path / "raw.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in {"x/data.ndjson": b"", f"x/files/{sha1}-mp4.bin": mp4_bytes()}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

    with SanityExport(path) as export:
        found = export.asset({"asset": {"_ref": f"file-{sha1}-mp4"}})
        missing = export.asset({"asset": {"_ref": f"image-{'b' * 40}-10x10-png"}})
        url = export.asset({"_sanityAsset": "image@https://cdn.sanity.io/images/p/d/x.png"})

    assert found.member == f"x/files/{sha1}-mp4.bin" and not found.missing
    assert (
        missing.missing == f"the asset document image-{'b' * 40}-10x10-png is not in the export and neither is its file"
    )
    assert url.missing == "points to a URL, which the importer never downloads"
