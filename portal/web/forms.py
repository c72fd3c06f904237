"""Forms shared by the blueprints (Flask-WTF: CSRF on every one)."""
from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import (BooleanField, EmailField, HiddenField, IntegerField, PasswordField, SelectChoice, SelectField,
                     SelectMultipleField, StringField, TextAreaField)
from wtforms.widgets import CheckboxInput, ListWidget
from wtforms.validators import (DataRequired, Email, EqualTo, Length, NumberRange, Optional, Regexp,
                                StopValidation)

from portal.services.passwords import MIN_LENGTH
from portal.services.restrictions import OFFERED as RESTRICTABLE_OFFERED
from portal.services.settings import AUTOPAY_TIMINGS


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


class ClientForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(message="Enter the client's name."), Length(max=200)])
    kind = SelectField("Type", choices=[SelectChoice("company", "Company"), SelectChoice("person", "Person")], default="company")
    email = EmailField("Billing email", validators=[Optional(), Email(check_deliverability=False), Length(max=254)])
    phone = StringField("Phone", validators=[Optional(), Length(max=50)])
    address = TextAreaField("Address", validators=[Optional(), Length(max=1000)])
    tax_id = StringField("Tax ID", validators=[Optional(), Length(max=50)])
    currency = StringField(
        "Currency", validators=[Optional(), Regexp(r"^[A-Za-z]{3}$", message="Use a three-letter code, like EUR.")],
        description="Leave empty to use the business's currency.",
    )
    notes = TextAreaField("Internal notes", validators=[Optional(), Length(max=5000)])


class ContactForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(message="Enter the contact's name."), Length(max=200)])
    email = EmailField("Email", validators=[DataRequired(message="Enter an email address."),
                                            Email(check_deliverability=False), Length(max=254)])
    phone = StringField("Phone", validators=[Optional(), Length(max=50)])
    receives_invoices = BooleanField("Receives invoices", default=True)


class NewClientForm(ClientForm):
    contact_name = StringField("Contact name", validators=[DataRequired(message="Enter a contact's name."),
                                                           Length(max=200)])
    contact_email = EmailField("Contact email", validators=[DataRequired(message="Enter the contact's email."),
                                                            Email(check_deliverability=False), Length(max=254)])
    contact_receives_invoices = BooleanField("Receives invoices", default=True)


class _RequiredUnless:
    """Required, unless another field has a given value (then the field is ignored)."""

    def __init__(self, other: str, value: str, message: str):
        self.other, self.value, self.message = other, value, message

    def __call__(self, form, field):
        if form[self.other].data == self.value:
            field.errors[:] = []
            raise StopValidation()
        if field.data is None and not field.process_errors:
            raise StopValidation(self.message)
        if field.process_errors:
            field.errors[:] = []
            raise StopValidation(self.message)


def _whole_number(message: str):
    """One clear message for text that is not a whole number (instead of WTForms' own)."""
    def check(form, field):
        if field.process_errors:
            field.errors[:] = []
            raise StopValidation(message)
    return check


class _OnlyWhen:
    """Required when another field has a given value; otherwise ignored (whatever was typed)."""

    def __init__(self, other: str, value: str, message: str):
        self.other, self.value, self.message = other, value, message

    def __call__(self, form, field):
        if form[self.other].data != self.value:
            field.errors[:] = []
            raise StopValidation()
        if field.data is None or field.process_errors:
            field.errors[:] = []
            raise StopValidation(self.message)


class CheckboxesField(SelectMultipleField):
    """A list of checkboxes: the values ticked."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class SettingsForm(FlaskForm):
    name = StringField("Business name", validators=[DataRequired(message="Enter the business name."),
                                                    Length(max=200)])
    legal_name = StringField("Legal name", validators=[Optional(), Length(max=200)])
    email = EmailField("Billing email", validators=[Optional(), Email(check_deliverability=False), Length(max=254)])
    phone = StringField("Phone", validators=[Optional(), Length(max=50)])
    website = StringField("Website", validators=[Optional(), Length(max=200)])
    address = TextAreaField("Address", validators=[Optional(), Length(max=1000)])
    tax_id = StringField("Tax ID", validators=[Optional(), Length(max=50)])
    brand_color = StringField("Brand colour", validators=[DataRequired(), Regexp(r"^#[0-9a-fA-F]{6}$",
                                                          message="Use a colour like #3355cc.")])
    currency = StringField("Currency", validators=[DataRequired(), Length(min=3, max=3)])
    timezone = StringField("Timezone", validators=[DataRequired(), Length(max=64)])
    locale = StringField("Locale", validators=[DataRequired(), Length(max=16)])
    invoice_number_format = StringField("Invoice number format", validators=[DataRequired(), Length(max=64)])
    payment_terms = SelectField("Default payment terms", choices=[
        SelectChoice("net", "Net N days (due N days after the invoice date)"),
        SelectChoice("receipt", "Due on receipt"),
    ], default="net")
    payment_terms_days = IntegerField("Payment terms (days)", validators=[
        _RequiredUnless("payment_terms", "receipt", message="Enter a number of days."), NumberRange(min=0, max=365)],
        description="Used with Net N days.")
    invoice_next_number = IntegerField("Next invoice number", validators=[
        Optional(), _whole_number("Use a whole number, 1 or more."),
        NumberRange(min=1, max=2_000_000_000, message="Use a whole number, 1 or more.")])
    invoice_next_number_was = HiddenField()  # what the page showed: an unchanged number is not re-checked
    invoice_memo = TextAreaField("Default memo", validators=[Optional(), Length(max=5000)],
                                 description="Printed on new invoices; staff can change it per invoice.")
    invoice_footer = TextAreaField("Invoice footer", validators=[Optional(), Length(max=2000)])
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
    autopay_timing = SelectField("When autopay charges", default="on_issue",
                                 choices=[SelectChoice(key, label) for key, label in AUTOPAY_TIMINGS.items()],
                                 description="The default; you can set another timing for a client on their page.")
    autopay_days_before = IntegerField("Days before the due date", validators=[
        _OnlyWhen("autopay_timing", "days_before_due", "Use a number of days between 1 and 60."),
        NumberRange(min=1, max=60, message="Use a number of days between 1 and 60.")],
        description="Used with \u201cA number of days before the due date\u201d.")
    auto_apply_credit = BooleanField("Apply a client's credit balance to an invoice automatically when it is finalized")
    restrict_overdue_days = IntegerField("Restrict clients with an invoice overdue more than (days)", validators=[
        Optional(), _whole_number("Use a number of days between 1 and 365, or leave it empty."),
        NumberRange(min=1, max=365, message="Use a number of days between 1 and 365, or leave it empty.")],
        description="Leave empty to never restrict anyone.")
    restrict_actions = CheckboxesField("What a restricted client can't do in the portal",
                                       choices=[SelectChoice(key, label) for key, label in RESTRICTABLE_OFFERED.items()])
    card_expiry_notice_days = IntegerField("Warn about an expiring card (days before)", validators=[
        _whole_number("Use a number of days between 1 and 90."),
        NumberRange(min=1, max=90, message="Use a number of days between 1 and 90.")],
        description="Clients get one email per card this many days before it expires.")
    credit_note_number_format = StringField("Credit note number format", validators=[DataRequired(), Length(max=64)])


class PortalLinkForm(FlaskForm):
    send = BooleanField("Email it to the contact", default=False)
