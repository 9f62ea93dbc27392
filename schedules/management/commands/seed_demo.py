"""Load a small, browsable demo: staff users, assets, two artists, schedules and posts.

Safe to run again: every row is looked up by its natural key first (username,
voice/wardrobe/source name, artist slug, schedule title + artist, post title +
artist) and an existing row is left exactly as it is, so a producer's edits
survive. Rows that belong to a parent (artist images, shots) are only made
together with the parent. Everything runs in one transaction.

All pictures and the voice sample are drawn here (Pillow, the stdlib `wave`
module): the command needs no network.
"""

import io
import math
import wave
from array import array
from dataclasses import dataclass, field
from decimal import Decimal

from django.apps import apps as django_apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.files.base import ContentFile
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from PIL import Image, ImageDraw, ImageFont

from artists.models import Artist, ArtistImage, Niche, Source, Voice, Wardrobe
from mcn_site.lib import roles
from mcn_site.lib.env import env_str
from posts.models import Post, Shot, ShotKind
from posts.services import StoryboardChange, post_create, post_submit_for_review, storyboard_apply
from schedules.models import Schedule
from schedules.services import schedule_save

DEFAULT_PASSWORD = "mcn-demo-2026"  # noqa: S105 - a documented password for a local demo, see the help text
DEFAULT_URL = "http://127.0.0.1:8000/admin/"

# --------------------------------------------------------------------------- demo content

USERS = [
    {"username": "producer", "role": roles.PRODUCER, "first_name": "Demo", "last_name": "Producer"},
    {"username": "reviewer", "role": roles.REVIEWER, "first_name": "Demo", "last_name": "Reviewer"},
    {"username": "ops", "role": roles.OPS, "first_name": "Demo", "last_name": "Ops"},
]

VOICES = [
    {
        "name": "Luna · 温柔女声 (SFT)",
        "speaker_id": "中文女",
        "notes": "CosyVoice-300M-SFT built-in speaker: calm, warm alto for finance explainers.",
    },
    {
        "name": "Kai · 清亮男声 (zero-shot)",
        "sample": "kai-nova-sample.wav",
        "sample_transcription": "大家好，我是 Kai Nova，三分钟带你看懂今天最值得关注的科技新闻。",
        "notes": "Demo placeholder: the sample is a synthetic hum, not speech. "
        "Replace it with a real 3-10 s recording of these words before cloning.",
    },
]

WARDROBES = [
    {
        "name": "Navy Business Suit",
        "category": Wardrobe.Category.FORMAL,
        "payload": {
            "lora_name": "suit_navy_v1.safetensors",
            "trigger_word": "navy blue suit, formal attire",
            "strength": 0.8,
        },
        "colour": "#1e3a8a",
        "shape": "jacket",
    },
    {
        "name": "Ivory Silk Blouse",
        "category": Wardrobe.Category.CASUAL,
        "payload": {
            "lora_name": "blouse_silk_v2.safetensors",
            "trigger_word": "ivory silk blouse, pearl earrings",
            "strength": 0.7,
        },
        "colour": "#f5f0e1",
        "shape": "shirt",
    },
    {
        "name": "Black Tech Hoodie",
        "category": Wardrobe.Category.CASUAL,
        "payload": {
            "lora_name": "hoodie_black_v1.safetensors",
            "trigger_word": "black hoodie, minimalist techwear",
            "strength": 0.75,
        },
        "colour": "#111827",
        "shape": "hoodie",
    },
    {
        "name": "Neon Streetwear Jacket",
        "category": Wardrobe.Category.SPECIAL,
        "payload": {
            "lora_name": "jacket_neon_v1.safetensors",
            "trigger_word": "reflective neon bomber jacket, cyberpunk streetwear",
            "strength": 0.85,
        },
        "colour": "#22d3ee",
        "shape": "jacket",
    },
]

SOURCES = [
    {
        "name": "华尔街见闻 · 7x24 快讯",
        "category": Source.Category.FINANCE,
        "url": "https://wallstreetcn.com/live/global",
        "instruction": "只挑对 A 股、美股和黄金有直接影响的宏观与政策新闻；忽略个股荐股和广告。"
        "Keep the numbers (rates, percentages) exactly as published.",
        "max_items": 8,
    },
    {
        "name": "36Kr 快讯",
        "category": Source.Category.TECH,
        "url": "https://36kr.com/newsflashes",
        "instruction": "Focus on AI models, chips and consumer devices: launches, benchmarks, funding over "
        "USD 50M. Skip rumours and personnel gossip.",
        "max_items": 5,
    },
    {
        "name": "Reuters · World News",
        "category": Source.Category.ALL,
        "url": "https://www.reuters.com/world/",
        "instruction": "Only stories with a clear angle for the artist's niche; one sentence of context each. "
        "Never use war or disaster footage as a hook.",
        "max_items": 3,
    },
]

