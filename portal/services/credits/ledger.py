"""The credit ledger: a client's credit balance (per currency) is ``SUM(credit_entry.amount)``; rows
are only ever added (the model refuses updates and deletes). Spending the balance locks the client
row (``lock_client``) after the invoice's, then reads the balance: spends of one client's credit
queue one behind the other, so they never take more than the balance holds.
"""
from __future__ import annotations

from sqlalchemy import func, select

from portal import clock
from portal.extensions import db
from portal.models import Client, CreditEntry
from portal.services import formats, locks
from portal.services.events import Actor, record_event
from portal.services.settings import get_business


def balance(client_id: int, currency: str) -> int:
    """The client's credit balance in one currency: the sum of its ledger rows."""
    return int(db.session.scalar(
        select(func.coalesce(func.sum(CreditEntry.amount), 0))
        .where(CreditEntry.client_id == client_id, CreditEntry.currency == currency)) or 0)


def balances(client_id: int) -> dict[str, int]:
    """Every currency the client has ledger rows in → balance (zero balances included)."""
    rows = db.session.execute(
        select(CreditEntry.currency, func.sum(CreditEntry.amount))
        .where(CreditEntry.client_id == client_id).group_by(CreditEntry.currency).order_by(CreditEntry.currency))
    return {currency: int(total) for currency, total in rows}


def add_entry(client_id: int, currency: str, amount: int, kind: str, actor: Actor, description: str | None = None,
              invoice_id: int | None = None, payment_id: int | None = None,
              credit_note_id: int | None = None) -> CreditEntry:
    """Append one ledger row and its event. Caller commits."""
    if amount == 0:
        raise ValueError("a ledger row moves money")
    entry = CreditEntry(client_id=client_id, currency=currency, amount=amount, kind=kind,
                        description=(description or "").strip() or None, invoice_id=invoice_id,
                        payment_id=payment_id, credit_note_id=credit_note_id,
                        recorded_by_staff_id=actor.id if actor.kind == "staff" else None, created_at=clock.now())
    db.session.add(entry)
    db.session.flush()
    record_event("credit." + kind, "client", client_id, actor,
                 data={"entry_id": entry.id, "amount": amount, "currency": currency, "invoice_id": invoice_id,
                       "payment_id": payment_id, "credit_note_id": credit_note_id})
    return entry


def default_currency(client: Client) -> str:
    """The currency a client is billed in: its own, else the business's."""
    return client.currency or get_business().currency


def money_text(amount: int, currency: str) -> str:
    """An amount as the pages show it (the business's locale), for messages."""
    return formats.money(amount, currency)


# Applying credit to invoices ----------------------------------------------------------------------

def lock_client(client_id: int) -> Client:
    """The client row under a row lock: every spend of a client's credit balance takes it before
    reading the balance, so two spends at once cannot both use the same credit. Taken after the
    invoice's lock (the order finalize and payments already use), never before."""
    return locks.client(client_id)
