"""One-off charges on a client (/staff/clients/<id>/charges/…).

Drafting an invoice from open charges is the invoices module's route
(``/staff/clients/<id>/invoices/draft-from-charges``); the client page only
renders the form that posts to it.
"""
from __future__ import annotations

from flask import abort, flash, redirect, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import SelectChoice, SelectField, StringField

from portal.services import catalogue as catalogue_service
from portal.services import charges as charge_service
from portal.services import clients as client_service
from portal.services import subscriptions
from portal.services.errors import NotFound, ServiceError
from portal.services.events import Actor
from portal.web.rendering import render
from portal.web.staff import bp

FIELDS = ("service_id", "description", "quantity", "unit_price", "currency", "tax_rate_id")


class ChargeForm(FlaskForm):
    # The service validates every value (the same rules for every caller); the form carries them.
    service_id = SelectField("From the catalogue", validate_choice=False,
                             description="Optional: fills in the service's price and tax.")
    description = StringField("Description")
    quantity = StringField("Quantity", default="1")
    unit_price = StringField("Unit price", description="In major units, like 120.00.")
    currency = StringField("Currency")
    tax_rate_id = SelectField("Tax", validate_choice=False)


def _client_or_404(client_id: int):
    try:
        return client_service.get_client(client_id)
    except NotFound:
        abort(404)


def _with_choices(form: ChargeForm) -> ChargeForm:
    form.service_id.choices = [SelectChoice("", "None (a one-off charge)")] + [
        SelectChoice(str(s.id), s.name) for s in catalogue_service.list_services(active_only=True)]
    form.tax_rate_id.choices = [SelectChoice("", "No tax")] + [
        SelectChoice(str(r.id), r.label) for r in catalogue_service.list_tax_rates(active_only=True)]
    return form


@bp.route("/clients/<int:client_id>/charges/new", methods=["GET", "POST"])
def client_charge_new(client_id: int):
    client = _client_or_404(client_id)
    if request.method == "GET":
        # Picking a service re-renders the form (htmx) with its price, currency and tax filled in.
        values = (charge_service.prefill_from_service(client, request.args.to_dict()) if request.args
                  else charge_service.new_charge_defaults(client))
        form = _with_choices(ChargeForm(formdata=None, data=values))
        return render("staff/charges/form.html", block="charge_form", client=client, form=form)
    form = _with_choices(ChargeForm())
    if form.validate_on_submit():
        try:
            # A client whose extra charges are invoiced at once gets the charge's invoice now.
            charge, invoice = subscriptions.add_charge(client, {f: getattr(form, f).data or "" for f in FIELDS},
                                                       Actor.of(current_user))
        except charge_service.ChargeInvalid as exc:
            for field, message in exc.errors.items():
                getattr(form, field).errors = [message]
        except ServiceError as exc:
            flash(exc.message, "error")
        else:
            if invoice is None:
                flash(f"“{charge.description}” added to the items to bill later.", "success")
                return redirect(url_for("staff.client_detail", client_id=client.id) + "#open-charges")
            sent = "sent" if invoice.sent_at else ("left as a draft" if invoice.is_draft else "finalized")
            flash(f"“{charge.description}” invoiced at once: invoice {invoice.display_number} {sent}.", "success")
            return redirect(url_for("staff.client_detail", client_id=client.id) + "#client-invoices")
    return render("staff/charges/form.html", client=client, form=form), 422


@bp.post("/clients/<int:client_id>/charges/<int:charge_id>/delete")
def client_charge_delete(client_id: int, charge_id: int):
    try:
        charge = charge_service.get_charge(client_id, charge_id)
    except NotFound:
        abort(404)
    description = charge.description
    try:
        charge_service.delete_charge(charge, Actor.of(current_user))
        flash(f"Charge “{description}” deleted.", "success")
    except ServiceError as exc:
        flash(exc.message, "error")
    return redirect(url_for("staff.client_detail", client_id=client_id) + "#open-charges")