ARTISTS = [
    {
        "slug": "luna-chen",
        "stage_name": "Luna Chen",
        "niche": Niche.FINANCE,
        "colour": "#0e7490",
        "persona": "Luna Chen（陈露娜），29 岁，前券商宏观研究员，现为独立财经分析师。"
        "相信「看懂数据，才不会被情绪带着走」。擅长把美联储、通胀和汇率讲成普通人听得懂的家常话，"
        "从不荐股，只讲逻辑与风险。",
        "speaking_style": "语速平稳、亲切，先抛一个反常识的数字做钩子，再用生活化的比喻解释；"
        "每条视频结尾固定一句「投资有风险，决策需独立」。",
        "content_focus": ["宏观经济", "美联储", "黄金", "A股", "个人理财"],
        "excluded_keywords": ["荐股", "内幕消息", "加密货币空投", "稳赚不赔"],
        "voice": "Luna · 温柔女声 (SFT)",
        "wardrobes": ["Navy Business Suit", "Ivory Silk Blouse"],
        "sources": ["华尔街见闻 · 7x24 快讯", "Reuters · World News"],
        "look": {"skin": "#f3d2b8", "hair": "#2b1d16", "hair_style": "long", "outfit": "#1e3a8a"},
    },
    {
        "slug": "kai-nova",
        "stage_name": "Kai Nova",
        "niche": Niche.TECH,
        "colour": "#7c3aed",
        "persona": "Kai Nova, 26, a former embedded-systems engineer turned tech explainer. Curious, "
        "slightly nerdy, allergic to hype: every claim gets a benchmark or it does not make the video. "
        "中文为主，夹杂少量英文术语。",
        "speaking_style": "Fast and upbeat; opens with a question, uses one hands-on demo per video, "
        "ends with 'Stay curious.'",
        "content_focus": ["AI models", "chips", "smartphones", "open source", "端侧大模型"],
        "excluded_keywords": ["leaks without source", "crypto trading tips", "politics"],
        "voice": "Kai · 清亮男声 (zero-shot)",
        "wardrobes": ["Black Tech Hoodie", "Neon Streetwear Jacket"],
        "sources": ["36Kr 快讯", "Reuters · World News"],
        "look": {"skin": "#e0b48f", "hair": "#1a1a2e", "hair_style": "short", "outfit": "#111827"},
    },
]

SCHEDULES = [
    {
        "artist": "luna-chen",
        "title": "Luna 财经早晚报",
        "period": Schedule.Period.WEEKLY,
        "weekdays": ["monday", "wednesday", "friday"],
        "times": ["09:00", "18:30"],
        "brief": "今天市场最值得普通投资者关注的一件事，30 秒讲清影响和一个风险。",
    },
    {
        "artist": "kai-nova",
        "title": "Kai 半月科技盘点",
        "period": Schedule.Period.MONTHLY,
        "month_days": [1, 15],
        "times": ["12:00"],
        "brief": "过去两周最重要的三条科技新闻，每条一句话讲清它对普通用户意味着什么。",
    },
]

