"""The public checkout link of a self-serve plan (R1): /subscribe/<key>, shared by staff.

It shows the plan with the business's branding. A signed-in contact goes on to the plan's page in the
portal; a visitor signs in first and comes back to it (``next=``: the portal's login follows only a
path inside /portal/). An unknown key, or a plan that is archived or not self-serve, is a 404.
"""
from __future__ import annotations

from flask import abort, redirect, render_template, url_for
from flask_login import current_user

from portal.models import Contact
from portal.services import subscriptions
from portal.services.errors import NotFound
from portal.web.public import bp


@bp.get("/subscribe/<key>")
def subscribe(key: str):
    try:
        offer = subscriptions.public_offer(key[:64])
    except NotFound:
        abort(404)
    plan_page = url_for("client.subscription_plan", plan_id=offer.plan.id)
    principal = current_user._get_current_object()
    if isinstance(principal, Contact) and principal.is_authenticated:
        return redirect(plan_page, code=303)
    return render_template("public/subscribe.html", offer=offer,
                           sign_in=url_for("auth.portal_login", next=plan_page),
                           signed_in_staff=principal.is_authenticated)
