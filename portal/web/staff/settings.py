from __future__ import annotations

from flask import flash, redirect, request, url_for
from flask_login import current_user
from werkzeug.datastructures import FileStorage
from wtforms import BooleanField

from portal.services import settings as settings_service
from portal.services.errors import ServiceError
from portal.services.events import Actor
from portal.web.forms import SettingsForm, WholeNumberField, show_errors
from portal.web.guards import require_owner
from portal.web.rendering import render
from portal.web.staff import bp

FIELDS = settings_service.EDITABLE


class BusinessSettingsForm(SettingsForm):
    """The settings page's form: the shared fields, and recurring billing's (R1). The service checks them."""

    review_recurring_invoices = BooleanField(
        "Review recurring invoices before sending",
        description="On: each cycle's invoice (subscriptions and monthly billing cycles) is left as a draft "
                    "for you to check and send. Off: it is finalized and sent at once.")
    upcoming_notice_days = WholeNumberField(
        "Upcoming-invoice notice: days before",
        render_kw={"min": settings_service.UPCOMING_NOTICE_DAYS[0], "max": settings_service.UPCOMING_NOTICE_DAYS[1]},
        description="Clients get one email per period this many days before a subscription's invoice: the "
                    "amount, the date and the card that will be charged. Leave empty for no notice.")
    clients_cancel_subscriptions = BooleanField(
        "Clients may cancel their subscriptions (at period end)",
        description="In the portal; the subscription runs to the end of the period already paid for.")


@bp.route("/settings", methods=["GET", "POST"])
def settings():
    business = settings_service.get_business()
    form = BusinessSettingsForm(obj=business, payment_terms="receipt" if business.payment_terms_days == 0 else "net",
                        invoice_next_number_was=str(business.invoice_next_number))
    if request.method == "POST":
        require_owner()
        if form.validate_on_submit():
            upload = form.logo.data
            logo = None
            # Without a new file the field keeps the stored logo's bytes (from obj=business).
            if isinstance(upload, FileStorage) and upload.filename:
                logo = (upload.read(settings_service.LOGO_MAX_BYTES + 1), upload.mimetype)
            values = {name: getattr(form, name).data for name in FIELDS}
            values["currency"] = (values.get("currency") or "").upper()
            if form.payment_terms.data == "receipt":
                values["payment_terms_days"] = 0
            # The next number is checked (and the counter held) only when the owner changed it.
            if form.invoice_next_number.data is None or \
                    str(form.invoice_next_number.data) == (form.invoice_next_number_was.data or ""):
                values.pop("invoice_next_number", None)
            try:
                settings_service.update_business(values, Actor.of(current_user), logo=logo,
                                                 remove_logo=form.remove_logo.data)
            except ServiceError as exc:
                show_errors(form, getattr(exc, "errors", None) or {"name": exc.message})
            else:
                flash("Settings saved.", "success")
                return redirect(url_for("staff.settings"))
        return render("staff/settings.html", form=form,
                      used_up_to=settings_service.highest_invoice_sequence()), 422
    return render("staff/settings.html", form=form, used_up_to=settings_service.highest_invoice_sequence())
