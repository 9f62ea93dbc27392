"""Video assembly with the real ffmpeg: streams, sizes, frame-exact timing, audio, captions, progress, failures.

Inputs are real files made here (Pillow images, `wave` WAVs, ffmpeg test-pattern videos); outputs are
checked with ffprobe and by decoding frames and audio. Most renders are small (320x568, 1-2 s).
"""

import dataclasses
import json
import math
import os
import re
import shutil
import struct
import subprocess
import wave
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from PIL import Image, ImageChops, ImageDraw, ImageStat

from factory import render
from factory.render import Caption, Clip, Edit, RenderCancelled, RenderFailed, assemble, command_for, write_captions
from mcn_site.lib import fonts
from tests.factory.conftest import probe

FFPROBE = shutil.which("ffprobe")
SMALL = {"width": 320, "height": 568}
CHINESE = "大家好，欢迎来到我的频道"


@pytest.fixture(autouse=True, scope="module")
def _needs_ffprobe_and_a_cjk_font():
    missing = [
        *([] if FFPROBE else ["ffprobe is not installed: apt-get install ffmpeg"]),
        *([] if fonts.cjk_font() else ["no CJK font: apt-get install fonts-noto-cjk"]),
    ]
    if missing:
        if os.environ.get("CI"):
            pytest.fail("; ".join(missing))
        pytest.skip("; ".join(missing))


# --- inputs ---------------------------------------------------------------------------------------


def picture(path: Path, size=(600, 400), color=(200, 40, 40)) -> Path:
    image = Image.new("RGB", size, color)
    draw = ImageDraw.Draw(image)
    for x in range(0, size[0], 25):
        draw.line([(x, 0), (x, size[1])], fill=(255, 255, 255), width=3)
    image.save(path)
    return path


def tone(path: Path, seconds: float, *, rate=24_000, freq=440.0, amplitude=0.4) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        peak = int(32767 * amplitude)
        out.writeframes(
            b"".join(
                struct.pack("<h", int(peak * math.sin(2 * math.pi * freq * i / rate)))
                for i in range(int(seconds * rate))
            )
        )
    return path


def pattern_video(path: Path, seconds: float, size="320x240", rate=25) -> Path:
    subprocess.run(
        [
            render.ffmpeg_binary(),
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"testsrc2=s={size}:r={rate}:d={seconds}",
            "-pix_fmt",
            "yuv420p",
            str(path),
        ],
        check=True,
    )
    return path


# --- probes ---------------------------------------------------------------------------------------


def streams(info: dict, kind: str) -> list[dict]:
    return [s for s in info["streams"] if s["codec_type"] == kind]


