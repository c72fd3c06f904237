"""A client's billing settings (autopay, automatic credit, billing cycle, extra charges) and
restriction, on the staff client page."""
from __future__ import annotations

from flask import abort, flash, g, redirect, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectChoice, SelectField

from portal.services import restrictions
from portal.services import settings as settings_service
from portal.services.errors import NotFound, ServiceError
from portal.services.events import Actor
from portal.web.forms import WholeNumberField, show_errors
from portal.web.staff import bp
from portal.web.staff import clients as client_pages

CREDIT_CHOICES = {"default": None, "on": True, "off": False}


class ClientBillingForm(FlaskForm):
    """Renders and reads; ``settings.update_client_billing`` checks every value (the choices too:
    an option the page never offered reaches the service as typed and is refused there)."""

    autopay = BooleanField("Autopay: charge the default saved payment method")
    autopay_timing = SelectField("When autopay charges", default="", validate_choice=False, choices=[
        SelectChoice("", "Business default"),
        *[SelectChoice(key, label) for key, label in settings_service.AUTOPAY_TIMINGS.items()],
    ])
    autopay_days_before = WholeNumberField("Days before the due date",
                                           render_kw={"min": settings_service.AUTOPAY_DAYS[0],
                                                      "max": settings_service.AUTOPAY_DAYS[1]})
    auto_apply_credit = SelectField("Apply credit balance to new invoices", default="default", validate_choice=False,
                                    choices=[
        SelectChoice("default", "Business default"), SelectChoice("on", "Yes, automatically"),
        SelectChoice("off", "No, only when staff apply it"),
    ])
    # Recurring billing (R1): seed 002's billing cycle, seed 003's extra charges.
    billing_cycle = SelectField("Billing cycle", default="none", validate_choice=False, choices=[
        SelectChoice(key, label) for key, label in settings_service.BILLING_CYCLES.items()])
    billing_day = WholeNumberField("Billing day", render_kw={"min": settings_service.BILLING_DAYS[0],
                                                             "max": settings_service.BILLING_DAYS[1]})
    charges_billing = SelectField("Extra charges", default="manual", validate_choice=False, choices=[
        SelectChoice(key, label) for key, label in settings_service.CHARGES_BILLING.items()])


CYCLE_FIELDS = ("billing_cycle", "billing_day", "charges_billing")


def _form_for(client) -> ClientBillingForm:
    credit = next(key for key, value in CREDIT_CHOICES.items() if value is client.auto_apply_credit)
    return ClientBillingForm(formdata=None, autopay=client.autopay, autopay_timing=client.autopay_timing or "",
                             autopay_days_before=client.autopay_days_before, auto_apply_credit=credit,
                             billing_cycle=client.billing_cycle, billing_day=client.billing_day,
                             charges_billing=client.charges_billing)


@bp.context_processor
def _client_page_helpers():
    """For the client page's slots: the billing settings form (as typed, after a refused save) and
    what the restriction says. Callables, so pages that don't show them pay nothing."""
    def billing_settings_form(client):
        return g.get("client_billing_form") or _form_for(client)

    return {
        "billing_settings_form": billing_settings_form,
        "client_has_default_method": lambda client: settings_service.has_default_method(client.id),
        "client_restriction": restrictions.notice,
    }


@bp.post("/clients/<int:client_id>/billing-settings")
def client_billing_settings(client_id: int):
    form = ClientBillingForm()
    if form.validate_on_submit():
        values = {
            "autopay": form.autopay.data,
            "autopay_timing": form.autopay_timing.data or None,
            "autopay_days_before": form.autopay_days_before.data,
            "auto_apply_credit": CREDIT_CHOICES.get(form.auto_apply_credit.data, form.auto_apply_credit.data),
        }
        # The cycle's fields change only when posted (the page always posts them).
        values.update({name: form[name].data for name in CYCLE_FIELDS if form[name].raw_data})
        try:
            settings_service.update_client_billing(client_id, values, Actor.of(current_user))
        except NotFound:
            abort(404)
        except ServiceError as exc:
            show_errors(form, getattr(exc, "errors", None) or {"autopay": exc.message})
        else:
            flash("Billing settings saved.", "success")
            return redirect(url_for("staff.client_detail", client_id=client_id, _anchor="billing-settings"), code=303)
    # Refused: the client page again, with what was typed and why.
    g.client_billing_form = form
    return client_pages.client_detail(client_id), 422
