"""The books hold over random sequences of operations (service level, real database).

Operations: finalize an invoice (credit applied automatically when the client's setting, else the
business's, says so), switch the client's "apply credit automatically" override, a manual payment
(partial, exact, or more than due), a custom credit, a one-time charge, apply credit on demand,
and a refund (``payments.refund``, which takes back the payment's unspent overpayment credit first).
Credit notes are left to their own tests for now.

After every step, per currency:

1. The balance ``credits.balance`` shows, ``credits.balances`` and the ledger page's running
   balance all equal the sum of the ledger rows.
2. "Never negative unless a charge made it so", precisely: the sum of the rows that are *not*
   one-time charges is never below zero (credit is never spent, applied or refunded beyond what
   was given), equivalently ``balance >= sum(charge rows)`` (= ``min(0, sum(charge rows))``, as
   charge rows are negative); so without a charge the balance is never negative. And step by
   step: an operation other than a charge never leaves a balance below ``min(its balance
   before, 0)``.

For each invoice: ``amount_due == total - amount_paid - credit_applied - credit_noted`` and is never
below 0; it is paid exactly when its amount due is 0; ``credit_applied`` is what its ``applied``
ledger rows took; ``amount_paid`` is what payments allocated to it less what refunds took off it.

Money is conserved: succeeded payments − refunds == Σ invoices' amount paid + Σ overpayment rows
− Σ credit refunded (the ``refund`` rows).

A refused operation changes nothing.
"""
from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from portal.billing import states
from portal.extensions import db
from portal.models import Client, CreditEntry, Invoice, Payment, PaymentAllocation, Refund
from portal.services import credits, invoices, payments
from portal.services.errors import ServiceError
from portal.services.events import Actor
from tests.support.apps import empty_tables
from tests.support.profiles import examples

STAFF = Actor("staff", None, "staff@portal.example")
CURRENCIES = ("EUR", "USD")

cents = st.integers(min_value=1, max_value=20_000)
index = st.integers(min_value=0, max_value=20)
# How much an "apply credit" asks for, relative to what it can take (room = min(balance, amount due)):
# nothing typed (the default), part of the room, all of it, more than it, zero or less, anything.
APPLY_MODES = ("default", "part", "all", "over", "zero", "any")
operation = st.one_of(
    st.tuples(st.just("invoice"), cents),
    st.tuples(st.just("auto"), st.sampled_from([None, True, False])),
    st.tuples(st.just("pay"), index, st.sampled_from(["partial", "exact", "over"]), cents),
    st.tuples(st.just("credit"), st.sampled_from(CURRENCIES), cents),
    st.tuples(st.just("credit"), st.just("EUR"), cents),
    st.tuples(st.just("charge"), st.sampled_from(CURRENCIES), cents),
    st.tuples(st.just("apply"), index, st.just("default"), cents),
    st.tuples(st.just("apply"), index, st.sampled_from(APPLY_MODES), cents),
    st.tuples(st.just("refund"), index, cents),
    st.tuples(st.just("note"), index, st.sampled_from(["to_due", "to_balance", "to_refund", "to_outside"]), cents),
)


def text(minor: int) -> str:
    sign = "-" if minor < 0 else ""
    return f"{sign}{abs(minor) // 100}.{abs(minor) % 100:02d}"