POSTS = [
    {
        "artist": "luna-chen",
        "title": "降息预期下的三条投资主线",
        "wardrobe": "Navy Business Suit",
        "source": "华尔街见闻 · 7x24 快讯",
        "brief": "美联储释放降息信号后，普通投资者该怎么看债券、黄金和高股息？30 秒讲清三条主线和一个风险。",
        "submit": False,
        "shots": [
            (ShotKind.A_ROLL, "4.5", True, "利率一降，你的钱会自己搬家。今天 30 秒，讲清楚它会搬去哪。", ""),
            (
                ShotKind.B_ROLL,
                "5.0",
                False,
                "",
                "Animated line chart of the US federal funds rate 2022-2025 peaking then curving down, "
                "teal on dark navy, clean financial-news style",
            ),
            (ShotKind.A_ROLL, "6.0", False, "第一条主线：长久期债券。利率往下走，早买的高票息债券就更值钱。", ""),
            (
                ShotKind.PRODUCT,
                "4.0",
                True,
                "",
                "Macro close-up of a stack of gold bars on black velvet, soft studio rim light, shallow depth of field",
            ),
            (
                ShotKind.A_ROLL,
                "6.5",
                False,
                "第二是黄金，第三是稳定分红的高股息股。但记住：降息往往意味着经济在降温。",
                "",
            ),
            (
                ShotKind.B_ROLL,
                "4.0",
                False,
                "",
                "Title card: 投资有风险，决策需独立, white text on teal gradient, subtle coin particles",
            ),
        ],
    },
    {
        "artist": "kai-nova",
        "title": "三分钟看懂端侧大模型",
        "wardrobe": "Black Tech Hoodie",
        "source": "36Kr 快讯",
        "brief": "Why phone makers now run LLMs on-device: privacy, latency, cost. One hands-on demo, one caveat.",
        "submit": True,
        "shots": [
            (ShotKind.A_ROLL, "5.0", True, "你的手机，已经能离线跑大模型了。Sounds like hype? 我们测一下。", ""),
            (
                ShotKind.PRODUCT,
                "6.0",
                False,
                "",
                "Slow orbit around a flagship smartphone on a glass desk, screen shows a chat app answering offline, "
                "purple neon reflections",
            ),
            (ShotKind.A_ROLL, "7.0", False, "关键是 NPU 加上 4-bit 量化：模型小到几个 GB，延迟低到不用等网络。", ""),
            (
                ShotKind.B_ROLL,
                "5.0",
                False,
                "",
                "Motion graphic: a 16-bit weight block shrinking into a 4-bit block, labels 16GB -> 4GB, "
                "dark grid background",
            ),
        ],
    },
]

# --------------------------------------------------------------------------- drawing


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    value = hex_colour.lstrip("#")
    return tuple(int(value[i : i + 2], 16) for i in (0, 2, 4))


def _mix(a: str | tuple, b: str | tuple, t: float) -> tuple[int, int, int]:
    """The colour `t` of the way from `a` to `b`."""
    a = _rgb(a) if isinstance(a, str) else a
    b = _rgb(b) if isinstance(b, str) else b
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b, strict=True))


def _font(size: int) -> ImageFont.ImageFont:
    # Pillow's bundled font: the same everywhere, no system fonts needed.
    return ImageFont.load_default(size=size)


def _gradient(size: tuple[int, int], top, bottom) -> Image.Image:
    width, height = size
    img = Image.new("RGB", size)
    draw = ImageDraw.Draw(img)
    for y in range(height):
        draw.line([(0, y), (width, y)], fill=_mix(top, bottom, y / max(height - 1, 1)))
    return img


def _png(img: Image.Image, final_size: tuple[int, int]) -> bytes:
    # Everything is drawn at twice the size and scaled down: cheap anti-aliasing.
    buffer = io.BytesIO()
    img.resize(final_size, Image.Resampling.LANCZOS).save(buffer, "PNG")
    return buffer.getvalue()


def _head(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, look: dict, *, back: bool) -> None:
    """A stylised head of radius `r` centred on (cx, cy); `back` draws the hair behind it."""
    hair, skin = look["hair"], look["skin"]
    if back:
        if look["hair_style"] == "long":
            draw.rounded_rectangle([cx - 1.18 * r, cy - 1.05 * r, cx + 1.18 * r, cy + 1.9 * r], r, fill=hair)
        return
    for side in (-1, 1):  # ears
        draw.ellipse(
            [cx + side * 0.92 * r - 0.16 * r, cy - 0.05 * r, cx + side * 0.92 * r + 0.16 * r, cy + 0.4 * r],
            fill=_mix(skin, "#000000", 0.06),
        )
    draw.ellipse([cx - r, cy - 1.15 * r, cx + r, cy + 1.15 * r], fill=skin)  # face
    # Hair on top: a cap cut straight (long) or in spikes (short).
    draw.chord([cx - 1.08 * r, cy - 1.3 * r, cx + 1.08 * r, cy + 0.45 * r], 180, 360, fill=hair)
    if look["hair_style"] == "long":
        draw.pieslice([cx - 1.1 * r, cy - 1.25 * r, cx + 0.5 * r, cy + 0.2 * r], 180, 270, fill=hair)
    else:
        # Short tufts swept to one side.
        for i in range(6):
            x = cx - 0.95 * r + i * 0.36 * r
            lift = 0.12 * r * math.sin(math.pi * i / 5)
            draw.polygon(
                [(x - 0.2 * r, cy - 0.7 * r), (x + 0.32 * r, cy - 1.38 * r - lift), (x + 0.4 * r, cy - 0.7 * r)],
                fill=hair,
            )
    eye_y = cy + 0.05 * r
    for side in (-1, 1):
        ex = cx + side * 0.38 * r
        draw.ellipse([ex - 0.17 * r, eye_y - 0.12 * r, ex + 0.17 * r, eye_y + 0.12 * r], fill="white")
        draw.ellipse([ex - 0.09 * r, eye_y - 0.09 * r, ex + 0.09 * r, eye_y + 0.09 * r], fill="#1f2937")
        draw.ellipse([ex - 0.02 * r, eye_y - 0.06 * r, ex + 0.03 * r, eye_y - 0.01 * r], fill="white")
        draw.arc(
            [ex - 0.22 * r, eye_y - 0.42 * r, ex + 0.22 * r, eye_y - 0.12 * r],
            200,
            340,
            fill=hair,
            width=max(2, round(0.06 * r)),
        )
        draw.ellipse(
            [ex - 0.16 * r + side * 0.1 * r, cy + 0.32 * r, ex + 0.16 * r + side * 0.1 * r, cy + 0.48 * r],
            fill=_mix(skin, "#f43f5e", 0.35),
        )
    draw.line(
        [(cx, cy + 0.12 * r), (cx - 0.07 * r, cy + 0.36 * r), (cx + 0.03 * r, cy + 0.38 * r)],
        fill=_mix(skin, "#000000", 0.25),
        width=max(2, round(0.035 * r)),
    )
    draw.arc(
        [cx - 0.3 * r, cy + 0.3 * r, cx + 0.3 * r, cy + 0.72 * r],
        20,
        160,
        fill="#9f1239",
        width=max(2, round(0.06 * r)),
    )


