"""Breadcrumbs fit a phone: a long client name in the middle of "Clients / <name> / New contact"
wraps, and Pico's "/" separator flows with the text instead of sticking out past the edge."""
from __future__ import annotations

import re

import pytest

from tests.support.browser import sign_in

pytestmark = pytest.mark.browser

WIDE = "() => [document.documentElement.scrollWidth, window.innerWidth]"


@pytest.mark.parametrize("width", (375, 1280))
def test_breadcrumbs_with_a_long_client_name_fit(page, live_server, make, width):
    staff = make.staff()
    client = make.client("Acme Robotics, Industrial Automation and Very Long Names Incorporated Worldwide Ltd")
    page.set_viewport_size({"width": width, "height": 800})
    sign_in(page, "staff", staff.email, staff.plain_password)
    page.wait_for_url(re.compile(r"/staff/"))
    for path in (f"/staff/clients/{client.id}/contacts/new", f"/staff/clients/{client.id}/charges/new"):
        page.goto(path)
        page.wait_for_load_state("load")
        scroll, inner = page.evaluate(WIDE)
        assert scroll <= inner, f"{path} is {scroll} px wide in a {inner} px window"
