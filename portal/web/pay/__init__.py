"""The guest invoice page: /pay/<token>, no account needed.

A token opens only its own finalized invoice; drafts, unknown and revoked
tokens are 404. ``invoice.viewed`` is recorded once per token, on the first
time it opens the invoice at all (the page, or the PDF fetched directly): a
later view or download through the same token records nothing more.

Paying (F3): with the sandbox gateway the page posts a test card or bank
account to ``/pay/<token>/pay``, which confirms it on the server; with Stripe
the same POST starts (or reuses) the invoice's PaymentIntent and the page
mounts Stripe's Payment Element with its client secret (``static/js/stripe-pay.js``),
which confirms in the browser and returns to ``/pay/<token>/done``.
"""
from __future__ import annotations

from flask import Blueprint, abort, current_app, g, jsonify, redirect, request, url_for

from portal.extensions import limiter
from portal.services import invoices as invoice_service
from portal.services import payments
from portal.services.errors import NotFound, ServiceError
from portal.web import downloads
from portal.web.forms import PayForm
from portal.web.rendering import render

bp = Blueprint("pay", __name__)


@bp.url_value_preprocessor
def _token_page(endpoint, values):
    # Runs before every before_request hook, the rate limiter's included, so a
    # 429 or 404 for a token URL gets no-referrer and no-store like the page.
    g.token_page = True


def _token_limit():
    return current_app.config["RATELIMIT_TOKEN_PAGE"]


# The page and its PDF share one budget per address: guessing tokens through either costs the same.
_limit = limiter.shared_limit(_token_limit, scope="guest-token")


def _invoice_or_404(token: str):
    found = invoice_service.invoice_for_token(token)
    if found is None:
        abort(404)
    return found


def _page(token: str, invoice, typed: dict | None = None, error: ServiceError | None = None,
          stripe: dict | None = None, status: int = 200):
    context = invoice_service.client_document(invoice)
    context.update(payments.checkout_options(invoice))
    html = render("pay/invoice.html", token=token, typed=typed or {"method": "card"}, pay_error=error,
                  stripe=stripe, publishable_key=current_app.config.get("STRIPE_PUBLISHABLE_KEY"), **context)
    return html, status


@bp.get("/pay/<token>")
@_limit
def invoice(token: str):
    return _page(token, _invoice_or_404(token))


@bp.post("/pay/<token>/pay")
@_limit
def pay(token: str):
    found = _invoice_or_404(token)
    form = PayForm()
    typed = form.typed
    try:
        checkout = payments.guest_pay(found.id, typed["method"], form.number)
    except ServiceError as exc:
        return _page(token, found, typed, exc, status=422)
    if checkout is not None:  # Stripe: the page now mounts the Payment Element for this intent
        return _page(token, found, typed, stripe=checkout)
    return redirect(url_for("pay.done", token=token), code=303)


@bp.post("/pay/<token>/check/<int:payment_id>")
@_limit
def check(token: str, payment_id: int):
    """Stripe.js asks this just before it confirms: does the attempt still stand? (JSON)"""
    found = _invoice_or_404(token)
    try:
        payments.recheck(payment_id, invoice_id=found.id)
    except NotFound:
        abort(404)
    except ServiceError as exc:
        return jsonify(ok=False, message=exc.message), 409
    return jsonify(ok=True)


@bp.get("/pay/<token>/done")
@_limit
def done(token: str):
    found = _invoice_or_404(token)
    intent_id = request.args.get("payment_intent", "")[:100] or None
    try:
        outcome = payments.payment_outcome(found.id, intent_id)
    except NotFound:
        abort(404)
    return render("pay/done.html", token=token, currency=found.currency, **outcome)


@bp.get("/pay/<token>/pdf")
@_limit
def invoice_pdf_download(token: str):
    return downloads.invoice_pdf(_invoice_or_404(token))