def face_anchor_png(*, name: str, colour: str, look: dict, side: int = 768) -> bytes:
    """A square head-and-shoulders avatar on the artist's colour, with initials."""
    s = side * 2
    img = _gradient((s, s), _mix(colour, "#ffffff", 0.35), _mix(colour, "#000000", 0.35))
    draw = ImageDraw.Draw(img)
    cx, cy, r = s / 2, s * 0.42, s * 0.2
    draw.ellipse([cx - 1.9 * r, cy - 1.9 * r, cx + 1.9 * r, cy + 1.9 * r], fill=_mix(colour, "#ffffff", 0.5))
    _head(draw, cx, cy, r, look, back=True)
    # Shoulders, neck and a V collar.
    draw.rounded_rectangle([cx - 2.1 * r, cy + 1.45 * r, cx + 2.1 * r, s + r], round(0.9 * r), fill=look["outfit"])
    draw.rectangle([cx - 0.3 * r, cy + 0.8 * r, cx + 0.3 * r, cy + 1.6 * r], fill=_mix(look["skin"], "#000000", 0.08))
    draw.polygon(
        [(cx - 0.55 * r, cy + 1.45 * r), (cx, cy + 2.2 * r), (cx + 0.55 * r, cy + 1.45 * r)], fill=look["skin"]
    )
    _head(draw, cx, cy, r, look, back=False)
    # Initials badge, bottom right.
    initials = "".join(part[0] for part in name.split()[:2]).upper()
    br = s * 0.1
    bx, by = s - 1.5 * br, s - 1.5 * br
    draw.ellipse([bx - br, by - br, bx + br, by + br], fill="white")
    draw.ellipse([bx - 0.86 * br, by - 0.86 * br, bx + 0.86 * br, by + 0.86 * br], fill=colour)
    draw.text((bx, by), initials, font=_font(round(br * 0.95)), fill="white", anchor="mm")
    return _png(img, (side, side))


