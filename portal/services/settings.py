"""The business's settings and branding (one row)."""
from __future__ import annotations

import re
from datetime import date, timedelta
from zoneinfo import available_timezones

from babel import Locale, UnknownLocaleError
from babel.numbers import list_currencies
from sqlalchemy import select

from portal import clock
from portal.billing import cycles, states
from portal.extensions import db
from portal.models import Business
from portal.services import locks
from portal.services.business import get_business
from portal.services.errors import NotFound, ServiceError
from portal.services.events import Actor, commit, record_event, rollback
from portal.services.restrictions import RESTRICTABLE

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
    "refund_late_payments",
    # Client portal (F4)
    "clients_manage_autopay", "autopay_timing", "autopay_days_before", "auto_apply_credit",
    "restrict_overdue_days", "restrict_actions", "card_expiry_notice_days", "credit_note_number_format",
    # Recurring billing (R1)
    "review_recurring_invoices", "upcoming_notice_days", "clients_cancel_subscriptions",
)
NOTIFY_TOGGLES = ("notify_invoice_ready", "notify_payment_receipt", "notify_staff_on_payment")
TOGGLES = NOTIFY_TOGGLES + ("clients_manage_autopay", "auto_apply_credit", "refund_late_payments",
                            "review_recurring_invoices", "clients_cancel_subscriptions")
AUTOPAY_TIMINGS = {
    "on_issue": "When the invoice is issued",
    "on_due_date": "On the due date",
    "days_before_due": "A number of days before the due date",
}
AUTOPAY_DAYS = (1, 60)
RESTRICT_DAYS = (1, 365)
CARD_NOTICE_DAYS = (1, 90)
UPCOMING_NOTICE_DAYS = (1, 60)  # the upcoming-invoice notice, days before a cycle's invoice (None: off)
MAX_INVOICE_NUMBER = 2_000_000_000
_HEX = re.compile(r"#[0-9a-fA-F]{6}")


def sniff_image(data: bytes) -> str | None:
    """The image type ``data`` really is, or None."""
    for content_type, signatures in LOGO_SIGNATURES.items():
        if any(data.startswith(sig) for sig in signatures):
            return content_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def valid_number_format(fmt: str | None) -> bool:
    """An invoice or credit note numbering format: has {seq}, may have {year} and {month}, fits the column.

    The fields are read before anything is formatted: a width or precision over 20 is refused
    (``{seq:>999999999}`` would allocate a gigabyte just to be checked)."""
    fmt = fmt or ""
    if len(fmt) > 64 or not states.number_format_fields_ok(fmt):
        return False
    try:
        sample = fmt.format(year=2026, month=1, seq=1)
    except (KeyError, ValueError, IndexError, AttributeError, TypeError):
        return False
    return "{seq" in fmt and bool(sample.strip()) and len(fmt) <= 64


def _number_format_error(fmt: str, example: str) -> str:
    if len(fmt) <= 64 and "{seq" in fmt and states.number_format_problem(fmt) == "width":
        return f"Keep each width and precision to {states.MAX_FORMAT_WIDTH} or less, e.g. {example}."
    return f"Include {{seq}} (and optionally {{year}}, {{month}}), e.g. {example}."


# The longest text each setting takes, and the range of the typed numbers (the settings form renders
# them as maxlength, min and max; the rules are the ones below).
TEXT_LIMITS = {
    "name": 200, "legal_name": 200, "email": 254, "phone": 50, "website": 200, "address": 1000, "tax_id": 50,
    "timezone": 64, "locale": 16, "invoice_number_format": 64, "credit_note_number_format": 64,
    "invoice_memo": 5000, "invoice_footer": 2000,
}
PAYMENT_TERMS_DAYS = (0, 365)


