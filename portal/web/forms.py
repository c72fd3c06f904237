"""Forms shared by the blueprints (Flask-WTF: CSRF on every one).

One home for each rule: the services check every value and raise an error carrying
``errors: {field: message}``; these forms render the fields, read what was typed and check CSRF.
A view hands the service's errors back to its form with ``show_errors`` and answers 422.
"""
from __future__ import annotations

import re

from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import (BooleanField, EmailField, FieldList, Form, FormField, HiddenField, IntegerField, PasswordField,
                     SelectChoice, SelectField, SelectMultipleField, StringField, TextAreaField)
from wtforms.widgets import CheckboxInput, ListWidget
from wtforms.validators import DataRequired, Email, EqualTo, Length

from portal.services.invoice_pages import LINE_FIELDS
from portal.services.invoices import MAX_LINES, DraftInput
from portal.services import clients as client_service
from portal.services import settings as settings_service
from portal.services.passwords import MIN_LENGTH
from portal.services.restrictions import OFFERED as RESTRICTABLE_OFFERED
from portal.services.settings import AUTOPAY_TIMINGS


def show_errors(form, errors: dict[str, str], aliases: dict[str, str] | None = None) -> None:
    """Put a service's field errors on the form's fields (``aliases`` renames a service's field to
    the form's); an error for a field the form doesn't have goes to the first field the form shows."""
    for name, message in errors.items():
        name = (aliases or {}).get(name, name)
        field = form[name] if name in form else next(f for f in form if f.type not in ("CSRFTokenField", "HiddenField"))
        field.errors = [*field.errors, message]


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])


class ForgotPasswordForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Email(check_deliverability=False), Length(max=254)])


class SetPasswordForm(FlaskForm):
    password = PasswordField(
        "New password",
        validators=[DataRequired(), Length(min=MIN_LENGTH, max=256, message=f"Use at least {MIN_LENGTH} characters.")],
    )
    confirm = PasswordField(
        "Repeat the password", validators=[DataRequired(), EqualTo("password", message="The passwords don't match.")]
    )


class ProfileForm(FlaskForm):
    """A portal contact's own details (``auth.update_own_profile`` checks them; the hints are its limits)."""

    name = StringField("Name", render_kw={"required": True, "maxlength": 200})
    phone = StringField("Phone", render_kw={"maxlength": 50})


class ChangePasswordForm(FlaskForm):
    """Change one's own password (staff profile and portal profile)."""

    current_password = PasswordField("Current password",
                                     validators=[DataRequired(message="Enter your current password."),
                                                 Length(max=256)])
    password = PasswordField(
        "New password", description=f"At least {MIN_LENGTH} characters.",
        validators=[DataRequired(message="Enter a new password."), Length(max=256)],
    )
    confirm = PasswordField("Repeat the new password",
                            validators=[DataRequired(message="Repeat the new password."),
                                        EqualTo("password", message="The passwords don't match.")])


def _text(limit: int, required: bool = False) -> dict:
    """The HTML hints for a text field (``maxlength``, ``required``): the limit is the service's."""
    return {"maxlength": limit, **({"required": True} if required else {})}


def _range(low: int, high: int) -> dict:
    """The HTML hints for a number field (``min``, ``max``): the range is the service's."""
    return {"min": low, "max": high}


# Clients and contacts: services/clients.py checks every value (ClientInvalid); these render and read.
_CLIENT = client_service.CLIENT_LIMITS
_CONTACT = client_service.CONTACT_LIMITS


