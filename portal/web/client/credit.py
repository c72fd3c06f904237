"""The client portal's credit balance and ledger (/portal/credit). F4 stub."""
from __future__ import annotations

from portal.web.client import bp
from portal.web.rendering import render


@bp.get("/credit")
def credit():
    return render("client/credit.html")