def _text_errors(values: dict) -> dict[str, str]:
    """Text that is too long (checked before anything else reads it), and a billing email that is
    no email address."""
    from email_validator import EmailNotValidError, validate_email

    errors: dict[str, str] = {}
    for field, limit in TEXT_LIMITS.items():
        value = values.get(field)
        if value is not None and not isinstance(value, str):
            errors[field] = "Enter text."
        elif value is not None and len(value) > limit:
            errors[field] = f"Field cannot be longer than {limit} characters."
    email = (values.get("email") or "").strip() if "email" not in errors else ""
    if email:
        try:
            validate_email(email, check_deliverability=False)
        except EmailNotValidError:
            errors["email"] = "Invalid email address."
    return errors


def validate(values: dict) -> dict[str, str]:
    """Field → message for every value that cannot be saved."""
    errors: dict[str, str] = _text_errors(values)
    if "name" not in errors and not (values.get("name") or "").strip():
        errors["name"] = "Enter the business name."
    if "brand_color" in values and not _HEX.fullmatch(values.get("brand_color") or ""):
        errors["brand_color"] = "Use a colour like #3355cc."
    if "currency" in values and values.get("currency") not in list_currencies():
        errors["currency"] = "Use a three-letter ISO currency code, like USD or EUR."
    if "timezone" in values and "timezone" not in errors and values.get("timezone") not in available_timezones():
        errors["timezone"] = "Use an IANA timezone, like Europe/Lisbon."
    if "locale" in values and "locale" not in errors:
        try:
            Locale.parse(values.get("locale") or "")
        except (ValueError, UnknownLocaleError):
            errors["locale"] = "Use a locale like en_US or pt_PT."
    for field, example in (("invoice_number_format", "INV-{year}-{seq:05d}"),
                           ("credit_note_number_format", "CN-{year}-{seq:05d}")):
        if field in values and field not in errors and not valid_number_format(values.get(field)):
            errors[field] = _number_format_error(values.get(field) or "", example)
    errors.update(_portal_errors(values))
    if "payment_terms_days" in values:
        days = values.get("payment_terms_days")
        if not isinstance(days, int) or isinstance(days, bool):
            errors["payment_terms_days"] = "Enter a number of days."
        elif not PAYMENT_TERMS_DAYS[0] <= days <= PAYMENT_TERMS_DAYS[1]:
            errors["payment_terms_days"] = "Number must be between {} and {}.".format(*PAYMENT_TERMS_DAYS)
    for toggle in TOGGLES:
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


