"""The credit ledger and how money received is spread over invoices.

Rules kept here:
- A client's credit balance (per currency) is ``SUM(credit_entry.amount)``;
  rows are only ever added (the model refuses updates and deletes).
- ``settle_payment`` is the one way succeeded money reaches invoices: it pays
  the given invoices oldest first, each at most what it is due
  (``billing.invoice_math.allocate_oldest_first``), writes one
  ``payment_allocation`` per invoice paid, and puts any excess on the credit
  balance (an ``overpayment`` row), so an invoice's amount due never goes
  below zero.
- Callers hold the invoices' row locks (``lock_invoices``) and commit.
- Spending the balance (``apply_credit``, ``auto_apply_on_finalize``) locks the invoice, then the
  client row (``lock_client``), then reads the balance: spends of one client's credit queue one
  behind the other, so they never take more than the balance holds.
- The balance goes below zero only through a staff one-time charge (``add_charge``); nothing else
  takes more than the balance holds. So, per currency, the sum of the rows that are not charges is
  never negative, and the balance is never below the sum of the charge rows (the property tests in
  ``tests/services/test_credit_properties.py`` hold the books to this).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from portal import clock
from portal.billing import states
from portal.billing.invoice_math import allocate_oldest_first, amount_due
from portal.billing.money import MoneyError, format_money, to_major, to_minor, valid_currency
from portal.extensions import db
from portal.models import Client, CreditEntry, CreditNote, Invoice, Payment, PaymentAllocation
from portal.services.errors import NotFound, ServiceError
from portal.services.events import Actor, commit, record_event
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


def lock_invoices(invoice_ids: list[int]) -> list[Invoice]:
    """The invoices under row locks (taken in id order: no deadlocks), oldest first:
    by due date, then issue date, then id."""
    if not invoice_ids:
        return []
    rows = db.session.scalars(
        select(Invoice).where(Invoice.id.in_(sorted(set(invoice_ids)))).order_by(Invoice.id).with_for_update()
        .execution_options(populate_existing=True)).all()
    return sorted(rows, key=oldest_first_key)


def oldest_first_key(invoice: Invoice):
    return (invoice.due_date or invoice.issue_date or clock.today(), invoice.issue_date or clock.today(),
            invoice.id)


def refresh_due(invoice: Invoice, actor: Actor) -> None:
    """Recompute the amount due; mark paid when nothing is left. Caller commits."""
    invoice.amount_due = amount_due(invoice.total, invoice.amount_paid, invoice.credit_applied,
                                    invoice.credit_noted)
    if invoice.amount_due < 0:
        raise ServiceError("That is more than the amount due.")
    if invoice.amount_due == 0 and invoice.status in states.PAYABLE:
        before = invoice.status
        invoice.status = states.transition(invoice.status, "pay")
        invoice.paid_at = clock.now()
        record_event("invoice.paid", "invoice", invoice.id, actor, before={"status": before},
                     after={"status": invoice.status})


def settle_payment(payment: Payment, invoices: list[Invoice], actor: Actor) -> list[PaymentAllocation]:
    """Spread a succeeded payment over ``invoices`` (already locked, oldest first); the rest is credit.

    Invoices that take no payment any more (paid meanwhile, cancelled) get nothing."""
    payable = [inv for inv in invoices if inv.status in states.PAYABLE and inv.amount_due > 0
               and inv.currency == payment.currency and inv.client_id == payment.client_id]
    parts, excess = allocate_oldest_first(payment.amount, [inv.amount_due for inv in payable])
    allocations = []
    for invoice, part in zip(payable, parts):
        if part <= 0:
            continue
        row = PaymentAllocation(payment_id=payment.id, invoice_id=invoice.id, amount=part, created_at=clock.now())
        db.session.add(row)
        allocations.append(row)
        invoice.amount_paid += part
        invoice.amount_due = amount_due(invoice.total, invoice.amount_paid, invoice.credit_applied,
                                        invoice.credit_noted)
        record_event("invoice.payment_recorded", "invoice", invoice.id, actor,
                     data={"payment_id": payment.id, "amount": part, "method": payment.method,
                           "amount_due": invoice.amount_due})
        refresh_due(invoice, actor)
    if excess > 0:
        payment.credited_amount = excess
        single = invoices[0] if len(invoices) == 1 else None
        described = f"Paid more than was due on {single.number}" if single and single.number else \
            "Paid more than was due"
        add_entry(payment.client_id, payment.currency, excess, "overpayment", actor, described,
                  invoice_id=invoices[0].id if len(invoices) == 1 else None, payment_id=payment.id)
    db.session.flush()
    after_payment(payment.client_id, actor)
    return allocations


def after_payment(client_id: int, actor: Actor) -> None:
    """Hook run in the payment's transaction: lifts a restriction once nothing is far overdue."""
    from portal.services import restrictions

    restrictions.lift_if_clear(client_id, actor)


def payment_allocations(payment_id: int) -> list[tuple[PaymentAllocation, Invoice]]:
    return list(db.session.execute(
        select(PaymentAllocation, Invoice).join(Invoice, Invoice.id == PaymentAllocation.invoice_id)
        .where(PaymentAllocation.payment_id == payment_id).order_by(PaymentAllocation.id)))


