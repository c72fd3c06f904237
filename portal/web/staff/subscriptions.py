"""Subscriptions (/staff/subscriptions…): the list, starting one from a client's page, its page (schedule,
invoices, timeline) and what staff do to it: make the first invoice, change its plans (now, with
proration, or at the next renewal), pause, resume, cancel (now or at period end), keep, settings.

Every change is a POST (CSRF) that calls one service; a refusal shows the service's message with the
page again (422) and changes nothing. Ids in URLs are read by ``services.typed`` ("abc", "²" or a
30-digit id is no subscription: 404)."""
from __future__ import annotations

from flask import abort, flash, g, redirect, request, url_for
from flask_login import current_user

from portal.services import clients as client_service
from portal.services import subscriptions
from portal.services.errors import NotFound, ServiceError
from portal.services.events import Actor
from portal.services.typed import row_id
from portal.web.rendering import render
from portal.web.staff import bp
from portal.web.subscription_forms import (
    ActionForm,
    CancelForm,
    ChangeItemsForm,
    SubscriptionForm,
    SubscriptionSettingsForm,
    apply_errors,
)


def _actor() -> Actor:
    return Actor.of(current_user)


@bp.context_processor
def _client_page_subscriptions():
    """For the client page's "Subscriptions" section: a callable, so other pages pay nothing."""
    return {"client_subscriptions": lambda client: subscriptions.client_subscriptions(client.id)}


# The list ----------------------------------------------------------------------------------------

@bp.get("/subscriptions")
def subscriptions_list():
    listing = subscriptions.list_subscriptions(request.args.get("status", ""), request.args.get("before"))
    return render("staff/subscriptions/list.html", block="subscription_rows", listing=listing,
                  filters=subscriptions.FILTERS)


# Starting one --------------------------------------------------------------------------------------

def _client_or_404(client_id: str):
    try:
        return client_service.get_client(row_id(client_id) or 0)
    except NotFound:
        abort(404)


@bp.route("/clients/<client_id>/subscriptions/new", methods=["GET", "POST"])
def subscription_new(client_id: str):
    client = _client_or_404(client_id)
    currency = subscriptions.client_currency(client)
    alerts: list[str] = []
    status = 200
    if request.method == "GET":
        form = SubscriptionForm(formdata=None, data=subscriptions.new_subscription_defaults(client))
        form.add_blank_row()
    else:
        form = SubscriptionForm()
        if form.validate_on_submit():
            if form.op.data == "add":
                if not form.add_blank_row():
                    alerts.append("A subscription has at most 20 plans.")
            else:
                try:
                    sub = subscriptions.create_subscription(client, form.values(), _actor())
                except subscriptions.SubscriptionInvalid as exc:
                    alerts = apply_errors(form, exc.errors)
                    status = 422
                except ServiceError as exc:
                    alerts = [exc.message]
                    status = 422
                else:
                    flash("Subscription started.", "success")
                    return redirect(url_for("staff.subscription_detail", sub_id=sub.id), code=303)
        else:
            status = 422
    if form.backlog.errors or form.backlog.data in ("bill", "now"):
        form.offer_backlog()
    form.set_plan_choices(subscriptions.plan_choices(currency))
    return render("staff/subscriptions/new.html", form=form, client=client, currency=currency,
                  alerts=alerts), status


# One subscription ------------------------------------------------------------------------------------

def _page(sub_id: str, status: int = 200, **forms):
    try:
        page = subscriptions.subscription_page(sub_id)
    except NotFound:
        abort(404)
    sub = page.sub
    settings_form = forms.get("settings_form") or SubscriptionSettingsForm(formdata=None, data={
        "autopay": {None: "", True: "on", False: "off"}[sub.autopay], "autopay_timing": sub.autopay_timing or "",
        "autopay_days_before": "" if sub.autopay_days_before is None else str(sub.autopay_days_before),
        # As it is, even when a cancellation at period end set it: a blank end date would undo that.
        "ends_on": sub.ends_on.isoformat() if sub.ends_on else "",
        "max_cycles": "" if sub.max_cycles is None else str(sub.max_cycles)})
    return render("staff/subscriptions/show.html", page=page, sub=sub, client=page.client,
                  settings_form=settings_form, cancel_form=forms.get("cancel_form") or CancelForm(formdata=None),
                  action_form=ActionForm(formdata=None), alerts=forms.get("alerts") or []), status


@bp.get("/subscriptions/<sub_id>")
def subscription_detail(sub_id: str):
    return _page(sub_id)


def _exists_or_404(sub_id: str) -> int:
    try:
        return subscriptions.get_subscription(sub_id).id
    except NotFound:
        abort(404)


def _act(sub_id: str, run, done: str):
    """Run one change; its refusal is the page again with the message (422), nothing changed."""
    subscription_id = _exists_or_404(sub_id)
    form = ActionForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        message = run(subscription_id)
    except NotFound:
        abort(404)
    except ServiceError as exc:
        flash(exc.message, "error")
        return _page(sub_id, 422)
    flash(message or done, "success")
    return redirect(url_for("staff.subscription_detail", sub_id=subscription_id), code=303)


@bp.post("/subscriptions/<sub_id>/first-invoice")
def subscription_first_invoice(sub_id: str):
    def run(subscription_id):
        invoice = subscriptions.invoice_first_period(subscription_id, _actor())
        if invoice is None:
            return "The first period is scheduled; nothing was due to invoice yet."
        return f"Invoice {invoice.display_number} made; the next ones follow automatically on the same day of the cycle."
    return _act(sub_id, run, "")


