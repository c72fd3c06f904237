"""The forms of the staff pages for recurring billing: plans, starting a subscription, changing its
items, cancelling it and its settings.

As in ``web/forms.py``: these render the fields and read what was typed (and check CSRF); the
services (``subscriptions.create_plan``, ``create_subscription``, ``change_items``…) check every
value and raise their field errors, which ``apply_errors`` puts back on the form. The ``min``/``max``
hints are the services' limits.
"""
from __future__ import annotations

import re
from datetime import date

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    FieldList,
    Form,
    FormField,
    RadioField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)

from portal.billing.cycles import MAX_INTERVAL
from portal.services import subscriptions
from portal.services.settings import AUTOPAY_TIMINGS
from portal.services.subscriptions.manage import MAX_CYCLES, MAX_ITEMS
from portal.services.subscriptions.plans import MAX_TRIAL_DAYS
from portal.web.forms import IdField, show_errors

# Plans ---------------------------------------------------------------------------------------------

PLAN_FIELDS = ("name", "description", "service_id", "unit_price", "currency", "unit", "interval", "tax_rate_id",
               "setup_fee", "trial_days", "self_serve", "active")


class PlanForm(FlaskForm):
    name = StringField("Name", render_kw={"maxlength": 200, "required": True})
    description = TextAreaField("Description", render_kw={"maxlength": 5000})
    service_id = SelectField("Catalogue service", validate_choice=False,
                             description="Optional: the service this plan sells (its lines then name it).")
    unit_price = StringField("Price per cycle", description="In major units, like 49.00.",
                             render_kw={"inputmode": "decimal", "required": True})
    currency = StringField("Currency", description="Three letters, like EUR.",
                           render_kw={"minlength": 3, "maxlength": 3, "required": True})
    interval = StringField("Every", render_kw={"inputmode": "numeric", "min": 1, "max": max(MAX_INTERVAL.values())})
    unit = SelectField("Cycle", validate_choice=False,
                       choices=[SelectChoice(k, label) for k, label in subscriptions.UNIT_CHOICES])
    tax_rate_id = SelectField("Tax rate", validate_choice=False)
    setup_fee = StringField("Setup fee", description="Optional: billed once, on the first invoice.",
                            render_kw={"inputmode": "decimal"})
    trial_days = StringField("Trial days", description=f"0 to {MAX_TRIAL_DAYS}: nothing is billed during a trial.",
                             render_kw={"inputmode": "numeric", "min": 0, "max": MAX_TRIAL_DAYS})
    self_serve = BooleanField("Self-serve: clients can subscribe themselves (portal and a public link)")
    active = BooleanField("Active (offered for new subscriptions)", default=True)

    def values(self) -> dict:
        """What was typed, as ``subscriptions.create_plan`` reads it (switches as "y" or "")."""
        out = {}
        for name in PLAN_FIELDS:
            data = self[name].data
            out[name] = ("y" if data else "") if isinstance(data, bool) else (data or "")
        return out


def plan_form_choices(form: PlanForm, services, rates, current=None) -> PlanForm:
    """The services and tax rates a plan may name: the active ones, and whatever it names now."""
    form.service_id.choices = [SelectChoice("", "None")] + [
        SelectChoice(str(s.id), s.name + ("" if s.active else " (inactive)")) for s in services
        if s.active or (current is not None and current.service_id == s.id)]
    form.tax_rate_id.choices = [SelectChoice("", "No tax")] + [
        SelectChoice(str(r.id), r.label + ("" if r.active else " (inactive)")) for r in rates
        if r.active or (current is not None and current.tax_rate_id == r.id)]
    return form


# Subscription items ----------------------------------------------------------------------------------

class ItemForm(Form):
    """One plan row, ``items-N-plan_id`` / ``items-N-quantity``."""

    plan_id = IdField("Plan", invalid="?")
    quantity = StringField("Quantity", render_kw={"inputmode": "decimal", "placeholder": "1"})


class ItemList(FieldList):
    """The ``items-N-…`` rows, in N order and renumbered from 0 (the service's ``items-N-…`` errors
    then point at the rows as the page shows them again); only N of up to 6 ASCII digits count."""

    def _extract_indices(self, prefix, formdata):
        key = re.compile(rf"^{re.escape(prefix)}-([0-9]{{1,6}})-(plan_id|quantity)$")
        for name in formdata:
            match = key.match(name)
            if match:
                yield int(match.group(1))


def _items_field():
    # One more than the service takes, so the service can say there are too many.
    return ItemList(FormField(ItemForm), min_entries=1, max_entries=MAX_ITEMS + 1)


