"""The adoption chart: its layout, the SVG document and the PNG drawn from it."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from datetime import UTC, date

from PIL import Image

from bzlogger.adoption_chart import (
    COLOURS,
    HEIGHT,
    WIDTH,
    Rect,
    Text,
    layout,
    nice_step,
    to_png,
    to_svg,
)
from bzlogger.core.adoption import daily_adoption
from bzlogger.model import Encounter, Platform, Protocol

T0 = 1_597_622_400.0  # 2020-08-17T00:00:00Z


def encounters() -> list[Encounter]:
    found = []
    plan = {8: (Protocol.BLUEZONE, Platform.ANDROID, 12), 9: (Protocol.BLUEZONE,
                                                             Platform.IOS, 5),
            10: (Protocol.GAEN, Platform.UNKNOWN, 7)}
    serial = 0
    for hour, (protocol, platform, count) in plan.items():
        for i in range(count):
            serial += 1
            start = T0 + hour * 3600 + 100 * i + 30
            size = 12 if protocol is Protocol.BLUEZONE else 16
            found.append(Encounter(protocol, serial.to_bytes(size, "big"), start, start + 20,
                                   20, -60, -65.0, -65.0, platform=platform))
    # Hour 8 also has Bluezone iOS people (stacked above Android).
    for i in range(3):
        start = T0 + 8 * 3600 + 1000 + 60 * i
        found.append(Encounter(Protocol.BLUEZONE, (900 + i).to_bytes(12, "big"), start,
                               start + 20, 20, -60, -65.0, -65.0, platform=Platform.IOS))
    return found


def test_bars_are_proportional_and_stacked() -> None:
    report = daily_adoption(encounters(), date(2020, 8, 17), UTC)
    shapes = layout(report)
    bars = [s for s in shapes if isinstance(s, Rect) and s.fill in COLOURS.values()
            and s.w < 100]
    legend = [b for b in bars if b.w == 16]
    bars = [b for b in bars if b.w != 16]
    assert len(legend) == 3  # Bluezone Android, Bluezone iOS, Exposure Notification
    heights: dict[float, float] = {}
    for bar in bars:
        heights[bar.x] = heights.get(bar.x, 0.0) + bar.h
    per_person = {round(h / n, 6) for h, n in zip(
        (heights[x] for x in sorted(heights)), [15, 5, 7], strict=True)}
    assert len(per_person) == 1  # one scale for every bar
    labels = {s.text for s in shapes if isinstance(s, Text)}
    assert {"15", "5", "7", "27"} <= labels  # bar totals and the day's total
    assert {"07", "08", "18"} <= labels  # at least a working day on the axis


def test_svg_is_well_formed_and_png_is_drawn() -> None:
    shapes = layout(daily_adoption(encounters(), date(2020, 8, 17), UTC))
    root = ET.fromstring(to_svg(shapes))
    assert root.get("width") == str(WIDTH) and root.get("height") == str(HEIGHT)
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "Người dùng ứng dụng qua cửa / App users at the door" in texts
    image = Image.open(io.BytesIO(to_png(shapes)))
    assert image.size == (WIDTH, HEIGHT)
    colours = {c for _, c in image.getcolors(maxcolors=1 << 16) or []}
    assert (0x15, 0x65, 0xC0) in colours  # Bluezone Android bars were painted


def test_empty_day_and_nice_steps() -> None:
    shapes = layout(daily_adoption([], date(2020, 8, 17), UTC))
    assert not [s for s in shapes if isinstance(s, Rect) and s.fill in COLOURS.values()]
    assert [nice_step(v) for v in (1, 7, 23, 110, 480)] == [1, 2, 5, 50, 100]