class Books:
    """One example's world: a business, one client, and the operations on it."""

    def __init__(self, make, business_auto: bool):
        db.session.remove()
        empty_tables(db)
        make.business(name="Tidewater Studio", currency="EUR", auto_apply_credit=business_auto)
        self.client_id = make.client().id
        self.invoice_ids: list[int] = []

    # Reading -----------------------------------------------------------------------------------------

    def balances(self) -> dict[str, int]:
        db.session.expire_all()
        return {code: credits.balance(self.client_id, code) for code in CURRENCIES}

    def entries(self) -> int:
        return db.session.scalar(select(func.count()).select_from(CreditEntry))

    def invoices(self) -> list[Invoice]:
        db.session.expire_all()
        return list(db.session.scalars(select(Invoice).where(Invoice.id.in_(self.invoice_ids))
                                       .order_by(Invoice.id)))

    def snapshot(self) -> tuple:
        """Everything a refused operation must leave as it was."""
        return (self.entries(), tuple(sorted(self.balances().items())),
                tuple((i.id, i.status, i.amount_paid, i.credit_applied, i.amount_due) for i in self.invoices()),
                db.session.scalar(select(func.count()).select_from(Payment)),
                db.session.scalar(select(func.count()).select_from(Refund)))

    # Operations --------------------------------------------------------------------------------------

    def run(self, op: tuple) -> None:
        getattr(self, "op_" + op[0])(*op[1:])

    def op_invoice(self, amount: int) -> None:
        client = db.session.get(Client, self.client_id)
        before = self.balances()["EUR"]
        auto = credits.auto_applies(client)
        draft = invoices.create_draft(client, STAFF)
        invoices.save_draft(draft, invoices.DraftInput(currency="EUR", lines=[
            {"description": "Work", "quantity": "1", "unit_price": text(amount)}]), STAFF)
        invoice = invoices.finalize(draft, STAFF)
        self.invoice_ids.append(invoice.id)
        db.session.expire_all()
        invoice = db.session.get(Invoice, invoice.id)
        expected = min(before, amount) if auto and before > 0 else 0
        assert invoice.credit_applied == expected
        assert self.balances()["EUR"] == before - expected

    def op_auto(self, setting) -> None:
        client = db.session.get(Client, self.client_id)
        client.auto_apply_credit = setting
        db.session.commit()

    def op_pay(self, i: int, kind: str, amount: int) -> None:
        payable = [inv for inv in self.invoices() if inv.status in states.PAYABLE]
        if not payable:
            return
        invoice = payable[i % len(payable)]
        due, paid_before = invoice.amount_due, invoice.amount_paid
        if kind == "exact" or due == 1:
            paying = due
        elif kind == "over":
            paying = due + amount
        else:
            paying = 1 + amount % (due - 1)  # 1 … due − 1
        payment = invoices.record_manual_payment(invoice, text(paying), "wire", "", "", STAFF)
        db.session.expire_all()
        after = db.session.get(Invoice, invoice.id)
        assert after.amount_paid - paid_before == min(paying, due)
        assert db.session.get(Payment, payment.id).credited_amount == max(0, paying - due)

    def op_credit(self, currency: str, amount: int) -> None:
        credits.add_credit(self.client_id, text(amount), currency, "Goodwill", STAFF)

    def op_charge(self, currency: str, amount: int) -> None:
        credits.add_charge(self.client_id, text(amount), currency, "One-off", STAFF)

    def op_apply(self, i: int, mode: str, n: int) -> None:
        finalized = self.invoices()
        if not finalized:
            return
        payable = [inv for inv in finalized if inv.status in states.PAYABLE]
        # Mostly an invoice that takes credit; now and then any (paid ones must refuse).
        invoice = (payable or finalized)[i % len(payable or finalized)] if i % 5 else finalized[i % len(finalized)]
        applied_before = invoice.credit_applied
        available = self.balances()["EUR"]
        room = min(available, invoice.amount_due)
        possible = invoice.status in states.PAYABLE and invoice.amount_due > 0 and available > 0
        amount = {"default": None, "part": 1 + n % room if room > 0 else n, "all": room if room > 0 else n,
                  "over": max(room, 0) + n, "zero": -(n % 3) * 100, "any": n}[mode]
        wanted = room if amount is None else amount
        before = self.snapshot()
        try:
            credits.apply_credit(invoice.id, None if amount is None else text(amount), STAFF)
        except ServiceError:
            assert not possible or not 0 < wanted <= room, (possible, wanted, room)
            assert self.snapshot() == before
            return
        assert possible and 0 < wanted <= room, (possible, wanted, room)
        db.session.expire_all()
        after = db.session.get(Invoice, invoice.id)
        assert after.credit_applied - applied_before == wanted
        assert self.balances()["EUR"] == available - wanted

    def op_refund(self, i: int, amount: int) -> None:
        paid = list(db.session.scalars(select(Payment).where(Payment.status == "succeeded").order_by(Payment.id)))
        if not paid:
            return
        payment = paid[i % len(paid)]
        before = self.snapshot()
        room = payments.refundable(payment)
        try:
            row = payments.refund(payment.id, text(amount), "", STAFF)
        except ServiceError:
            assert amount > room["total"]
            assert self.snapshot() == before
            return
        assert amount <= room["total"]
        assert row.from_credit == min(amount, room["credit"])

    def op_note(self, i: int, part: str, amount: int) -> None:
        """A credit note with one part: refused (nothing changes) or booked exactly."""
        from portal.services import credit_notes

        finalized = self.invoices()
        if not finalized:
            return
        invoice = finalized[i % len(finalized)]
        noted_before, paid_before = invoice.credit_noted, invoice.amount_paid
        balance_before = self.balances()["EUR"]
        own = [p for p in payments.invoice_payments(invoice.id) if p.status == "succeeded"]
        if i % 4:  # mostly within what this part can take; now and then anything (must be refused or fit)
            cap = {"to_due": invoice.amount_due,
                   "to_refund": payments.refundable(own[0], invoice.id)["invoice"] if own else 0,
                   }.get(part, invoice.amount_paid + invoice.credit_applied)
            amount = 1 + amount % cap if cap > 0 else amount
        typed = {part: text(amount), "reason": "other", "memo": "property"}
        if part == "to_refund":
            typed["payment_id"] = str(own[0].id) if own else ""
        before = self.snapshot()
        try:
            credit_notes.issue(invoice.id, typed, STAFF)
        except ServiceError:
            assert self.snapshot() == before
            return
        db.session.expire_all()
        after = db.session.get(Invoice, invoice.id)
        lowered = amount if part in ("to_due", "to_refund") else 0
        assert after.credit_noted - noted_before == lowered
        assert paid_before - after.amount_paid == (amount if part == "to_refund" else 0)
        assert self.balances()["EUR"] - balance_before == (amount if part == "to_balance" else 0)

    # The books ---------------------------------------------------------------------------------------

    def check(self, balances_before: dict[str, int], op: tuple) -> None:
        db.session.expire_all()
        rows = list(db.session.scalars(select(CreditEntry).where(CreditEntry.client_id == self.client_id)
                                       .order_by(CreditEntry.id)))
        total = defaultdict(int)
        charges = defaultdict(int)
        running = {}
        for row in rows:
            total[row.currency] += row.amount
            running[row.id] = total[row.currency]
            if row.kind == "charge":
                charges[row.currency] += row.amount
        assert credits.balances(self.client_id) == dict(total)
        for code in CURRENCIES:
            shown = credits.balance(self.client_id, code)
            assert shown == total[code]
            assert shown - charges[code] >= 0, "credit spent beyond what was given"
            assert shown >= min(0, charges[code])
            if op[0] != "charge":
                assert shown >= min(balances_before[code], 0), f"{op} took the balance below zero"
        page = credits.ledger(self.client_id, page=1, per_page=max(len(rows), 1))
        assert {r.entry.id: r.running for r in page.rows} == running

        allocated = dict(db.session.execute(select(PaymentAllocation.invoice_id, func.sum(PaymentAllocation.amount))
                                            .group_by(PaymentAllocation.invoice_id)).all())
        refunded = defaultdict(int)
        for refund in db.session.scalars(select(Refund)):
            if refund.invoice_id is not None:
                refunded[refund.invoice_id] += refund.amount - refund.from_credit
        applied = defaultdict(int)
        for row in rows:
            if row.kind == "applied":
                applied[row.invoice_id] -= row.amount
        books = self.invoices()
        for invoice in books:
            assert invoice.amount_due == (invoice.total - invoice.amount_paid - invoice.credit_applied
                                          - invoice.credit_noted)
            assert invoice.amount_due >= 0
            assert (invoice.status == states.PAID) == (invoice.amount_due == 0), invoice.status
            assert invoice.credit_applied == applied[invoice.id]
            assert invoice.amount_paid == allocated.get(invoice.id, 0) - refunded[invoice.id]

        received = db.session.scalar(select(func.coalesce(func.sum(Payment.amount), 0))
                                     .where(Payment.status == "succeeded"))
        given_back = db.session.scalar(select(func.coalesce(func.sum(Refund.amount), 0)))
        paid_in = sum(invoice.amount_paid for invoice in books)
        overpaid = sum(row.amount for row in rows if row.kind == "overpayment")
        credit_refunded = -sum(row.amount for row in rows if row.kind == "refund")
        assert received - given_back == paid_in + overpaid - credit_refunded
        for payment in db.session.scalars(select(Payment)):
            assert payment.credited_amount == sum(r.amount for r in rows
                                                  if r.kind == "overpayment" and r.payment_id == payment.id)


