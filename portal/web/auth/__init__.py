"""Sign in and out, password reset, portal invitations and portal links.

The same views serve both kinds of principal; ``kind`` picks the table, the
templates' wording and where to go after. Answers never say whether an email
is known.
"""
from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, g, redirect, request, session, url_for
from flask_login import current_user, login_user

from portal.extensions import limiter
from portal.services import auth as auth_service
from portal.services import sessions as session_service
from portal.services.errors import ServiceError
from portal.web.forms import ForgotPasswordForm, LoginForm, SetPasswordForm
from portal.web import SESSION_TOKEN
from portal.web.rendering import render, safe_next
from portal.web.sign_out import sign_out_this_browser

bp = Blueprint("auth", __name__)

HOME = {"staff": "staff.dashboard", "contact": "client.home"}
AREA = {"staff": "/staff/", "contact": "/portal/"}


def _login_limit():
    return current_app.config["RATELIMIT_LOGIN"]


def _reset_limit():
    return current_app.config["RATELIMIT_RESET"]


def _token_limit():
    return current_app.config["RATELIMIT_TOKEN_PAGE"]


def _email_key():
    return "email:" + auth_service.normalise_email(request.form.get("email"))


def _sign_in(principal) -> None:
    # A fresh session at login: nothing from before carries over, and a server-side session
    # record (services/sessions.py) whose token only this cookie holds.
    session_service.end_token(session.get(SESSION_TOKEN), "replaced")
    session.clear()
    raw = session_service.start(principal, request.remote_addr, request.user_agent.string)
    login_user(principal)
    session[SESSION_TOKEN] = raw
    session.permanent = True


def _login(kind: str):
    if current_user.is_authenticated and getattr(current_user, "kind", None) == kind:
        return redirect(url_for(HOME[kind]))
    form = LoginForm()
    error = None
    if form.validate_on_submit():
        principal = auth_service.authenticate(kind, form.email.data, form.password.data)
        if principal is not None:
            _sign_in(principal)
            return redirect(safe_next(request.args.get("next"), AREA[kind], url_for(HOME[kind])))
        error = "That email and password don't match an account."
    elif request.method == "POST":
        error = "Enter your email and password."
    return render("auth/login.html", form=form, kind=kind, error=error,
                  expired=request.args.get("expired") == "1")


def _logout(kind: str):
    if current_user.is_authenticated and getattr(current_user, "kind", None) != kind:
        abort(403)  # one kind's sign-out is no door for the other kind
    return sign_out_this_browser(kind)


def _forgot(kind: str):
    form = ForgotPasswordForm()
    if form.validate_on_submit():
        auth_service.request_password_reset(kind, form.email.data)
        return render("auth/forgot_sent.html", kind=kind)
    return render("auth/forgot.html", form=form, kind=kind)


def _set_password_page(kind: str, purpose: str, token: str, action):
    g.token_page = True
    form = SetPasswordForm()
    if request.method == "GET" and not auth_service.check_token(purpose, token, kind):
        return render("auth/link_invalid.html", kind=kind, purpose=purpose), 410
    error = None
    if form.validate_on_submit():
        try:
            principal = action(token, form.password.data)
        except ServiceError as exc:
            if exc.field == "password":
                form.password.errors = [exc.message]
            else:
                return render("auth/link_invalid.html", kind=kind, purpose=purpose, message=exc.message), 410
        else:
            _sign_in(principal)
            flash("Your password is set. You're signed in.", "success")
            return redirect(url_for(HOME[kind]))
    return render("auth/set_password.html", form=form, kind=kind, purpose=purpose, error=error)


# Staff ---------------------------------------------------------------------

@bp.route("/staff/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
@limiter.limit(_login_limit, methods=["POST"], key_func=_email_key)
def staff_login():
    return _login("staff")


@bp.post("/staff/logout")
def staff_logout():
    return _logout("staff")


@bp.route("/staff/password/forgot", methods=["GET", "POST"])
@limiter.limit(_reset_limit, methods=["POST"])
def staff_forgot():
    return _forgot("staff")


@bp.route("/staff/password/reset/<token>", methods=["GET", "POST"])
@limiter.limit(_token_limit)
def staff_reset(token: str):
    return _set_password_page("staff", "password_reset", token,
                              lambda raw, pw: auth_service.reset_password("staff", raw, pw))


# Client portal -----------------------------------------------------------------

@bp.route("/portal/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
@limiter.limit(_login_limit, methods=["POST"], key_func=_email_key)
def portal_login():
    return _login("contact")


@bp.post("/portal/logout")
def portal_logout():
    return _logout("contact")


@bp.route("/portal/password/forgot", methods=["GET", "POST"])
@limiter.limit(_reset_limit, methods=["POST"])
def portal_forgot():
    return _forgot("contact")


@bp.route("/portal/password/reset/<token>", methods=["GET", "POST"])
@limiter.limit(_token_limit)
def portal_reset(token: str):
    return _set_password_page("contact", "password_reset", token,
                              lambda raw, pw: auth_service.reset_password("contact", raw, pw))


@bp.route("/portal/invite/<token>", methods=["GET", "POST"])
@limiter.limit(_token_limit)
def portal_invite(token: str):
    return _set_password_page("contact", "portal_invite", token, auth_service.accept_invite)


@bp.route("/portal/link/<token>", methods=["GET", "POST"])
@limiter.limit(_token_limit)
def portal_magic(token: str):
    """GET shows a button; only the POST signs in (a link scanner's GET changes nothing)."""
    g.token_page = True
    if request.method == "GET":
        if not auth_service.check_token("portal_link", token, "contact"):
            return render("auth/link_invalid.html", kind="contact", purpose="portal_link"), 410
        return render("auth/magic.html", token=token)
    try:
        contact = auth_service.use_portal_link(token)
    except ServiceError as exc:
        return render("auth/link_invalid.html", kind="contact", purpose="portal_link", message=exc.message), 410
    _sign_in(contact)
    return redirect(url_for(HOME["contact"]))


__all__ = ["bp"]