@bp.post("/subscriptions/<sub_id>/pause")
def subscription_pause(sub_id: str):
    return _act(sub_id, lambda i: subscriptions.pause(i, _actor()) and None,
                "Subscription paused: no period is billed until you resume it.")


@bp.post("/subscriptions/<sub_id>/resume")
def subscription_resume(sub_id: str):
    def run(subscription_id):
        sub = subscriptions.resume(subscription_id, _actor())
        when = f" The next invoice is on {sub.next_invoice_on.isoformat()}." if sub.next_invoice_on else ""
        return "Subscription resumed." + when
    return _act(sub_id, run, "")


@bp.post("/subscriptions/<sub_id>/keep")
def subscription_keep(sub_id: str):
    return _act(sub_id, lambda i: subscriptions.keep(i, _actor()) and None,
                "Subscription kept: it no longer cancels at the end of the period.")


@bp.post("/subscriptions/<sub_id>/cancel")
def subscription_cancel(sub_id: str):
    subscription_id = _exists_or_404(sub_id)
    form = CancelForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        sub = subscriptions.cancel(subscription_id, form.when.data or "", _actor(),
                                   credit_unused=bool(form.credit_unused.data))
    except subscriptions.SubscriptionInvalid as exc:
        alerts = apply_errors(form, exc.errors)
        return _page(sub_id, 422, cancel_form=form, alerts=alerts)
    except ServiceError as exc:
        flash(exc.message, "error")
        return _page(sub_id, 422, cancel_form=form)
    if sub.status == "cancelled":
        flash("Subscription cancelled." + (" The unused part of the period is credited." if form.credit_unused.data
                                           and form.when.data == "now" else ""), "success")
    else:
        flash(f"The subscription ends on {sub.ends_on.isoformat()}, at the end of the period already billed.",
              "success")
    return redirect(url_for("staff.subscription_detail", sub_id=subscription_id), code=303)


@bp.post("/subscriptions/<sub_id>/settings")
def subscription_settings(sub_id: str):
    subscription_id = _exists_or_404(sub_id)
    form = SubscriptionSettingsForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        subscriptions.update_settings(subscription_id, form.settings_values(), _actor())
    except subscriptions.SubscriptionInvalid as exc:
        alerts = apply_errors(form, exc.errors)
        return _page(sub_id, 422, settings_form=form, alerts=alerts)
    except ServiceError as exc:
        flash(exc.message, "error")
        return _page(sub_id, 422, settings_form=form)
    flash("Subscription settings saved.", "success")
    return redirect(url_for("staff.subscription_detail", sub_id=subscription_id, _anchor="settings"), code=303)


# Changing its plans ------------------------------------------------------------------------------------

def _change_page(sub_id: str, form: ChangeItemsForm, status: int = 200, proration=None, alerts=None):
    try:
        page = subscriptions.subscription_page(sub_id)
    except NotFound:
        abort(404)
    form.set_plan_choices(subscriptions.plan_choices(page.sub.currency))
    return render("staff/subscriptions/change.html", block="proration" if g.get("preview_only") else None,
                  page=page, sub=page.sub, client=page.client, form=form, proration=proration,
                  alerts=alerts or []), status


@bp.route("/subscriptions/<sub_id>/change", methods=["GET", "POST"])
def subscription_change(sub_id: str):
    try:
        sub = subscriptions.get_subscription(sub_id)
    except NotFound:
        abort(404)
    if request.method == "GET":
        form = ChangeItemsForm(formdata=None, data={"items": subscriptions.item_values(sub), "when": "renewal"})
        form.add_blank_row()
        return _change_page(sub_id, form)
    form = ChangeItemsForm()
    if not form.validate_on_submit():
        return _change_page(sub_id, form, 422)
    if form.op.data == "add":
        alerts = [] if form.add_blank_row() else ["A subscription has at most 20 plans."]
        return _change_page(sub_id, form, alerts=alerts)
    try:
        subscriptions.change_items(sub.id, form.raw_items(), form.when.data or "", _actor())
    except subscriptions.SubscriptionInvalid as exc:
        return _change_page(sub_id, form, 422, alerts=apply_errors(form, exc.errors))
    except ServiceError as exc:
        return _change_page(sub_id, form, 422, alerts=[exc.message])
    flash("Plans changed: the next invoice bills the new plans, with the rest of this period prorated."
          if form.when.data == "now" else "Change scheduled: it takes effect at the next renewal.", "success")
    return redirect(url_for("staff.subscription_detail", sub_id=sub.id), code=303)


@bp.post("/subscriptions/<sub_id>/change/preview")
def subscription_change_preview(sub_id: str):
    """What a change "now" would prorate, with what was typed: nothing is saved. htmx asks it as the
    form changes (the answer is the preview block); without script the "Preview" button posts here."""
    try:
        sub = subscriptions.get_subscription(sub_id)
    except NotFound:
        abort(404)
    form = ChangeItemsForm()
    if not form.validate_on_submit():
        abort(400)
    parts, errors = subscriptions.proration_preview(sub, form.raw_items())
    alerts = apply_errors(form, errors) if errors else []
    g.preview_only = True
    return _change_page(sub_id, form, proration=parts, alerts=alerts)
