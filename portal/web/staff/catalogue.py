"""The catalogue (/staff/catalogue): services the business sells, and tax rates."""
from __future__ import annotations

from flask import abort, flash, redirect, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, RadioField, SelectChoice, SelectField, StringField, TextAreaField

from portal.services import catalogue as catalogue_service
from portal.services.errors import NotFound
from portal.services.events import Actor
from portal.web.forms import show_errors
from portal.web.rendering import render
from portal.web.staff import bp

RATE_FIELDS = ("name", "percent", "inclusive", "active")
SERVICE_FIELDS = ("name", "description", "unit_price", "currency", "tax_rate_id", "active")


# The service checks every value (the same rules for every caller); the forms carry them and CSRF.
class TaxRateForm(FlaskForm):
    name = StringField("Name", description="As it appears on invoices, like VAT or Sales tax.")
    percent = StringField("Rate (%)", description="Between 0 and 100, up to 4 decimals, like 7.25.")
    inclusive = RadioField("Prices", choices=[
        SelectChoice("exclusive", "Tax is added on top of the price (exclusive)"),
        SelectChoice("inclusive", "Prices already include this tax (inclusive)")],
                           default="exclusive", validate_choice=False)
    active = BooleanField("Active (offered for new lines)", default=True)


class ServiceForm(FlaskForm):
    name = StringField("Name")
    description = TextAreaField("Description")
    unit_price = StringField("Unit price", description="In major units, like 120.00.")
    currency = StringField("Currency", description="Three letters, like EUR.")
    tax_rate_id = SelectField("Default tax rate", validate_choice=False)
    active = BooleanField("Active (offered for new lines)", default=True)


def _actor() -> Actor:
    return Actor.of(current_user)


def _rate_or_404(rate_id: int):
    try:
        return catalogue_service.get_tax_rate(rate_id)
    except NotFound:
        abort(404)


def _service_or_404(service_id: int):
    try:
        return catalogue_service.get_service(service_id)
    except NotFound:
        abort(404)


def _with_rate_choices(form: ServiceForm, current_rate_id: int | None = None) -> ServiceForm:
    rates = [r for r in catalogue_service.list_tax_rates() if r.active or r.id == current_rate_id]
    form.tax_rate_id.choices = [SelectChoice("", "No tax")] + [
        SelectChoice(str(r.id), r.label + ("" if r.active else " (inactive)")) for r in rates]
    return form


@bp.get("/catalogue")
def catalogue():
    return render("staff/catalogue/index.html", services=catalogue_service.list_services(),
                  tax_rates=catalogue_service.list_tax_rates())


# Tax rates -------------------------------------------------------------------------------------

@bp.route("/catalogue/tax-rates/new", methods=["GET", "POST"])
def catalogue_tax_rate_new():
    form = TaxRateForm()
    if form.validate_on_submit():
        try:
            rate = catalogue_service.create_tax_rate({f: getattr(form, f).data for f in RATE_FIELDS}, _actor())
        except catalogue_service.CatalogueInvalid as exc:
            show_errors(form, exc.errors)
        else:
            flash(f"Tax rate {rate.label} added.", "success")
            return redirect(url_for("staff.catalogue") + "#tax-rates")
    status = 422 if request.method == "POST" else 200
    return render("staff/catalogue/tax_rate_form.html", form=form, rate=None), status


@bp.route("/catalogue/tax-rates/<int:rate_id>/edit", methods=["GET", "POST"])
def catalogue_tax_rate_edit(rate_id: int):
    rate = _rate_or_404(rate_id)
    form = TaxRateForm(data=catalogue_service.tax_rate_form_values(rate))
    if form.validate_on_submit():
        try:
            catalogue_service.update_tax_rate(rate, {f: getattr(form, f).data for f in RATE_FIELDS}, _actor())
        except catalogue_service.CatalogueInvalid as exc:
            show_errors(form, exc.errors)
        else:
            flash(f"Tax rate {rate.label} saved.", "success")
            return redirect(url_for("staff.catalogue") + "#tax-rates")
    status = 422 if request.method == "POST" else 200
    return render("staff/catalogue/tax_rate_form.html", form=form, rate=rate), status


@bp.post("/catalogue/tax-rates/<int:rate_id>/deactivate")
def catalogue_tax_rate_deactivate(rate_id: int):
    rate = catalogue_service.set_tax_rate_active(_rate_or_404(rate_id), False, _actor())
    flash(f"Tax rate {rate.label} deactivated: it is no longer offered for new lines.", "success")
    return redirect(url_for("staff.catalogue") + "#tax-rates")


@bp.post("/catalogue/tax-rates/<int:rate_id>/activate")
def catalogue_tax_rate_activate(rate_id: int):
    rate = catalogue_service.set_tax_rate_active(_rate_or_404(rate_id), True, _actor())
    flash(f"Tax rate {rate.label} is active again.", "success")
    return redirect(url_for("staff.catalogue") + "#tax-rates")


# Services -------------------------------------------------------------------------------------

@bp.route("/catalogue/services/new", methods=["GET", "POST"])
def catalogue_service_new():
    form = _with_rate_choices(ServiceForm(data=catalogue_service.new_service_defaults()))
    if form.validate_on_submit():
        try:
            service = catalogue_service.create_service({f: getattr(form, f).data for f in SERVICE_FIELDS},
                                                       _actor())
        except catalogue_service.CatalogueInvalid as exc:
            show_errors(form, exc.errors)
        else:
            flash(f"Service “{service.name}” added.", "success")
            return redirect(url_for("staff.catalogue") + "#services")
    status = 422 if request.method == "POST" else 200
    return render("staff/catalogue/service_form.html", form=form, service=None), status


@bp.route("/catalogue/services/<int:service_id>/edit", methods=["GET", "POST"])
def catalogue_service_edit(service_id: int):
    service = _service_or_404(service_id)
    form = _with_rate_choices(ServiceForm(data=catalogue_service.service_form_values(service)),
                              service.tax_rate_id)
    if form.validate_on_submit():
        try:
            catalogue_service.update_service(service, {f: getattr(form, f).data for f in SERVICE_FIELDS},
                                             _actor())
        except catalogue_service.CatalogueInvalid as exc:
            show_errors(form, exc.errors)
        else:
            flash(f"Service “{service.name}” saved.", "success")
            return redirect(url_for("staff.catalogue") + "#services")
    status = 422 if request.method == "POST" else 200
    return render("staff/catalogue/service_form.html", form=form, service=service), status


@bp.post("/catalogue/services/<int:service_id>/deactivate")
def catalogue_service_deactivate(service_id: int):
    service = catalogue_service.set_service_active(_service_or_404(service_id), False, _actor())
    flash(f"Service “{service.name}” deactivated: it is no longer offered for new lines.", "success")
    return redirect(url_for("staff.catalogue") + "#services")


@bp.post("/catalogue/services/<int:service_id>/activate")
def catalogue_service_activate(service_id: int):
    service = catalogue_service.set_service_active(_service_or_404(service_id), True, _actor())
    flash(f"Service “{service.name}” is active again.", "success")
    return redirect(url_for("staff.catalogue") + "#services")
