"""Video assembly: clips, voice, music and captions into one MP4 with a single ffmpeg run.

Plain data in, a file out; nothing here knows about posts or artists. The caller builds an `Edit`
(clips in order, each with its duration and optional voice WAV; captions on the output timeline;
optional music) and calls `assemble()`, which reports progress and honours cancellation.

Timing is frame exact: clip k covers frames round(start_k * fps) .. round(end_k * fps) of the
cumulative timeline and its audio exactly the matching samples, so rounding never accumulates and
the output lasts sum(durations) to within half a frame.
"""

import dataclasses
import glob
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from mcn_site.lib import fonts

SAMPLE_RATE = 48_000
KEN_BURNS_ZOOM = 0.08  # 1.00 -> 1.08 over a still: noticeable, never dizzy
# Stills are scaled to twice the frame before zoompan: zoompan crops on whole pixels, and a crop
# that moves in 1-pixel steps of the output judders; at 2x it moves in half-pixel steps. Measured
# free on a 1080x1920 render (zoompan resamples every frame either way).
KEN_BURNS_OVERSAMPLE = 2
X264 = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p"]
AAC = ["-c:a", "aac", "-b:a", "128k", "-ar", str(SAMPLE_RATE), "-ac", "2"]
PROGRESS_EVERY = 0.25  # seconds between on_progress calls (ffmpeg reports every 0.5 s)
CANCEL_POLL_EVERY = 0.5  # seconds between should_cancel calls (it may query a database)
STDERR_LINES = 30


@dataclass(frozen=True)
class Clip:
    path: Path  # absolute path of an image (png/jpg/webp) or a video file
    duration: float  # seconds this clip lasts in the output (> 0)
    still: bool  # True: image with a slow Ken Burns move; False: video, trimmed or held on its last frame
    # Voice WAV (any rate/channels); None = silence; padded or cut to the duration. A video's own audio
    # is never used: an avatar clip's lips follow this voice, which stays the audio of record.
    audio: Path | None = None


@dataclass(frozen=True)
class Caption:
    start: float  # seconds on the output timeline
    end: float
    text: str  # may be Chinese; newlines are kept, long lines are wrapped to the frame


@dataclass(frozen=True)
class Edit:
    clips: list[Clip]
    output: Path  # the MP4 to write (atomically: a temp file beside it, then os.replace)
    width: int = 1080
    height: int = 1920
    fps: int = 30
    captions: list[Caption] = field(default_factory=list)  # burned in and also a soft mov_text track
    music: Path | None = None  # background music, looped or cut to the length
    music_volume: float = 0.25  # linear gain of the music bed; ducked under speech
    font: Path | None = None  # CJK-capable font file; None = mcn_site.lib.fonts.cjk_font()
    # The MP4's own tags (ffprobe -show_format: format.tags), e.g. {"mcn_provenance": "<json>"}; see metadata_options.
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class RenderResult:
    output: Path
    duration: float  # seconds: frames / fps
    frames: int
    command: list[str]


class RenderFailed(Exception):
    """A render that cannot finish. `str()` is for producers; `.details` (ffmpeg's stderr, argv) for staff."""

    def __init__(self, message: str, details: dict | None = None):
        super().__init__(message)
        self.details = details or {}


class RenderCancelled(RenderFailed):
    pass


def ffmpeg_binary() -> str:
    """The ffmpeg to run: FFMPEG_BINARY, else the one in the imageio-ffmpeg wheel, else ffmpeg on PATH."""
    configured = str(getattr(settings, "FFMPEG_BINARY", "") or "").strip()
    if configured:
        found = shutil.which(configured)
        if not found:
            raise RenderFailed(f"FFMPEG_BINARY={configured!r} is not an executable on this machine.")
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        pass
    found = shutil.which("ffmpeg")
    if found:
        return found
    raise RenderFailed(
        "No ffmpeg found: `pip install -r requirements.txt` (imageio-ffmpeg ships one), "
        "install ffmpeg (apt-get install ffmpeg), or set FFMPEG_BINARY to its path."
    )


# --- metadata ----------------------------------------------------------------------------------

