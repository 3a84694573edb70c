"""The daily adoption chart: stacked bars of people per hour, by app and platform (the
rendering edge of :mod:`bzlogger.core.adoption`).

Made for an office manager to paste into the report to the provincial Department of
Information and Communications, so it is bilingual (Vietnamese / English), labelled
and readable when printed in grey. The layout is computed once as a few primitives
(rectangles, lines, texts); :func:`to_svg` writes them as SVG with no dependency, and
:func:`to_png` draws the same primitives with Pillow (imported only then): a PNG pastes
into any word processor, an SVG stays sharp at any size.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

from bzlogger.core.adoption import DailyAdoption

if TYPE_CHECKING:
    from PIL import ImageFont

WIDTH, HEIGHT = 1200, 675
FONT = "DejaVu Sans, Noto Sans, Arial, sans-serif"
#: Colours per (protocol, platform), distinguishable in grey too (light/dark alternate).
COLOURS = {
    ("bluezone", "android"): "#1565c0",
    ("bluezone", "ios"): "#90caf9",
    ("bluezone", "unknown"): "#5c6bc0",
    ("gaen", "android"): "#2e7d32",
    ("gaen", "ios"): "#a5d6a7",
    ("gaen", "unknown"): "#43a047",
}
NAMES = {"bluezone": "Bluezone", "gaen": "Exposure Notification"}
PLATFORMS = {"android": "Android", "ios": "iOS", "unknown": ""}
_FONT_FILES = ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
               "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf")
_BOLD_FONT_FILES = ("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
                    "/usr/share/fonts/truetype/noto/NotoSans-Bold.ttf")


@dataclass(frozen=True, slots=True)
class Rect:
    x: float
    y: float
    w: float
    h: float
    fill: str


@dataclass(frozen=True, slots=True)
class Line:
    x1: float
    y1: float
    x2: float
    y2: float
    stroke: str
    width: float = 1.0


@dataclass(frozen=True, slots=True)
class Text:
    """Text whose baseline starts, is centred or ends (``anchor``) at ``(x, y)``."""

    x: float
    y: float
    text: str
    size: float
    anchor: str = "start"
    bold: bool = False
    fill: str = "#212121"


Shape = Rect | Line | Text


def group_label(protocol: str, platform: str) -> str:
    """``Bluezone Android``, ``Exposure Notification`` (platform unknown) ..."""
    return " ".join(p for p in (NAMES.get(protocol, protocol), PLATFORMS.get(platform, platform))
                    if p)


def nice_step(top: float, ticks: int = 5) -> int:
    """A round tick step (1, 2, 5 x 10^k) giving about ``ticks`` intervals up to ``top``."""
    raw = max(1.0, top / ticks)
    power = 10 ** math.floor(math.log10(raw))
    return int(next(m * power for m in (1, 2, 5, 10) if m * power >= raw))


def layout(report: DailyAdoption) -> list[Shape]:
    """Every primitive of the chart, in drawing order."""
    shapes: list[Shape] = [Rect(0, 0, WIDTH, HEIGHT, "#ffffff")]
    left, right, top, bottom = 90.0, WIDTH - 40.0, 180.0, HEIGHT - 95.0
    shapes.append(Text(40, 52, "Người dùng ứng dụng qua cửa / App users at the door", 28,
                       bold=True))
    shapes.append(Text(40, 88, f"{report.day.isoformat()}  ·  ước tính số người mỗi giờ / "
                       f"estimated people per hour  ·  UTC{report.utc_offset}", 17,
                       fill="#424242"))
    shapes.append(Text(right, 52, f"{report.people}", 34, anchor="end", bold=True))
    shapes.append(Text(right, 78, "người / people", 15, anchor="end", fill="#424242"))

    hours = _shown_hours(report)
    peak = max((report.hours[i].people for i in hours), default=0)
    step = nice_step(max(peak, 1))
    y_max = step * max(1, math.ceil(max(peak, 1) * 1.08 / step))
    scale = (bottom - top) / y_max
    for value in range(0, y_max + 1, step):
        y = bottom - value * scale
        shapes.append(Line(left, y, right, y, "#e0e0e0" if value else "#616161",
                           1.0 if value else 1.5))
        shapes.append(Text(left - 10, y + 5, str(value), 14, anchor="end", fill="#616161"))
    shapes.append(Text(40, top - 16, "Số người / People", 14, fill="#616161"))

    slot = (right - left) / max(1, len(hours))
    bar = slot * 0.68
    for n, index in enumerate(hours):
        hour = report.hours[index]
        x = left + slot * n + (slot - bar) / 2
        y = bottom
        for count in hour.groups:
            if count.people:
                h = count.people * scale
                y -= h
                shapes.append(Rect(x, y, bar, h, COLOURS.get((count.protocol, count.platform),
                                                             "#9e9e9e")))
        if hour.people:
            shapes.append(Text(x + bar / 2, y - 7, str(hour.people), 14, anchor="middle",
                               bold=True))
        shapes.append(Text(x + bar / 2, bottom + 22, hour.label[:2], 14, anchor="middle",
                           fill="#424242"))
    shapes.append(Text((left + right) / 2, bottom + 46, "Giờ / Hour", 14, anchor="middle",
                       fill="#616161"))

    x = 40.0
    for protocol, platform in report.groups:
        label = group_label(protocol, platform)
        shapes.append(Rect(x, 114, 16, 16, COLOURS.get((protocol, platform), "#9e9e9e")))
        shapes.append(Text(x + 22, 128, label, 15))
        x += 22 + _text_width(label, 15) + 28
    shapes.append(Text(40, HEIGHT - 18, "Định danh xoay vòng đã được hiệu chỉnh, không lưu "
                       "thông tin cá nhân / Corrected for rotating identifiers; no one is "
                       "identified.", 13, fill="#757575"))
    return shapes


def _shown_hours(report: DailyAdoption) -> list[int]:
    """Hours with people, widened to at least 07:00-18:00 (a working day)."""
    busy = [i for i, h in enumerate(report.hours) if h.people]
    first = min([7, *busy]) if report.hours else 0
    last = max([18, *busy]) if report.hours else -1
    return list(range(first, min(last, len(report.hours) - 1) + 1))


def _text_width(text: str, size: float) -> float:
    return len(text) * size * 0.58  # DejaVu Sans' average advance


def to_svg(shapes: Sequence[Shape]) -> str:
    """The chart as an SVG document."""
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
           f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="{FONT}">']
    for shape in shapes:
        if isinstance(shape, Rect):
            out.append(f'<rect x="{shape.x:.1f}" y="{shape.y:.1f}" width="{shape.w:.1f}" '
                       f'height="{shape.h:.1f}" fill="{shape.fill}"/>')
        elif isinstance(shape, Line):
            out.append(f'<line x1="{shape.x1:.1f}" y1="{shape.y1:.1f}" x2="{shape.x2:.1f}" '
                       f'y2="{shape.y2:.1f}" stroke="{shape.stroke}" '
                       f'stroke-width="{shape.width:g}"/>')
        else:
            weight = ' font-weight="bold"' if shape.bold else ""
            out.append(f'<text x="{shape.x:.1f}" y="{shape.y:.1f}" font-size="{shape.size:g}" '
                       f'text-anchor="{shape.anchor}" fill="{shape.fill}"{weight}>'
                       f"{escape(shape.text)}</text>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def to_png(shapes: Sequence[Shape], scale: float = 1.0) -> bytes:
    """The chart as PNG bytes (needs Pillow and, for Vietnamese text, a DejaVu or Noto
    font installed: Debian's ``fonts-dejavu-core``)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (round(WIDTH * scale), round(HEIGHT * scale)), "#ffffff")
    draw = ImageDraw.Draw(image)
    fonts: dict[tuple[float, bool], ImageFont.FreeTypeFont | ImageFont.ImageFont] = {}

    def font(size: float, bold: bool) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
        key = (size, bold)
        if key not in fonts:
            fonts[key] = _load_font(size * scale, bold)
        return fonts[key]

    anchors = {"start": "ls", "middle": "ms", "end": "rs"}
    for shape in shapes:
        if isinstance(shape, Rect):
            draw.rectangle([shape.x * scale, shape.y * scale, (shape.x + shape.w) * scale - 1,
                            (shape.y + shape.h) * scale - 1], fill=shape.fill)
        elif isinstance(shape, Line):
            draw.line([shape.x1 * scale, shape.y1 * scale, shape.x2 * scale, shape.y2 * scale],
                      fill=shape.stroke, width=max(1, round(shape.width * scale)))
        else:
            draw.text((shape.x * scale, shape.y * scale), shape.text, fill=shape.fill,
                      font=font(shape.size, shape.bold), anchor=anchors[shape.anchor])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _load_font(size: float, bold: bool) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    from PIL import ImageFont

    for candidate in _BOLD_FONT_FILES if bold else _FONT_FILES:
        if Path(candidate).exists():
            return ImageFont.truetype(candidate, round(size))
    return ImageFont.load_default(round(size))
