"""The colours of both themes (static/sfnui/app.css, `light-dark(light, dark)`):
text meets WCAG AA (4.5:1) on the backgrounds it is drawn on, in each."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

CSS = Path(__file__).resolve().parents[2] / "static" / "sfnui" / "app.css"
STATUSES = ["running", "succeeded", "failed", "timed-out", "aborted", "pending-redrive", "warn"]
# (text, background): the badges, the page and its cards, links, buttons.
PAIRS = [
    *((s, f"{s}-bg") for s in STATUSES),
    *((s, "card") for s in STATUSES),
    *(("fg", f"{s}-bg") for s in STATUSES),
    ("fg", "bg"),
    ("fg", "card"),
    ("muted", "bg"),
    ("muted", "card"),
    ("accent", "card"),
    ("accent", "bg"),
    ("accent", "accent-bg"),
    ("on-accent", "accent"),
    ("on-accent", "failed"),
    ("fg", "row-hover"),
    ("fg", "accent-bg"),
    ("muted", "th-bg"),
    ("fg", "target-bg"),
]


def palette() -> dict[str, tuple[str, str]]:
    found = re.findall(
        r"--([\w-]+):\s*light-dark\((#[0-9a-fA-F]{3,6}),\s*(#[0-9a-fA-F]{3,6})\)", CSS.read_text()
    )
    return {name: (light, dark) for name, light, dark in found}


def luminance(colour: str) -> float:
    hex_ = colour.lstrip("#")
    if len(hex_) == 3:
        hex_ = "".join(c * 2 for c in hex_)

    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(int(hex_[i : i + 2], 16)) for i in (0, 2, 4))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_the_palette_gives_every_colour_a_light_and_a_dark_value() -> None:
    colours = palette()
    for name in {n for pair in PAIRS for n in pair}:
        assert name in colours, f"--{name} is not light-dark(...) in app.css"
    assert colours["bg"][0] != colours["bg"][1]


@pytest.mark.parametrize("theme", [0, 1], ids=["light", "dark"])
@pytest.mark.parametrize(("text", "background"), PAIRS, ids=lambda n: str(n))
def test_text_meets_wcag_aa_in_both_themes(text: str, background: str, theme: int) -> None:
    colours = palette()
    ratio = contrast(colours[text][theme], colours[background][theme])
    assert ratio >= 4.5, f"--{text} on --{background}: {ratio:.2f}:1"


def test_the_contrast_is_measured_right() -> None:
    assert round(contrast("#000", "#fff"), 1) == 21.0
    assert round(contrast("#777", "#fff"), 2) == 4.48