# The tags an MP4 holds in its classic (iTunes-style) atoms; any other key needs ffmpeg's
# use_metadata_tags (an mdta atom), which ffprobe and exiftool read back as written.
STANDARD_MP4_TAGS = frozenset(
    {"title", "artist", "album", "comment", "description", "copyright", "date", "genre", "encoder", "synopsis"}
)
METADATA_KEY_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
MAX_METADATA_BYTES = 64_000  # per value: one argv string may hold 128 KiB on Linux


def metadata_options(metadata: dict[str, str]) -> list[str]:
    """ffmpeg output options writing `metadata` as the MP4's tags, and nothing of the inputs' (their
    names, encoders, cameras' dates). One place for every tag a render carries (provenance, AI labels)."""
    options = ["-map_metadata", "-1"]
    for key, value in metadata.items():
        options += ["-metadata", f"{key}={value}"]
    flags = "+faststart"
    if any(key not in STANDARD_MP4_TAGS for key in metadata):
        flags += "+use_metadata_tags"
    return [*options, "-movflags", flags]


# --- timeline ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Segment:
    number: int  # 1-based clip number, as producers count
    clip: Clip
    frames: int
    samples: int


def _segments(edit: Edit) -> list[_Segment]:
    """Each clip's frames and audio samples, from boundaries rounded on the cumulative timeline."""
    segments = []
    elapsed = 0.0
    frame_at = 0
    for number, clip in enumerate(edit.clips, start=1):
        elapsed += clip.duration
        next_frame = round(elapsed * edit.fps)
        frames = next_frame - frame_at
        samples = _sample_at(next_frame, edit.fps) - _sample_at(frame_at, edit.fps)
        frame_at = next_frame
        if frames > 0:  # a clip shorter than half a frame leaves no frame of its own
            segments.append(_Segment(number, clip, frames, samples))
    return segments


def _sample_at(frame: int, fps: int) -> int:
    return (2 * frame * SAMPLE_RATE + fps) // (2 * fps)  # round(frame * SR / fps) in integers


def _validate(edit: Edit) -> None:
    if not edit.clips:
        raise RenderFailed("Nothing to render: the edit has no clips.")
    if edit.width < 16 or edit.height < 16 or edit.width % 2 or edit.height % 2:
        raise RenderFailed(f"Frame size {edit.width}x{edit.height} is not usable: even numbers of 16 or more.")
    if edit.fps <= 0:
        raise RenderFailed(f"Frame rate {edit.fps} is not usable.")
    for number, clip in enumerate(edit.clips, start=1):
        if not clip.duration > 0:
            raise RenderFailed(f"Clip {number}: duration must be above 0 s, not {clip.duration}.")
        if not _readable(clip.path):
            raise RenderFailed(f"Clip {number}: cannot read {clip.path}", {"clip": number, "path": str(clip.path)})
        if clip.audio is not None and not _readable(clip.audio):
            raise RenderFailed(
                f"Clip {number}: cannot read its voice {clip.audio}", {"clip": number, "path": str(clip.audio)}
            )
    if edit.music is not None and not _readable(edit.music):
        raise RenderFailed(f"Music: cannot read {edit.music}", {"path": str(edit.music)})
    if not _segments(edit):
        raise RenderFailed("Nothing to render: the clips last less than one frame.")
    for key, value in edit.metadata.items():
        if not METADATA_KEY_RE.fullmatch(key):
            raise RenderFailed(f"Metadata key {key!r} is not usable: letters, digits and _ only.")
        if "\x00" in value or len(value.encode()) > MAX_METADATA_BYTES:
            raise RenderFailed(f"Metadata {key}: the value must be text of at most {MAX_METADATA_BYTES} bytes.")


def _readable(path: Path) -> bool:
    return Path(path).is_file() and os.access(path, os.R_OK)


# --- captions ---------------------------------------------------------------------------------


def _caption_style(edit: Edit) -> tuple[int, int, int]:
    """Font size, side margin and bottom margin in pixels of the output frame."""
    size = max(10, round(min(edit.height * 0.05, edit.width * 0.06)))
    side = round(edit.width * 0.08)
    # Portrait feeds (Douyin, TikTok, Reels) cover the bottom fifth with their own caption and
    # buttons: captions sit above it. Landscape and square frames keep the usual low position.
    bottom = round(edit.height * (0.2 if edit.height > edit.width else 0.08))
    return size, side, bottom


