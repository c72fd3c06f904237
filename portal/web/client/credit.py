"""The client portal's credit balance and ledger (/portal/credit): the signed-in contact's own
client only (every contact of that client sees the same)."""
from __future__ import annotations

from flask_login import current_user

from portal.services import credit_notes, credits
from portal.web.client import bp
from portal.web.rendering import page_arg, render


@bp.get("/credit")
def credit():
    page = page_arg()
    return render("client/credit.html", block="credit_rows",
                  credit=credits.portal_credit(current_user.client_id, page=page),
                  credit_note_rows=credit_notes.client_credit_notes(current_user.client_id))
