"""Recurring billing over random sequences of operations (a Hypothesis state machine, service level,
real database, sandbox gateway): create, change (now or at renewal), pause, resume, cancel (now, with
or without a credit note, or at period end), a declining or good saved card with autopay (or autopay
off), paying an invoice by hand, and the clock moving on by 1 to 100 days with a billing run (twice,
as two ticks would) as of the new day.

The test keeps its own simple model of the rules and, after every step, holds the engine to it:

- the periods billed per subscription are the ones the rules give: from the anchor (start + trial),
  each period whose invoice day has come, in its term (cancel at period end, number of cycles),
  not while paused (periods started meanwhile skipped on resume), not after a cancel, not past an
  unpaid invoice whose automatic charge failed (until it is paid);
- there are never two invoices for one period, and numbers are gapless;
- each invoice's recurring lines are the plans × quantities in force for its period (a change at
  renewal from the next period on), and its other lines are exactly the proration charges of the
  changes "now" since the last invoice ("Remaining time on …", the exact share of the billed period
  containing the day, rounded once); a negative proration is credit on the client's ledger (tax
  included), a cancel with credit a credit note for the unused share of the period's recurring lines;
- statuses: active (or trialing), paused, past due, cancelled, ended, as the rules say.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select

from portal import clock
from portal.billing import cycles, states
from portal.billing.invoice_math import Line, TaxRate, compute
from portal.extensions import db
from portal.models import (
    Client,
    CreditEntry,
    CreditNote,
    Invoice,
    Subscription,
    SubscriptionPeriod,
)
from portal.services import payment_methods, subscriptions
from portal.services.errors import ServiceError
from portal.services.subscriptions import manage, runs
from tests.support.apps import empty_tables
from tests.support.make import STAFF
from tests.support.profiles import examples

FIRST_DAY = date(2030, 1, 30)  # anchors near month ends: Jan 30 → Feb 28 → Mar 30
CARDS = {"bad": "4000000000000002", "good": "4242424242424242"}
VAT = Decimal(23)
# A new subscription: whose, which plans (two monthly ones, a weekly one, a quarterly one) and how many
# of each, starting up to 45 days ago (the backlog billed) or 15 days ahead, with or without a
# 10-day trial and a number of cycles.
NEW_SUBSCRIPTION = {
    "client": st.integers(0, 1), "family": st.sampled_from(["month", "month", "week", "quarter"]),
    "quantities": st.lists(st.integers(0, 4), min_size=2, max_size=2), "offset": st.integers(-45, 15),
    "trial": st.booleans(), "max_cycles": st.one_of(st.none(), st.none(), st.integers(1, 4))}


@dataclass
class PlanInfo:
    id: int
    name: str
    price: int
    tax: bool


@dataclass
class Billed:
    """What the rules say period n's invoice holds."""

    items: dict[int, int]           # plan id → quantity
    charges: list[tuple[int, bool]]  # proration charges: (amount, taxed)


@dataclass
class Sub:
    id: int
    client: int
    family: str
    unit: str
    interval: int
    anchor: date
    items: dict[int, int]
    max_cycles: int | None
    status: str = "active"
    next: int = 0
    pending: dict[int, int] | None = None
    charges: list[tuple[int, bool]] = field(default_factory=list)
    cancel_end: date | None = None
    cancel_flag: bool = False
    paused_on: date | None = None
    held: int | None = None
    billed: dict[int, Billed] = field(default_factory=dict)

    def period(self, n: int) -> cycles.Period:
        return cycles.period(self.anchor, self.unit, self.interval, n)

    def in_term(self, n: int) -> bool:
        if self.max_cycles is not None and n >= self.max_cycles:
            return False
        return self.cancel_end is None or self.period(n).start < self.cancel_end

    def term_end(self) -> date | None:
        """The end the engine knows: a cancel's, or the last cycle's once every cycle is billed."""
        ends = [self.cancel_end] if self.cancel_end else []
        if self.max_cycles is not None and self.next >= self.max_cycles:
            ends.append(self.period(self.max_cycles - 1).end)
        return min(ends) if ends else None

    def term_over(self, today: date) -> bool:
        end = self.term_end()
        if end is None or end > today:
            return False
        return self.status != "active" or not self.in_term(self.next)

    def finish(self) -> None:
        self.status = "cancelled" if self.cancel_flag else "ended"
        self.pending = None

    def current(self, today: date) -> cycles.Period | None:
        """The billed period containing today."""
        n = cycles.index_on(self.anchor, self.unit, self.interval, today)
        return self.period(n) if n in self.billed else None

    @property
    def live(self) -> bool:
        return self.status in ("active", "paused", "past_due")


