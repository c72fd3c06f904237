"""Never charge twice, over random sequences of operations (service level, real database, sandbox gateway).

One client with a few EUR invoices. Operations, in any order:

- a guest or portal payer starts an attempt on one invoice (``payments.start_payment``), or the client
  starts "pay all" (``payments.start_pay_all``);
- a payer confirms through our server (``payments.confirm_in_sandbox``) with a good or a declined card;
- a browser confirms straight at the gateway, past our server's checks (what Stripe.js does), on ANY
  attempt ever made, cancelled and stale ones included; the webhook (``apply_intent``) follows, or not,
  or arrives later on its own;
- staff record a manual payment (part of, or all, the amount due), issue a credit note lowering the
  amount due, or cancel (void) an invoice nothing was paid on;
- the jobs run: the tick's sweep of stale intents (``cancel_stale(None)``), the refund of a late
  payment's excess (``refund_excess``), reconciliation (``reconcile``, ten minutes on).

After every step:

(a) every invoice: ``0 <= amount_paid <= total``, ``amount_due == total - amount_paid - credit_applied -
    credit_noted >= 0``, and an invoice taking payments is paid exactly when nothing is due;
(b) money is conserved: succeeded payments − refunds == Σ invoices' amount paid + the credit balance's
    overpayment rows − its refund rows;
(d) at most one live (pending or processing) gateway attempt targets any invoice (``payments.targets``).

Once the system is quiet (every webhook delivered, the stale sweep, every refund job and reconciliation
run):

(c) never charge twice: with "refund late payments" on (the default), every late excess was refunded
    (``excess_state`` in {None, "refunded"}), the credit balance is 0, and the money the business keeps
    from gateway payments is exactly what those payments settled on invoices; with it off, the excess is
    kept as credit (``excess_state`` in {None, "credited"}) and the balance is Σ ``credited_amount`` of
    the gateway payments;
(e) the gateway and the books agree: an intent the sandbox says succeeded has its payment row
    succeeded (and the other way round), the sandbox's refunded amount is the row's, and no attempt
    still open is stale.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, Phase, event, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from portal import clock
from portal.billing import states
from portal.extensions import db
from portal.gateways import get_gateway
from portal.gateways.base import SUCCEEDED, GatewayError
from portal.models import CreditEntry, Invoice, Payment, PaymentAllocation, Refund
from portal.services import credit_notes, credits, invoices, payments
from portal.services.errors import ServiceError
from portal.services.events import Actor
from portal.services.payments import stale
from tests.support.apps import empty_tables
from tests.support.profiles import examples

STAFF = Actor("staff", None, "staff@portal.example")
CONTACT = Actor("contact", None, "x")
GOOD = "card:4242424242424242"
DECLINED = "card:4000000000000002"

cents = st.integers(min_value=1, max_value=50_000)
index = st.integers(min_value=0, max_value=30)
# How often each operation comes, weighted towards what makes a late success: an attempt started, the
# invoice settled or changed another way, the stale attempt paid in the browser.
WEIGHTS = {"start": 3, "pay_all": 2, "confirm": 2, "browser": 4, "webhook": 1, "manual": 2, "note": 1,
           "void": 1, "cancel_stale": 1, "refund_excess": 1, "reconcile": 1}
ARGUMENTS = {
    "start": (index,),
    "confirm": (index, st.booleans()),  # through our server; True: a good card, else a declined one
    # At the gateway; then (True) the webhook follows; (True) on any attempt ever made, else an open one.
    "browser": (index, st.booleans(), st.booleans()),
    "webhook": (index,),  # a webhook arriving on its own, late or twice
    "manual": (index, st.booleans(), cents),  # True: all that is due
    "note": (index, cents),
    "void": (index,),
}
operation = st.sampled_from([kind for kind, weight in WEIGHTS.items() for _ in range(weight)]).flatmap(
    lambda kind: st.tuples(st.just(kind), *ARGUMENTS.get(kind, ())))


def text(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"


class World:
    """One example: a business, one client, its invoices, and the operations on them."""

    def __init__(self, make, redis_server, refund_late: bool, amounts: list[int]):
        db.session.remove()
        empty_tables(db)
        redis_server.client().flushall()  # the sandbox's intents and idempotency keys, the queued jobs
        make.business(name="Tidewater Studio", currency="EUR", refund_late_payments=refund_late)
        client = make.client()
        self.client_id = client.id
        self.refund_late = refund_late
        self.invoice_ids = []
        for amount in amounts:
            draft = invoices.create_draft(client, STAFF)
            invoices.save_draft(draft, invoices.DraftInput(currency="EUR", lines=[
                {"description": "Work", "quantity": "1", "unit_price": text(amount)}]), STAFF)
            self.invoice_ids.append(invoices.finalize(draft, STAFF).id)
        self.step = 0

    # Reading -----------------------------------------------------------------------------------------

    def invoices(self) -> list[Invoice]:
        db.session.expire_all()
        return list(db.session.scalars(select(Invoice).where(Invoice.id.in_(self.invoice_ids)).order_by(Invoice.id)))

    def attempts(self) -> list[Payment]:
        """Every gateway payment row ever made, in order."""
        db.session.expire_all()
        return list(db.session.scalars(select(Payment).where(Payment.gateway.is_not(None)).order_by(Payment.id)))

    def snapshot(self) -> tuple:
        """What a refused operation must leave as it was."""
        db.session.expire_all()
        return (tuple((i.id, i.status, i.amount_paid, i.credit_applied, i.credit_noted, i.amount_due)
                      for i in self.invoices()),
                tuple(db.session.execute(select(Payment.id, Payment.status, Payment.amount, Payment.credited_amount,
                                                Payment.refunded_amount).order_by(Payment.id)).all()),
                db.session.scalar(select(func.count()).select_from(CreditEntry)),
                db.session.scalar(select(func.count()).select_from(Refund)))

    # Operations --------------------------------------------------------------------------------------

    def run(self, op: tuple) -> None:
        self.step += 1
        getattr(self, "op_" + op[0])(*op[1:])

    def refused_changes_nothing(self, action) -> None:
        before = self.snapshot()
        try:
            action()
        except payments.AttemptChanged:
            db.session.rollback()  # the gateway had moved on: what really happened was booked
        except ServiceError:
            db.session.rollback()
            assert self.snapshot() == before, "a refused operation changed the books"

    def op_start(self, i: int) -> None:
        invoice_id = self.invoice_ids[i % len(self.invoice_ids)]
        self.refused_changes_nothing(lambda: payments.start_payment(invoice_id))

    def op_pay_all(self) -> None:
        self.refused_changes_nothing(lambda: payments.start_pay_all(self.client_id, "EUR", CONTACT))

    def op_confirm(self, i: int, good: bool) -> None:
        rows = self.attempts()
        if not rows:
            return
        try:
            payments.confirm_in_sandbox(rows[i % len(rows)], GOOD if good else DECLINED)
        except ServiceError:
            db.session.rollback()  # refused, declined, or paid meanwhile (booked): all allowed

    def op_browser(self, i: int, webhook: bool, any_row: bool) -> None:
        rows = self.attempts()
        open_rows = [p for p in rows if p.status == "pending"]
        rows = rows if any_row or not open_rows else open_rows
        if not rows:
            return
        payment = rows[i % len(rows)]
        gateway = get_gateway()
        try:
            gateway.confirm_intent(payment.gateway_intent_id, GOOD, f"browser-{payment.id}-{self.step}")
        except GatewayError:
            pass  # cancelled, already paid: the gateway refuses
        if webhook:
            payments.apply_intent(gateway.retrieve_intent(payment.gateway_intent_id))

    def op_webhook(self, i: int) -> None:
        rows = self.attempts()
        if rows:
            payments.apply_intent(get_gateway().retrieve_intent(rows[i % len(rows)].gateway_intent_id))

    def op_manual(self, i: int, full: bool, amount: int) -> None:
        invoice = self.invoices()[i % len(self.invoice_ids)]
        due = invoice.amount_due
        # All that is due, or part of it; never more (an overpayment would be credit this test can't tell
        # from a late gateway payment). Nothing due: 1.00, which must be refused.
        paying = (due if full or due <= 1 else 1 + amount % (due - 1)) if due > 0 else 100
        self.refused_changes_nothing(lambda: invoices.record_manual_payment(
            invoice, text(paying), "wire", "", "", STAFF))

    def op_note(self, i: int, amount: int) -> None:
        invoice = self.invoices()[i % len(self.invoice_ids)]
        due = invoice.amount_due
        lowering = 1 + amount % due if due > 0 else amount
        self.refused_changes_nothing(lambda: credit_notes.issue(
            invoice.id, {"to_due": text(lowering), "reason": "other", "memo": "property"}, STAFF))

    def op_void(self, i: int) -> None:
        unpaid = [inv for inv in self.invoices() if inv.amount_paid == 0]
        if unpaid:
            invoice = unpaid[i % len(unpaid)]
            self.refused_changes_nothing(lambda: invoices.void(invoice, STAFF))

    def op_cancel_stale(self) -> None:
        payments.cancel_stale(None)

    def op_refund_excess(self) -> None:
        for payment_id in db.session.scalars(select(Payment.id).where(Payment.excess_state == "refund_due")
                                             .order_by(Payment.id)).all():
            payments.refund_excess(payment_id)

    def op_reconcile(self) -> None:
        """The tick's decision, then its jobs (each as a worker runs it)."""
        at = clock.now() + payments.RECONCILE_AFTER + timedelta(minutes=1)
        work = payments.due_work(at)
        db.session.rollback()
        with clock.frozen(at):
            for payment_id in work["reconcile"]:
                payments.reconcile_payment(payment_id)
            for payment_id in work["cancel_stale"]:
                payments.cancel_stale_payment(payment_id, at)
            for payment_id in work["refund_excess"]:
                payments.refund_excess(payment_id)

    def quiesce(self) -> None:
        """Every webhook delivered (Stripe retries until it is), then the jobs and the tick, twice over."""
        for _ in range(2):
            for payment in self.attempts():
                payments.apply_intent(get_gateway().retrieve_intent(payment.gateway_intent_id))
            self.op_cancel_stale()
            self.op_refund_excess()
            self.op_reconcile()

    # The books ---------------------------------------------------------------------------------------

    def check(self) -> None:
        books = self.invoices()
        for invoice in books:  # (a)
            assert 0 <= invoice.amount_paid <= invoice.total, (invoice.id, invoice.amount_paid, invoice.total)
            assert invoice.amount_due == (invoice.total - invoice.amount_paid - invoice.credit_applied
                                          - invoice.credit_noted)
            assert invoice.amount_due >= 0
            if invoice.status in states.PAYABLE or invoice.status == states.PAID:
                assert (invoice.status == states.PAID) == (invoice.amount_due == 0), (invoice.status,
                                                                                      invoice.amount_due)

        rows = list(db.session.scalars(select(CreditEntry).where(CreditEntry.client_id == self.client_id)))
        received = db.session.scalar(select(func.coalesce(func.sum(Payment.amount), 0))
                                     .where(Payment.status == "succeeded"))
        given_back = db.session.scalar(select(func.coalesce(func.sum(Refund.amount), 0)))
        overpaid = sum(row.amount for row in rows if row.kind == "overpayment")
        credit_refunded = -sum(row.amount for row in rows if row.kind == "refund")
        assert received - given_back == sum(inv.amount_paid for inv in books) + overpaid - credit_refunded  # (b)

        live: dict[int, list[int]] = {}
        for payment in self.attempts():  # (d)
            if payment.status in payments.LIVE:
                for invoice_id in payments.targets(payment):
                    live.setdefault(invoice_id, []).append(payment.id)
        assert all(len(ids) == 1 for ids in live.values()), f"two live attempts on one invoice: {live}"

    def check_quiet(self) -> None:
        self.check()
        gateway = get_gateway()
        attempts = self.attempts()
        by_id = {inv.id: inv for inv in self.invoices()}
        for payment in attempts:  # (e)
            intent = gateway.retrieve_intent(payment.gateway_intent_id)
            assert (intent.status == SUCCEEDED) == (payment.status == "succeeded"), (payment.id, payment.status,
                                                                                     intent.status)
            assert gateway._load(payment.gateway_intent_id)["refunded"] == payment.refunded_amount
            if payment.status == "pending":
                assert not stale._is_stale(payment, by_id), f"payment {payment.id} is stale and still open"

        succeeded = [p for p in attempts if p.status == "succeeded"]
        kept = sum(p.amount - p.refunded_amount for p in succeeded)
        settled = db.session.scalar(select(func.coalesce(func.sum(PaymentAllocation.amount), 0))
                                    .join(Payment, Payment.id == PaymentAllocation.payment_id)
                                    .where(Payment.gateway.is_not(None)))
        balance = credits.balance(self.client_id, "EUR")
        states_seen = {p.excess_state for p in succeeded}
        # What the examples reached (shown by --hypothesis-show-statistics).
        event(f"gateway payments succeeded: {min(len(succeeded), 3)}{'+' if len(succeeded) >= 3 else ''}")
        event(f"late successes (excess): {min(sum(1 for p in succeeded if p.excess_state), 2)}"
              f"{'+' if sum(1 for p in succeeded if p.excess_state) >= 2 else ''}")
        if self.refund_late:  # (c)
            assert states_seen <= {None, "refunded"}, states_seen
            assert balance == 0
            assert kept == settled, f"kept {kept} from the gateway, settled {settled} with it: charged twice"
        else:
            assert states_seen <= {None, "credited"}, states_seen
            assert balance == sum(p.credited_amount for p in succeeded)
            assert kept == settled + balance