def frame(path: Path, at: float) -> Image.Image:
    info = streams(probe(path), "video")[0]
    size = (info["width"], info["height"])
    raw = subprocess.run(
        [
            render.ffmpeg_binary(),
            "-loglevel",
            "error",
            "-ss",
            f"{at}",
            "-i",
            str(path),
            *["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        ],
        capture_output=True,
        check=True,
    ).stdout
    return Image.frombytes("RGB", size, raw)


def loudness(path: Path, start: float, seconds: float, *, around_hz: int | None = None) -> float:
    """Mean volume in dB of the audio between start and start + seconds (-91 dB is digital silence),
    or of a narrow band around `around_hz` (to hear the music apart from the voice)."""
    band = f"bandpass=f={around_hz}:width_type=q:w=8," if around_hz else ""
    result = subprocess.run(
        [
            render.ffmpeg_binary(),
            "-hide_banner",
            "-ss",
            f"{start}",
            "-t",
            f"{seconds}",
            "-i",
            str(path),
            *["-map", "0:a", "-af", f"{band}volumedetect", "-f", "null", "-"],
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(re.search(r"mean_volume: (-?[\d.]+|-inf) dB", result.stderr).group(1).replace("-inf", "-200"))


def difference(a: Image.Image, b: Image.Image) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


# --- timing, streams, sizes -----------------------------------------------------------------------


def test_clip_frames_are_rounded_on_the_cumulative_timeline_so_errors_do_not_add_up(tmp_path):
    clips = [Clip(tmp_path / "x.png", d, True) for d in [1.37, 2.01, 0.53, 3.33]]
    segments = render._segments(Edit(clips=clips, output=tmp_path / "out.mp4"))
    assert [s.frames for s in segments] == [41, 60, 16, 100]  # 1.37*30=41.1, 3.38*30=101.4, ...
    assert sum(s.frames for s in segments) == round(7.24 * 30)
    assert sum(s.samples for s in segments) == 217 * 1600  # audio ends exactly with the video


def test_render_has_h264_aac_and_soft_subtitles_and_lasts_the_sum_of_awkward_durations(tmp_path):
    video = pattern_video(tmp_path / "v.mp4", 3)
    durations = [1.37, 2.01, 0.53, 3.33]
    clips = [
        Clip(picture(tmp_path / "a.png"), durations[0], True, tone(tmp_path / "a.wav", 1.0)),
        Clip(video, durations[1], False),
        Clip(picture(tmp_path / "c.jpg", (300, 900)), durations[2], True),
        Clip(video, durations[3], False, tone(tmp_path / "d.wav", 0.5, rate=22_050)),
    ]
    edit = Edit(clips=clips, output=tmp_path / "out" / "post.mp4", captions=[Caption(0.2, 1.2, CHINESE)], **SMALL)

    result = assemble(edit)

    info = probe(result.output)
    (v,), (a,), (s,) = streams(info, "video"), streams(info, "audio"), streams(info, "subtitle")
    assert (v["codec_name"], v["pix_fmt"], v["width"], v["height"], v["r_frame_rate"]) == (
        "h264",
        "yuv420p",
        320,
        568,
        "30/1",
    )
    assert (a["codec_name"], a["sample_rate"]) == ("aac", "48000")
    assert s["codec_name"] == "mov_text"
    assert int(v["nb_frames"]) == result.frames == 217
    assert abs(float(info["format"]["duration"]) - sum(durations)) <= 1 / 30
    assert abs(float(v["duration"]) - sum(durations)) <= 1 / 30
    assert result.duration == pytest.approx(217 / 30)
    assert result.command[0] == render.ffmpeg_binary()
    assert os.listdir(tmp_path / "out") == ["post.mp4"]  # the temp file was renamed, nothing left over


def test_full_size_portrait_render_burns_chinese_captions_at_the_bottom(tmp_path):
    still = picture(tmp_path / "a.png", (1200, 900))
    clips = [Clip(still, 1.0, True), Clip(still, 0.5, True)]
    plain = assemble(Edit(clips=clips, output=tmp_path / "plain.mp4"))
    captioned = assemble(Edit(clips=clips, output=tmp_path / "captioned.mp4", captions=[Caption(0.0, 1.5, CHINESE)]))

    info = probe(captioned.output)
    (v,) = streams(info, "video")
    assert (v["width"], v["height"], v["r_frame_rate"]) == (1080, 1920, "30/1")
    assert abs(float(info["format"]["duration"]) - 1.5) <= 1 / 30
    without, with_captions = frame(plain.output, 0.5), frame(captioned.output, 0.5)
    caption_band = (0, 1300, 1080, 1600)  # captions sit a fifth of the height above the bottom
    top = (0, 0, 1080, 640)
    noise = difference(without.crop(top), with_captions.crop(top))  # lossy coding alone, ~1.5 on this pattern
    assert difference(without.crop(caption_band), with_captions.crop(caption_band)) > max(4, 4 * noise)


def test_captions_file_holds_the_chinese_text_in_a_cjk_font_and_wraps_long_lines(tmp_path):
    long_text = CHINESE * 4
    edit = Edit(
        clips=[Clip(tmp_path / "a.png", 3, True)],
        output=tmp_path / "o.mp4",
        captions=[Caption(0, 1, CHINESE), Caption(1, 2.5, long_text), Caption(2.5, 9, "past the end is cut")],
    )
    ass = write_captions(edit, tmp_path).read_text(encoding="utf-8")
    srt = (tmp_path / "captions.srt").read_text(encoding="utf-8")

    assert f"Style: Default,{fonts.font_family(fonts.cjk_font())}," in ass
    assert f",,{CHINESE}\n" in ass
    wrapped = re.search(r"0:00:01\.00,0:00:02\.50,Default,,0,0,0,,(.*)", ass).group(1).split("\\N")
    assert len(wrapped) > 1 and "".join(wrapped) == long_text
    font = fonts.load_font(render._caption_style(edit)[0])
    assert all(font.getlength(line) <= 1080 * 0.84 for line in wrapped)
    assert not any(line.startswith("，") for line in wrapped)  # no line opens with a comma
    assert "0:00:02.50,0:00:03.00" in ass  # a cue past the end stops with the video
    assert "00:00:00,000 --> 00:00:01,000\n" + CHINESE in srt
    assert (tmp_path / "fonts").is_dir() and len(os.listdir(tmp_path / "fonts")) == 1


@pytest.mark.parametrize(("width", "height"), [(320, 180), (240, 240)])
def test_landscape_and_square_frames_are_covered_exactly(tmp_path, width, height):
    clips = [
        Clip(picture(tmp_path / "tall.png", (200, 500)), 0.5, True),
        Clip(pattern_video(tmp_path / "v.mp4", 1, size="160x320"), 0.5, False),
    ]
    result = assemble(
        Edit(clips=clips, output=tmp_path / "o.mp4", width=width, height=height, captions=[Caption(0, 1, "hi")])
    )
    (v,) = streams(probe(result.output), "video")
    assert (v["width"], v["height"], v["sample_aspect_ratio"]) == (width, height, "1:1")
    assert int(v["nb_frames"]) == 30
    left_edge = frame(result.output, 0.2).crop((0, 0, 4, height))
    assert ImageStat.Stat(left_edge).mean[0] > 100  # the red picture reaches the edge: cover, no black bars


def test_a_short_video_is_held_on_its_last_frame_and_a_long_one_is_trimmed(tmp_path):
    short = pattern_video(tmp_path / "short.mp4", 0.5)
    long = pattern_video(tmp_path / "long.mp4", 4)
    result = assemble(Edit(clips=[Clip(short, 1.5, False), Clip(long, 0.7, False)], output=tmp_path / "o.mp4", **SMALL))
    info = probe(result.output)
    assert abs(float(info["format"]["duration"]) - 2.2) <= 1 / 30
    assert int(streams(info, "video")[0]["nb_frames"]) == 66
    moving = difference(frame(result.output, 0.1), frame(result.output, 0.4))
    held = difference(frame(result.output, 0.7), frame(result.output, 1.4))
    assert moving > 2 and held < 0.5


# --- audio ----------------------------------------------------------------------------------------


def test_voice_is_heard_on_its_clip_and_silence_fills_the_rest(tmp_path):
    still = picture(tmp_path / "a.png")
    voice = tone(tmp_path / "v.wav", 0.6, rate=16_000)  # shorter than its clip: padded with silence
    long_voice = tone(tmp_path / "long.wav", 3.0, rate=44_100)  # longer than its clip: cut
    edit = Edit(
        clips=[Clip(still, 1.0, True, voice), Clip(still, 1.0, True), Clip(still, 0.5, True, long_voice)],
        output=tmp_path / "o.mp4",
        **SMALL,
    )
    result = assemble(edit)

    assert loudness(result.output, 0.05, 0.5) > -20
    assert loudness(result.output, 0.75, 1.2) < -80  # the padding and the voiceless clip are silent
    assert loudness(result.output, 2.05, 0.4) > -20
    assert abs(float(probe(result.output)["format"]["duration"]) - 2.5) <= 1 / 30


def test_music_bed_is_looped_to_the_length_and_ducked_under_the_voice(tmp_path):
    still = picture(tmp_path / "a.png")
    music = tone(tmp_path / "music.wav", 0.7, rate=44_100, freq=220, amplitude=0.8)  # looped to the length
    edit = Edit(
        clips=[Clip(still, 1.0, True), Clip(still, 1.5, True, tone(tmp_path / "v.wav", 1.5, freq=880))],
        output=tmp_path / "o.mp4",
        music=music,
        music_volume=0.5,
        **SMALL,
    )
    result = assemble(edit)
    bed = loudness(result.output, 0.1, 0.8)
    assert -40 < bed < -5
    music_alone = loudness(result.output, 0.1, 0.8, around_hz=220)
    music_under_voice = loudness(result.output, 1.3, 1.0, around_hz=220)
    assert music_under_voice < music_alone - 6  # ducked while the voice (880 Hz) speaks
    assert abs(float(probe(result.output)["format"]["duration"]) - 2.5) <= 1 / 30
    silent_music = assemble(dataclasses.replace(edit, music=None, output=tmp_path / "no-music.mp4"))
    assert loudness(silent_music.output, 0.1, 0.8) < -80


# --- progress, cancellation, failures -------------------------------------------------------------


def test_progress_rises_and_ends_at_one(tmp_path):
    still = picture(tmp_path / "a.png")
    seen = []
    assemble(
        Edit(clips=[Clip(still, 2.0, True), Clip(still, 2.0, True)], output=tmp_path / "o.mp4"), on_progress=seen.append
    )
    assert seen[-1] == 1.0
    assert len(seen) >= 2
    assert seen == sorted(seen) and all(0 <= value <= 1 for value in seen)


def test_cancelling_kills_ffmpeg_and_leaves_no_file(tmp_path):
    still = picture(tmp_path / "a.png")
    polls = []

    def should_cancel():
        polls.append(1)
        return len(polls) >= 2

    edit = Edit(clips=[Clip(still, 30.0, True)], output=tmp_path / "o.mp4")  # far longer than the test waits
    with pytest.raises(RenderCancelled) as cancelled:
        assemble(edit, should_cancel=should_cancel)

    assert not Path(f"/proc/{cancelled.value.details['pid']}").exists()  # killed and reaped
    assert os.listdir(tmp_path) == ["a.png"]


def test_a_missing_input_names_its_clip_before_ffmpeg_runs(tmp_path, settings):
    settings.FFMPEG_BINARY = "/nonexistent/ffmpeg"  # would fail differently if ffmpeg were reached
    still = picture(tmp_path / "a.png")
    clips = [Clip(still, 1, True), Clip(tmp_path / "gone.png", 1, True)]
    with pytest.raises(RenderFailed, match=r"^Clip 2: cannot read .*gone\.png$"):
        assemble(Edit(clips=clips, output=tmp_path / "o.mp4"))
    with pytest.raises(RenderFailed, match=r"^Clip 1: cannot read its voice .*nope\.wav"):
        assemble(Edit(clips=[Clip(still, 1, True, tmp_path / "nope.wav")], output=tmp_path / "o.mp4"))
    assert os.listdir(tmp_path) == ["a.png"]


def test_metadata_tags_are_written_into_the_mp4_and_read_back_by_ffprobe_and_the_inputs_own_are_dropped(tmp_path):
    video = tmp_path / "tagged.mp4"
    subprocess.run(
        [
            render.ffmpeg_binary(),
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=320x240:r=25:d=1",
            "-metadata",
            "title=camera roll 17",
            "-pix_fmt",
            "yuv420p",
            str(video),
        ],
        check=True,
    )
    record = json.dumps({"shots": [{"position": 1, "seed": 42, "model": "中文女"}]}, ensure_ascii=False)
    edit = Edit(
        clips=[Clip(video, 1.0, False)],
        output=tmp_path / "out.mp4",
        metadata={"mcn_provenance": record, "comment": "made by MCN OS"},
        **SMALL,
    )

    result = assemble(edit)

    tags = probe(result.output)["format"]["tags"]
    assert json.loads(tags["mcn_provenance"]) == {"shots": [{"position": 1, "seed": 42, "model": "中文女"}]}
    assert tags["comment"] == "made by MCN OS"
    assert "title" not in tags  # the input's own tags are not carried over


def test_metadata_options_ask_for_mdta_tags_only_for_keys_outside_the_classic_atoms():
    assert render.metadata_options({}) == ["-map_metadata", "-1", "-movflags", "+faststart"]
    assert render.metadata_options({"comment": "x"})[-1] == "+faststart"
    assert render.metadata_options({"mcn_provenance": "{}"})[-1] == "+faststart+use_metadata_tags"


@pytest.mark.parametrize(
    ("metadata", "problem"),
    [({"bad key": "x"}, "Metadata key 'bad key'"), ({"k": "x" * 70_000}, "Metadata k: the value must be text")],
)
def test_a_bad_metadata_tag_is_refused_before_ffmpeg_runs(tmp_path, settings, metadata, problem):
    settings.FFMPEG_BINARY = "/nonexistent/ffmpeg"  # would fail differently if ffmpeg were reached
    edit = Edit(clips=[Clip(picture(tmp_path / "a.png"), 1, True)], output=tmp_path / "o.mp4", metadata=metadata)
    with pytest.raises(RenderFailed, match=re.escape(problem)):
        assemble(edit)


def test_an_unreadable_picture_fails_with_its_clip_and_ffmpegs_words_for_staff(tmp_path):
    still = picture(tmp_path / "a.png")
    (tmp_path / "broken.png").write_bytes(b"not a picture at all")
    clips = [Clip(still, 0.5, True), Clip(tmp_path / "broken.png", 0.5, True)]
    output = tmp_path / "o.mp4"
    output.write_bytes(b"the previous render")
    with pytest.raises(RenderFailed) as failed:
        assemble(Edit(clips=clips, output=output, **SMALL))

    assert str(failed.value).startswith("Clip 2: ffmpeg could not use")
    assert failed.value.details["returncode"] != 0 and failed.value.details["stderr"]
    assert output.read_bytes() == b"the previous render"  # untouched, and no temp file beside it
    assert sorted(os.listdir(tmp_path)) == ["a.png", "broken.png", "o.mp4"]


def test_paths_with_quotes_colons_brackets_and_commas_reach_the_subtitle_filter(tmp_path):
    odd = tmp_path / "it's [a], b; c:d"
    odd.mkdir()
    edit = Edit(
        clips=[Clip(picture(odd / "p 1.png"), 0.5, True)],
        output=odd / "out put.mp4",
        captions=[Caption(0, 0.5, CHINESE)],
        **SMALL,
    )
    captions_file = write_captions(edit, odd)
    argv = command_for(edit, captions_file=captions_file)
    completed = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stderr
    assert len(streams(probe(edit.output), "subtitle")) == 1


# --- configuration --------------------------------------------------------------------------------


def test_ffmpeg_binary_setting_wins_and_a_wrong_one_is_reported(settings):
    system = shutil.which("ffmpeg")
    if system:
        settings.FFMPEG_BINARY = system
        assert render.ffmpeg_binary() == system
    settings.FFMPEG_BINARY = "/nonexistent/ffmpeg"
    with pytest.raises(RenderFailed, match="FFMPEG_BINARY"):
        render.ffmpeg_binary()
    settings.FFMPEG_BINARY = ""
    assert Path(render.ffmpeg_binary()).is_file()


def test_cjk_font_setting_must_exist_and_wins(settings, tmp_path):
    found = fonts.cjk_font()
    assert found is not None and found.is_file()
    settings.MCN_FONT_FILE = str(found)
    assert fonts.cjk_font() == found
    settings.MCN_FONT_FILE = str(tmp_path / "missing.ttf")
    with pytest.raises(ImproperlyConfigured, match="MCN_FONT_FILE"):
        fonts.cjk_font()


def test_font_family_picks_the_simplified_chinese_face_of_a_collection():
    noto = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
    if not noto.exists():
        pytest.skip("fonts-noto-cjk is not installed")
    assert fonts.font_family(noto) == "Noto Sans CJK SC"
    assert fonts.load_font(20, noto).getname()[0] == "Noto Sans CJK SC"


def test_a_machine_without_cjk_fonts_burns_chinese_captions_with_the_bundled_noto_sans_cjk(
    tmp_path, settings, monkeypatch
):
    # A fresh machine without fonts-noto-cjk: our resolver skips the machine's fonts, and libass's
    # fontconfig (inside ffmpeg) is pointed at a configuration that lists none.
    settings.MCN_SYSTEM_FONTS = False
    no_fonts = tmp_path / "fonts.conf"
    no_fonts.write_text(f'<?xml version="1.0"?><fontconfig><cachedir>{tmp_path / "fc"}</cachedir></fontconfig>')
    monkeypatch.setenv("FONTCONFIG_FILE", str(no_fonts))

    found = fonts.cjk_font()
    assert found is not None and found == fonts.bundled_font() and "manimgx_fonts_cjk" in found.parts
    assert fonts.font_family(found) == "Noto Sans CJK SC"

    # Pillow (title cards, caption wrapping) draws each character, not the missing-glyph box ...
    font = fonts.load_font(64)

    def drawn(text: str) -> bytes:
        image = Image.new("L", (80, 96))
        ImageDraw.Draw(image).text((0, 0), text, font=font, fill=255)
        return image.tobytes()

    missing_glyph = drawn("\U000f0000")  # a private-use code point no font has
    glyphs = {drawn(char) for char in "大家好欢迎"}
    assert len(glyphs) == 5 and missing_glyph not in glyphs and all(any(glyph) for glyph in glyphs)
    assert font.get_variation_axes()[0]["name"] in (b"Weight", "Weight")  # the variable font, at Regular

    # ... and ffmpeg's libass finds it through the render's fonts/ folder and burns the captions.
    still = tmp_path / "a.png"
    Image.new("RGB", (640, 480), (40, 90, 160)).save(still)  # flat: any change is the captions
    clips = [Clip(still, 1.0, True)]
    plain = assemble(Edit(clips=clips, output=tmp_path / "plain.mp4", **SMALL))
    captioned = assemble(Edit(clips=clips, output=tmp_path / "cap.mp4", captions=[Caption(0, 1, CHINESE)], **SMALL))
    without, with_captions = frame(plain.output, 0.5), frame(captioned.output, 0.5)
    changed = ImageChops.difference(without, with_captions).convert("L").point(lambda v: 255 if v > 48 else 0)
    left, upper, right, _lower = changed.getbbox()
    assert upper > 568 / 2 and right - left > 320 / 3  # a line of text in the lower half
    assert changed.histogram()[255] > 600, changed.histogram()[255]  # a dozen glyphs drawn
