"""Who may reach which URL space. Each blueprint installs one of these."""
from __future__ import annotations

from flask import abort, g, redirect, request, url_for
from flask_login import current_user

from portal.models import Contact, StaffUser


def _to_login(endpoint: str):
    args = {"next": request.full_path.rstrip("?")} if request.method == "GET" else {}
    if g.get("session_expired"):
        args["expired"] = "1"
    return redirect(url_for(endpoint, **args))


def require_staff():
    """Staff pages: a staff login, never a client contact's."""
    if isinstance(current_user._get_current_object(), StaffUser) and current_user.is_authenticated:
        return None
    if current_user.is_authenticated:
        abort(403)
    return _to_login("auth.staff_login")


def require_owner():
    if not (isinstance(current_user._get_current_object(), StaffUser) and current_user.is_owner):
        abort(403)


def require_contact():
    """Client portal pages: a contact's login; a staff login is not a client."""
    if isinstance(current_user._get_current_object(), Contact) and current_user.is_authenticated:
        return None
    if current_user.is_authenticated:
        abort(403)
    return _to_login("auth.portal_login")