def _figure(draw: ImageDraw.ImageDraw, cx: float, top: float, h: float, look: dict, pose: str) -> None:
    """A standing figure `h` tall whose head starts at `top`; pose 'stand', 'wave' or 'point'."""
    r = h * 0.065
    head_cy = top + 1.15 * r
    skin, outfit = look["skin"], look["outfit"]
    trousers = _mix(outfit, "#000000", 0.35)
    shoulder_y, hip_y, foot_y = top + 0.2 * h, top + 0.54 * h, top + 0.97 * h
    limb = round(0.04 * h)
    _head(draw, cx, head_cy, r, look, back=True)
    # Legs and shoes.
    for side in (-1, 1):
        x = cx + side * 0.035 * h
        draw.line([(x, hip_y - 0.02 * h), (x + side * 0.01 * h, foot_y - 0.03 * h)], fill=trousers, width=limb)
        draw.rounded_rectangle(
            [x - 0.04 * h + side * 0.02 * h, foot_y - 0.045 * h, x + 0.04 * h + side * 0.03 * h, foot_y],
            round(0.015 * h),
            fill="#111111",
        )
    # Arms: both down, or the right one raised.
    hand = round(0.028 * h)
    for side in (-1, 1):
        sx = cx + side * 0.095 * h
        if side == 1 and pose == "wave":
            end = (sx + 0.09 * h, shoulder_y - 0.16 * h)
        elif side == 1 and pose == "point":
            end = (sx + 0.21 * h, shoulder_y + 0.05 * h)
        else:
            end = (sx + side * 0.03 * h, hip_y + 0.01 * h)
        draw.line([(sx, shoulder_y + 0.02 * h), end], fill=outfit, width=limb)
        draw.ellipse([end[0] - hand, end[1] - hand, end[0] + hand, end[1] + hand], fill=skin)
    # Neck, torso, collar.
    draw.rectangle([cx - 0.35 * r, head_cy + 0.9 * r, cx + 0.35 * r, shoulder_y + 0.02 * h], fill=skin)
    draw.rounded_rectangle([cx - 0.1 * h, shoulder_y, cx + 0.1 * h, hip_y], round(0.03 * h), fill=outfit)
    draw.polygon([(cx - 0.05 * h, shoulder_y), (cx, shoulder_y + 0.08 * h), (cx + 0.05 * h, shoulder_y)], fill=skin)
    _head(draw, cx, head_cy, r, look, back=False)


def full_body_png(*, colour: str, look: dict, pose: str = "stand", size: tuple[int, int] = (576, 1024)) -> bytes:
    w, h = size[0] * 2, size[1] * 2
    img = _gradient((w, h), _mix(colour, "#ffffff", 0.75), _mix(colour, "#ffffff", 0.25))
    draw = ImageDraw.Draw(img)
    draw.ellipse([w * 0.22, h * 0.9, w * 0.78, h * 0.96], fill=_mix(colour, "#000000", 0.2))  # floor shadow
    _figure(draw, w / 2, h * 0.05, h * 0.88, look, pose)
    return _png(img, size)


def backdrop_png(*, colour: str, niche: str, size: tuple[int, int] = (1280, 720)) -> bytes:
    """A studio set: a wall screen with a niche motif (rising bars or a circuit) behind a desk."""
    w, h = size[0] * 2, size[1] * 2
    img = _gradient((w, h), _mix(colour, "#000000", 0.65), _mix(colour, "#000000", 0.2))
    draw = ImageDraw.Draw(img)
    screen = [w * 0.18, h * 0.1, w * 0.82, h * 0.62]
    draw.rounded_rectangle(screen, round(h * 0.02), fill="#0b1120")
    x0, y0, x1, y1 = screen
    accent = _mix(colour, "#ffffff", 0.45)
    if niche == Niche.FINANCE:
        bars = [0.35, 0.5, 0.42, 0.62, 0.58, 0.75, 0.7, 0.88]
        bw = (x1 - x0) / (len(bars) * 1.6 + 1.0)
        for i, v in enumerate(bars):
            bx = x0 + bw * (0.8 + i * 1.6)
            draw.rectangle(
                [bx, y1 - (y1 - y0) * 0.85 * v, bx + bw, y1 - (y1 - y0) * 0.08], fill="#10b981" if i % 3 else "#f43f5e"
            )
        points = [(x0 + bw * (1.3 + i * 1.6), y1 - (y1 - y0) * 0.85 * v - h * 0.02) for i, v in enumerate(bars)]
        draw.line(points, fill=accent, width=round(h * 0.006), joint="curve")
    else:
        step = (x1 - x0) / 12
        for i in range(1, 12):
            draw.line([(x0 + i * step, y0), (x0 + i * step, y1)], fill="#1e293b", width=2)
        for j in range(1, 7):
            y = y0 + j * (y1 - y0) / 7
            draw.line([(x0, y), (x1, y)], fill="#1e293b", width=2)
        nodes = [(2, 2), (5, 1), (5, 4), (8, 3), (10, 5), (3, 5), (8, 6)]
        coords = [(x0 + a * step, y0 + b * (y1 - y0) / 7) for a, b in nodes]
        for a, b in [(0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 2), (3, 6)]:
            draw.line([coords[a], coords[b]], fill=accent, width=round(h * 0.006))
        for x, y in coords:
            draw.ellipse([x - h * 0.015, y - h * 0.015, x + h * 0.015, y + h * 0.015], fill=accent)
    draw.rounded_rectangle(screen, round(h * 0.02), outline=_mix(colour, "#ffffff", 0.4), width=round(h * 0.008))
    draw.polygon(
        [(w * 0.05, h), (w * 0.2, h * 0.72), (w * 0.8, h * 0.72), (w * 0.95, h)], fill=_mix(colour, "#ffffff", 0.15)
    )  # desk
    draw.rectangle([w * 0.2, h * 0.72, w * 0.8, h * 0.74], fill=_mix(colour, "#ffffff", 0.55))
    return _png(img, size)


