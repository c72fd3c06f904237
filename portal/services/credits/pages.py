"""What the staff client and invoice pages and the portal's Credit page show: balances and the
ledger with a running balance.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from portal.billing import states
from portal.billing.money import to_major
from portal.extensions import db
from portal.models import CreditEntry, CreditNote, Invoice, Payment
from portal.services.credits.applying import auto_applies
from portal.services.credits.ledger import balance, balances, default_currency
from portal.services.paging import Page

# What the pages show -------------------------------------------------------------------------------

LEDGER_PAGE_SIZE = 20


@dataclass
class LedgerRow:
    entry: CreditEntry
    running: int  # the balance in this row's currency just after it
    invoice_id: int | None  # the invoice it links to (its own, or its payment's / credit note's)
    invoice_number: str | None
    credit_note_number: str | None
    payment: Payment | None

    @property
    def owed(self) -> bool:
        return self.running < 0


@cache
def _invoice_aliases():
    """Made once: an alias proxies every column of the table, which is slow to build per call."""
    return (aliased(Invoice, name="linked_invoice"), aliased(Invoice, name="note_invoice"),
            aliased(Invoice, name="payment_invoice"))


def ledger(client_id: int, page: int = 1, per_page: int = LEDGER_PAGE_SIZE) -> Page:
    """One page of the client's ledger, newest first, each row with the running balance of its
    currency after it. Two queries whatever the page: a count, and the rows with their running
    balance (a window sum over the client's rows in append order) and their links joined in."""
    page = min(max(int(page or 1), 1), 1_000_000)  # capped: an absurd page is empty, never an overflow
    total = int(db.session.scalar(select(func.count()).select_from(CreditEntry)
                                  .where(CreditEntry.client_id == client_id)) or 0)
    running = (select(CreditEntry.id.label("entry_id"),
                      func.sum(CreditEntry.amount).over(partition_by=CreditEntry.currency,
                                                        order_by=CreditEntry.id).label("running"))
               .where(CreditEntry.client_id == client_id).subquery())
    linked_invoice, note_invoice, payment_invoice = _invoice_aliases()
    rows = db.session.execute(
        select(CreditEntry, running.c.running, linked_invoice.id, linked_invoice.number, CreditNote.number,
               note_invoice.id, note_invoice.number, Payment, payment_invoice.id, payment_invoice.number)
        .join(running, running.c.entry_id == CreditEntry.id)
        .outerjoin(linked_invoice, linked_invoice.id == CreditEntry.invoice_id)
        .outerjoin(CreditNote, CreditNote.id == CreditEntry.credit_note_id)
        .outerjoin(note_invoice, note_invoice.id == CreditNote.invoice_id)
        .outerjoin(Payment, Payment.id == CreditEntry.payment_id)
        .outerjoin(payment_invoice, payment_invoice.id == Payment.invoice_id)
        .order_by(CreditEntry.id.desc()).limit(per_page).offset((page - 1) * per_page))
    result = []
    for (entry, run, inv_id, inv_number, note_number, note_inv_id, note_inv_number, payment,
         pay_inv_id, pay_inv_number) in rows:
        if inv_id is None:
            inv_id, inv_number = (note_inv_id, note_inv_number) if note_inv_id else (pay_inv_id, pay_inv_number)
        result.append(LedgerRow(entry=entry, running=int(run), invoice_id=inv_id, invoice_number=inv_number,
                                credit_note_number=note_number, payment=payment))
    return Page(items=result, page=page, per_page=per_page, total=total)


def balance_rows(client_id: int) -> list[dict]:
    """Each currency with a balance other than zero: ``{currency, amount, owed}`` (owed: below zero,
    which only a one-time charge can cause)."""
    return [{"currency": code, "amount": amount, "owed": amount < 0}
            for code, amount in balances(client_id).items() if amount != 0]


def client_panel(client, page: int = 1, form: str | None = None, values: dict | None = None,
                 errors: dict | None = None) -> dict:
    """The staff client page's credit section: balances, one page of the ledger, and the "Add
    credit" / "Add one-time charge" forms (``form`` names the one that was posted with ``errors``)."""
    code = default_currency(client)
    return {"client": client, "balances": balance_rows(client.id), "ledger": ledger(client.id, page),
            "default_currency": code, "auto_apply": auto_applies(client),
            "auto_apply_is_default": client.auto_apply_credit is None,
            "form": form, "typed": values or {}, "errors": errors or {}}


def invoice_panel(invoice: Invoice, amount: str | None = None, error: str | None = None) -> dict | None:
    """The staff invoice page's "Apply credit": the balance in the invoice's currency, whether it
    can be applied now, and the most that can be (the form's default). None when there is nothing
    to say (a draft; or no credit applied and none to apply)."""
    if invoice.status == states.DRAFT:
        return None
    available = balance(invoice.client_id, invoice.currency)
    payable = invoice.status in states.PAYABLE and invoice.amount_due > 0
    can_apply = payable and available > 0
    elsewhere = [row for row in balance_rows(invoice.client_id)
                 if row["currency"] != invoice.currency and row["amount"] > 0] if payable else []
    if not can_apply and not invoice.credit_applied and not elsewhere and not available < 0:
        return None
    maximum = min(available, invoice.amount_due) if can_apply else 0
    return {"invoice": invoice, "currency": invoice.currency, "available": available,
            "applied": invoice.credit_applied, "can_apply": can_apply, "maximum": maximum,
            "amount": amount if amount is not None else (str(to_major(maximum, invoice.currency))
                                                         if can_apply else ""),
            "error": error, "elsewhere": elsewhere}


def portal_summary(client_id: int) -> dict:
    """The portal Billing tab's credit line: the balance per currency (empty: no credit)."""
    return {"balances": balance_rows(client_id)}


def portal_credit(client_id: int, page: int = 1) -> dict:
    """The portal's credit page: the balance per currency and one page of the ledger."""
    return {"balances": balance_rows(client_id), "ledger": ledger(client_id, page)}
