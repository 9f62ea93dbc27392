"""B7: what factory.render.assemble() costs on top of the ffmpeg encode it runs.

Builds a 60 s 1080x1920 30 fps edit from 12 shots (stills with Ken Burns and short generated video
clips, held or trimmed), a voice WAV per shot, Chinese captions and a music bed. Then, interleaved and
repeated, times:
- baseline: the very argv `command_for()` gives, run raw with subprocess (captions files made beforehand);
- ours: `assemble()`: checks the inputs, writes the captions and font link, runs the same encode,
  parses -progress, polls a cancel callback, and renames the result into place.

    .venv/bin/python bench/render_assembly.py [--repeats 3] [--seconds 60] [--shots 12] [--clips] [--smoke]
                                              [--write-docs]

--clips: every shot a video clip, as production makes them with video workflows (issue 16): spoken shots an
  avatar clip at 25 fps with its own audio track (dropped: the voice WAV is the audio of record), the others a
  motion clip at 16 fps, silent, some shorter than the shot (held on the last frame).
--smoke: 2 s at 320x568, one repeat (CI keeps it running; no time is asserted).
--write-docs: also put the table in docs/benchmarks.md, between the B7 markers (B7c with --clips).
"""

import argparse
import dataclasses
import math
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

from harness import Series, interleave, machine, setup_django, table, write_docs

setup_django()

from PIL import Image, ImageDraw  # noqa: E402

from factory import render  # noqa: E402
from factory.render import Caption, Clip, Edit, assemble, command_for, ffmpeg_binary, write_captions  # noqa: E402
from mcn_site.lib import fonts  # noqa: E402

LINES = [
    "大家好，欢迎回到我的频道",
    "今天带你们看看这座城市的夜景",
    "这是我最喜欢的一家小店",
    "老板说这道菜已经做了三十年",
    "我们先尝一口，真的很香",
    "下一站，去江边散散步",
]


def make_picture(path: Path, index: int, size: tuple[int, int]) -> Path:
    """A picture with gradients and shapes: closer to a generated frame than a flat colour."""
    width, height = size
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    for y in range(height):
        shade = y / height
        draw.line(
            [(0, y), (width, y)], fill=(int(40 + 180 * shade), int(60 + 30 * index % 150), int(200 - 150 * shade))
        )
    for k in range(12):
        x, y = (k * 97 + index * 53) % width, (k * 151 + index * 31) % height
        radius = 30 + (k * 17) % 90
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=((k * 40) % 256, 200, (index * 60) % 256))
    image.save(path)
    return path


