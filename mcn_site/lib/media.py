"""Validators for uploaded media, judged by content, never by file name.

Shared by artists (face anchors, voice samples) and posts (manual shot assets).
Each validator reads the upload, raises ValidationError with a message a
producer can act on, and rewinds the file so it can still be saved.
"""

import io

import filetype
import mutagen
from django.conf import settings
from django.core.exceptions import ValidationError
from django.template.defaultfilters import filesizeformat
from django.utils.deconstruct import deconstructible
from PIL import Image, UnidentifiedImageError

IMAGE_MIME_TYPES = {"image/jpeg", "image/png", "image/webp"}
VIDEO_MIME_TYPES = {"video/mp4", "video/quicktime", "video/webm"}
AUDIO_MIME_TYPES = {"audio/x-wav", "audio/wav", "audio/mpeg"}


def _head(file, size: int = 8192) -> bytes:
    file.seek(0)
    head = file.read(size)
    file.seek(0)
    return head


def _check_size(file, limit: int, what: str) -> None:
    if file.size is not None and file.size > limit:
        raise ValidationError(
            f"This {what} is {filesizeformat(file.size)}; the limit is {filesizeformat(limit)}.",
            code="too_large",
        )


def sniff_mime(file) -> str | None:
    """The MIME type the file's bytes say it is, or None when unknown."""
    kind = filetype.guess(_head(file))
    return kind.mime if kind else None


def _too_many_pixels(size: tuple[int, int] | None) -> ValidationError:
    limit = settings.MCN_MAX_IMAGE_PIXELS
    shown = f"{size[0]}x{size[1]} pixels ({size[0] * size[1] / 1e6:,.1f} megapixels)" if size else "larger"
    return ValidationError(
        f"This image is {shown}; the limit is {limit / 1e6:,.1f} megapixels (MCN_MAX_IMAGE_PIXELS). "
        "Scale it down before uploading.",
        code="too_many_pixels",
    )


def image_size(file) -> tuple[int, int]:
    """Width and height of an image upload of at most MCN_MAX_IMAGE_PIXELS; ValidationError if it is not a
    readable image or has more pixels (judged from its header, before anything is decoded)."""
    file.seek(0)
    try:
        with Image.open(file) as img:
            size = img.size
            if size[0] * size[1] > settings.MCN_MAX_IMAGE_PIXELS:
                raise _too_many_pixels(size)
            img.verify()
    except Image.DecompressionBombError:  # Pillow's own cap, met inside open() when ours is set above it
        raise _too_many_pixels(None) from None
    except (UnidentifiedImageError, OSError, SyntaxError):
        raise ValidationError("This file is not a readable image (JPEG, PNG or WebP).", code="not_image") from None
    finally:
        file.seek(0)
    return size


def validate_image(file) -> None:
    """A JPEG, PNG or WebP image within the size limit."""
    _check_size(file, settings.MCN_MAX_IMAGE_BYTES, "image")
    mime = sniff_mime(file)
    if mime not in IMAGE_MIME_TYPES:
        found = f" (it looks like {mime})" if mime else ""
        raise ValidationError(f"Upload a JPEG, PNG or WebP image{found}.", code="not_image")
    image_size(file)


@deconstructible
class SquareImageValidator:
    """A square image at least `min_side` pixels wide (face anchors)."""

    def __init__(self, min_side: int):
        self.min_side = min_side

    def __eq__(self, other):
        return isinstance(other, SquareImageValidator) and other.min_side == self.min_side

    def __call__(self, file) -> None:
        min_side = self.min_side
        validate_image(file)
        width, height = image_size(file)
        if width != height:
            raise ValidationError(
                f"The face anchor must be square (1:1); this image is {width}x{height}. "
                "Crop it to a square face close-up.",
                code="not_square",
            )
        if width < min_side:
            raise ValidationError(
                f"The face anchor must be at least {min_side}x{min_side} pixels; this image is {width}x{height}.",
                code="too_small",
            )


def validate_image_or_video(file) -> None:
    """A manual shot asset: an image (JPEG/PNG/WebP) or a video (MP4/MOV/WebM)."""
    mime = sniff_mime(file)
    if mime in IMAGE_MIME_TYPES:
        validate_image(file)
    elif mime in VIDEO_MIME_TYPES:
        _check_size(file, settings.MCN_MAX_VIDEO_BYTES, "video")
    else:
        found = f" (it looks like {mime})" if mime else ""
        raise ValidationError(
            f"Upload an image (JPEG, PNG, WebP) or a video (MP4, MOV, WebM){found}.", code="bad_asset_type"
        )


def audio_duration(file, *, what: str = "recording") -> float:
    """Duration in seconds of a WAV or MP3 upload of at most MCN_MAX_AUDIO_BYTES; ValidationError otherwise."""
    _check_size(file, settings.MCN_MAX_AUDIO_BYTES, what)  # before reading it whole
    mime = sniff_mime(file)
    if mime not in AUDIO_MIME_TYPES:
        found = f" (it looks like {mime})" if mime else ""
        raise ValidationError(f"Upload a WAV or MP3 recording{found}.", code="not_audio")
    file.seek(0)
    try:
        parsed = mutagen.File(io.BytesIO(file.read()))
    except mutagen.MutagenError:
        parsed = None
    finally:
        file.seek(0)
    if parsed is None or not getattr(parsed.info, "length", 0):
        raise ValidationError("This recording cannot be read: it may be damaged or empty.", code="bad_audio")
    return float(parsed.info.length)


@deconstructible
class VoiceSampleValidator:
    """A voice-cloning sample: WAV/MP3 between the given durations."""

    def __init__(self, min_seconds: float, max_seconds: float):
        self.min_seconds = min_seconds
        self.max_seconds = max_seconds

    def __eq__(self, other):
        return isinstance(other, VoiceSampleValidator) and (other.min_seconds, other.max_seconds) == (
            self.min_seconds,
            self.max_seconds,
        )

    def __call__(self, file) -> None:
        min_seconds, max_seconds = self.min_seconds, self.max_seconds
        seconds = audio_duration(file)
        if not min_seconds <= seconds <= max_seconds:
            raise ValidationError(
                f"The voice sample is {seconds:.1f} s long; it must be {min_seconds:g} to {max_seconds:g} s "
                "of one clear speaker.",
                code="bad_duration",
            )
