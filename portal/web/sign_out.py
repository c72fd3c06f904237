"""Signing out: this browser (the sign-out buttons), one of the principal's sessions, or all the
others -- shared by the auth blueprint and the staff and portal profile pages' session lists.
Every session action is scoped to the signed-in principal: another principal's session id is a 404."""
from __future__ import annotations

from flask import abort, flash, redirect, session, url_for
from flask_login import current_user, logout_user

from portal.services import sessions as session_service
from portal.services.errors import NotFound
from portal.web import SESSION_TOKEN, current_session_id

LOGIN = {"staff": "auth.staff_login", "contact": "auth.portal_login"}


def sign_out_this_browser(kind: str):
    """End this browser's server-side session, forget it, and go to the login page."""
    session_service.end_token(session.get(SESSION_TOKEN), "logout")
    logout_user()
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for(LOGIN[kind]))


def end_session(kind: str, session_id: int, back: str):
    """A profile page's "Sign out" on one of the principal's sessions (this one: sign out here)."""
    if session_id == current_session_id():
        return sign_out_this_browser(kind)
    try:
        session_service.sign_out(current_user._get_current_object(), session_id)
    except NotFound:
        abort(404)
    flash("That session is signed out.", "success")
    return redirect(url_for(back), code=303)


def end_other_sessions(back: str):
    """A profile page's "Sign out all other sessions"."""
    ended = session_service.sign_out_others(current_user._get_current_object(), current_session_id())
    flash(f"Signed out {ended} other session{'s' if ended != 1 else ''}.", "success")
    return redirect(url_for(back), code=303)