def wardrobe_png(*, name: str, colour: str, shape: str, side: int = 512) -> bytes:
    """A flat garment silhouette with its name underneath."""
    s = side * 2
    img = _gradient((s, s), "#f8fafc", "#e2e8f0")
    draw = ImageDraw.Draw(img)
    outline = "#94a3b8" if _rgb(colour)[0] > 200 else _mix(colour, "#000000", 0.4)

    def pt(x: float, y: float) -> tuple[float, float]:
        return (s * x, s * y)

    body = [
        pt(0.35, 0.16),
        pt(0.2, 0.22),
        pt(0.08, 0.5),
        pt(0.18, 0.55),
        pt(0.28, 0.36),
        pt(0.28, 0.78),
        pt(0.72, 0.78),
        pt(0.72, 0.36),
        pt(0.82, 0.55),
        pt(0.92, 0.5),
        pt(0.8, 0.22),
        pt(0.65, 0.16),
    ]
    draw.polygon(body, fill=colour, outline=outline, width=4)
    if shape == "hoodie":
        draw.ellipse([*pt(0.36, 0.08), *pt(0.64, 0.28)], fill=colour, outline=outline, width=4)
        draw.ellipse([*pt(0.42, 0.14), *pt(0.58, 0.26)], fill=_mix(colour, "#ffffff", 0.15))
        draw.rounded_rectangle([*pt(0.38, 0.56), *pt(0.62, 0.68)], 12, outline=outline, width=4)
    elif shape == "jacket":
        draw.polygon([pt(0.4, 0.16), pt(0.5, 0.42), pt(0.6, 0.16)], fill="#f8fafc", outline=outline, width=4)
        draw.line([pt(0.5, 0.42), pt(0.5, 0.78)], fill=outline, width=4)
        for y in (0.5, 0.6):
            draw.ellipse([*pt(0.52, y), *pt(0.545, y + 0.025)], fill=outline)
    else:
        draw.polygon([pt(0.42, 0.16), pt(0.5, 0.26), pt(0.58, 0.16)], fill="#e2e8f0", outline=outline, width=4)
        for y in (0.34, 0.46, 0.58, 0.7):
            draw.ellipse([*pt(0.49, y), *pt(0.51, y + 0.02)], fill=outline)
    draw.text(pt(0.5, 0.89), name, font=_font(round(s * 0.06)), fill="#0f172a", anchor="mm")
    return _png(img, (side, side))


def voice_sample_wav(*, seconds: float = 5.0, rate: int = 16000) -> bytes:
    """A speech-like hum: a gliding pitch with harmonics, chopped into syllables."""
    samples = array("h")
    for i in range(int(seconds * rate)):
        t = i / rate
        pitch = 190 + 30 * math.sin(2 * math.pi * 0.7 * t)
        phase = 2 * math.pi * pitch * t
        tone = math.sin(phase) + 0.5 * math.sin(2 * phase) + 0.25 * math.sin(3 * phase)
        syllable = math.sin(math.pi * ((t * 4.0) % 1.0)) ** 2  # four syllables a second
        fade = min(1.0, t / 0.05, (seconds - t) / 0.05)
        samples.append(int(7000 * tone * syllable * fade))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return buffer.getvalue()


# --------------------------------------------------------------------------- seeding


@dataclass
class Tally:
    """How many rows of each kind were made, and how many were already there."""

    created: dict[str, int] = field(default_factory=dict)
    existing: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str, created: bool) -> None:
        bucket = self.created if created else self.existing
        bucket[kind] = bucket.get(kind, 0) + 1


