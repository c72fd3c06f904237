"""Staff users (/staff/users), the owner's page: who may sign in, and deactivating a login
(which ends that user's sessions at once)."""
from __future__ import annotations

from flask import abort, flash, redirect, url_for
from flask_login import current_user

from portal.services import auth as auth_service
from portal.services.errors import NotFound, ServiceError
from portal.services.events import Actor
from portal.web.guards import require_owner
from portal.web.rendering import render
from portal.web.staff import bp


def _user_or_404(user_id: int):
    try:
        return auth_service.get_staff(user_id)
    except NotFound:
        abort(404)


@bp.get("/users")
def users():
    require_owner()
    return render("staff/users.html", users=auth_service.list_staff())


@bp.post("/users/<int:user_id>/deactivate")
def user_deactivate(user_id: int):
    require_owner()
    user = _user_or_404(user_id)
    try:
        auth_service.deactivate_staff(user, Actor.of(current_user))
    except ServiceError as exc:
        flash(exc.message, "error")
    else:
        flash(f"{user.email} is deactivated and signed out everywhere.", "success")
    return redirect(url_for("staff.users"), code=303)


@bp.post("/users/<int:user_id>/reactivate")
def user_reactivate(user_id: int):
    require_owner()
    user = _user_or_404(user_id)
    auth_service.reactivate_staff(user, Actor.of(current_user))
    flash(f"{user.email} can sign in again.", "success")
    return redirect(url_for("staff.users"), code=303)