def invoice_payment_ids(invoice_id: int) -> list[int]:
    """Every payment that put money on this invoice (its own and "pay all" ones)."""
    return list(db.session.scalars(
        select(PaymentAllocation.payment_id).where(PaymentAllocation.invoice_id == invoice_id)
        .order_by(PaymentAllocation.payment_id).distinct()))


# Staff: custom credits and one-time charges ----------------------------------------------------

MAX_AMOUNT = 100_000_000_000_000  # minor units; well within the 8-byte money columns
MAX_DESCRIPTION = 500


class CreditInvalid(ServiceError):
    """Bad input on the "Add credit" / "Add one-time charge" forms: ``errors`` maps a field
    (``amount``, ``currency``, ``description``) to its message."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("Please correct the marked fields.")
        self.errors = errors


def default_currency(client: Client) -> str:
    """The currency a client is billed in: its own, else the business's."""
    return client.currency or get_business().currency


def money_text(amount: int, currency: str) -> str:
    """An amount as the pages show it (the business's locale), for messages."""
    return format_money(amount, currency, get_business().locale)


def _get_client(client_id: int) -> Client:
    client = db.session.get(Client, client_id)
    if client is None:
        raise NotFound("No such client.")
    return client


def _parse_staff_entry(client: Client, amount_text: str | None, currency: str | None,
                       description: str | None) -> tuple[int, str, str]:
    """What staff typed → (minor units > 0, currency, description); every bad field at once."""
    errors: dict[str, str] = {}
    code = (currency or "").strip().upper() or default_currency(client)
    amount = 0
    if not valid_currency(code):
        errors["currency"] = "Use a three-letter currency code, like EUR or USD."
    text = (amount_text or "").strip()
    if not text:
        errors["amount"] = "Enter an amount."
    elif "currency" not in errors:
        try:
            amount = to_minor(text, code)
        except MoneyError as exc:
            errors["amount"] = ("That amount is too large." if exc.reason == "range"
                                else "Use an amount like 25.00.")
        else:
            if amount <= 0:
                errors["amount"] = "Enter an amount above zero."
            elif amount > MAX_AMOUNT:
                errors["amount"] = "That amount is too large."
    said = (description or "").strip()
    if not said:
        errors["description"] = "Say what it is for: the client sees this on their credit page."
    elif len(said) > MAX_DESCRIPTION:
        errors["description"] = f"Keep it under {MAX_DESCRIPTION} characters."
    if errors:
        raise CreditInvalid(errors)
    return amount, code, said


def add_credit(client_id: int, amount_text: str | None, currency: str | None, description: str | None,
               actor: Actor) -> CreditEntry:
    """Staff give the client credit (a ``credit`` row, +). The currency defaults to the client's."""
    client = _get_client(client_id)
    amount, code, said = _parse_staff_entry(client, amount_text, currency, description)
    entry = add_entry(client.id, code, amount, "credit", actor, said)
    commit()
    return entry


def add_charge(client_id: int, amount_text: str | None, currency: str | None, description: str | None,
               actor: Actor) -> CreditEntry:
    """Staff charge the client's credit balance once (a ``charge`` row, −).

    It uses up credit the client has; beyond that the balance goes below zero, which the pages
    show as owed, and later credit (an overpayment, a credit, a credit note) pays it off first.
    A charge is the only thing that may take a balance below zero."""
    client = _get_client(client_id)
    amount, code, said = _parse_staff_entry(client, amount_text, currency, description)
    entry = add_entry(client.id, code, -amount, "charge", actor, said)
    commit()
    return entry


# Applying credit to invoices ----------------------------------------------------------------------

def lock_client(client_id: int) -> Client:
    """The client row under a row lock: every spend of a client's credit balance takes it before
    reading the balance, so two spends at once cannot both use the same credit. Taken after the
    invoice's lock (the order finalize and payments already use), never before."""
    client = db.session.scalar(select(Client).where(Client.id == client_id).with_for_update()
                               .execution_options(populate_existing=True))
    if client is None:
        raise NotFound("No such client.")
    return client


def _lock_invoice(invoice_id: int) -> Invoice:
    invoice = db.session.scalar(select(Invoice).where(Invoice.id == invoice_id).with_for_update()
                                .execution_options(populate_existing=True))
    if invoice is None:
        raise NotFound("No such invoice.")
    return invoice


def _apply(invoice: Invoice, amount: int, actor: Actor, automatic: bool) -> CreditEntry:
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


def _amount_to_apply(invoice: Invoice, amount_text: str | None) -> int:
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
    invoice = _lock_invoice(invoice_id)
    try:
        amount = _amount_to_apply(invoice, amount_text)
    except ServiceError:
        db.session.rollback()  # release the locks now
        raise
    entry = _apply(invoice, amount, actor, automatic=False)
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
    return _apply(invoice, min(available, invoice.amount_due), actor, automatic=True)


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


@dataclass
class LedgerPage:
    rows: list[LedgerRow]
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages

    @property
    def prev_num(self) -> int:
        return self.page - 1

    @property
    def next_num(self) -> int:
        return self.page + 1


@cache
def _invoice_aliases():
    """Made once: an alias proxies every column of the table, which is slow to build per call."""
    return (aliased(Invoice, name="linked_invoice"), aliased(Invoice, name="note_invoice"),
            aliased(Invoice, name="payment_invoice"))


def ledger(client_id: int, page: int = 1, per_page: int = LEDGER_PAGE_SIZE) -> LedgerPage:
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
    return LedgerPage(rows=result, page=page, per_page=per_page, total=total)


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
