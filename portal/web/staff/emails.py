from __future__ import annotations

from flask import Response, abort, g, request
from flask_login import current_user

from portal.services import email_log
from portal.web.rendering import page_arg, render
from portal.web.staff import bp

# Every view here reads the log through services.email_log, which holds secret links back
# from everyone but the owner; none of them touches a delivery's raw payload.


@bp.get("/emails")
def emails():
    status = (request.args.get("status") or "")[:20] or None
    q = (request.args.get("q") or "").strip()[:email_log.SEARCH_MAX]
    page = page_arg()
    result = email_log.page(current_user, status=status, page=page, q=q or None)
    return render("staff/emails.html", block="email_rows", emails=result, status=status, q=q,
                  counts=email_log.counts_by_status(), search_window=email_log.SEARCH_WINDOW)


@bp.get("/emails/<int:delivery_id>")
def email_detail(delivery_id: int):
    delivery = email_log.get(current_user, delivery_id)
    if delivery is None:
        abort(404)
    return render("staff/email_detail.html", delivery=delivery, sender=email_log.sender())


@bp.get("/emails/<int:delivery_id>/body")
def email_body(delivery_id: int):
    """The email's HTML as sent (secret links held back from all but the owner), framed in a sandbox."""
    delivery = email_log.get(current_user, delivery_id)
    if delivery is None:
        abort(404)
    g.allow_same_origin_frame = True
    response = Response(delivery.html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data: https:; "
        "frame-ancestors 'self'; base-uri 'none'; form-action 'none'; "
        "sandbox allow-popups allow-popups-to-escape-sandbox allow-top-navigation-by-user-activation"
    )
    response.headers["Cache-Control"] = "no-store"
    return response
