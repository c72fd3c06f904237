from __future__ import annotations

from flask import Response, abort, g, request

from portal.services import deliveries
from portal.web.rendering import render
from portal.web.staff import bp


@bp.get("/emails")
def emails():
    status = request.args.get("status") or None
    page = request.args.get("page", 1, type=int)
    result = deliveries.list_emails(status=status, page=max(page, 1))
    return render("staff/emails.html", block="email_rows", emails=result, status=status,
                  counts=deliveries.counts_by_status())


@bp.get("/emails/<int:delivery_id>")
def email_detail(delivery_id: int):
    delivery = deliveries.get_delivery(delivery_id)
    if delivery is None or delivery.kind != "email":
        abort(404)
    return render("staff/email_detail.html", delivery=delivery)


@bp.get("/emails/<int:delivery_id>/body")
def email_body(delivery_id: int):
    """The email's HTML exactly as sent, framed by the detail page in a sandbox."""
    delivery = deliveries.get_delivery(delivery_id)
    if delivery is None or delivery.kind != "email":
        abort(404)
    g.allow_same_origin_frame = True
    response = Response(delivery.payload.get("html") or "", mimetype="text/html")
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data: https:; "
        "frame-ancestors 'self'; base-uri 'none'; form-action 'none'; "
        "sandbox allow-popups allow-popups-to-escape-sandbox allow-top-navigation-by-user-activation"
    )
    return response