# Every step touches the database, so shrinking a failure would take minutes: it is off, and a
# failure is reported as generated (at most 13 operations, printed by Hypothesis).
@pytest.mark.money_property
@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
          phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(business_auto=st.booleans(), opening_credit=st.integers(min_value=0, max_value=20_000),
       first_invoices=st.lists(cents, min_size=1, max_size=2), ops=st.lists(operation, min_size=4, max_size=10))
# Credit notes of every kind on a partly paid, then overpaid invoice (always run, besides the random ones).
@example(business_auto=False, opening_credit=0, first_invoices=[10_000], ops=[
    ("pay", 0, "partial", 4_000), ("note", 1, "to_refund", 999), ("note", 1, "to_due", 499),
    ("note", 1, "to_balance", 300), ("pay", 0, "over", 2_500), ("note", 1, "to_refund", 700),
    ("refund", 0, 100), ("note", 1, "to_outside", 50)])
def test_the_credit_books_balance_after_every_step(app, make, business_auto, opening_credit, first_invoices, ops):
    books = Books(make, business_auto)
    opening = ([("credit", "EUR", opening_credit)] if opening_credit else []) + [
        ("invoice", amount) for amount in first_invoices]
    try:
        for op in opening + ops:
            before = books.balances()
            books.run(op)
            books.check(before, op)
    finally:
        db.session.remove()