class DemoSeeder:
    """Makes each missing demo row; leaves every existing one untouched."""

    def __init__(self, *, password: str):
        self.password = password
        self.tally = Tally()
        self.new_users: set[str] = set()

    def run(self) -> None:
        users = {spec["username"]: self.user(spec) for spec in USERS}
        voices = {spec["name"]: self.voice(spec) for spec in VOICES}
        wardrobes = {spec["name"]: self.wardrobe(spec) for spec in WARDROBES}
        sources = {spec["name"]: self.source(spec) for spec in SOURCES}
        members = [users["producer"], users["reviewer"]]
        artists = {
            spec["slug"]: self.artist(spec, voices=voices, wardrobes=wardrobes, sources=sources, members=members)
            for spec in ARTISTS
        }
        for spec in SCHEDULES:
            self.schedule(spec, artist=artists[spec["artist"]])
        for spec in POSTS:
            self.post(
                spec, artist=artists[spec["artist"]], wardrobes=wardrobes, sources=sources, actor=users["producer"]
            )

    def user(self, spec: dict):
        User = get_user_model()
        user = User.objects.filter(username=spec["username"]).first()
        self.tally.count("users", created=user is None)
        if user is not None:
            return user
        try:
            group = Group.objects.get(name=spec["role"])
        except Group.DoesNotExist:
            raise CommandError(f"The {spec['role']} group is missing: run `manage.py migrate` first.") from None
        user = User(
            username=spec["username"],
            first_name=spec["first_name"],
            last_name=spec["last_name"],
            email=f"{spec['username']}@demo.invalid",
            is_staff=True,
        )
        user.set_password(self.password)
        user.full_clean()
        user.save()
        user.groups.add(group)
        self.new_users.add(user.username)
        return user

    def voice(self, spec: dict) -> Voice:
        voice = Voice.objects.filter(name=spec["name"]).first()
        self.tally.count("voices", created=voice is None)
        if voice is not None:
            return voice
        voice = Voice(
            name=spec["name"],
            speaker_id=spec.get("speaker_id", ""),
            sample_transcription=spec.get("sample_transcription", ""),
            notes=spec["notes"],
        )
        if "sample" in spec:
            voice.sample_audio = ContentFile(voice_sample_wav(), name=spec["sample"])
        voice.full_clean()
        voice.save()
        return voice

    def wardrobe(self, spec: dict) -> Wardrobe:
        wardrobe = Wardrobe.objects.filter(name=spec["name"]).first()
        self.tally.count("wardrobes", created=wardrobe is None)
        if wardrobe is not None:
            return wardrobe
        preview = wardrobe_png(name=spec["name"], colour=spec["colour"], shape=spec["shape"])
        wardrobe = Wardrobe(
            name=spec["name"],
            category=spec["category"],
            comfy_payload=spec["payload"],
            preview=ContentFile(preview, name=f"{_file_stem(spec['name'])}.png"),
        )
        wardrobe.full_clean()
        wardrobe.save()
        return wardrobe

    def source(self, spec: dict) -> Source:
        source = Source.objects.filter(name=spec["name"]).first()
        self.tally.count("sources", created=source is None)
        if source is not None:
            return source
        source = Source(**spec)
        source.full_clean()
        source.save()
        return source

    def artist(self, spec: dict, *, voices: dict, wardrobes: dict, sources: dict, members: list) -> Artist:
        artist = Artist.objects.filter(slug=spec["slug"]).first()
        self.tally.count("artists", created=artist is None)
        if artist is not None:
            return artist
        slug, colour, look = spec["slug"], spec["colour"], spec["look"]
        artist = Artist(
            slug=slug,
            stage_name=spec["stage_name"],
            niche=spec["niche"],
            colour=colour,
            persona=spec["persona"],
            speaking_style=spec["speaking_style"],
            content_focus=spec["content_focus"],
            excluded_keywords=spec["excluded_keywords"],
            voice=voices[spec["voice"]],
            face_anchor=ContentFile(
                face_anchor_png(name=spec["stage_name"], colour=colour, look=look), name=f"{slug}-face.png"
            ),
            full_body=ContentFile(full_body_png(colour=colour, look=look), name=f"{slug}-full-body.png"),
        )
        artist.full_clean()
        artist.save()
        artist.allowed_wardrobes.set([wardrobes[name] for name in spec["wardrobes"]])
        artist.default_sources.set([sources[name] for name in spec["sources"]])
        artist.members.set(members)
        images = [
            (
                ArtistImage.Kind.POSE,
                "Waving hello (intro shots)",
                full_body_png(colour=colour, look=look, pose="wave"),
                "pose-wave",
            ),
            (
                ArtistImage.Kind.BACKDROP,
                f"{spec['stage_name']} studio set",
                backdrop_png(colour=colour, niche=spec["niche"]),
                "studio",
            ),
        ]
        for kind, caption, data, stem in images:
            image = ArtistImage(
                artist=artist, kind=kind, caption=caption, image=ContentFile(data, name=f"{slug}-{stem}.png")
            )
            image.full_clean()
            image.save()
            self.tally.count("artist images", created=True)
        return artist

    def schedule(self, spec: dict, *, artist: Artist) -> Schedule:
        schedule = Schedule.objects.filter(artist=artist, title=spec["title"]).first()
        self.tally.count("schedules", created=schedule is None)
        if schedule is not None:
            return schedule
        schedule = Schedule(
            artist=artist,
            title=spec["title"],
            kind=Schedule.Kind.ROUTINE,
            period=spec["period"],
            weekdays=spec.get("weekdays", []),
            month_days=spec.get("month_days", []),
            times=spec["times"],
            timezone="Asia/Shanghai",
            brief=spec.get("brief", ""),
        )
        return schedule_save(schedule=schedule)

    def post(self, spec: dict, *, artist: Artist, wardrobes: dict, sources: dict, actor) -> Post:
        post = Post.objects.filter(artist=artist, title=spec["title"]).first()
        self.tally.count("posts", created=post is None)
        if post is not None:
            return post
        # A producer may have taken the wardrobe off an existing artist's list since the last run.
        wardrobe = artist.allowed_wardrobes.filter(pk=wardrobes[spec["wardrobe"]].pk).first()
        post = post_create(
            actor=actor,
            title=spec["title"],
            artist=artist,
            wardrobe=wardrobe,
            brief=spec["brief"],
            created_from_source=sources[spec["source"]],
        )
        shots = [
            Shot(kind=kind, duration_seconds=Decimal(seconds), locked=locked, script=script, visual_prompt=prompt)
            for kind, seconds, locked, script, prompt in spec["shots"]
        ]
        post = storyboard_apply(
            post=post, actor=actor, expected_version=post.version, change=StoryboardChange(shots=shots)
        )
        self.tally.created["shots"] = self.tally.created.get("shots", 0) + len(shots)
        if spec["submit"]:
            post = post_submit_for_review(post_id=post.pk, actor=actor, expected_version=post.version)
        return post