def _cues(edit: Edit, total: float) -> list[Caption]:
    cues = []
    for caption in sorted(edit.captions, key=lambda c: (c.start, c.end)):
        start, end = max(0.0, caption.start), min(total, caption.end)
        if end > start and caption.text.strip():
            cues.append(Caption(start, end, caption.text.strip()))
    return cues


def _ass_time(seconds: float) -> str:
    centis = round(seconds * 100)
    return f"{centis // 360000}:{centis // 6000 % 60:02d}:{centis // 100 % 60:02d}.{centis % 100:02d}"


def _srt_time(seconds: float) -> str:
    millis = round(seconds * 1000)
    return f"{millis // 3600000:02d}:{millis // 60000 % 60:02d}:{millis // 1000 % 60:02d},{millis % 1000:03d}"


def _ass_text(line: str) -> str:
    # "{" opens an override block and "\" an escape in ASS: show look-alikes instead.
    return line.replace("\\", "\uff3c").replace("{", "\uff5b").replace("}", "\uff5d")


def _font_for(edit: Edit) -> Path:
    font = edit.font or fonts.cjk_font()
    if font is None or not Path(font).is_file():
        raise RenderFailed(
            f"No CJK font for the captions ({font or 'none found'}): "
            "pip install -r requirements.txt (its manimgx-fonts-cjk wheel ships one), "
            "or set MCN_FONT_FILE to a .ttf/.otf/.ttc file."
        )
    return Path(font)


def write_captions(edit: Edit, directory: Path) -> Path | None:
    """Write the edit's captions into `directory`: captions.ass (burned in), captions.srt (soft track)
    and fonts/ (a link to the font, so libass loads one file rather than every font beside it).

    Returns the .ass path for `command_for(captions_file=...)`, or None when there are no captions.
    """
    total = sum(s.frames for s in _segments(edit)) / edit.fps
    cues = _cues(edit, total)
    if not cues:
        return None
    font_path = _font_for(edit)
    size, side, bottom = _caption_style(edit)
    font = fonts.load_font(size, font_path)
    outline = max(1, round(size * 0.07))
    shadow = max(1, round(size * 0.03))
    ass = [
        "[Script Info]",
        "ScriptType: v4.00+",
        f"PlayResX: {edit.width}",
        f"PlayResY: {edit.height}",
        "WrapStyle: 0",
        "ScaledBorderAndShadow: yes",
        "YCbCr Matrix: TV.709",
        "",
        "[V4+ Styles]",
        "Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, "
        "Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, "
        "Alignment, MarginL, MarginR, MarginV, Encoding",
        # White text, near-black outline and a soft shadow: readable on any picture. Alignment 2: bottom centre.
        f"Style: Default,{fonts.font_family(font_path)},{size},&H00FFFFFF,&H00FFFFFF,&H00101010,&H80000000,"
        f"0,0,0,0,100,100,0,0,1,{outline},{shadow},2,{side},{side},{bottom},1",
        "",
        "[Events]",
        "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text",
    ]
    srt = []
    for index, cue in enumerate(cues, start=1):
        lines = fonts.wrap(cue.text, font, edit.width - 2 * side)
        text = "\\N".join(_ass_text(line) for line in lines)
        ass.append(f"Dialogue: 0,{_ass_time(cue.start)},{_ass_time(cue.end)},Default,,0,0,0,,{text}")
        srt += [str(index), f"{_srt_time(cue.start)} --> {_srt_time(cue.end)}", *lines, ""]
    directory = Path(directory)
    captions_file = directory / "captions.ass"
    captions_file.write_text("\n".join(ass) + "\n", encoding="utf-8")
    captions_file.with_suffix(".srt").write_text("\n".join(srt), encoding="utf-8")
    fonts_dir = directory / "fonts"
    fonts_dir.mkdir(exist_ok=True)
    link = fonts_dir / font_path.name
    if not link.exists():
        try:
            link.symlink_to(font_path.resolve())
        except OSError:  # no symlinks (some Windows setups, odd mounts): a copy does the same
            shutil.copyfile(font_path, link)
    return captions_file


# --- the ffmpeg command -------------------------------------------------------------------------


