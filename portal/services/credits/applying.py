"""Spending the credit balance on an invoice: by staff (``apply_credit``) or automatically when an
invoice is finalized (``auto_apply_on_finalize``). Locks: the invoice, then the client.
"""
from __future__ import annotations

from portal.billing import states
from portal.billing.invoice_math import amount_due
from portal.billing.money import MoneyError, to_minor
from portal.extensions import db
from portal.models import Client, CreditEntry, Invoice
from portal.services import locks
from portal.services.credits.ledger import (
    add_entry,
    balance,
    balances,
    lock_client,
    money_text,
)
from portal.services.credits.settlement import after_payment, refresh_due
from portal.services.errors import ServiceError
from portal.services.events import Actor, commit, record_event
from portal.services.settings import get_business


def apply(invoice: Invoice, amount: int, actor: Actor, automatic: bool) -> CreditEntry:
    """Move ``amount`` of the balance onto the invoice (both locked by the caller; amount checked)."""
    entry = add_entry(invoice.client_id, invoice.currency, -amount, "applied", actor,
                      f"Applied to invoice {invoice.number}", invoice_id=invoice.id)
    invoice.credit_applied += amount
    record_event("invoice.credit_applied", "invoice", invoice.id, actor,
                 data={"amount": amount, "entry_id": entry.id, "automatic": automatic,
                       "amount_due": amount_due(invoice.total, invoice.amount_paid, invoice.credit_applied,
                                                invoice.credit_noted)})
    refresh_due(invoice, actor)
    db.session.flush()
    after_payment(invoice.client_id, actor)
    return entry


def amount_to_apply(invoice: Invoice, amount_text: str | None) -> int:
    if invoice.status not in states.PAYABLE:
        raise ServiceError(f"Credit can't be applied to an invoice that is {invoice.status_label.lower()}.")
    if invoice.amount_due <= 0:
        raise ServiceError("Nothing is due on this invoice.")
    lock_client(invoice.client_id)
    available = balance(invoice.client_id, invoice.currency)
    if available <= 0:
        elsewhere = [code for code, amount in balances(invoice.client_id).items()
                     if amount > 0 and code != invoice.currency]
        if elsewhere:
            raise ServiceError(f"The client's credit is in {', '.join(elsewhere)}; this invoice is in "
                               f"{invoice.currency}.")
        raise ServiceError(f"The client has no {invoice.currency} credit to apply.")
    text = (amount_text or "").strip()
    if not text:
        return min(available, invoice.amount_due)
    try:
        amount = to_minor(text, invoice.currency)
    except MoneyError as exc:
        raise ServiceError("That amount is too large." if exc.reason == "range" else "Use an amount like 25.00.",
                           field="amount") from None
    if amount <= 0:
        raise ServiceError("Enter an amount above zero.", field="amount")
    if amount > available:
        raise ServiceError(f"The client has only {money_text(available, invoice.currency)} of credit.",
                           field="amount")
    if amount > invoice.amount_due:
        raise ServiceError(f"Only {money_text(invoice.amount_due, invoice.currency)} is due on this invoice.",
                           field="amount")
    return amount


def apply_credit(invoice_id: int, amount_text: str | None, actor: Actor) -> CreditEntry:
    """Staff apply the client's credit balance to a sent, overdue or uncollectible invoice.

    ``amount_text`` None or blank: as much as possible, ``min(balance, amount due)``. Refused: more
    than the balance, more than is due, zero or less, no credit in the invoice's currency, an
    invoice that takes no payment. The invoice is locked, then the client (which serialises spends
    of the balance), then the balance is read: concurrent applies never overdraw it. An invoice
    brought to 0 is paid, and a restriction lifts as for a payment."""
    invoice = locks.invoice(invoice_id)
    try:
        amount = amount_to_apply(invoice, amount_text)
    except ServiceError:
        db.session.rollback()  # release the locks now
        raise
    entry = apply(invoice, amount, actor, automatic=False)
    commit()
    return entry


def auto_applies(client: Client) -> bool:
    """The client's "apply credit automatically" setting, or the business's when it has none."""
    if client.auto_apply_credit is not None:
        return bool(client.auto_apply_credit)
    return bool(get_business().auto_apply_credit)


def auto_apply_on_finalize(invoice: Invoice, actor: Actor) -> CreditEntry | None:
    """Called in finalize's transaction (which commits): when the client's setting (else the
    business's) says so, apply ``min(balance, amount due)`` of the balance in the invoice's currency."""
    if invoice.status not in states.PAYABLE or invoice.amount_due <= 0 or not auto_applies(invoice.client):
        return None
    if balance(invoice.client_id, invoice.currency) <= 0:
        return None  # the usual case: no credit, so no client lock held through the rest of finalize
    lock_client(invoice.client_id)
    available = balance(invoice.client_id, invoice.currency)  # again, under the lock
    if available <= 0:
        return None
    return apply(invoice, min(available, invoice.amount_due), actor, automatic=True)
