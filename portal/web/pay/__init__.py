"""The guest invoice page: /pay/<token>, no account needed."""
from __future__ import annotations

from flask import Blueprint, abort, g

from portal.extensions import limiter
from portal.services import invoices as invoice_service
from portal.web.rendering import render

bp = Blueprint("pay", __name__)


def _token_limit():
    from flask import current_app

    return current_app.config["RATELIMIT_TOKEN_PAGE"]


@bp.get("/pay/<token>")
@limiter.limit(_token_limit)
def invoice(token: str):
    g.token_page = True
    found = invoice_service.invoice_for_token(token)
    if found is None:
        abort(404)
    return render("pay/invoice.html", token=token, **invoice_service.document(found))