def _filter_value(value: str) -> str:
    """Escape a value (a path) for a filter option inside -filter_complex.

    Two levels, as ffmpeg-filters(1) "Notes on filtergraph escaping" describes: the option parser
    treats \\ ' : specially; then the graph parser treats \\ ' [ ] , ; specially.
    """
    for char in "\\':":
        value = value.replace(char, "\\" + char)
    for char in "\\'[],;":
        value = value.replace(char, "\\" + char)
    return value


def _ken_burns(index: int, frames: int, width: int, height: int, fps: int) -> str:
    span = max(frames - 1, 1)
    if index % 2 == 0:  # zoom in, drifting towards the upper third where faces usually are
        zoom = f"1+{KEN_BURNS_ZOOM}*on/{span}"
        x, y = "(iw-iw/zoom)/2", f"(ih-ih/zoom)*(0.5-0.15*on/{span})"
    else:  # zoom out from the centre
        zoom = f"{1 + KEN_BURNS_ZOOM}-{KEN_BURNS_ZOOM}*on/{span}"
        x, y = "(iw-iw/zoom)/2", "(ih-ih/zoom)/2"
    big_w, big_h = width * KEN_BURNS_OVERSAMPLE, height * KEN_BURNS_OVERSAMPLE
    return (
        f"scale={big_w}:{big_h}:force_original_aspect_ratio=increase:flags=bicubic:out_range=tv,crop={big_w}:{big_h},"
        f"zoompan=z='{zoom}':x='{x}':y='{y}':d={frames}:s={width}x{height}:fps={fps}"
    )


def command_for(edit: Edit, *, captions_file: Path | None, fonts_dir: Path | None = None) -> list[str]:
    """The full ffmpeg argv for the edit, writing to edit.output with progress on stdout.

    `captions_file` is the .ass from write_captions() (its .srt sibling becomes the soft track);
    `fonts_dir` defaults to its fonts/ folder when there is one, else the font file's own folder.
    """
    return _build(edit, captions_file, fonts_dir)[0]


