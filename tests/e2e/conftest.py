"""Fixtures the browser journeys share (the app, the live server and the browser are in tests/conftest.py)."""
from __future__ import annotations

import pytest

from tests.support.browser import Problems


@pytest.fixture
def problems(page) -> Problems:
    found = Problems()
    found.watch(page)
    yield found
    found.assert_none()


@pytest.fixture
def axe_page(browser, live_server):
    """A page whose context lets a test inject axe past the app's Content-Security-Policy (which
    allows no inline script); the pages themselves are served as usual."""
    context = browser.new_context(base_url=live_server, bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()
