"""Payments recorded by staff (money received outside the portal) and "Mark as paid". A payment above
the amount due needs staff's confirmation (``ExcessNeedsConfirmation``); refused while gateway money
for the invoice is on its way.
"""
from __future__ import annotations

from datetime import date, timedelta

from portal import clock
from portal.billing import states
from portal.billing.money import MoneyError, parse_amount
from portal.extensions import db
from portal.models import Invoice, Payment
from portal.models.payments import MANUAL_METHODS
from portal.services import credits, formats, locks, payments
from portal.services.errors import ServiceError
from portal.services.events import Actor, commit
from portal.services.invoices.drafts import InvoiceInvalid
from portal.services.settings import get_business

# Payments recorded by staff --------------------------------------------------------------------

class ExcessNeedsConfirmation(ServiceError):
    """A manual payment above the amount due: nothing was recorded; staff must confirm that the
    excess goes to the client's credit balance (``confirm_excess``)."""

    def __init__(self, amount: int, due: int, currency: str, client_name: str):
        self.amount, self.due, self.excess = amount, due, amount - due
        self.excess_text = formats.money(self.excess, currency)
        super().__init__(f"{self.excess_text} more than is due will go to {client_name}'s credit balance.",
                         field="amount")


def record_manual_payment(invoice: Invoice, amount_text: str, method: str, received_on: str,
                          reference: str, actor: Actor, confirm_excess: bool = True,
                          expected_due: int | None = None) -> Payment:
    """Record money received outside the portal. Partial payments allowed; money above the amount
    due goes to the client's credit balance (and says so on the receipt). The staff form passes
    ``confirm_excess=False`` until staff have confirmed the excess: then an amount above the amount
    due raises ``ExcessNeedsConfirmation`` (worked out under the row lock) and nothing is written;
    the confirmation carries the amount due it was shown (``expected_due``) and asks again if that
    changed. Refused while a gateway payment for the invoice is on its way."""
    invoice = locks.invoice(invoice.id)  # the amount due is checked and changed under the lock
    errors: dict[str, str] = {}
    if invoice.status not in states.PAYABLE:
        raise ServiceError(f"An invoice that is {invoice.status_label.lower()} takes no payments.")
    amount = 0
    try:
        amount = parse_amount(amount_text or "", invoice.currency, max_minor=MAX_PAYMENT, allow_negative=True)
        if amount <= 0:
            errors["amount"] = "Enter an amount above zero."
    except MoneyError as exc:
        errors["amount"] = "That amount is too large." if exc.reason == "range" else "Use an amount like 120.00."
    if method not in MANUAL_METHODS:
        errors["method"] = "Choose how it was paid."
    try:
        received = date.fromisoformat((received_on or "").strip()) if received_on else clock.today(
            get_business().timezone)
        if received > clock.today(get_business().timezone) + timedelta(days=1):
            errors["received_on"] = "The date can't be in the future."
    except ValueError:
        errors["received_on"] = "Use a date like 2026-12-31."
        received = None
    if errors:
        db.session.rollback()
        raise InvoiceInvalid(errors)
    _refuse_while_money_on_its_way(invoice)
    if amount > invoice.amount_due and (not confirm_excess or (expected_due is not None
                                                                and expected_due != invoice.amount_due)):
        # Not confirmed yet, or confirmed for another amount due (a payment arrived meanwhile): ask again.
        excess = ExcessNeedsConfirmation(amount, invoice.amount_due, invoice.currency, invoice.client.name)
        db.session.rollback()  # nothing written; the row lock goes
        raise excess
    return _record_payment(invoice, amount, method, received, reference, actor)


def _refuse_while_money_on_its_way(invoice: Invoice) -> None:
    """Recording money by hand while a bank debit or a saved-card charge for this invoice is on its
    way would book it twice (and the real money would then be refunded as a late payment)."""

    on_its_way = payments.money_on_its_way(invoice)
    if on_its_way:
        db.session.rollback()
        raise ServiceError(f"{on_its_way} Record a payment by hand only if that one fails.")


def _record_payment(invoice: Invoice, amount: int, method: str, received: date, reference: str,
                    actor: Actor) -> Payment:

    payment = Payment(
        invoice_id=invoice.id, client_id=invoice.client_id, amount=amount, currency=invoice.currency,
        method=method, status="succeeded", reference=(reference or "").strip()[:200] or None,
        received_on=received, settled_at=clock.now(),
        recorded_by_staff_id=actor.id if actor.kind == "staff" else None, created_at=clock.now(),
    )
    db.session.add(payment)
    db.session.flush()
    credits.settle_payment(payment, [invoice], actor)
    commit()
    return payment


def mark_paid(invoice: Invoice, method: str, actor: Actor, expected_due: int | None = None) -> Payment:
    """"Mark as paid": record the full amount due as received today, by ``method`` (one click).
    ``expected_due`` is the amount the confirmation showed: if the amount due changed since, nothing
    is recorded. Refused while a gateway payment for the invoice is on its way."""
    invoice = locks.invoice(invoice.id)
    if invoice.status not in states.PAYABLE or invoice.amount_due <= 0:
        label = invoice.status_label.lower()
        db.session.rollback()
        raise ServiceError(f"An invoice that is {label} can't be marked as paid: nothing is due on it.")
    if method not in MANUAL_METHODS:
        db.session.rollback()
        raise InvoiceInvalid({"mark_method": "Choose how it was paid."})
    if expected_due is not None and expected_due != invoice.amount_due:
        db.session.rollback()
        raise ServiceError("The amount due changed since this page was opened: nothing was recorded. "
                           "Check the invoice, then mark it as paid again.")
    _refuse_while_money_on_its_way(invoice)
    return _record_payment(invoice, invoice.amount_due, method, clock.today(get_business().timezone), "", actor)


MAX_PAYMENT = 100_000_000_000_000  # minor units; 500 lines at most MAX_LINE_AMOUNT each fit 8 bytes
