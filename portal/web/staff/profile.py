"""The staff user's own profile (/staff/profile): details, active sessions, password change.

Every session action is scoped to the signed-in user: another user's session id is a 404.
"""
from __future__ import annotations

from flask import flash, redirect, url_for
from flask_login import current_user, login_user

from portal.services import auth as auth_service
from portal.services import sessions as session_service
from portal.services.errors import ServiceError
from portal.web import current_session_id
from portal.web.forms import ChangePasswordForm
from portal.web.sign_out import end_other_sessions, end_session
from portal.web.rendering import render
from portal.web.staff import bp


def _page(password_form=None, status: int = 200):
    user = current_user._get_current_object()
    return render("staff/profile.html", user=user, password_form=password_form or ChangePasswordForm(formdata=None),
                  sessions=session_service.list_active(user, current_session_id()),
                  end_endpoint="staff.profile_session_end",
                  end_others_endpoint="staff.profile_sessions_end_others"), status


@bp.get("/profile")
def profile():
    return _page()


@bp.post("/profile/password")
def profile_password():
    form = ChangePasswordForm()
    if form.validate_on_submit():
        user = current_user._get_current_object()
        try:
            auth_service.change_own_password(user, form.current_password.data, form.password.data,
                                             keep_session=current_session_id())
        except ServiceError as exc:
            getattr(form, exc.field or "password").errors = [exc.message]
        else:
            login_user(user)  # the new nonce; this browser's session record carries on
            flash("Your password is changed. Other sessions were signed out.", "success")
            return redirect(url_for("staff.profile"), code=303)
    return _page(password_form=form, status=422)


@bp.post("/profile/sessions/<int:session_id>/end")
def profile_session_end(session_id: int):
    return end_session("staff", session_id, back="staff.profile")


@bp.post("/profile/sessions/end-others")
def profile_sessions_end_others():
    return end_other_sessions(back="staff.profile")