def _build(edit: Edit, captions_file: Path | None, fonts_dir: Path | None) -> tuple[list[str], dict[int, tuple]]:
    """The argv, and for each ffmpeg input index what a producer calls it ("Clip 3's voice") and its path."""
    segments = _segments(edit)
    width, height, fps = edit.width, edit.height, edit.fps
    total_frames = sum(s.frames for s in segments)
    total_samples = _sample_at(total_frames, fps)
    total = total_frames / fps
    inputs: list[str] = []
    graph: list[str] = []
    owners: dict[int, tuple[str, Path]] = {}

    def add_input(owner: str, *args: str | Path) -> int:
        # Absolute paths: a relative "-x.png" would read as an option, "a:b.png" as a protocol.
        path = Path(args[-1]).absolute()
        index = len(owners)
        inputs.extend([*map(str, args[:-1]), str(path)])
        owners[index] = (owner, path)
        return index

    pairs = []
    for index, segment in enumerate(segments):
        clip = segment.clip
        seconds = f"{segment.frames / fps:.6f}"
        if clip.still:
            # One decoded frame; zoompan makes every output frame from it (a looped image input
            # would decode and scale the file again for each frame: 40 % slower at 1080x1920).
            source = add_input(f"Clip {segment.number}", "-i", clip.path)
            chain = _ken_burns(index, segment.frames, width, height, fps)
        else:
            # -t before -i: stop decoding a long video at the clip's end.
            source = add_input(f"Clip {segment.number}", "-t", seconds, "-i", clip.path)
            chain = (
                f"setpts=PTS-STARTPTS,fps={fps},"
                f"scale={width}:{height}:force_original_aspect_ratio=increase:out_range=tv,crop={width}:{height},"
                "tpad=stop_mode=clone:stop=-1"  # hold the last frame for as long as needed
            )
        graph.append(
            f"[{source}:v]{chain},setsar=1,format=yuv420p,trim=end_frame={segment.frames},setpts=PTS-STARTPTS[v{index}]"
        )
        if clip.audio is not None:
            voice = add_input(f"Clip {segment.number}'s voice", "-i", clip.audio)
            graph.append(
                f"[{voice}:a]aresample={SAMPLE_RATE},aformat=sample_fmts=fltp:channel_layouts=stereo,"
                f"apad=whole_len={segment.samples},atrim=end_sample={segment.samples},asetpts=N/SR/TB[a{index}]"
            )
        else:
            graph.append(
                f"anullsrc=r={SAMPLE_RATE}:cl=stereo,atrim=end_sample={segment.samples},asetpts=N/SR/TB[a{index}]"
            )
        pairs.append(f"[v{index}][a{index}]")
    graph.append(f"{''.join(pairs)}concat=n={len(segments)}:v=1:a=1[vcat][voice]")

    video = "[vcat]"
    if captions_file is not None:
        if fonts_dir is None:
            candidate = Path(captions_file).parent / "fonts"
            fonts_dir = candidate if candidate.is_dir() else _font_for(edit).parent
        graph.append(
            f"[vcat]subtitles=filename={_filter_value(str(Path(captions_file).absolute()))}"
            f":fontsdir={_filter_value(str(Path(fonts_dir).absolute()))}[vout]"
        )
        video = "[vout]"

    audio = "[voice]"
    if edit.music is not None:
        music = add_input("The music", "-stream_loop", "-1", "-i", edit.music)
        fade = min(1.5, total / 4)
        graph.append(
            f"[{music}:a]aresample={SAMPLE_RATE},aformat=sample_fmts=fltp:channel_layouts=stereo,"
            f"atrim=end_sample={total_samples},asetpts=N/SR/TB,volume={edit.music_volume:.4f},"
            f"afade=t=out:st={total - fade:.3f}:d={fade:.3f}[music]"
        )
        if any(s.clip.audio is not None for s in segments):
            # Duck the bed while someone speaks: the voice drives a compressor on the music.
            graph.append("[voice]asplit=2[speech][key]")
            graph.append("[music][key]sidechaincompress=threshold=0.02:ratio=8:attack=15:release=350[bed]")
            graph.append("[speech][bed]amix=inputs=2:duration=first:normalize=0[mix]")
            audio = "[mix]"
        else:
            audio = "[music]"

    outputs = ["-map", video, "-map", audio, *X264, "-r", str(fps), *AAC]
    if captions_file is not None:
        srt = add_input("The captions", "-i", Path(captions_file).with_suffix(".srt"))
        outputs += ["-map", f"{srt}:s", "-c:s", "mov_text"]
    argv = [
        ffmpeg_binary(),
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-y",
        *inputs,
        "-filter_complex",
        ";".join(graph),
        *outputs,
        *metadata_options(edit.metadata),
        "-progress",
        "pipe:1",
        "-stats_period",
        "0.5",
        "-nostats",
        "-f",
        "mp4",
        str(Path(edit.output).absolute()),
    ]
    return argv, owners


# --- running it ---------------------------------------------------------------------------------