class ClientForm(FlaskForm):
    name = StringField("Name", render_kw=_text(_CLIENT["name"], required=True))
    kind = SelectField("Type", choices=[SelectChoice("company", "Company"), SelectChoice("person", "Person")],
                       default="company", validate_choice=False)
    email = EmailField("Billing email", render_kw=_text(_CLIENT["email"]))
    phone = StringField("Phone", render_kw=_text(_CLIENT["phone"]))
    address = TextAreaField("Address", render_kw=_text(_CLIENT["address"]))
    tax_id = StringField("Tax ID", render_kw=_text(_CLIENT["tax_id"]))
    currency = StringField("Currency", description="Leave empty to use the business's currency.")
    notes = TextAreaField("Internal notes", render_kw=_text(_CLIENT["notes"]))

    def values(self) -> dict:
        """The client's fields as typed, for ``services.clients``."""
        return {name: self[name].data for name in client_service.CLIENT_FIELDS}


class ContactForm(FlaskForm):
    name = StringField("Name", render_kw=_text(_CONTACT["name"], required=True))
    email = EmailField("Email", render_kw=_text(_CONTACT["email"], required=True))
    phone = StringField("Phone", render_kw=_text(_CONTACT["phone"]))
    receives_invoices = BooleanField("Receives invoices", default=True)

    def values(self) -> dict:
        """The contact's fields as typed, for ``services.clients``."""
        return {name: self[name].data for name in client_service.CONTACT_FIELDS}


class NewClientForm(ClientForm):
    contact_name = StringField("Contact name", render_kw=_text(_CONTACT["name"], required=True))
    contact_email = EmailField("Contact email", render_kw=_text(_CONTACT["email"], required=True))
    contact_receives_invoices = BooleanField("Receives invoices", default=True)

    # The service's name for the first contact's errors → this form's field.
    CONTACT_ERRORS = {"contacts-0-name": "contact_name", "contacts-0-email": "contact_email",
                      "contacts-0-receives_invoices": "contact_receives_invoices"}

    def contacts(self) -> list[dict]:
        return [{"name": self.contact_name.data, "email": self.contact_email.data,
                 "receives_invoices": self.contact_receives_invoices.data}]


