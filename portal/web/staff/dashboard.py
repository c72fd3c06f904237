from __future__ import annotations

from portal.services import reports
from portal.web.rendering import render
from portal.web.staff import bp


@bp.get("/")
def dashboard():
    return render("staff/dashboard.html", summary=reports.dashboard_summary())
