import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import IntegrityError, transaction

from artists.models import Source, Voice, Wardrobe
from tests.factories import make_artist, make_source, make_wardrobe, png_bytes, png_upload, wav_upload
from tests.validation import clean_errors

pytestmark = pytest.mark.django_db


# Face anchor


def test_face_anchor_square_png_of_512_pixels_is_accepted():
    artist = make_artist()
    artist.face_anchor = png_upload(512, 512)

    assert clean_errors(artist) == {}


def test_face_anchor_square_jpeg_is_accepted():
    artist = make_artist()
    artist.face_anchor = SimpleUploadedFile("face.jpg", png_bytes(800, 800, fmt="JPEG"), content_type="image/jpeg")

    assert clean_errors(artist) == {}


def test_face_anchor_that_is_not_square_is_refused_with_its_size():
    artist = make_artist()
    artist.face_anchor = png_upload(768, 512)

    assert clean_errors(artist) == {
        "face_anchor": [
            "The face anchor must be square (1:1); this image is 768x512. Crop it to a square face close-up."
        ]
    }


def test_face_anchor_smaller_than_512_pixels_is_refused():
    artist = make_artist()
    artist.face_anchor = png_upload(256, 256)

    assert clean_errors(artist) == {
        "face_anchor": ["The face anchor must be at least 512x512 pixels; this image is 256x256."]
    }


def test_face_anchor_text_file_named_png_is_refused_as_not_an_image():
    artist = make_artist()
    artist.face_anchor = SimpleUploadedFile("face.png", b"just some notes, not a picture\n" * 20, "image/png")

    assert clean_errors(artist) == {"face_anchor": ["Upload a JPEG, PNG or WebP image."]}


def test_face_anchor_gif_is_refused_naming_what_it_looks_like():
    artist = make_artist()
    artist.face_anchor = SimpleUploadedFile("face.png", png_bytes(512, 512, fmt="GIF"), "image/png")

    assert clean_errors(artist) == {"face_anchor": ["Upload a JPEG, PNG or WebP image (it looks like image/gif)."]}


def test_face_anchor_truncated_png_is_refused_as_unreadable():
    artist = make_artist()
    artist.face_anchor = SimpleUploadedFile("face.png", png_bytes(512, 512)[:60], "image/png")

    assert clean_errors(artist) == {"face_anchor": ["This file is not a readable image (JPEG, PNG or WebP)."]}


def test_face_anchor_that_passes_validation_is_saved_intact():
    artist = make_artist()
    artist.face_anchor = png_upload(512, 512)
    artist.full_clean()

    artist.save()

    with artist.face_anchor.open("rb") as saved:
        assert saved.read() == png_bytes(512, 512)


# Voice sample


@pytest.mark.parametrize("seconds", [3.0, 5.0, 30.0])
def test_voice_wav_sample_of_3_to_30_seconds_with_transcription_is_accepted(seconds):
    voice = Voice(name="Mia", sample_audio=wav_upload(seconds), sample_transcription="Hello and welcome back.")

    assert clean_errors(voice) == {}


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(2.0, "2.0"), (31.0, "31.0")],
)
def test_voice_sample_outside_3_to_30_seconds_is_refused_with_its_duration(seconds, shown):
    voice = Voice(name="Mia", sample_audio=wav_upload(seconds), sample_transcription="Hello.")

    assert clean_errors(voice) == {
        "sample_audio": [f"The voice sample is {shown} s long; it must be 3 to 30 s of one clear speaker."]
    }


def test_voice_sample_without_transcription_is_refused():
    voice = Voice(name="Mia", sample_audio=wav_upload(5), sample_transcription="   ")

    assert clean_errors(voice) == {
        "sample_transcription": ["Type the exact words spoken in the sample: zero-shot cloning needs them."]
    }


def test_voice_without_sample_or_speaker_id_is_refused():
    voice = Voice(name="Mia", speaker_id="  ")

    assert clean_errors(voice) == {
        "sample_audio": ["Give a sample recording (zero-shot cloning) or a speaker id (SFT voice)."]
    }


def test_voice_with_speaker_id_and_no_sample_is_accepted():
    voice = Voice(name="Mia", speaker_id="zh_female_1")

    assert clean_errors(voice) == {}


def test_voice_sample_that_is_an_image_is_refused_as_not_audio():
    voice = Voice(
        name="Mia",
        sample_audio=SimpleUploadedFile("sample.wav", png_bytes(64, 64), "audio/wav"),
        sample_transcription="Hello.",
    )

    assert clean_errors(voice) == {"sample_audio": ["Upload a WAV or MP3 recording (it looks like image/png)."]}


def test_voice_sample_that_is_text_is_refused_as_not_audio():
    voice = Voice(
        name="Mia",
        sample_audio=SimpleUploadedFile("sample.mp3", b"not a recording\n" * 50, "audio/mpeg"),
        sample_transcription="Hello.",
    )

    assert clean_errors(voice) == {"sample_audio": ["Upload a WAV or MP3 recording."]}


# Wardrobe payload


def test_wardrobe_with_a_complete_payload_is_accepted():
    wardrobe = Wardrobe(
        name="Navy suit",
        comfy_payload={"lora_name": "suit_v1.safetensors", "trigger_word": "navy blue suit", "strength": 0.8},
    )

    assert clean_errors(wardrobe) == {}


@pytest.mark.parametrize("strength", [0, 2, 1.25])
def test_wardrobe_strength_from_0_to_2_is_accepted(strength):
    wardrobe = Wardrobe(name="Suit", comfy_payload={"lora_name": "suit.safetensors", "strength": strength})

    assert clean_errors(wardrobe) == {}