def assemble(
    edit: Edit,
    *,
    on_progress: Callable[[float], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    before_publish: Callable[[], object] | None = None,
) -> RenderResult:
    """Render the edit to edit.output and return what was written.

    on_progress gets fractions 0..1 (at most every PROGRESS_EVERY seconds, 1.0 once at the end);
    should_cancel is polled about twice a second; before_publish runs just before the finished file
    replaces edit.output, and raises to leave edit.output as it is. Raises RenderFailed (message names
    the clip when one is at fault) or RenderCancelled; either way no partial file is left at edit.output.
    The temporary file is `temp_files(edit.output)`'s: a render killed mid-way leaves it for the next
    run of the same output to discard.
    """
    _validate(edit)
    output = Path(edit.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    segments = _segments(edit)
    frames = sum(s.frames for s in segments)
    total = frames / edit.fps
    temp_output = output.with_name(f".{output.name}.{os.getpid()}.{threading.get_ident()}{PART_SUFFIX}")
    with tempfile.TemporaryDirectory(prefix="mcn-render-") as work:
        captions_file = write_captions(edit, Path(work))
        argv, owners = _build(
            dataclasses.replace(edit, output=temp_output),
            captions_file,
            Path(work) / "fonts" if captions_file else None,
        )
        try:
            _run(argv, total, owners, on_progress, should_cancel)
            if before_publish is not None:
                before_publish()
            os.replace(temp_output, output)
        finally:
            temp_output.unlink(missing_ok=True)
    if on_progress:
        on_progress(1.0)
    return RenderResult(output=output, duration=total, frames=frames, command=argv)


PART_SUFFIX = ".part"


def temp_files(output: Path) -> list[Path]:
    """The temporary files renders of `output` are writing or left behind (a render killed mid-way)."""
    output = Path(output)
    return sorted(output.parent.glob(f".{glob.escape(output.name)}.*{PART_SUFFIX}"))


def _run(
    argv: list[str],
    total: float,
    owners: dict[int, tuple],
    on_progress: Callable[[float], None] | None,
    should_cancel: Callable[[], bool] | None,
) -> None:
    try:
        process = subprocess.Popen(  # noqa: S603 - an argv list, no shell; paths are arguments
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
    except OSError as error:
        raise RenderFailed(f"Cannot start ffmpeg: {error}", {"command": argv}) from error
    lines: queue.Queue[str | None] = queue.Queue()
    stderr: deque[str] = deque(maxlen=STDERR_LINES)
    readers = [
        threading.Thread(target=_pump, args=(process.stdout, lines.put, True), daemon=True),
        threading.Thread(target=_pump, args=(process.stderr, stderr.append, False), daemon=True),
    ]
    for reader in readers:
        reader.start()
    last_report = last_poll = 0.0
    reported = 0.0
    try:
        while True:
            try:
                line = lines.get(timeout=CANCEL_POLL_EVERY)
            except queue.Empty:
                line = ""
            now = time.monotonic()
            if should_cancel is not None and now - last_poll >= CANCEL_POLL_EVERY:
                last_poll = now
                if should_cancel():
                    process.kill()
                    process.wait()
                    raise RenderCancelled("Render cancelled.", {"pid": process.pid})
            if line is None:  # ffmpeg closed stdout: it is exiting
                break
            done = _progress_seconds(line)
            if done is not None and on_progress and total > 0:
                fraction = min(done / total, 0.999)  # 1.0 only once the file is in place
                if fraction > reported and now - last_report >= PROGRESS_EVERY:
                    reported, last_report = fraction, now
                    on_progress(fraction)
        returncode = process.wait()
    except BaseException:
        if process.poll() is None:
            process.kill()
            process.wait()
        raise
    for reader in readers:
        reader.join(timeout=5)
    if returncode != 0:
        raise _failure(returncode, list(stderr), argv, owners)


def _pump(stream, sink, mark_end: bool) -> None:
    for line in stream:
        sink(line.rstrip("\n"))
    stream.close()
    if mark_end:
        sink(None)


def _progress_seconds(line: str) -> float | None:
    key, _, value = line.partition("=")
    if key in ("out_time_us", "out_time_ms"):  # both are microseconds (out_time_ms is misnamed)
        try:
            return max(0, int(value)) / 1_000_000
        except ValueError:
            return None  # "N/A" before the first frame
    return None


# Where ffmpeg names an input by number: "[in#2/...", "[vist#2:0/png ...]" (ffmpeg 7+),
# "Error while decoding stream #2:0" (ffmpeg 5 and 6).
_INPUT_MENTION = re.compile(r"\[(?:in|vist|aist|sist)#(\d+)|\bstream #?(\d+):\d")
_LOG_PREFIX = re.compile(r"^(?:\[[^\]]*@ 0x[0-9a-f]+\] ?)+")


def _failure(returncode: int, stderr: list[str], argv: list[str], owners: dict[int, tuple]) -> RenderFailed:
    """A producer-readable failure: which clip (or voice, music) ffmpeg choked on, in ffmpeg's words."""
    details = {"returncode": returncode, "stderr": "\n".join(stderr), "command": argv}
    for line in stderr:
        mention = _INPUT_MENTION.search(line)
        named = [i for i, (_, path) in owners.items() if str(path) in line]  # older ffmpeg names the file
        index = int(mention.group(1) or mention.group(2)) if mention else (named[0] if named else None)
        if index in owners:
            owner, path = owners[index]
            details["input"] = owner
            reason = _LOG_PREFIX.sub("", line).replace(str(path), "").strip(" :")
            return RenderFailed(f"{owner}: ffmpeg could not use {path}: {reason}", details)
    last = next((line for line in reversed(stderr) if line.strip()), f"exit status {returncode}")
    return RenderFailed(f"ffmpeg failed: {_LOG_PREFIX.sub('', last).strip()}", details)