def _whole(value, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _portal_errors(values: dict) -> dict[str, str]:
    """The client-portal settings (F4): autopay, restriction, expiring cards."""
    errors: dict[str, str] = {}
    if "autopay_timing" in values and values["autopay_timing"] not in AUTOPAY_TIMINGS:
        errors["autopay_timing"] = "Not a valid choice."
    if values.get("autopay_timing") == "days_before_due" and "autopay_days_before" in values \
            and not _whole(values["autopay_days_before"], *AUTOPAY_DAYS):
        errors["autopay_days_before"] = "Use a number of days between 1 and 60."
    if "restrict_overdue_days" in values and values["restrict_overdue_days"] is not None \
            and not _whole(values["restrict_overdue_days"], *RESTRICT_DAYS):
        errors["restrict_overdue_days"] = "Use a number of days between 1 and 365, or leave it empty."
    if "restrict_actions" in values:
        chosen = values["restrict_actions"]
        if not isinstance(chosen, list) or any(key not in RESTRICTABLE for key in chosen):
            errors["restrict_actions"] = "Choose among the actions listed."
    if "card_expiry_notice_days" in values and not _whole(values["card_expiry_notice_days"], *CARD_NOTICE_DAYS):
        errors["card_expiry_notice_days"] = "Use a number of days between 1 and 90."
    if "upcoming_notice_days" in values and values["upcoming_notice_days"] is not None \
            and not _whole(values["upcoming_notice_days"], *UPCOMING_NOTICE_DAYS):
        errors["upcoming_notice_days"] = "Use a number of days between {} and {}, or leave it empty.".format(
            *UPCOMING_NOTICE_DAYS)
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
    if values.get("autopay_timing", "days_before_due") != "days_before_due":
        values.pop("autopay_days_before", None)  # only used with "N days before due": the stored number stays
    if isinstance(values.get("restrict_actions"), (list, tuple)):
        values["restrict_actions"] = list(dict.fromkeys(values["restrict_actions"]))
    if "invoice_next_number" in values:
        # Hold the business row (the numbering counter) first, as finalizing does: an invoice
        # numbered meanwhile is then committed and seen by the check below, never skipped over.
        locks.business()
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


# One client's billing settings (F4; R1: billing cycle and extra charges) ---------------------------

CLIENT_BILLING_FIELDS = ("autopay", "autopay_timing", "autopay_days_before", "auto_apply_credit")
CLIENT_CYCLE_FIELDS = ("billing_cycle", "billing_day", "charges_billing")
# Seed 002: a client's open charges gather into one invoice a month, on its billing day.
BILLING_CYCLES = {"none": "None", "monthly": "Monthly"}
BILLING_DAYS = (1, 31)
# Seed 003: what happens to an extra charge staff add to a client.
CHARGES_BILLING = {
    "manual": "Staff invoice them",
    "immediate": "Invoice each charge at once",
    "next_cycle": "Add charges to the next cycle's invoice",
}


def next_billing_day(billing_day: int, on_or_after: date) -> date:
    """The first day of the month ``billing_day`` (1–31) falls on, on or after ``on_or_after``. Counted
    with ``billing.cycles`` from an anchor whose day is ``billing_day`` (January has 31 days), so a
    day 31 is Feb 28 (29) in February and the 31st again in March: it never drifts."""
    anchor = date(2000, 1, billing_day)
    n = (on_or_after.year - anchor.year) * 12 + on_or_after.month - anchor.month
    day = cycles.start(anchor, "month", 1, n)
    return day if day >= on_or_after else cycles.start(anchor, "month", 1, n + 1)


def latest_billing_day(billing_day: int, on_or_before: date) -> date:
    """The last day the billing day fell on, on or before ``on_or_before``."""
    anchor = date(2000, 1, billing_day)
    n = (on_or_before.year - anchor.year) * 12 + on_or_before.month - anchor.month
    day = cycles.start(anchor, "month", 1, n)
    return day if day <= on_or_before else cycles.start(anchor, "month", 1, n - 1)


def first_cycle_day(client_id: int, billing_day: int, today: date) -> date:
    """The next billing day from today (today included), skipping a day whose gathering already ran."""
    from portal.models import ClientCycle

    day = next_billing_day(billing_day, today)
    done = db.session.scalar(select(ClientCycle.id).where(ClientCycle.client_id == client_id,
                                                          ClientCycle.cycle_on == day).limit(1))
    return next_billing_day(billing_day, day + timedelta(days=1)) if done is not None else day


def has_default_method(client_id: int) -> bool:
    """Whether the client has a default saved payment method (not removed): what autopay charges."""
    from portal.models import PaymentMethod

    return db.session.scalar(
        select(PaymentMethod.id).where(PaymentMethod.client_id == client_id, PaymentMethod.removed_at.is_(None),
                                       PaymentMethod.is_default.is_(True)).limit(1)) is not None


def _cycle_values(client, values: dict, errors: dict) -> dict:
    """The billing cycle and extra-charges choices given in ``values`` (a key left out keeps what the
    client has), checked; with ``next_cycle_on`` when the cycle or its day changes."""
    if not any(key in values for key in CLIENT_CYCLE_FIELDS):
        return {}
    cycle = values.get("billing_cycle", client.billing_cycle)
    day = values.get("billing_day", client.billing_day)
    charges = values.get("charges_billing", client.charges_billing)
    if cycle not in BILLING_CYCLES:
        errors["billing_cycle"] = "Not a valid choice."
    elif cycle == "monthly" and not _whole(day, *BILLING_DAYS):
        errors["billing_day"] = "Choose the billing day: a day of the month from 1 to 31."
    if charges not in CHARGES_BILLING:
        errors["charges_billing"] = "Not a valid choice."
    if errors:
        return {}
    after = {"billing_cycle": cycle, "billing_day": day if cycle == "monthly" else None, "charges_billing": charges}
    if cycle != "monthly":
        after["next_cycle_on"] = None
    elif (cycle, day) != (client.billing_cycle, client.billing_day) or client.next_cycle_on is None:
        after["next_cycle_on"] = first_cycle_day(client.id, day, clock.today(get_business().timezone))
    return after


def update_client_billing(client_id: int, values: dict, actor: Actor):
    """Staff set one client's autopay (on/off, timing override), automatic credit (None = the
    business default), and (when given) its billing cycle (none, or monthly on a billing day 1–31:
    ``next_cycle_on`` becomes the next billing day, today included) and what its extra charges do.
    Turning autopay on needs a default saved payment method. Raises ServiceError (with ``errors``)
    and changes nothing if any value is bad."""
    from portal.models import Client

    client = db.session.scalar(locks.for_update(select(Client).where(Client.id == client_id)))
    if client is None:
        rollback()
        raise NotFound("No such client.")
    errors: dict[str, str] = {}
    autopay = values.get("autopay")
    timing = values.get("autopay_timing") or None
    days = values.get("autopay_days_before")
    credit = values.get("auto_apply_credit")
    if not isinstance(autopay, bool):
        errors["autopay"] = "Choose on or off."
    elif autopay and not client.autopay and not has_default_method(client.id):
        errors["autopay"] = ("Autopay needs a default saved payment method. "
                             "This client has none yet: a contact can add one in the portal.")
    if timing is not None and timing not in AUTOPAY_TIMINGS:
        errors["autopay_timing"] = "Not a valid choice."
    if timing == "days_before_due":
        if not _whole(days, *AUTOPAY_DAYS):
            errors["autopay_days_before"] = "Use a number of days between 1 and 60."
    else:
        days = None
    if credit is not None and not isinstance(credit, bool):
        errors["auto_apply_credit"] = "Not a valid choice."
    cycle = _cycle_values(client, values, errors)
    if errors:
        rollback()
        error = ServiceError("The billing settings could not be saved.")
        error.errors = errors
        raise error
    after = {"autopay": autopay, "autopay_timing": timing, "autopay_days_before": days, "auto_apply_credit": credit,
             **cycle}
    before = {k: getattr(client, k) for k in after}
    changed = [k for k in after if before[k] != after[k]]
    for key in changed:
        setattr(client, key, after[key])
    if changed:
        record_event("client.billing_settings_updated", "client", client.id, actor,
                     before={k: _plain(before[k]) for k in changed}, after={k: _plain(after[k]) for k in changed})
    commit()
    return client


def _plain(value):
    """An event's JSON holds dates as ISO text."""
    return value.isoformat() if isinstance(value, date) else value


def _luminance(hex_color: str) -> float:
    """WCAG relative luminance of ``#rrggbb``."""
    channels = [int(hex_color[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def readable_text_color(hex_color: str | None) -> str:
    """Black or white, whichever reads better on ``hex_color`` (WCAG luminance)."""
    if not hex_color or not _HEX.fullmatch(hex_color):
        return "#ffffff"
    return "#000000" if _luminance(hex_color) > 0.179 else "#ffffff"


# The lightest background brand-coloured text sits on (notices, flashes: #f3f4f6), and WCAG AA for
# body text. White and the tables' stripes are lighter, so they read at least as well.
INK_BACKGROUND = "#f3f4f6"
INK_CONTRAST = 4.5


def readable_ink_color(hex_color: str | None) -> str:
    """The brand colour as text (links, outline buttons) on the portal's light backgrounds: the colour
    itself when it reaches 4.5:1 on them, else the same hue darkened towards black (5 % steps, as CSS
    ``color-mix(in srgb, colour, black)`` would) until it does. A pale brand stays a background."""
    if not hex_color or not _HEX.fullmatch(hex_color):
        return "#000000"
    background = _luminance(INK_BACKGROUND) + 0.05
    channels = [int(hex_color[i:i + 2], 16) for i in (1, 3, 5)]
    for step in range(21):
        ink = "#" + "".join(f"{round(c * (1 - step / 20)):02x}" for c in channels)
        if background / (_luminance(ink) + 0.05) >= INK_CONTRAST:
            return ink
    return "#000000"