def _file_stem(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


class Command(BaseCommand):
    help = (
        "Load a small demo to browse in the admin: demo users (producer, reviewer, ops), two voices, "
        "four wardrobes, three sources, two artists with generated visuals, a schedule each and two posts "
        "(one draft, one waiting for review). Safe to run again: existing rows are never changed. "
        "LOCAL DEMO ONLY: the users share one documented password, MCN_DEMO_PASSWORD "
        f"(default {DEFAULT_PASSWORD!r}) or --password."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--password",
            help=f"Password for newly created demo users (default: $MCN_DEMO_PASSWORD, else {DEFAULT_PASSWORD!r}). "
            "Existing users keep theirs.",
        )
        parser.add_argument("--url", default=DEFAULT_URL, help=f"Admin address to print (default {DEFAULT_URL}).")
        parser.add_argument("--quiet", action="store_true", help="Print nothing.")

    def handle(self, *args, password: str | None, url: str, quiet: bool, **options):
        password = password or env_str("MCN_DEMO_PASSWORD") or DEFAULT_PASSWORD
        seeder = DemoSeeder(password=password)
        with transaction.atomic():
            if Group.objects.filter(name__in=roles.ROLES).count() < len(roles.ROLES):
                # A flushed or hand-cleaned database: bring the roles back as the migration made them.
                roles.sync_roles(django_apps)
            seeder.run()
        if quiet or options["verbosity"] == 0:
            return
        if not settings.DEBUG and password == DEFAULT_PASSWORD and seeder.new_users:
            self.stderr.write(
                self.style.WARNING(
                    "DEBUG is off and the demo users got the published default password: "
                    "never run seed_demo against a reachable production site."
                )
            )
        self._report(seeder, password=password, url=url)

    def _report(self, seeder: DemoSeeder, *, password: str, url: str) -> None:
        tally = seeder.tally
        kinds = list(dict.fromkeys([*tally.created, *tally.existing]))
        made = ", ".join(f"{tally.created[k]} {k}" for k in kinds if tally.created.get(k)) or "nothing"
        kept = ", ".join(f"{tally.existing[k]} {k}" for k in kinds if tally.existing.get(k)) or "nothing"
        self.stdout.write(self.style.SUCCESS(f"Demo data ready. Created: {made}."))
        self.stdout.write(f"Already there, left unchanged: {kept}.")
        self.stdout.write(f"\nLog in at {url}")
        for spec in USERS:
            name = spec["username"]
            shown = password if name in seeder.new_users else "(unchanged: this user existed before)"
            self.stdout.write(f"  {spec['role']:<9} username: {name:<9} password: {shown}")
