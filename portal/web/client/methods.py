"""The client portal's payment methods page (/portal/payment-methods): the client's saved cards and
bank accounts, adding one (the sandbox's test form, or Stripe's Payment Element in setup mode),
removing one, making one the default, and the autopay switch.

Remove, make default and the autopay switch answer htmx with the ``saved_methods`` block (the
list and the autopay section, which a removal can change) and anyone else with a redirect.
"""
from __future__ import annotations

from flask import abort, current_app, flash, redirect, request, url_for
from flask_login import current_user

from portal.services import payment_methods as methods_service
from portal.services.errors import NotFound, ServiceError
from portal.services.events import Actor
from portal.services.links import external_url
from portal.web.client import bp
from portal.web.forms import PayForm
from portal.web.rendering import is_htmx, render


def _page(typed: dict | None = None, add_error: ServiceError | None = None, stripe: dict | None = None,
          notice: str | None = None, action_error: str | None = None, block: str | None = None, status: int = 200):
    data = methods_service.methods_page(current_user.client_id)
    html = render("client/payment_methods.html", block=block, typed=typed or {"method": "card"},
                  add_error=add_error, stripe=stripe, notice=notice, action_error=action_error,
                  publishable_key=current_app.config.get("STRIPE_PUBLISHABLE_KEY"),
                  return_url=external_url("client.payment_method_added"), **data)
    return html, status


def _done(message: str | None, error: str | None = None):
    """After remove / make default / autopay: the block for htmx, else a redirect with a flash."""
    if is_htmx():
        return _page(notice=message, action_error=error, block="saved_methods")
    if error:
        flash(error, "error")
    elif message:
        flash(message, "success")
    return redirect(url_for("client.payment_methods"), code=303)


@bp.get("/payment-methods")
def payment_methods():
    return _page()


@bp.post("/payment-methods/add")
def payment_method_add():
    """Sandbox: save the test card or account typed here. Stripe: start a SetupIntent and mount the
    Payment Element for it (the browser confirms, then returns to ``payment_method_added``)."""
    contact = current_user._get_current_object()
    form = PayForm()
    typed = form.typed
    try:
        added = methods_service.add_method(contact.client_id, contact, typed["method"], form.number, typed["expiry"],
                                           typed["cvc"])
    except ServiceError as exc:
        return _page(typed, add_error=exc, status=422)
    if isinstance(added, dict):  # Stripe: the page now mounts the Payment Element for this SetupIntent
        return _page(stripe=added)
    method = added
    flash(f"Saved: {methods_service.describe(method)}.", "success")
    return redirect(url_for("client.payment_methods"), code=303)


@bp.get("/payment-methods/added")
def payment_method_added():
    """Stripe's return after the Payment Element confirmed a SetupIntent: store the method (once),
    only if that SetupIntent is this client's."""
    contact = current_user._get_current_object()
    setup_intent_id = request.args.get("setup_intent", "")[:100]
    if not setup_intent_id:
        return redirect(url_for("client.payment_methods"), code=303)
    try:
        method = methods_service.apply_setup_intent(contact.client_id, setup_intent_id, contact)
    except NotFound:
        abort(404)
    except ServiceError as exc:
        flash(exc.message, "error")
    else:
        flash(f"Saved: {methods_service.describe(method)}.", "success")
    return redirect(url_for("client.payment_methods"), code=303)


@bp.post("/payment-methods/<int:method_id>/remove")
def payment_method_remove(method_id: int):
    try:
        result = methods_service.remove(current_user.client_id, method_id, Actor.of(current_user))
    except NotFound:
        abort(404)
    except ServiceError as exc:
        return _done(None, exc.message)
    message = f"Removed: {methods_service.describe(result['method'])}."
    if result["new_default"] is not None:
        message += f" Your default is now {methods_service.describe(result['new_default'])}."
    if result["autopay_off"]:
        message += " Autopay is now off: there is no payment method left to charge."
    return _done(message)


@bp.post("/payment-methods/<int:method_id>/default")
def payment_method_default(method_id: int):
    try:
        method = methods_service.set_default(current_user.client_id, method_id, Actor.of(current_user))
    except NotFound:
        abort(404)
    except ServiceError as exc:
        return _done(None, exc.message)
    return _done(f"Your default payment method is now {methods_service.describe(method)}.")


@bp.post("/payment-methods/autopay")
def payment_methods_autopay():
    on = request.form.get("autopay") == "on"
    try:
        client = methods_service.set_autopay(current_user.client_id, on, Actor.of(current_user))
    except NotFound:
        abort(404)
    except ServiceError as exc:
        if is_htmx():
            return _done(None, exc.message)
        return _page(action_error=exc.message, status=422)
    if client.autopay:
        return _done(f"Autopay is on. We charge your default payment method "
                     f"{methods_service.autopay_timing_text(client)}.")
    return _done("Autopay is off. Pay each invoice yourself when it arrives.")
