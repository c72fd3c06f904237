"""The "Billing runs" page (/staff/billing-runs): each run (when, trigger, subscriptions, invoices,
caught up, errors, duration, status), "Run billing now", and while a run is going a progress bar that
htmx polls every 2 s (the same URL answers an htmx request with just the runs block)."""
from __future__ import annotations

from flask import flash, redirect, url_for

from portal import clock
from portal.services import subscriptions
from portal.web.rendering import page_arg, render
from portal.web.staff import bp
from portal.web.subscription_forms import ActionForm


@bp.get("/billing-runs")
def billing_runs():
    return render("staff/billing_runs/index.html", block="runs", page=subscriptions.runs_page(page_arg()))


@bp.post("/billing-runs")
def billing_run_start():
    form = ActionForm()
    form.validate_on_submit()  # CSRF is checked before the view (CSRFProtect): a missing token is a 400
    started = clock.now()
    handed = subscriptions.enqueue_run(started, "staff")
    latest = subscriptions.list_runs(1).items[:1]
    if handed:
        flash(f"Billing run started: {handed} subscription{'s' if handed != 1 else ''} to bill.", "success")
    elif latest and latest[0].status == "interrupted" and latest[0].started_at >= started:
        flash("The billing run could not reach the workers (the queue is down), so nothing was started. "
              "The next automatic run tries again within a minute of the queue coming back.", "error")
    else:
        flash("Nothing to bill: no subscription has an invoice due today.", "info")
    return redirect(url_for("staff.billing_runs"), code=303)
