"""The client portal (/portal/…): what a client's contact sees after signing in."""
from __future__ import annotations

from flask import Blueprint
from flask_login import current_user

from portal.web.guards import require_contact
from portal.web.rendering import render

bp = Blueprint("client", __name__)
bp.before_request(require_contact)


@bp.get("/")
def home():
    contact = current_user._get_current_object()
    return render("client/home.html", contact=contact, client=contact.client)
