"""Signing this browser out: shared by the sign-out buttons (auth) and the profile pages' session
lists (staff and portal), which end the current session the same way."""
from __future__ import annotations

from flask import flash, redirect, session, url_for
from flask_login import logout_user

from portal.services import sessions as session_service
from portal.web import SESSION_TOKEN

LOGIN = {"staff": "auth.staff_login", "contact": "auth.portal_login"}


def sign_out_this_browser(kind: str):
    """End this browser's server-side session, forget it, and go to the login page."""
    session_service.end_token(session.get(SESSION_TOKEN), "logout")
    logout_user()
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for(LOGIN[kind]))
