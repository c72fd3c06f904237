"""Plans, under the catalogue (/staff/catalogue/plans): a service priced per cycle. List, new, edit,
archive and restore; a self-serve plan shows its public checkout link."""
from __future__ import annotations

from flask import abort, flash, redirect, request, url_for
from flask_login import current_user

from portal.services import catalogue as catalogue_service
from portal.services import subscriptions
from portal.services.errors import NotFound
from portal.services.events import Actor
from portal.services.typed import row_id
from portal.web.rendering import render
from portal.web.staff import bp
from portal.web.subscription_forms import PlanForm, apply_errors, plan_form_choices


def _actor() -> Actor:
    return Actor.of(current_user)


def _plan_or_404(plan_id: str):
    try:
        return subscriptions.get_plan(row_id(plan_id) or 0)
    except NotFound:
        abort(404)


def _form(data: dict, plan=None) -> PlanForm:
    return plan_form_choices(PlanForm(data=data), catalogue_service.list_services(),
                             catalogue_service.list_tax_rates(), plan)


@bp.get("/catalogue/plans")
def catalogue_plans():
    return render("staff/plans/index.html", plans=subscriptions.plan_rows())


@bp.route("/catalogue/plans/new", methods=["GET", "POST"])
def catalogue_plan_new():
    form = _form(subscriptions.new_plan_defaults())
    alerts: list[str] = []
    if form.validate_on_submit():
        try:
            plan = subscriptions.create_plan(form.values(), _actor())
        except subscriptions.PlanInvalid as exc:
            alerts = apply_errors(form, exc.errors)
        else:
            flash(f"Plan “{plan.name}” added.", "success")
            return redirect(url_for("staff.catalogue_plans", _anchor=f"plan-{plan.id}"), code=303)
    status = 422 if request.method == "POST" else 200
    return render("staff/plans/form.html", form=form, plan=None, alerts=alerts), status


@bp.route("/catalogue/plans/<plan_id>/edit", methods=["GET", "POST"])
def catalogue_plan_edit(plan_id: str):
    plan = _plan_or_404(plan_id)
    form = _form(subscriptions.plan_form_values(plan), plan)
    alerts: list[str] = []
    if form.validate_on_submit():
        try:
            subscriptions.update_plan(plan, form.values(), _actor())
        except subscriptions.PlanInvalid as exc:
            alerts = apply_errors(form, exc.errors)
        else:
            flash(f"Plan “{plan.name}” saved.", "success")
            return redirect(url_for("staff.catalogue_plans", _anchor=f"plan-{plan.id}"), code=303)
    status = 422 if request.method == "POST" else 200
    return render("staff/plans/form.html", form=form, plan=plan, alerts=alerts,
                  link=subscriptions.checkout_link(plan)), status


def _set_active(plan_id: str, active: bool):
    plan = subscriptions.set_plan_active(_plan_or_404(plan_id), active, _actor())
    if active:
        flash(f"Plan “{plan.name}” is active again: it is offered for new subscriptions.", "success")
    else:
        flash(f"Plan “{plan.name}” archived: no new subscriptions; the current ones go on.", "success")
    return redirect(url_for("staff.catalogue_plans", _anchor=f"plan-{plan.id}"), code=303)


@bp.post("/catalogue/plans/<plan_id>/archive")
def catalogue_plan_archive(plan_id: str):
    return _set_active(plan_id, False)


@bp.post("/catalogue/plans/<plan_id>/restore")
def catalogue_plan_restore(plan_id: str):
    return _set_active(plan_id, True)