class ItemsMixin:
    items_error: str = ""

    def has_errors(self) -> bool:
        """Whether any field shows an error (the rows' too: ``form.errors`` is read once, before the
        service's errors are put on the fields)."""
        def shown(field) -> bool:
            if isinstance(field, FieldList):
                return any(shown(entry) for entry in field.entries)
            if isinstance(field, FormField):
                return any(shown(sub) for sub in field.form)
            return bool(field.errors)
        return bool(self.items_error) or any(shown(field) for field in self)

    def raw_items(self) -> list[dict]:
        return [{"plan_id": entry.plan_id.data or "", "quantity": entry.quantity.data or ""}
                for entry in self.items]

    def add_blank_row(self) -> bool:
        if len(self.items.entries) >= MAX_ITEMS:
            return False
        self.items.append_entry({"plan_id": "", "quantity": ""})
        return True

    def set_plan_choices(self, choices: list[tuple[str, str]]) -> None:
        """The plans offered in every row (and a row's own choice, if it isn't among them)."""
        known = {value for value, _ in choices}
        for entry in self.items:
            own = entry.plan_id.data
            extra = [(own, f"Plan #{own}")] if own and own not in known and own != "?" else []
            entry.plan_id.choices = [("", "Choose a plan"), *extra, *choices]


AUTOPAY_CHOICE_LABELS = [("", "The client's setting"), ("on", "On for this subscription"),
                         ("off", "Off for this subscription")]
TIMING_CHOICES = [SelectChoice("", "The client's timing")] + [
    SelectChoice(key, label) for key, label in AUTOPAY_TIMINGS.items()]


class SettingsFields:
    """The settings a subscription is started with and can change later."""

    autopay = SelectField("Autopay", validate_choice=False,
                          choices=[SelectChoice(k, label) for k, label in AUTOPAY_CHOICE_LABELS])
    autopay_timing = SelectField("When autopay charges", validate_choice=False, choices=TIMING_CHOICES)
    autopay_days_before = StringField("Days before the due date", render_kw={"inputmode": "numeric", "min": 0,
                                                                              "max": 60})
    ends_on = StringField("End date", description="Optional: no period starting on or after it is billed.")
    max_cycles = StringField("Number of cycles", description=f"Optional: 1 to {MAX_CYCLES}; then it ends.",
                             render_kw={"inputmode": "numeric", "min": 1, "max": MAX_CYCLES})

    SETTING_FIELDS = ("autopay", "autopay_timing", "autopay_days_before", "ends_on", "max_cycles")

    def settings_values(self) -> dict:
        return {name: self[name].data or "" for name in self.SETTING_FIELDS}


class SubscriptionForm(ItemsMixin, SettingsFields, FlaskForm):
    items = _items_field()
    start_date = StringField("Start date")
    backlog = RadioField("The start date is in the past", validate_choice=False, choices=[])
    first_invoice = RadioField("First invoice", validate_choice=False, default="auto", choices=[
        SelectChoice("auto", "On the start date, automatically"),
        SelectChoice("manual", "I'll make the first invoice by hand")])
    trial_days = StringField("Trial days", description="Leave blank for the plans' trial.",
                             render_kw={"inputmode": "numeric", "min": 0, "max": 730})
    op = StringField()  # "add": another plan row (nothing is saved)

    FIELDS = ("start_date", "backlog", "first_invoice", "trial_days")

    def values(self) -> dict:
        """What was typed, as ``subscriptions.create_subscription`` reads it."""
        return {"items": self.raw_items(), **{name: self[name].data or "" for name in self.FIELDS},
                **self.settings_values()}

    def offer_backlog(self) -> None:
        """The two answers to a start date in the past."""
        try:
            day = date.fromisoformat((self.start_date.data or "").strip())
            since = f"{day.day} {day:%b %Y}"
        except ValueError:
            since = "the start date"
        self.backlog.choices = [SelectChoice("bill", f"Bill every period since {since}"),
                                SelectChoice("now", "Start today instead")]


class ChangeItemsForm(ItemsMixin, FlaskForm):
    items = _items_field()
    when = RadioField("When", validate_choice=False, default="renewal", choices=[
        SelectChoice("now", "Now (the rest of this period is prorated on the next invoice)"),
        SelectChoice("renewal", "At the next renewal")])
    op = StringField()  # "add": another plan row; "preview": show the proration (nothing is saved)


class CancelForm(FlaskForm):
    when = RadioField("When", validate_choice=False, default="period_end", choices=[
        SelectChoice("period_end", "At the end of the period already billed"),
        SelectChoice("now", "Now")])
    credit_unused = BooleanField("Credit the unused part of this period")


class SubscriptionSettingsForm(SettingsFields, FlaskForm):
    pass


class ActionForm(FlaskForm):
    """A button that changes something: only the CSRF token."""


# Errors --------------------------------------------------------------------------------------------

_ITEM_KEY = re.compile(r"^items-([0-9]+)-(plan_id|quantity)$")


def apply_errors(form, errors: dict[str, str]) -> list[str]:
    """Put a service's errors on the form: ``items-N-field`` on row N, ``items`` above the rows, the
    rest on the field of that name. Returns the messages no field shows (for the page's alert)."""
    left: list[str] = []
    plain: dict[str, str] = {}
    for key, message in errors.items():
        match = _ITEM_KEY.match(key)
        if match and hasattr(form, "items") and int(match.group(1)) < len(form.items.entries):
            entry = form.items.entries[int(match.group(1))]
            field = entry[match.group(2)]
            field.errors = [*field.errors, message]
        elif key == "items" and hasattr(form, "items"):
            form.items_error = message
        elif key in form:
            plain[key] = message
        else:
            left.append(message)
    show_errors(form, plain)
    return left
