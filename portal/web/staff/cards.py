"""Staff: charge a client's saved payment method ("Attempt card"). F4."""
from __future__ import annotations

from flask import abort, flash, redirect, url_for
from flask_login import current_user

from portal.billing.money import format_money
from portal.services import autopay
from portal.services.errors import NotFound, ServiceError
from portal.services.events import Actor
from portal.services.settings import get_business
from portal.web.staff import bp


@bp.post("/invoices/<int:invoice_id>/attempt-card")
def invoice_attempt_card(invoice_id: int):
    """Charge the client's default saved method for what the invoice is due; say how it went."""
    try:
        payment = autopay.attempt_card(invoice_id, Actor.of(current_user))
    except NotFound:
        abort(404)
    except ServiceError as exc:
        flash(exc.message, "error")
    else:
        amount = format_money(payment.amount, payment.currency, get_business().locale)
        if payment.status == "succeeded":
            flash(f"Charged {amount} to the saved payment method. The invoice is paid.", "success")
        elif payment.status == "processing":
            flash(f"The bank debit of {amount} is processing. The invoice shows as paid once it clears.", "info")
        elif payment.status == "failed":
            reason = (payment.failure_message or payment.failure_code or "declined").rstrip(".")
            flash(f"The charge of {amount} failed: {reason}. The client was told.", "error")
        else:
            flash(f"The charge of {amount} is pending at the payment gateway.", "info")
    return redirect(url_for("staff.invoice_detail", invoice_id=invoice_id) + "#card-panel", code=303)
