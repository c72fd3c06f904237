"""The business's settings and branding (one row)."""
from __future__ import annotations

import re
from zoneinfo import available_timezones

from babel import Locale, UnknownLocaleError
from babel.numbers import list_currencies
from sqlalchemy import select

from portal.extensions import db
from portal.models import Business
from portal.services.errors import ServiceError
from portal.services.events import Actor, commit, record_event, rollback

# Uploads are raster images, recognised by their first bytes (not by what the
# browser claims): an uploaded SVG could carry scripts.
LOGO_SIGNATURES = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
}
LOGO_MAX_BYTES = 512 * 1024
EDITABLE = (
    "name", "legal_name", "email", "phone", "website", "address", "tax_id", "brand_color",
    "currency", "timezone", "locale", "invoice_number_format", "payment_terms_days", "invoice_footer",
    "invoice_next_number", "invoice_memo", "notify_invoice_ready", "notify_payment_receipt",
    "notify_staff_on_payment", "accept_card", "accept_sepa_debit", "accept_us_bank_account",
)
NOTIFY_TOGGLES = ("notify_invoice_ready", "notify_payment_receipt", "notify_staff_on_payment")
MAX_INVOICE_NUMBER = 2_000_000_000
_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


def sniff_image(data: bytes) -> str | None:
    """The image type ``data`` really is, or None."""
    for content_type, signatures in LOGO_SIGNATURES.items():
        if any(data.startswith(sig) for sig in signatures):
            return content_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def get_business() -> Business:
    """The business row; a placeholder is created on first use of an empty database."""
    business = db.session.scalar(select(Business).order_by(Business.id).limit(1))
    if business is None:
        business = Business(name="My Business")
        db.session.add(business)
        db.session.flush()
    return business


def validate(values: dict) -> dict[str, str]:
    """Field → message for every value that cannot be saved."""
    errors: dict[str, str] = {}
    if not (values.get("name") or "").strip():
        errors["name"] = "Enter the business name."
    if "brand_color" in values and not _HEX.match(values.get("brand_color") or ""):
        errors["brand_color"] = "Use a colour like #3355cc."
    if "currency" in values and values.get("currency") not in list_currencies():
        errors["currency"] = "Use a three-letter ISO currency code, like USD or EUR."
    if "timezone" in values and values.get("timezone") not in available_timezones():
        errors["timezone"] = "Use an IANA timezone, like Europe/Lisbon."
    if "locale" in values:
        try:
            Locale.parse(values.get("locale") or "")
        except (ValueError, UnknownLocaleError):
            errors["locale"] = "Use a locale like en_US or pt_PT."
    if "invoice_number_format" in values:
        fmt = values.get("invoice_number_format") or ""
        try:
            sample = fmt.format(year=2026, month=1, seq=1)
            if "{seq" not in fmt or not sample.strip():
                raise ValueError
        except (KeyError, ValueError, IndexError):
            errors["invoice_number_format"] = "Include {seq} (and optionally {year}, {month}), e.g. INV-{year}-{seq:05d}."
    if "payment_terms_days" in values:
        days = values.get("payment_terms_days")
        if not isinstance(days, int) or not 0 <= days <= 365:
            errors["payment_terms_days"] = "Use a number of days between 0 and 365."
    if "invoice_memo" in values and len(values.get("invoice_memo") or "") > 5000:
        errors["invoice_memo"] = "Keep the memo under 5,000 characters."
    if "invoice_footer" in values and len(values.get("invoice_footer") or "") > 2000:
        errors["invoice_footer"] = "Keep the footer under 2,000 characters."
    for toggle in NOTIFY_TOGGLES:
        if toggle in values and not isinstance(values[toggle], bool):
            errors[toggle] = "Choose on or off."
    if "invoice_next_number" in values:
        number = values.get("invoice_next_number")
        used = highest_invoice_sequence()
        if not isinstance(number, int) or isinstance(number, bool) or not 1 <= number <= MAX_INVOICE_NUMBER:
            errors["invoice_next_number"] = "Use a whole number, 1 or more."
        elif number <= used:
            errors["invoice_next_number"] = (
                f"Invoice numbers up to {used} are already used: the next number must be {used + 1} or higher.")
    methods = ("accept_card", "accept_sepa_debit", "accept_us_bank_account")
    if all(key in values for key in methods) and not any(values[key] for key in methods):
        errors["accept_card"] = "Offer at least one way to pay online."
    return errors


def highest_invoice_sequence() -> int:
    """The highest sequence number a finalized invoice already has (0 if none)."""
    from sqlalchemy import func

    from portal.models import Invoice

    return int(db.session.scalar(select(func.max(Invoice.sequence_number))) or 0)


def update_business(values: dict, actor: Actor, logo: tuple[bytes, str] | None = None,
                    remove_logo: bool = False) -> Business:
    """Save settings. Raises ServiceError (with ``errors``) and changes nothing if any value is bad."""
    values = {k: v for k, v in values.items() if k in EDITABLE}
    if "invoice_next_number" in values:
        # Hold the business row (the numbering counter) first, as finalizing does: an invoice
        # numbered meanwhile is then committed and seen by the check below, never skipped over.
        db.session.scalar(select(Business).order_by(Business.id).limit(1).with_for_update()
                          .execution_options(populate_existing=True))
    errors = validate(values)
    if logo is not None:
        data, _claimed_type = logo
        detected = sniff_image(data)
        if detected is None:
            errors["logo"] = "Upload a PNG, JPEG, GIF or WebP image."
        elif len(data) > LOGO_MAX_BYTES:
            errors["logo"] = "The logo must be smaller than 512 KB."
        else:
            logo = (data, detected)
    if errors:
        rollback()
        error = ServiceError("Some settings could not be saved.")
        error.errors = errors
        raise error
    business = get_business()
    before = {k: getattr(business, k) for k in values}
    for key, value in values.items():
        setattr(business, key, value)
    if logo is not None:
        business.logo, business.logo_content_type = logo
    elif remove_logo:
        business.logo, business.logo_content_type = None, None
    after = {k: getattr(business, k) for k in values}
    changed = {k for k in values if before[k] != after[k]}
    record_event(
        "settings.updated", "business", business.id, actor,
        before={k: before[k] for k in changed}, after={k: after[k] for k in changed},
        data={"logo": "replaced" if logo else ("removed" if remove_logo else None)},
    )
    commit()
    return business


def readable_text_color(hex_color: str | None) -> str:
    """Black or white, whichever reads better on ``hex_color`` (WCAG luminance)."""
    if not hex_color or not _HEX.match(hex_color):
        return "#ffffff"
    channels = [int(hex_color[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return "#000000" if luminance > 0.179 else "#ffffff"
