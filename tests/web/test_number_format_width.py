"""The numbering format's field widths are capped (issue X1, point 6, last item).

``{seq:>999999999}`` used to be checked by formatting a sample, which allocates
about 1 GB. Widths and precisions over 20 are refused with a field error,
nothing is saved, and checking allocates nothing much.
"""
from __future__ import annotations

import html
import re
import tracemalloc

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.extensions import db
from portal.models import Business
from tests.support.web import post_form

SETTINGS = {
    "name": "Tidewater Studio", "brand_color": "#3355cc", "currency": "EUR", "timezone": "UTC", "locale": "en_US",
    "invoice_number_format": "INV-{year}-{seq:05d}", "payment_terms": "net", "payment_terms_days": "30",
    "accept_card": "y", "credit_note_number_format": "CN-{year}-{seq:05d}", "card_expiry_notice_days": "14",
    "autopay_timing": "on_due_date", "autopay_days_before": "3",
}
HUGE = ["{seq:>999999999}", "INV-{seq:0999999999d}", "{seq:*^999999999}", "{year:>999999999}-{seq}",
        "{seq:>21}", "{seq!s:.999999999}", "{seq:{year}}", "{seq:>{year}}", "{seq:,>999999999.2f}",
        "{seq:99999999999999999999999999999}"]


def stored_formats() -> tuple[str, str]:
    with Session(db.engine) as s:
        row = s.scalars(select(Business)).one()
        return row.invoice_number_format, row.credit_note_number_format


def field_error(page: str, field_id: str) -> str:
    match = re.search(rf'id="{field_id}-error"[^>]*>([^<]*)<', page)
    return html.unescape(match.group(1)).strip() if match else ""


@pytest.fixture
def business(make):
    return make.business(name="Tidewater Studio", currency="EUR", invoice_number_format="INV-{year}-{seq:05d}",
                         credit_note_number_format="CN-{year}-{seq:05d}")


@pytest.mark.parametrize("field", ["invoice_number_format", "credit_note_number_format"])
@pytest.mark.parametrize("fmt", HUGE)
def test_a_huge_width_is_a_field_error_and_nothing_is_saved(field, fmt, owner_client, business):
    before = stored_formats()
    tracemalloc.start()
    try:
        response = post_form(owner_client, "/staff/settings", {**SETTINGS, field: fmt})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024 * 1024, f"checking the format allocated {peak:,} bytes"  # formatting it: ~1 GB
    page = response.get_data(as_text=True)
    assert response.status_code == 422, page
    assert "Nothing was saved." in page
    assert field_error(page, field)
    assert stored_formats() == before


@pytest.mark.parametrize("fmt", ["INV-{year}-{seq:05d}", "{seq:>20}", "{seq:020d}", "N{seq}", "{year}/{month:02d}/{seq}",
                                 "{seq:x}"])
def test_ordinary_formats_are_still_accepted(fmt, owner_client, business):
    response = post_form(owner_client, "/staff/settings", {**SETTINGS, "invoice_number_format": fmt})
    assert response.status_code == 302, field_error(response.get_data(as_text=True), "invoice_number_format")
    assert stored_formats()[0] == fmt


@pytest.mark.parametrize("fmt", HUGE)
def test_checking_a_format_allocates_almost_nothing(fmt, app):
    from portal.services.settings import valid_number_format

    tracemalloc.start()
    try:
        assert valid_number_format(fmt) is False
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, peak
