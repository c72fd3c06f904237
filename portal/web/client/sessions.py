"""The portal profile's session list (/portal/profile): sign out one of your own sessions, or all
the others (``web/sign_out.py``, shared with the staff profile). Another principal's session id is a 404."""
from __future__ import annotations

from portal.web.client import bp
from portal.web.sign_out import end_other_sessions, end_session


@bp.post("/profile/sessions/<int:session_id>/end")
def profile_session_end(session_id: int):
    return end_session("contact", session_id, back="client.profile")


@bp.post("/profile/sessions/end-others")
def profile_sessions_end_others():
    return end_other_sessions(back="client.profile")