def with_tax(amount: int, taxed: bool) -> int:
    rule = TaxRate("VAT", VAT, False) if taxed else None
    return compute([Line(Decimal(1), amount, None, rule)]).total


class Billing(RuleBasedStateMachine):
    def __init__(self, make, redis_server):
        super().__init__()
        HISTORIES[0] += 1
        self.make = make
        db.session.remove()
        empty_tables(db)
        redis_server.client().flushall()  # the sandbox's saved cards and intents
        make.business(name="Tidewater Studio", timezone="Europe/Lisbon", currency="EUR",
                      autopay_timing="on_issue")
        vat = make.tax_rate("VAT", "23")
        self.plans = {
            "month": [self._plan(make, "Desk", "120.00", "month", 1, vat),
                      self._plan(make, "Locker", "45.50", "month", 1, None)],
            "week": [self._plan(make, "Coaching", "30.00", "week", 1, vat)],
            "quarter": [self._plan(make, "Review", "99.99", "month", 3, None)],
        }
        self.plan_by_id = {p.id: p for family in self.plans.values() for p in family}
        self.clients = [make.client("Acme Ltd", currency="EUR").id,
                        make.client("Bravo", contacts=[{"name": "Bo", "email": "bo@bravo.example",
                                                        "receives_invoices": True}], currency="EUR").id]
        self.autopay = {0: "off", 1: "off"}
        self.credit = {0: 0, 1: 0}            # proration credit given, per client
        self.notes: dict[int, int] = {}        # invoice id → credit note amount
        self.today = FIRST_DAY
        self.subs: list[Sub] = []

    @staticmethod
    def _plan(make, name, price, unit, interval, tax) -> PlanInfo:
        row = make.plan(name, price, unit=unit, interval=interval, tax_rate=tax)
        return PlanInfo(row.id, name, row.unit_price, tax is not None)

    def moment(self) -> datetime:
        return datetime(self.today.year, self.today.month, self.today.day, 12, tzinfo=UTC)

    def expect(self, allowed: bool, action) -> bool:
        """Run an operation the rules allow or refuse; a refusal changes nothing."""
        before = self.snapshot()
        try:
            with clock.frozen(self.moment()):
                action()
        except ServiceError:
            db.session.rollback()
            assert not allowed, "the engine refused what the rules allow"
            assert self.snapshot() == before, "a refused operation changed something"
            return False
        assert allowed, "the engine did what the rules refuse"
        return True

    def snapshot(self) -> tuple:
        db.session.expire_all()
        return (tuple(db.session.execute(select(Subscription.id, Subscription.status, Subscription.next_period,
                                                Subscription.ends_on, Subscription.pending_items)
                                         .order_by(Subscription.id)).all()),
                db.session.scalar(select(func.count()).select_from(Invoice)),
                db.session.scalar(select(func.count()).select_from(CreditEntry)))

    def sub_at(self, i: int) -> Sub:
        return self.subs[i % len(self.subs)]

    def items_arg(self, sub: Sub, quantities: list[int]) -> dict[int, int]:
        family = self.plans[sub.family]
        chosen = {p.id: q for p, q in zip(family, quantities) if q}
        return chosen or {family[0].id: 1}

    # Operations -----------------------------------------------------------------------------------------

    @initialize(**NEW_SUBSCRIPTION)
    def first(self, **values):
        self.create(**values)

    @precondition(lambda self: len(self.subs) < 3)
    @rule(**NEW_SUBSCRIPTION)
    def another(self, **values):
        self.create(**values)

    def create(self, client, family, quantities, offset, trial, max_cycles):
        plans = self.plans[family]
        chosen = {p.id: q for p, q in zip(plans, quantities) if q} or {plans[0].id: 1}
        start = date.fromordinal(self.today.toordinal() + offset)
        with clock.frozen(self.moment()):
            row = subscriptions.create_subscription(
                db.session.get(Client, self.clients[client]),
                {"items": [{"plan_id": str(pid), "quantity": str(q)} for pid, q in chosen.items()],
                 "start_date": start.isoformat(), "backlog": "bill", "first_invoice": "auto",
                 "trial_days": "10" if trial else "0", "max_cycles": str(max_cycles or "")}, STAFF)
        unit = "week" if family == "week" else "month"
        interval = 3 if family == "quarter" else 1
        anchor = date.fromordinal(start.toordinal() + (10 if trial else 0))
        assert (row.anchor, row.unit, row.interval) == (anchor, unit, interval)
        self.subs.append(Sub(row.id, client, family, unit, interval, anchor, chosen, max_cycles))

    @precondition(lambda self: self.subs)
    @rule(i=st.integers(0, 2), quantities=st.lists(st.integers(0, 5), min_size=2, max_size=2),
          when=st.sampled_from(["now", "renewal"]))
    def change(self, i, quantities, when):
        sub = self.sub_at(i)
        new = self.items_arg(sub, quantities)
        raw = [{"plan_id": str(pid), "quantity": str(q)} for pid, q in new.items()]
        if not self.expect(sub.live, lambda: subscriptions.change_items(sub.id, raw, when, STAFF)):
            return
        if when == "renewal":
            sub.pending = new
            return
        current = sub.current(self.today)
        if current is not None:
            share = cycles.share_left(current, self.today)
            for pid in sorted(set(sub.items) | set(new)):
                plan = self.plan_by_id[pid]
                diff = (new.get(pid, 0) - sub.items.get(pid, 0)) * plan.price
                amount = cycles.prorate(diff, share)
                if amount > 0:
                    sub.charges.append((amount, plan.tax))
                elif amount < 0:
                    self.credit[sub.client] += with_tax(-amount, plan.tax)
        sub.items = new
        sub.pending = None

    @precondition(lambda self: self.subs)
    @rule(i=st.integers(0, 2))
    def pause(self, i):
        sub = self.sub_at(i)
        if self.expect(sub.status == "active", lambda: subscriptions.pause(sub.id, STAFF)):
            sub.status = "paused"
            sub.paused_on = self.today

    @precondition(lambda self: self.subs)
    @rule(i=st.integers(0, 2))
    def resume(self, i):
        sub = self.sub_at(i)
        if not self.expect(sub.status == "paused", lambda: subscriptions.resume(sub.id, STAFF)):
            return
        def first_starting(day):
            n = cycles.index_on(sub.anchor, sub.unit, sub.interval, day)
            return n + 1 if sub.period(n).start < day else n

        # Periods that started while paused are skipped once every earlier period is billed.
        if sub.next >= first_starting(sub.paused_on):
            sub.next = max(sub.next, first_starting(self.today))
        sub.status = "active"
        if sub.term_over(self.today):
            sub.finish()

    @precondition(lambda self: self.subs)
    @rule(i=st.integers(0, 2), how=st.sampled_from(["now", "now with credit", "period_end"]))
    def cancel(self, i, how):
        if how == "period_end":
            self.cancel_at_period_end(self.sub_at(i))
        else:
            self.cancel_now(self.sub_at(i), how == "now with credit")

    def cancel_now(self, sub: Sub, credit: bool) -> None:
        current = sub.current(self.today)
        db.session.expire_all()
        in_force = manage.in_force_total(db.session.get(Subscription, sub.id).items)
        if not self.expect(sub.live, lambda: subscriptions.cancel(sub.id, "now", STAFF, credit_unused=credit)):
            return
        sub.status, sub.pending, sub.charges = "cancelled", None, []
        if credit and current is not None:
            invoice = self.invoice_of(sub.id, current.start)
            recurring = sum(int(ln.total) for ln in invoice.lines if ln.period_start is not None)
            amount = cycles.prorate(min(recurring, in_force), cycles.share_left(current, self.today))
            if amount > 0:
                self.notes[invoice.id] = amount

    def cancel_at_period_end(self, sub: Sub) -> None:
        if not self.expect(sub.live, lambda: subscriptions.cancel(sub.id, "period_end", STAFF)):
            return
        end = sub.period(sub.next - 1).end if sub.next > 0 else sub.anchor
        under_way = cycles.index_on(sub.anchor, sub.unit, sub.interval, self.today)
        if under_way >= 0:
            end = max(end, sub.period(under_way).end)
        sub.cancel_end = end if sub.cancel_end is None else min(sub.cancel_end, end)
        sub.cancel_flag, sub.pending = True, None
        if sub.term_over(self.today):
            sub.finish()

    @rule(client=st.integers(0, 1), card=st.sampled_from(["bad", "good", "off"]))
    def saved_card(self, client, card):
        client_id = self.clients[client]
        if card == "off":
            payment_methods.set_autopay(client_id, False, STAFF)
        else:
            method = payment_methods.add_in_sandbox(client_id, None, "card", CARDS[card], "12/34", "123")
            payment_methods.set_default(client_id, method.id, STAFF)
            payment_methods.set_autopay(client_id, True, STAFF)
        self.autopay[client] = card

    @rule(i=st.integers(0, 20))
    def pay(self, i):
        """Staff record a payment by wire of all that is due on one open invoice."""
        db.session.expire_all()
        unpaid = db.session.scalars(select(Invoice).where(Invoice.status.in_(states.PAYABLE),
                                                          Invoice.amount_due > 0).order_by(Invoice.id)).all()
        if unpaid:
            with clock.frozen(self.moment()):
                self.make.payment(unpaid[i % len(unpaid)])

    @rule(days=st.integers(1, 10))
    def a_few_days_later(self, days):
        self.advance(days)

    @rule(days=st.integers(11, 100))
    def weeks_later(self, days):
        self.advance(days)

    @rule(days=st.integers(28, 35))
    def a_month_later(self, days):
        self.advance(days)

    # The clock moves: the engine bills, the model says what it must have billed -----------------------------

    def advance(self, days: int) -> None:
        self.today = date.fromordinal(self.today.toordinal() + days)
        at = self.moment()
        with clock.frozen(at):
            for _ in range(2):  # two ticks: what the first leaves (a hold, an end) the second settles
                runs.end_terms(at)
                runs.flag_failures(at)
                run, due = runs.start_run(at, "cli")
                if run is not None:
                    for batch in runs.batches(due):
                        runs.bill_batch(run.id, [s for s, _ in batch], at)
        db.session.expire_all()
        self.end_non_billing()
        for sub in self.subs:
            if sub.status == "past_due":
                held = db.session.get(Invoice, sub.held)
                if held.status not in states.PAYABLE or held.amount_due <= 0:
                    sub.status, sub.held = "active", None
            if sub.status != "active":
                continue
            while sub.in_term(sub.next) and sub.period(sub.next).start <= self.today:
                n = sub.next
                if sub.pending is not None:
                    sub.items, sub.pending = sub.pending, None
                sub.billed[n] = Billed(dict(sub.items), sub.charges)
                sub.charges = []
                sub.next += 1
                if self.autopay[sub.client] == "bad":
                    invoice = self.invoice_of(sub.id, sub.period(n).start)
                    if invoice is not None and invoice.amount_due > 0:
                        sub.status, sub.held = "past_due", invoice.id
                        break
            if sub.term_over(self.today):
                sub.finish()
        self.end_non_billing()

    def end_non_billing(self) -> None:
        """A paused or held subscription ends on its term's end day (the tick's end-of-term step)."""
        for sub in self.subs:
            if sub.status in ("paused", "past_due") and sub.term_over(self.today):
                sub.finish()

    def invoice_of(self, subscription_id: int, start: date) -> Invoice | None:
        invoice_id = db.session.scalar(select(SubscriptionPeriod.invoice_id).where(
            SubscriptionPeriod.subscription_id == subscription_id, SubscriptionPeriod.period_start == start))
        return db.session.get(Invoice, invoice_id) if invoice_id else None

    # What must hold after every step -------------------------------------------------------------------

    @invariant()
    def books_follow_the_rules(self):
        db.session.expire_all()
        for sub in self.subs:
            row = db.session.get(Subscription, sub.id)
            status = "active" if row.status == "trialing" else row.status
            assert status == sub.status, (sub.id, row.status, sub)
            periods = db.session.scalars(select(SubscriptionPeriod).where(SubscriptionPeriod.subscription_id
                                                                          == sub.id)
                                         .order_by(SubscriptionPeriod.period_index)).all()
            assert [p.period_index for p in periods] == sorted(sub.billed), (sub.id, sub)
            invoices = db.session.scalars(select(Invoice).where(Invoice.subscription_id == sub.id)).all()
            assert len(invoices) == len(periods), "an invoice without its period, or two for one"
            assert len({p.invoice_id for p in periods}) == len(periods)
            for p in periods:
                expected = sub.billed[p.period_index]
                span = sub.period(p.period_index)
                assert (p.period_start, p.period_end) == (span.start, span.end)
                invoice = db.session.get(Invoice, p.invoice_id)
                assert invoice.subscription_id == sub.id
                recurring = sorted((int(ln.unit_price), int(ln.quantity), ln.period_start, ln.period_end)
                                   for ln in invoice.lines if ln.period_start is not None)
                assert recurring == sorted((self.plan_by_id[pid].price, q, span.start, span.last_day)
                                           for pid, q in expected.items.items()), (sub.id, p.period_index)
                others = [ln for ln in invoice.lines if ln.period_start is None]
                assert all(ln.description.startswith("Remaining time on ") and ln.quantity == 1 for ln in others)
                assert sorted((int(ln.unit_price), ln.tax_percent is not None) for ln in others) == \
                    sorted(expected.charges), (sub.id, p.period_index, expected)
                assert invoice.subtotal == sum(price * q for price, q, _, _ in recurring) + sum(
                    a for a, _ in expected.charges)
                if invoice.id in self.notes:
                    assert sum(db.session.scalars(select(CreditNote.amount).where(
                        CreditNote.invoice_id == invoice.id))) == self.notes[invoice.id]
                else:
                    assert db.session.scalar(select(func.count()).select_from(CreditNote).where(
                        CreditNote.invoice_id == invoice.id)) == 0
            if sub.status == "past_due":
                assert row.held_invoice_id == sub.held
        for index, client_id in enumerate(self.clients):
            given = db.session.scalar(select(func.coalesce(func.sum(CreditEntry.amount), 0)).where(
                CreditEntry.client_id == client_id, CreditEntry.kind == "credit"))
            assert given == self.credit[index], "proration credit"
        numbers = sorted(db.session.scalars(select(Invoice.sequence_number)
                                            .where(Invoice.sequence_number.is_not(None))).all())
        assert numbers == list(range(1, len(numbers) + 1)), numbers


# Every step touches the database, so shrinking a failure would take minutes: it is off, and a failure
# is reported as generated (the steps are printed by Hypothesis).
HISTORIES = [0]  # how many histories (state machines) ran: printed, so a long run can say its count


@pytest.mark.money_property
def test_subscriptions_bill_what_the_rules_say_over_random_histories(app, make, redis_server):
    HISTORIES[0] = 0
    try:
        run_state_machine_as_test(
            lambda: Billing(make, redis_server),
            settings=settings(max_examples=examples(25), stateful_step_count=25, deadline=None,
                              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
                              phases=[Phase.explicit, Phase.reuse, Phase.generate]))
    finally:
        db.session.remove()
        print(f"subscription histories run: {HISTORIES[0]} (asked for {examples(25)})")
