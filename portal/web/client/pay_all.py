"""The client portal's "Pay all open invoices" and payment receipts. F4."""
from __future__ import annotations

from flask import abort, current_app, flash, jsonify, redirect, request, url_for
from flask_login import current_user

from portal.services import payments
from portal.services.errors import NotFound, ServiceError
from portal.services.events import Actor
from portal.web import downloads
from portal.web.client import bp
from portal.web.forms import PayForm
from portal.web.rendering import render

_OUTCOME_FLASH = {
    "paid": ("Payment received. Thank you! A receipt is on its way to your email.", "success"),
    "processing": ("Your bank payment is processing. The invoices show as paid once it has cleared.", "info"),
    "failed": ("Your payment didn't go through. Nothing was charged. You can try again.", "error"),
    "pending": ("We haven't received your payment yet. Nothing has been charged.", "info"),
}


def _page(currency: str, typed: dict | None = None, error: ServiceError | None = None,
          stripe: dict | None = None, status: int = 200):
    context = payments.pay_all_page(current_user.client_id, currency)
    html = render("client/pay_all.html", typed=typed or {"method": "card"}, pay_error=error, stripe=stripe,
                  publishable_key=current_app.config.get("STRIPE_PUBLISHABLE_KEY"),
                  return_url=url_for("client.pay_all_done", _external=True), **context)
    return html, status


@bp.context_processor
def _autopay_note():
    """client/_autopay_note.html: "will be charged to VISA •••• 4242 on <date>" on an invoice page
    (a callable: pages that don't show it cost nothing)."""
    from portal.services import autopay

    return {"autopay_note_for": autopay.portal_note}


@bp.get("/pay-all")
def pay_all_page():
    """The invoices one payment will pay (oldest first), their total, and the pay form."""
    return _page(request.args.get("currency", "")[:3])


@bp.post("/pay-all")
def pay_all_submit():
    currency = request.form.get("currency", "")[:3]
    quote = request.form.get("quote", "")[:20000]
    form = PayForm()
    typed = form.typed
    actor = Actor.of(current_user)
    try:
        if form.use_saved.data == "1":
            result = payments.pay_all_saved(current_user.client_id, currency, actor, quote)
        else:
            result = payments.pay_all(current_user.client_id, currency, actor, typed["method"], form.number, quote)
    except ServiceError as exc:
        return _page(currency, typed, exc, status=422)
    if result["client_secret"]:  # Stripe: the page now mounts the Payment Element for this intent
        return _page(currency, typed, stripe=result)
    payment = result["payment"]
    message, category = _OUTCOME_FLASH[payments.payment_state(payment)]
    flash(message, category)
    return redirect(url_for("client.receipt", payment_id=payment.id), code=303)


@bp.post("/payments/<int:payment_id>/check")
def payment_check(payment_id: int):
    """Stripe.js asks this just before it confirms one of this client's attempts (JSON)."""
    try:
        payments.recheck(payment_id, client_id=current_user.client_id)
    except NotFound:
        abort(404)
    except ServiceError as exc:
        return jsonify(ok=False, message=exc.message), 409
    return jsonify(ok=True)


@bp.get("/pay-all/done")
def pay_all_done():
    """Where Stripe returns after a "pay all": say how it went; the receipt once money moved."""
    intent_id = request.args.get("payment_intent", "")[:100]
    if not intent_id:
        abort(404)
    try:
        outcome = payments.pay_all_outcome(current_user.client_id, intent_id)
    except NotFound:
        abort(404)
    message, category = _OUTCOME_FLASH[outcome["state"]]
    flash(message, category)
    payment = outcome["payment"]
    if outcome["state"] in ("paid", "processing"):
        return redirect(url_for("client.receipt", payment_id=payment.id), code=303)
    return redirect(url_for("client.pay_all_page", currency=payment.currency), code=303)


@bp.get("/payments/<int:payment_id>/receipt")
def receipt(payment_id: int):
    try:
        context = payments.client_receipt(current_user.client_id, payment_id)
    except NotFound:
        abort(404)
    return render("client/receipt.html", **context)


@bp.get("/payments/<int:payment_id>/receipt.pdf")
def receipt_pdf(payment_id: int):
    try:
        data, name = payments.receipt_pdf(current_user.client_id, payment_id)
    except NotFound:
        abort(404)
    return downloads.pdf_response(data, name)
