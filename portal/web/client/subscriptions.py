"""The portal's subscriptions (R1): the client's own subscriptions (/portal/subscriptions), cancelling
at period end, the self-serve plans and a plan's page, self-checkout ("Subscribe and pay") and the
payment page of its first invoice (the same payment form as an invoice's: the sandbox's test form or
Stripe's Payment Element).

Every lookup is scoped to the signed-in contact's client: another client's subscription, or a plan
that is not self-serve, is a 404. "Cancel" and "Drop" answer htmx with the subscription's card and
anyone else with a redirect.
"""
from __future__ import annotations

from flask import abort, current_app, flash, redirect, request, url_for
from flask_login import current_user

from portal.services import subscriptions
from portal.services.errors import NotFound, ServiceError
from portal.web.client import bp
from portal.web.forms import PayForm
from portal.web.rendering import is_htmx, render


def _contact():
    return current_user._get_current_object()


@bp.get("/subscriptions")
def subscriptions_list():
    data = subscriptions.portal_subscriptions(current_user.client_id)
    return render("client/subscriptions.html", **data)


def _card(subscription_id: int, message: str | None = None, error: str | None = None):
    """After cancel / drop: the subscription's card for htmx, else back to the list with a flash."""
    if is_htmx():
        try:
            sub = subscriptions.portal_subscription(current_user.client_id, subscription_id)
        except NotFound:
            abort(404)
        return render("client/subscriptions/_card.html", sub=sub, notice=message, action_error=error,
                      may_cancel=sub.can_cancel)
    if error:
        flash(error, "error")
    elif message:
        flash(message, "success")
    return redirect(url_for("client.subscriptions_list"), code=303)


@bp.post("/subscriptions/<int:subscription_id>/cancel")
def subscription_cancel(subscription_id: int):
    try:
        sub = subscriptions.cancel_at_period_end(_contact(), subscription_id)
    except NotFound:
        abort(404)
    except ServiceError as exc:
        return _card(subscription_id, error=exc.message)
    return _card(sub.id, "Cancelled. Nothing more will be billed after the period already paid for.")


@bp.post("/subscriptions/<int:subscription_id>/drop")
def subscription_drop(subscription_id: int):
    try:
        subscriptions.drop_checkout(_contact(), subscription_id)
    except NotFound:
        abort(404)
    except ServiceError as exc:
        return _card(subscription_id, error=exc.message)
    return _card(subscription_id, "Checkout cancelled. Its invoice was cancelled and nothing was charged.")


# Plans --------------------------------------------------------------------------------------------

@bp.get("/subscriptions/plans")
def subscription_plans():
    contact = _contact()
    return render("client/subscriptions/plans.html", offers=subscriptions.self_serve_plans(contact.client))


def _plan_page(plan_id: int, quantity_text: str = "1", errors: dict | None = None, error: str | None = None,
               status: int = 200):
    try:
        offer = subscriptions.plan_offer(current_user.client_id, plan_id)
    except NotFound:
        abort(404)
    return render("client/subscriptions/plan.html", offer=offer, quantity=quantity_text[:20],
                  errors=errors or {}, error=error), status


@bp.get("/subscriptions/plans/<int:plan_id>")
def subscription_plan(plan_id: int):
    return _plan_page(plan_id)


@bp.post("/subscriptions/plans/<int:plan_id>")
def subscription_subscribe(plan_id: int):
    """"Subscribe and pay": start (or find again) the checkout, then pay its first invoice."""
    quantity = (request.form.get("quantity") or "").strip()
    try:
        sub = subscriptions.start_self_checkout(_contact(), plan_id, quantity)
    except NotFound:
        abort(404)
    except subscriptions.CheckoutInvalid as exc:
        return _plan_page(plan_id, quantity, errors=exc.errors, status=422)
    except ServiceError as exc:
        return _plan_page(plan_id, quantity, error=exc.message, status=422)
    if sub.status == "incomplete":
        return redirect(url_for("client.subscription_pay_page", subscription_id=sub.id), code=303)
    if sub.status == "trialing":
        flash("Your free trial has started. Nothing is charged until it ends.", "success")
    else:
        flash("You're subscribed.", "success")
    return redirect(url_for("client.subscriptions_list"), code=303)


# Paying the first invoice ---------------------------------------------------------------------------

def _pay_page(subscription_id: int, typed: dict | None = None, error: ServiceError | None = None,
              stripe: dict | None = None, status: int = 200):
    try:
        context = subscriptions.pay_page(current_user.client_id, subscription_id)
    except NotFound:
        return None
    html = render("client/subscriptions/pay.html", typed=typed or {"method": "card"}, pay_error=error,
                  stripe=stripe, publishable_key=current_app.config.get("STRIPE_PUBLISHABLE_KEY"),
                  pay_action=url_for("client.subscription_pay", subscription_id=subscription_id),
                  return_url=url_for("client.subscription_paid", subscription_id=subscription_id, _external=True),
                  **context)
    return html, status


def _nothing_to_pay(subscription_id: int):
    """No first invoice waits (paid meanwhile, dropped, another client's): the list says where it stands."""
    try:
        subscriptions.portal_subscription(current_user.client_id, subscription_id)
    except NotFound:
        abort(404)
    return redirect(url_for("client.subscriptions_list"), code=303)


@bp.get("/subscriptions/<int:subscription_id>/pay")
def subscription_pay_page(subscription_id: int):
    return _pay_page(subscription_id) or _nothing_to_pay(subscription_id)


@bp.post("/subscriptions/<int:subscription_id>/pay")
def subscription_pay(subscription_id: int):
    form = PayForm()
    typed = form.typed
    try:
        checkout = subscriptions.pay_first_invoice(_contact(), subscription_id, typed["method"], form.number,
                                                   typed["expiry"])
    except NotFound:
        abort(404)
    except ServiceError as exc:
        return _pay_page(subscription_id, typed, exc, status=422) or _nothing_to_pay(subscription_id)
    if checkout is not None:  # Stripe: the page now mounts the Payment Element for this intent
        return _pay_page(subscription_id, typed, stripe=checkout) or _nothing_to_pay(subscription_id)
    return redirect(url_for("client.subscription_paid", subscription_id=subscription_id), code=303)


_OUTCOME = {
    "paid": (("Payment received. Your subscription is active and your card is saved for the next "
              "payments. A receipt is on its way to your email."), "success"),
    "processing": ("Your bank payment is processing. Your subscription starts once it has cleared.", "info"),
    "failed": ("Your payment didn't go through. Nothing was charged. You can try again.", "error"),
    "pending": ("We haven't received your payment yet. Nothing has been charged.", "info"),
}


@bp.get("/subscriptions/<int:subscription_id>/paid")
def subscription_paid(subscription_id: int):
    """Where the first payment lands (the sandbox's redirect, Stripe's return)."""
    intent_id = request.args.get("payment_intent", "")[:100] or None
    try:
        state = subscriptions.checkout_outcome(_contact(), subscription_id, intent_id)
    except NotFound:
        abort(404)
    message, category = _OUTCOME[state]
    flash(message, category)
    if state == "failed":
        return redirect(url_for("client.subscription_pay_page", subscription_id=subscription_id), code=303)
    return redirect(url_for("client.subscriptions_list"), code=303)
