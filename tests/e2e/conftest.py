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
