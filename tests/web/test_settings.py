"""The owner edits the business's settings and branding on /staff/settings."""
from __future__ import annotations

import html
import io
import re
import struct
import zlib

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.extensions import db
from portal.models import Business, Event
from tests.support.web import post_form


def tiny_png(rgb=(15, 118, 110)) -> bytes:
    """A real 1×1 PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"\x00" + bytes(rgb)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


ORIGINAL = {
    "name": "Tidewater Studio", "legal_name": None, "email": None, "brand_color": "#3355cc", "currency": "USD",
    "timezone": "UTC", "locale": "en_US", "invoice_number_format": "INV-{year}-{seq:05d}",
    "payment_terms_days": 30, "invoice_footer": None,
}

VALID = {
    "name": "Harbour & Co",
    "legal_name": "Harbour and Company Ltd",
    "email": "billing@harbour.example",
    "phone": "+44 117 000 0000",
    "website": "https://harbour.example",
    "address": "1 Quay Street\nBristol BS1 4DJ",
    "tax_id": "GB123456789",
    "brand_color": "#aa3300",
    "currency": "gbp",
    "timezone": "Europe/London",
    "locale": "en_GB",
    "invoice_number_format": "HC-{year}-{seq:04d}",
    "payment_terms_days": "21",
    "invoice_footer": "Thanks for your business.",
    "accept_card": "y",  # the checkboxes a browser sends as ticked
}


@pytest.fixture
def business(make):
    return make.business(**ORIGINAL)


def stored() -> dict:
    """The business row as the database has it."""
    with Session(db.engine) as s:
        row = s.scalars(select(Business)).one()
        values = {k: getattr(row, k) for k in ORIGINAL}
        values["logo"] = row.logo
        values["logo_content_type"] = row.logo_content_type
        return values


def settings_events() -> list[Event]:
    with Session(db.engine) as s:
        rows = s.scalars(select(Event).where(Event.type == "settings.updated").order_by(Event.id)).all()
        s.expunge_all()
        return rows


def field_error(page: str, field_id: str) -> str:
    match = re.search(rf'id="{field_id}-error"[^>]*>([^<]*)<', page)
    return html.unescape(match.group(1)).strip() if match else ""


def test_owner_updates_settings_and_brand_follows(owner_client, business):
    response = post_form(owner_client, "/staff/settings", VALID)
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/staff/settings")

    saved = stored()
    assert saved["name"] == "Harbour & Co"
    assert saved["legal_name"] == "Harbour and Company Ltd"
    assert saved["brand_color"] == "#aa3300"
    assert saved["currency"] == "GBP"
    assert saved["timezone"] == "Europe/London"
    assert saved["locale"] == "en_GB"
    assert saved["invoice_number_format"] == "HC-{year}-{seq:04d}"
    assert saved["payment_terms_days"] == 21
    assert saved["invoice_footer"] == "Thanks for your business."

    page = owner_client.get("/staff/settings").get_data(as_text=True)
    assert "Settings saved." in page
    assert 'value="Harbour &amp; Co"' in page
    assert 'value="GBP"' in page and 'value="Europe/London"' in page
    assert "Harbour &amp; Co" in page.split("</header>")[0]  # the top bar shows the new name

    css = owner_client.get("/branding.css")
    assert css.status_code == 200
    assert css.mimetype == "text/css"
    body = css.get_data(as_text=True)
    assert "--brand:#aa3300" in body
    assert "#3355cc" not in body


def test_settings_update_records_before_and_after(owner_client, business, make):
    post_form(owner_client, "/staff/settings", VALID)
    [event] = settings_events()
    assert event.actor_kind == "staff"
    assert event.actor_label == "owner@portal.example"
    assert event.subject_type == "business"
    assert event.before["brand_color"] == "#3355cc" and event.after["brand_color"] == "#aa3300"
    assert event.before["currency"] == "USD" and event.after["currency"] == "GBP"
    assert event.before["name"] == "Tidewater Studio" and event.after["name"] == "Harbour & Co"
    assert event.before["payment_terms_days"] == 30 and event.after["payment_terms_days"] == 21
    # Only what changed is recorded.
    assert "phone" not in event.before or event.before["phone"] != event.after["phone"]


def test_logo_upload_is_served_with_its_type_and_a_sandbox(owner_client, business, client):
    png = tiny_png()
    response = post_form(owner_client, "/staff/settings",
                         {**VALID, "logo": (io.BytesIO(png), "logo.png", "image/png")},
                         content_type="multipart/form-data")
    assert response.status_code == 302
    assert stored()["logo"] == png
    assert stored()["logo_content_type"] == "image/png"

    logo = owner_client.get("/branding/logo")
    assert logo.status_code == 200
    assert logo.mimetype == "image/png"
    assert logo.data == png
    csp = logo.headers["Content-Security-Policy"]
    assert "sandbox" in csp and "default-src 'none'" in csp
    assert logo.headers["X-Content-Type-Options"] == "nosniff"

    page = owner_client.get("/staff/settings").get_data(as_text=True)
    assert 'src="/branding/logo"' in page

    # The logo is public branding: the sign-in pages show it.
    login_page = owner_client.get("/portal/login").get_data(as_text=True)
    assert 'src="/branding/logo"' in login_page

    # Saving again without choosing a file (the browser sends an empty file part) keeps the logo.
    response = post_form(owner_client, "/staff/settings",
                         {**VALID, "name": "Harbour Two", "logo": (io.BytesIO(b""), "")},
                         content_type="multipart/form-data")
    assert response.status_code == 302
    assert stored()["name"] == "Harbour Two"
    assert stored()["logo"] == png
    assert owner_client.get("/branding/logo").data == png

    response = post_form(owner_client, "/staff/settings", {**VALID, "remove_logo": "y"})
    assert response.status_code == 302
    assert stored()["logo"] is None
    assert owner_client.get("/branding/logo").status_code == 404


def test_logo_type_is_read_from_its_bytes(owner_client, business):
    png = tiny_png()
    response = post_form(owner_client, "/staff/settings",
                         {**VALID, "logo": (io.BytesIO(png), "logo.html", "text/html")},
                         content_type="multipart/form-data")
    assert response.status_code == 302
    logo = owner_client.get("/branding/logo")
    assert logo.mimetype == "image/png" and logo.data == png


@pytest.mark.parametrize("data, filename, claimed", [
    (b"<html><script>alert(1)</script>", "logo.html", "text/html"),
    (b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "logo.svg", "image/svg+xml"),
    (b"GIF", "logo.png", "image/png"),
])
def test_logo_of_wrong_type_is_refused(owner_client, business, data, filename, claimed):
    response = post_form(owner_client, "/staff/settings",
                         {**VALID, "logo": (io.BytesIO(data), filename, claimed)},
                         content_type="multipart/form-data")
    assert response.status_code == 422
    assert field_error(response.get_data(as_text=True), "logo") == "Upload a PNG, JPEG, GIF or WebP image."
    saved = stored()
    assert saved["logo"] is None
    assert saved["name"] == "Tidewater Studio"
    assert settings_events() == []


@pytest.mark.parametrize("field, value, message", [
    ("brand_color", "blue", "Use a colour like #3355cc."),
    ("brand_color", "#12345", "Use a colour like #3355cc."),
    ("currency", "ZZZ", "Use a three-letter ISO currency code, like USD or EUR."),
    ("timezone", "Mars/Olympus_Mons", "Use an IANA timezone, like Europe/Lisbon."),
    ("locale", "xx_YY", "Use a locale like en_US or pt_PT."),
    ("invoice_number_format", "INV-{year}", "Include {seq} (and optionally {year}, {month}), e.g. INV-{year}-{seq:05d}."),
    ("invoice_number_format", "INV-{nope}-{seq}", "Include {seq} (and optionally {year}, {month}), e.g. INV-{year}-{seq:05d}."),
    ("payment_terms_days", "400", "Number must be between 0 and 365."),
    ("name", "", "Enter the business name."),
])
def test_bad_setting_rerenders_with_error_and_changes_nothing(owner_client, business, field, value, message):
    before = stored()
    response = post_form(owner_client, "/staff/settings", {**VALID, field: value})
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Nothing was saved." in page
    assert field_error(page, field) == message
    assert 'aria-invalid="true"' in page
    # The good values the owner typed are kept in the form, the bad one shown back.
    if field != "name":
        assert 'value="Harbour &amp; Co"' in page
    assert stored() == before
    assert settings_events() == []
    assert "--brand:#3355cc" in owner_client.get("/branding.css").get_data(as_text=True)


def test_staff_who_is_not_owner_cannot_change_settings(staff_client, business):
    page = staff_client.get("/staff/settings")
    assert page.status_code == 200
    assert "Only the owner can change these settings." in page.get_data(as_text=True)

    before = stored()
    response = post_form(staff_client, "/staff/settings",
                         {**VALID, "logo": (io.BytesIO(tiny_png()), "logo.png", "image/png")},
                         content_type="multipart/form-data")
    assert response.status_code == 403
    assert stored() == before
    assert settings_events() == []
    assert staff_client.get("/branding/logo").status_code == 404


def test_settings_page_needs_a_staff_login(client, business):
    response = client.get("/staff/settings")
    assert response.status_code == 302
    assert "/staff/login" in response.headers["Location"]
    response = client.post("/staff/settings", data=VALID)
    assert response.status_code in (302, 400)
    assert stored()["name"] == "Tidewater Studio"
