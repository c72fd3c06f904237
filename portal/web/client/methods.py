"""The client portal's payment methods page (/portal/payment-methods). F4 stub."""
from __future__ import annotations

from portal.web.client import bp
from portal.web.rendering import render


@bp.get("/payment-methods")
def payment_methods():
    return render("client/payment_methods.html")
