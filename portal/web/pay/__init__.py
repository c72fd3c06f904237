"""The guest invoice page: /pay/<token>, no account needed.

A token opens only its own finalized invoice; drafts, unknown and revoked
tokens are 404. ``invoice.viewed`` is recorded once per token, on the first
time it opens the invoice at all (the page, or the PDF fetched directly): a
later view or download through the same token records nothing more.
"""
from __future__ import annotations

from flask import Blueprint, abort, current_app, g

from portal.extensions import limiter
from portal.services import invoices as invoice_service
from portal.web.downloads import invoice_pdf
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


@bp.get("/pay/<token>")
@_limit
def invoice(token: str):
    found = _invoice_or_404(token)
    return render("pay/invoice.html", token=token, **invoice_service.client_document(found))


@bp.get("/pay/<token>/pdf")
@_limit
def invoice_pdf_download(token: str):
    return invoice_pdf(_invoice_or_404(token))
