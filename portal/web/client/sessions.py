"""The portal profile's session list (/portal/profile): sign out one of your own sessions, or all
the others. Another principal's session id is a 404."""
from __future__ import annotations

from flask import abort, flash, redirect, url_for
from flask_login import current_user

from portal.services import sessions as session_service
from portal.services.errors import NotFound
from portal.web import current_session_id
from portal.web.client import bp
from portal.web.sign_out import sign_out_this_browser


@bp.post("/profile/sessions/<int:session_id>/end")
def profile_session_end(session_id: int):
    if session_id == current_session_id():
        return sign_out_this_browser("contact")
    try:
        session_service.sign_out(current_user._get_current_object(), session_id)
    except NotFound:
        abort(404)
    flash("That session is signed out.", "success")
    return redirect(url_for("client.profile"), code=303)


@bp.post("/profile/sessions/end-others")
def profile_sessions_end_others():
    ended = session_service.sign_out_others(current_user._get_current_object(), current_session_id())
    flash(f"Signed out {ended} other session{'s' if ended != 1 else ''}.", "success")
    return redirect(url_for("client.profile"), code=303)
