"""The client portal's credit notes: listed on /portal/credit, each PDF downloadable. F4.

Every lookup is scoped to the signed-in contact's client: another client's credit note is a 404.
"""
from __future__ import annotations

from flask import abort
from flask_login import current_user

from portal.services import credit_notes
from portal.services.errors import NotFound
from portal.web import downloads
from portal.web.client import bp


@bp.get("/credit-notes/<int:credit_note_id>/pdf")
def credit_note_pdf(credit_note_id: int):
    try:
        note = credit_notes.get_credit_note(credit_note_id, client_id=current_user.client_id)
    except NotFound:
        abort(404)
    return downloads.credit_note_pdf(note)