class CheckboxesField(SelectMultipleField):
    """A list of checkboxes: the values ticked."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class WholeNumberField(IntegerField):
    """A number field that reads a whole number and leaves every judgement to the service: blank is
    None, ``"21"`` is 21, anything else stays the text typed (which the service refuses with its own
    message). The form itself never refuses a value."""

    def process_formdata(self, valuelist):
        if not valuelist:
            return
        text = (valuelist[0] or "").strip()
        digits = text[1:] if text[:1] in ("+", "-") else text
        if not text:
            self.data = None
        elif text.isascii() and digits.isdigit() and len(digits) <= 4000:  # int() reads at most 4,300 digits
            self.data = int(text)
        else:
            self.data = text


# The business's settings: services/settings.validate checks every value; this renders and reads.
_SETTINGS = settings_service.TEXT_LIMITS


class SettingsForm(FlaskForm):
    name = StringField("Business name", render_kw=_text(_SETTINGS["name"], required=True))
    legal_name = StringField("Legal name", render_kw=_text(_SETTINGS["legal_name"]))
    email = EmailField("Billing email", render_kw=_text(_SETTINGS["email"]))
    phone = StringField("Phone", render_kw=_text(_SETTINGS["phone"]))
    website = StringField("Website", render_kw=_text(_SETTINGS["website"]))
    address = TextAreaField("Address", render_kw=_text(_SETTINGS["address"]))
    tax_id = StringField("Tax ID", render_kw=_text(_SETTINGS["tax_id"]))
    brand_color = StringField("Brand colour", render_kw={"required": True})
    currency = StringField("Currency", render_kw={"required": True, "minlength": 3, "maxlength": 3})
    timezone = StringField("Timezone", render_kw=_text(_SETTINGS["timezone"], required=True))
    locale = StringField("Locale", render_kw=_text(_SETTINGS["locale"], required=True))
    invoice_number_format = StringField("Invoice number format",
                                        render_kw=_text(_SETTINGS["invoice_number_format"], required=True))
    payment_terms = SelectField("Default payment terms", choices=[
        SelectChoice("net", "Net N days (due N days after the invoice date)"),
        SelectChoice("receipt", "Due on receipt"),
    ], default="net")
    payment_terms_days = WholeNumberField("Payment terms (days)", description="Used with Net N days.",
                                          render_kw=_range(*settings_service.PAYMENT_TERMS_DAYS))
    invoice_next_number = WholeNumberField("Next invoice number",
                                           render_kw=_range(1, settings_service.MAX_INVOICE_NUMBER))
    invoice_next_number_was = HiddenField()  # what the page showed: an unchanged number is not re-checked
    invoice_memo = TextAreaField("Default memo", render_kw=_text(_SETTINGS["invoice_memo"]),
                                 description="Printed on new invoices; staff can change it per invoice.")
    invoice_footer = TextAreaField("Invoice footer", render_kw=_text(_SETTINGS["invoice_footer"]))
    notify_invoice_ready = BooleanField("Email billing contacts when an invoice is ready without being sent")
    notify_payment_receipt = BooleanField("Email a receipt to the client when a payment is recorded")
    notify_staff_on_payment = BooleanField("Email staff when a payment arrives")
    accept_card = BooleanField("Cards")
    accept_sepa_debit = BooleanField("SEPA Direct Debit (EUR invoices)")
    accept_us_bank_account = BooleanField("US bank account, ACH debit (USD invoices)")
    refund_late_payments = BooleanField(
        "Refund a payment that arrives for an invoice already settled",
        description="A payment page left open while the invoice was paid another way can still be paid. "
                    "On: that money is refunded automatically. Off: it is kept as the client's credit. "
                    "Either way the client and staff are told.")
    logo = FileField("Logo", description="PNG, JPEG, GIF or WebP, up to 512 KB.")
    remove_logo = BooleanField("Remove the logo")
    # Client portal (F4)
    clients_manage_autopay = BooleanField("Clients may turn autopay on or off in the portal")
    autopay_timing = SelectField("When autopay charges", default="on_issue", validate_choice=False,
                                 choices=[SelectChoice(key, label) for key, label in AUTOPAY_TIMINGS.items()],
                                 description="The default; you can set another timing for a client on their page.")
    autopay_days_before = WholeNumberField("Days before the due date", render_kw=_range(*settings_service.AUTOPAY_DAYS),
                                           description="Used with \u201cA number of days before the due date\u201d.")
    auto_apply_credit = BooleanField("Apply a client's credit balance to an invoice automatically when it is finalized")
    restrict_overdue_days = WholeNumberField("Restrict clients with an invoice overdue more than (days)",
                                             render_kw=_range(*settings_service.RESTRICT_DAYS),
                                             description="Leave empty to never restrict anyone.")
    restrict_actions = CheckboxesField(
        "What a restricted client can't do in the portal", validate_choice=False,
        choices=[SelectChoice(key, label) for key, label in RESTRICTABLE_OFFERED.items()])
    card_expiry_notice_days = WholeNumberField(
        "Warn about an expiring card (days before)", render_kw=_range(*settings_service.CARD_NOTICE_DAYS),
        description="Clients get one email per card this many days before it expires.")
    credit_note_number_format = StringField("Credit note number format",
                                            render_kw=_text(_SETTINGS["credit_note_number_format"], required=True))


class PortalLinkForm(FlaskForm):
    send = BooleanField("Email it to the contact", default=False)


# Typed values the services judge ------------------------------------------------------------------

class IdField(StringField):
    """A row's id as posted (a select or a hidden input): the text if it is an id (ASCII digits, at
    most 18), blank if blank, and anything else ``invalid``: "" names nothing, while "?" is an id no
    row has, which the service refuses in its own words (an id too long for the database, or digits
    ``int()`` can't read, never reach a query)."""

    def __init__(self, *args, invalid: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.invalid = invalid

    def process_formdata(self, valuelist):
        text = ((valuelist[0] if valuelist else "") or "").strip()
        self.data = text if not text or (text.isascii() and text.isdigit() and len(text) <= 18) else self.invalid


# The invoice editor ---------------------------------------------------------------------------------

# The ids a line carries: the tax rate picked (a wrong one is the service's field error), and the
# catalogue service or open charge it came from (hidden; a wrong one names nothing).
_LINE_IDS = {"tax_rate_id": "?", "service_id": "", "charge_id": ""}

# One line of the editor, ``lines-N-<field>``: text as typed, for ``services.invoices`` to parse.
LineForm = type("LineForm", (Form,), {
    name: (IdField(invalid=_LINE_IDS[name]) if name in _LINE_IDS else StringField()) for name in LINE_FIELDS})


class LineList(FieldList):
    """The ``lines-N-<field>`` rows, in N order and renumbered from 0 (the service's error keys then
    point at the rows as the editor re-renders them). Only ``N`` of up to 6 ASCII digits and the
    line's own fields make a row; the list stops at ``max_entries``."""

    def _extract_indices(self, prefix, formdata):
        key = re.compile(rf"^{re.escape(prefix)}-([0-9]{{1,6}})-([a-z_]+)$")
        for name in formdata:
            match = key.match(name)
            if match and match.group(2) in LINE_FIELDS:
                yield int(match.group(1))


class InvoiceForm(FlaskForm):
    """The draft editor: header fields, ``lines-N-…`` rows, and which button was pressed. It builds
    the ``DraftInput`` that ``services.invoices`` parses and checks (all of it: nothing is judged here)."""

    currency = StringField("Currency")
    due_date = StringField("Due date")
    discount_kind = StringField("Invoice discount")
    discount_value = StringField("Discount value")
    memo = TextAreaField("Memo")
    footer = TextAreaField("Footer")
    # One more than the service takes, so the service can say there are too many.
    lines = LineList(FormField(LineForm), max_entries=MAX_LINES + 1)
    then = StringField()  # "", "finalize" or "send" (Save's buttons)
    op = StringField()  # the editor's line buttons: add, add-service, remove-N, up-N, down-N
    add_service_id = IdField("Add from the catalogue")

    @staticmethod
    def is_blank(line: dict[str, str]) -> bool:
        """A row nobody filled in (an added line left empty) is not part of the invoice."""
        return not any((line.get(k) or "").strip() for k in
                       ("description", "unit_price", "discount_value", "service_id", "charge_id"))

    def draft_input(self, keep_blank: bool = False) -> DraftInput:
        lines = [{name: entry[name].data or "" for name in LINE_FIELDS} for entry in self.lines]
        if not keep_blank:
            lines = [line for line in lines if not self.is_blank(line)]
        return DraftInput(
            currency=self.currency.data or "", due_date=self.due_date.data or "", memo=self.memo.data or "",
            footer=self.footer.data or "", discount_kind=self.discount_kind.data or "",
            discount_value=self.discount_value.data or "", lines=lines)


# Paying (the guest page, an invoice in the portal, "pay all") and adding a payment method ------------

class PayForm(FlaskForm):
    """The sandbox's pay form (and the portal's add-a-method form): the method and the test card or
    bank account typed. ``services.payments`` / ``payment_methods`` judge them; with Stripe the
    Payment Element collects the details and only the method matters."""

    FIELDS = ("method", "card_number", "expiry", "cvc", "account")
    MAX = 64  # characters kept of each field

    method = StringField("Method")
    card_number = StringField("Card number")
    expiry = StringField("Expiry")
    cvc = StringField("CVC")
    account = StringField("Account")
    use_saved = StringField()  # "pay all": "1" pays with the default saved method

    @property
    def typed(self) -> dict[str, str]:
        """What was typed, trimmed, as the page shows it back (card is the method by default)."""
        typed = {name: (self[name].data or "").strip()[:self.MAX] for name in self.FIELDS}
        typed["method"] = typed["method"] or "card"
        return typed

    @property
    def number(self) -> str:
        """The card number for a card, else the bank account."""
        typed = self.typed
        return typed["card_number"] if typed["method"] == "card" else typed["account"]