def make_video(path: Path, seconds: float, size: str, *, fps: int = 25, audio: bool = False) -> Path:
    pattern = f"testsrc2=s={size}:r={fps}:d={seconds}"
    encode = ["-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "ultrafast"]
    sound = ["-f", "lavfi", "-i", f"sine=f=300:d={seconds}", "-c:a", "aac", "-shortest"] if audio else []
    subprocess.run(  # noqa: S603 - fixed arguments
        [ffmpeg_binary(), "-loglevel", "error", "-y", "-f", "lavfi", "-i", pattern, *sound, *encode, str(path)],
        check=True,
    )
    return path


def make_voice(path: Path, seconds: float, *, rate: int = 24_000, freq: float = 180.0) -> Path:
    """A syllable-like tone: a carrier switched on and off four times a second, as speech is."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        frames = bytearray()
        for i in range(int(seconds * rate)):
            t = i / rate
            envelope = max(0.0, math.sin(2 * math.pi * 4 * t))
            frames += struct.pack("<h", int(9000 * envelope * math.sin(2 * math.pi * freq * t)))
        out.writeframes(bytes(frames))
    return path


def build_edit(work: Path, *, seconds: float, shots: int, width: int, height: int, all_clips: bool = False) -> Edit:
    shot = seconds / shots
    clips, captions = [], []
    video_size = f"{max(width * 2 // 3 // 2 * 2, 64)}x{max(height * 2 // 3 // 2 * 2, 64)}"
    for index in range(shots):
        voice = make_voice(work / f"voice{index}.wav", shot * 0.85, freq=160 + 20 * index)
        if all_clips and index % 2 == 0:  # an avatar clip: as long as the shot, 25 fps, its own audio dropped
            path = make_video(work / f"shot{index}.mp4", round(shot, 2), video_size, fps=25, audio=True)
            clips.append(Clip(path, shot, False, voice))
        elif all_clips:  # a motion clip (Wan 2.2's 16 fps), silent; every other one shorter than the shot
            length = shot * (0.8 if index % 4 == 1 else 1.0)
            path = make_video(work / f"shot{index}.mp4", round(length, 2), video_size, fps=16)
            clips.append(Clip(path, shot, False, None))
        elif index % 3 == 2:  # every third shot a generated video clip: some shorter than the shot, some longer
            length = shot * (0.6 if index % 2 else 1.5)
            path = make_video(work / f"shot{index}.mp4", round(length, 2), video_size)
            clips.append(Clip(path, shot, False, voice))
        else:
            path = make_picture(work / f"shot{index}.png", index, (max(width, 64), max(height * 4 // 5, 64)))
            clips.append(Clip(path, shot, True, voice))
        start = index * shot
        captions.append(Caption(start + 0.1 * shot, start + 0.95 * shot, LINES[index % len(LINES)]))
    music = make_voice(work / "music.wav", min(10.0, seconds), rate=44_100, freq=110)
    return Edit(clips=clips, output=work / "out.mp4", width=width, height=height, captions=captions, music=music)


def run_baseline(edit: Edit, work: Path) -> float:
    """The same encode as a raw subprocess: argv from command_for, captions written beforehand."""
    raw_dir = work / "raw"
    raw_dir.mkdir(exist_ok=True)
    captions_file = write_captions(edit, raw_dir)
    argv = command_for(
        dataclasses.replace(edit, output=work / "baseline.mp4"),
        captions_file=captions_file,
        fonts_dir=raw_dir / "fonts",
    )
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)  # noqa: S603
    return time.perf_counter() - started


def run_ours(edit: Edit, work: Path) -> float:
    seen = []
    started = time.perf_counter()
    result = assemble(
        dataclasses.replace(edit, output=work / "ours.mp4"), on_progress=seen.append, should_cancel=lambda: False
    )
    elapsed = time.perf_counter() - started
    assert seen and seen[-1] == 1.0 and result.output.exists()
    return elapsed


def own_work_ms(edit: Edit, work: Path, runs: int = 20) -> float:
    """Median milliseconds assemble() spends outside ffmpeg before it starts: noise-free, unlike the totals."""
    spent = []
    for run in range(runs):
        folder = work / f"own{run}"
        folder.mkdir()
        started = time.perf_counter()
        render._validate(edit)
        captions_file = write_captions(edit, folder)
        command_for(edit, captions_file=captions_file, fonts_dir=folder / "fonts")
        spent.append((time.perf_counter() - started) * 1000)
    return statistics.median(spent)


def versions() -> str:
    ffmpeg = subprocess.run([ffmpeg_binary(), "-version"], capture_output=True, text=True).stdout  # noqa: S603
    ffmpeg_version = ffmpeg.split("\n", 1)[0].split(" Copyright")[0]
    return f"{machine()}, {ffmpeg_version} (imageio-ffmpeg), font {fonts.font_family(fonts.cjk_font())}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--shots", type=int, default=12)
    parser.add_argument("--width", type=int, default=1080)
    parser.add_argument("--height", type=int, default=1920)
    parser.add_argument("--clips", action="store_true", help="every shot a video clip (avatar and motion)")
    parser.add_argument("--smoke", action="store_true", help="2 s at 320x568, one repeat")
    parser.add_argument("--write-docs", action="store_true", help="put the table in docs/benchmarks.md")
    args = parser.parse_args()
    if args.smoke:
        args.repeats, args.seconds, args.shots, args.width, args.height = 1, 2.0, 4, 320, 568

    with tempfile.TemporaryDirectory(prefix="bench-render-") as tmp:
        work = Path(tmp)
        edit = build_edit(
            work, seconds=args.seconds, shots=args.shots, width=args.width, height=args.height, all_clips=args.clips
        )
        # Interleaved, alternating which goes first: a machine that speeds up or slows down favours neither.
        series = interleave(
            {"baseline": lambda: run_baseline(edit, work), "ours": lambda: run_ours(edit, work)}, repeats=args.repeats
        )
        own = own_work_ms(edit, work)

    base, ours = series["baseline"], series["ours"]

    def seconds(s: Series) -> list:
        return [len(s.samples), f"{s.min:.2f}", f"{s.median:.2f}", f"{s.max:.2f}"]

    rows = [
        ["raw ffmpeg, the same argv (baseline)", *seconds(base), "1.00", "1.00"],
        ["`assemble()`", *seconds(ours), f"{ours.median / base.median:.3f}", f"{ours.min / base.min:.3f}"],
        ["of which `assemble()`'s own work (checks, captions, font link, argv)", 20, f"{own:.1f} ms", "", "", "", ""],
    ]
    headers = ["what", "runs", "min s", "median s", "max s", "ratio of medians", "ratio of minimums"]
    shots = f"{args.shots} video clips (avatar 25 fps + motion 16 fps)" if args.clips else f"{args.shots} shots"
    header = (
        f"{args.seconds:g} s, {args.width}x{args.height} at 30 fps, {shots}, voice + captions + music; "
        f"{versions()}; load average (1 min) at the end: {os.getloadavg()[0]:.1f}"
    )
    body = header + "\n\n" + table(headers, rows)
    print(body)
    if args.write_docs:
        write_docs("B7c" if args.clips else "B7", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