def test_wardrobe_payload_without_lora_name_is_refused():
    wardrobe = Wardrobe(name="Suit", comfy_payload={"trigger_word": "suit"})

    assert clean_errors(wardrobe) == {
        "comfy_payload": ['"lora_name" is required: the LoRA file name, e.g. "suit_v1.safetensors".']
    }


def test_wardrobe_payload_with_blank_lora_name_is_refused():
    wardrobe = Wardrobe(name="Suit", comfy_payload={"lora_name": "  "})

    assert clean_errors(wardrobe) == {
        "comfy_payload": ['"lora_name" is required: the LoRA file name, e.g. "suit_v1.safetensors".']
    }


@pytest.mark.parametrize(("strength", "shown"), [(2.5, "2.5"), (-0.1, "-0.1"), ("0.8", "'0.8'")])
def test_wardrobe_strength_outside_0_to_2_or_not_a_number_is_refused(strength, shown):
    wardrobe = Wardrobe(name="Suit", comfy_payload={"lora_name": "suit.safetensors", "strength": strength})

    assert clean_errors(wardrobe) == {"comfy_payload": [f'"strength" must be a number from 0 to 2 (got {shown}).']}


def test_wardrobe_strength_given_as_a_bool_is_refused():
    wardrobe = Wardrobe(name="Suit", comfy_payload={"lora_name": "suit.safetensors", "strength": True})

    assert clean_errors(wardrobe) == {"comfy_payload": ['"strength" must be a number from 0 to 2 (got True).']}


def test_wardrobe_trigger_word_that_is_not_text_is_refused():
    wardrobe = Wardrobe(name="Suit", comfy_payload={"lora_name": "suit.safetensors", "trigger_word": 7})

    assert clean_errors(wardrobe) == {"comfy_payload": ['"trigger_word" must be text.']}


def test_wardrobe_payload_with_unknown_keys_is_refused_naming_them():
    wardrobe = Wardrobe(name="Suit", comfy_payload={"lora_name": "suit.safetensors", "seed": 1, "cfg": 7})

    assert clean_errors(wardrobe) == {
        "comfy_payload": ["Unknown keys: cfg, seed. Allowed: lora_name, trigger_word, strength."]
    }


def test_wardrobe_payload_lists_every_problem_at_once():
    wardrobe = Wardrobe(name="Suit", comfy_payload={"strength": 3, "seed": 1})

    assert clean_errors(wardrobe) == {
        "comfy_payload": [
            '"lora_name" is required: the LoRA file name, e.g. "suit_v1.safetensors".',
            '"strength" must be a number from 0 to 2 (got 3).',
            "Unknown keys: seed. Allowed: lora_name, trigger_word, strength.",
        ]
    }


@pytest.mark.parametrize("payload", [["suit.safetensors"], "suit.safetensors", 3])
def test_wardrobe_payload_that_is_not_a_json_object_is_refused(payload):
    wardrobe = Wardrobe(name="Suit", comfy_payload=payload)

    assert clean_errors(wardrobe) == {
        "comfy_payload": ['The payload must be a JSON object such as {"lora_name": "suit_v1.safetensors"}.']
    }


def test_wardrobe_preview_must_be_an_image():
    wardrobe = make_wardrobe()
    wardrobe.preview = SimpleUploadedFile("preview.png", b"plain text\n" * 10, "image/png")

    assert clean_errors(wardrobe) == {"preview": ["Upload a JPEG, PNG or WebP image."]}


# Sources


@pytest.mark.parametrize("url", ["https://example.com/feed", "http://example.com/rss.xml"])
def test_source_with_http_or_https_url_is_accepted(url):
    source = Source(name="Feed", category=Source.Category.FINANCE, url=url)

    assert clean_errors(source) == {}


def test_source_with_ftp_url_is_refused():
    source = Source(name="Feed", category=Source.Category.FINANCE, url="ftp://example.com/feed.xml")

    assert clean_errors(source) == {"url": ["Only http:// and https:// addresses can be read."]}


def test_database_refuses_a_source_with_ftp_url():
    with pytest.raises(IntegrityError, match="source_url_http"), transaction.atomic():
        make_source(url="ftp://example.com/feed.xml")


@pytest.mark.parametrize("max_items", [1, 100])
def test_source_max_items_from_1_to_100_is_accepted(max_items):
    source = Source(name="Feed", category=Source.Category.TECH, url="https://example.com", max_items=max_items)

    assert clean_errors(source) == {}


@pytest.mark.parametrize("max_items", [0, 101])
def test_source_max_items_outside_1_to_100_is_refused(max_items):
    source = Source(name="Feed", category=Source.Category.TECH, url="https://example.com", max_items=max_items)

    assert clean_errors(source) == {"max_items": ["Read between 1 and 100 items per run."]}


def test_database_refuses_a_source_reading_no_items():
    with pytest.raises(IntegrityError, match="source_max_items_1_100"), transaction.atomic():
        make_source(max_items=0)


# Artist DNA


def test_artist_content_focus_must_be_a_list_of_words():
    artist = make_artist()
    artist.content_focus = "stocks, crypto"

    assert clean_errors(artist) == {"content_focus": ['Give a list of words, e.g. ["stocks", "crypto"].']}


def test_artist_colour_must_be_rrggbb():
    artist = make_artist()
    artist.colour = "blue"

    assert clean_errors(artist) == {"colour": ["Use a #rrggbb colour such as #4f46e5."]}


def test_artist_built_by_the_factory_is_valid():
    assert clean_errors(make_artist(wardrobes=[make_wardrobe()])) == {}
