"""The client portal (/portal/…): what a client's contact sees after signing in.

Every invoice query is scoped to the signed-in contact's client: another
client's invoice, or a draft, is a 404.
"""
from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, request, url_for
from flask_login import current_user, login_user

from portal.services import auth as auth_service
from portal.services import credits, payment_methods, payments
from portal.services import invoices as invoice_service
from portal.services.errors import NotFound, ServiceError
from portal.web import downloads
from portal.web.forms import ChangePasswordForm, PayForm, ProfileForm
from portal.web.guards import require_contact
from portal.web.rendering import page_arg, render

bp = Blueprint("client", __name__)
bp.before_request(require_contact)


def _invoice_or_404(invoice_id: int):
    try:
        return invoice_service.client_invoice(current_user.client_id, invoice_id)
    except NotFound:
        abort(404)


HOME_INVOICES = 5


@bp.get("/")
def home():
    contact = current_user._get_current_object()
    invoices = invoice_service.client_invoices(contact.client_id, page=1, per_page=HOME_INVOICES)
    return render("client/home.html", contact=contact, client=contact.client, invoices=invoices,
                  credit_summary=credits.portal_summary(contact.client_id),
                  methods_summary=payment_methods.portal_summary(contact.client_id),
                  pay_all=payments.pay_all_summary(contact.client_id))


@bp.context_processor
def _restriction_banner():
    """The restriction banner on every portal page (client/_restriction_banner.html): a callable,
    so a client that is not restricted costs nothing."""
    from portal.services import restrictions

    return {"portal_restriction": lambda: restrictions.notice(current_user.client)}


@bp.get("/invoices")
def invoices():
    page = page_arg()
    status = request.args.get("status", "all")
    if status not in invoice_service.PORTAL_STATUS_FILTERS:
        status = "all"  # an unknown filter shows everything
    result = invoice_service.client_invoices(current_user.client_id, page=page, status=status)
    return render("client/invoices.html", block="invoice_rows", invoices=result, status=status,
                  filters=invoice_service.PORTAL_STATUS_FILTERS)


def _invoice_page(invoice, typed: dict | None = None, error: ServiceError | None = None,
                  stripe: dict | None = None, status: int = 200):
    context = invoice_service.client_document(invoice)
    context.update(payments.checkout_options(invoice))
    html = render("client/invoice.html", typed=typed or {"method": "card"}, pay_error=error, stripe=stripe,
                  publishable_key=current_app.config.get("STRIPE_PUBLISHABLE_KEY"),
                  pay_action=url_for("client.pay", invoice_id=invoice.id),
                  return_url=url_for("client.payment_done", invoice_id=invoice.id, _external=True), **context)
    return html, status


@bp.get("/invoices/<int:invoice_id>")
def invoice(invoice_id: int):
    return _invoice_page(_invoice_or_404(invoice_id))


@bp.post("/invoices/<int:invoice_id>/pay")
def pay(invoice_id: int):
    """Pay in place: the same service as the guest page, on an invoice of the contact's own client."""
    found = _invoice_or_404(invoice_id)
    form = PayForm()
    typed = form.typed
    try:
        checkout = payments.guest_pay(found.id, typed["method"], form.number)
    except ServiceError as exc:
        return _invoice_page(found, typed, exc, status=422)
    if checkout is not None:  # Stripe: the page now mounts the Payment Element for this intent
        return _invoice_page(found, typed, stripe=checkout)
    return redirect(url_for("client.payment_done", invoice_id=found.id), code=303)


_OUTCOME_FLASH = {
    "paid": ("Payment received. Thank you! A receipt is on its way to your email.", "success"),
    "processing": ("Your bank payment is processing. The invoice shows as paid once it has cleared.", "info"),
    "failed": ("Your payment didn't go through. Nothing was charged. You can try again.", "error"),
    "pending": ("We haven't received your payment yet. Nothing has been charged.", "info"),
}


@bp.get("/invoices/<int:invoice_id>/paid")
def payment_done(invoice_id: int):
    """Where a payment lands (the sandbox's redirect, Stripe's return): say how it went, back on the invoice."""
    found = _invoice_or_404(invoice_id)
    intent_id = request.args.get("payment_intent", "")[:100] or None
    try:
        outcome = payments.payment_outcome(found.id, intent_id)
    except NotFound:
        abort(404)
    message, category = _OUTCOME_FLASH[outcome["state"]]
    flash(message, category)
    return redirect(url_for("client.invoice", invoice_id=found.id), code=303)


@bp.get("/invoices/<int:invoice_id>/pdf")
def invoice_pdf_download(invoice_id: int):
    return downloads.invoice_pdf(_invoice_or_404(invoice_id))


@bp.get("/payments")
def payment_history():
    page = page_arg()
    history = payments.client_payment_history(current_user.client_id, page=page)
    return render("client/payments.html", block="payment_rows", **history)


def _profile_page(profile_form=None, password_form=None, status: int = 200):
    contact = current_user._get_current_object()
    profile_form = profile_form or ProfileForm(obj=contact, formdata=None)
    password_form = password_form or ChangePasswordForm(formdata=None)
    from portal.services import restrictions
    from portal.services import sessions as session_service
    from portal.web import current_session_id

    return render("client/profile.html", contact=contact, profile_form=profile_form,
                  profile_blocked=restrictions.refusal(contact.client, "profile"),
                  password_form=password_form, sessions=session_service.list_active(contact, current_session_id()),
                  end_endpoint="client.profile_session_end",
                  end_others_endpoint="client.profile_sessions_end_others"), status


@bp.get("/profile")
def profile():
    return _profile_page()


@bp.post("/profile")
def profile_save():
    form = ProfileForm()
    if form.validate_on_submit():
        try:
            auth_service.update_own_profile(current_user._get_current_object(), form.name.data, form.phone.data or "")
        except ServiceError as exc:
            getattr(form, exc.field or "name").errors = [exc.message]
        else:
            flash("Your details are saved.", "success")
            return redirect(url_for("client.profile"), code=303)
    return _profile_page(profile_form=form, status=422)


@bp.post("/profile/password")
def password_change():
    form = ChangePasswordForm()
    if form.validate_on_submit():
        contact = current_user._get_current_object()
        try:
            from portal.web import current_session_id

            auth_service.change_own_password(contact, form.current_password.data, form.password.data,
                                             keep_session=current_session_id())
        except ServiceError as exc:
            getattr(form, exc.field or "password").errors = [exc.message]
        else:
            login_user(contact)  # the new nonce ended every session; keep this one signed in
            flash("Your password is changed. Other devices were signed out.", "success")
            return redirect(url_for("client.profile"), code=303)
    return _profile_page(password_form=form, status=422)


# F4 pages live in their own modules; importing them registers their routes on ``bp``.
from portal.web.client import (  # noqa: E402,F401
    credit,
    credit_notes,
    methods,
    pay_all,
    sessions,  # noqa: E402,F401  (X1: the profile's session list)
)
from portal.web.client import subscriptions  # noqa: E402,F401  (R1: subscriptions, self-checkout)
