"""The brand colour as text stays readable: /branding.css gives links and outline buttons the brand's
readable ink (at least 4.5:1 on the portal's light backgrounds), and keeps the brand itself for
backgrounds, with black or white text on it."""
from __future__ import annotations

import re

import pytest

from portal.services.settings import INK_BACKGROUND, readable_ink_color


def luminance(hex_color: str) -> float:
    channels = [int(hex_color[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def variables(css: str) -> dict[str, str]:
    return dict(re.findall(r"(--[\w-]+):([^;}]+)", css))


@pytest.mark.parametrize("brand", ["#fde047", "#ffffff", "#22c55e", "#3355cc", "#0f766e", "#000000"])
def test_the_brand_as_text_reads_on_white_and_grey(make, client, brand):
    make.business(brand_color=brand)
    css = variables(client.get("/branding.css").get_data(as_text=True))
    ink = css["--pico-primary"]
    assert css["--brand-ink"] == ink == readable_ink_color(brand)
    for background in ("#ffffff", INK_BACKGROUND):
        assert contrast(ink, background) >= 4.5, f"{ink} on {background}"
    assert css["--brand"] == css["--pico-primary-background"] == brand, "buttons and bands keep the brand"
    assert contrast(css["--pico-primary-inverse"], brand) >= 4.5, "text on the brand"


def test_a_dark_enough_brand_is_its_own_ink(make, client):
    make.business(brand_color="#0f766e")
    assert variables(client.get("/branding.css").get_data(as_text=True))["--pico-primary"] == "#0f766e"


def test_a_pale_brand_keeps_its_hue_when_darkened():
    assert readable_ink_color("#fde047") == "#7e7024"  # the yellow at 50 %, not black