# Every step touches the database and the sandbox, so shrinking a failure would take minutes: it is
# off, and a failure is reported as generated (at most 24 operations, printed by Hypothesis).
@pytest.mark.money_property
@pytest.mark.parametrize("refund_late", [True, False], ids=["refund-late", "keep-as-credit"])
@settings(max_examples=examples(25), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
          phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(amounts=st.lists(st.integers(min_value=100, max_value=100_000), min_size=1, max_size=3),
       ops=st.lists(operation, min_size=6, max_size=24))
# A guest page left open while staff record the payment: the stale intent is paid in the browser
# before the sweep, and the webhook books a late success (refunded, or kept as credit).
@example(amounts=[10_000, 5_000], ops=[("start", 0), ("manual", 0, True, 1), ("browser", 0, True, True),
                                       ("refund_excess",), ("cancel_stale",)])
# "Pay all" and a guest link on the same invoice, a credit note, the sweep, a browser confirming the
# cancelled attempts and the live one, a webhook delivered twice.
@example(amounts=[10_000, 5_000, 700], ops=[
    ("start", 1), ("pay_all",), ("note", 0, 2_000), ("browser", 0, False, True), ("browser", 1, True, True),
    ("cancel_stale",), ("start", 0), ("browser", 2, False, True), ("webhook", 2), ("webhook", 2),
    ("manual", 2, False, 300), ("void", 0), ("reconcile",)])
def test_no_one_is_charged_twice(app, make, redis_server, refund_late, amounts, ops):
    world = World(make, redis_server, refund_late, amounts)
    try:
        world.check()
        for op in ops:
            world.run(op)
            world.check()
        world.quiesce()
        world.check_quiet()
    finally:
        db.session.remove()
