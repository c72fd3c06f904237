"""Starting and changing subscriptions: create, first invoice by hand, change (now, with proration, or
at the next renewal), pause, resume, cancel (now, optionally crediting the unused part, or at period
end), and the per-subscription settings (autopay override, end date, number of cycles).

Every change takes the subscription's row lock first (``locks.subscription``) and records an event
on its timeline. Bad input raises ``SubscriptionInvalid`` (field → message) and writes nothing.

Proration (a change "now"): for the period already billed that contains today, the share left
(``billing.cycles.share_left``: days left / days in the period) of each plan's amount difference.
A positive difference is a charge on the next invoice (``subscription_charge``, with the plan's tax
rate); a negative one is credit on the client's balance (tax included), applied to the next
invoices per the credit setting. Nothing is prorated for a period not billed yet.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy import select

from portal import clock
from portal.billing import cycles, states
from portal.billing.invoice_math import Line, compute
from portal.billing.invoice_math import TaxRate as TaxRule
from portal.billing.money import MoneyError, parse_decimal
from portal.extensions import db
from portal.models import (
    Client,
    Event,
    Invoice,
    Plan,
    Subscription,
    SubscriptionCharge,
    SubscriptionItem,
)
from portal.services import credit_notes, credits, locks, payments
from portal.services.business import get_business
from portal.services.errors import NotFound, ServiceError
from portal.services.events import Actor, commit, record_event, rollback
from portal.services.invoices.lifecycle import void_locked
from portal.services.subscriptions import billing
from portal.services.subscriptions.schedule import invoice_date, next_invoice_on, period
from portal.services.typed import row_id, whole_number

MAX_ITEMS = 20
MAX_QUANTITY = Decimal(10_000)
MAX_CYCLES = 1000
MAX_BACKLOG_DAYS = 366  # a start date at most this far back (its periods are all billed at once)
AUTOPAY_CHOICES = ("", "on", "off")
TIMINGS = ("", "on_issue", "on_due_date", "days_before_due")
LIVE = ("trialing", "active", "past_due", "paused", "incomplete")


class SubscriptionInvalid(ServiceError):
    """Bad input: ``errors`` maps a field (``items-0-quantity``, ``start_date``) to its message."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("Please correct the marked fields.")
        self.errors = errors


def get_subscription(subscription_id, client_id: int | None = None) -> Subscription:
    """A subscription, only through its own client when ``client_id`` is given."""
    sub = db.session.get(Subscription, row_id(subscription_id) or 0)
    if sub is None or (client_id is not None and sub.client_id != client_id):
        raise NotFound("No such subscription.")
    return sub


def _text(values: dict, key: str) -> str:
    value = values.get(key)
    return value.strip() if isinstance(value, str) else ""


def _today() -> date:
    return clock.today(get_business().timezone)


def client_currency(client: Client) -> str:
    return client.currency or get_business().currency


# Items -------------------------------------------------------------------------------------------

@dataclass
class ItemChoice:
    plan: Plan
    quantity: Decimal


def parse_quantity(text: str) -> Decimal:
    try:
        return parse_decimal((text or "").strip() or "1", max_places=3, max_value=MAX_QUANTITY, allow_zero=False)
    except MoneyError:
        raise MoneyError(f"Use a quantity above 0 and at most {MAX_QUANTITY:,}, up to 3 decimals.",
                         "range") from None


def parse_items(raw_items: list[dict], currency: str, errors: dict, cycle: tuple[str, int] | None = None,
                allow_archived: set[int] | None = None) -> list[ItemChoice]:
    """``[{"plan_id": "3", "quantity": "2"}, …]`` (blank rows skipped) → items; errors by field.
    Every plan must be active, in ``currency``, and on one cycle (``cycle`` when given)."""
    chosen: list[ItemChoice] = []
    rows = [r for r in (raw_items or []) if _text(r, "plan_id") or _text(r, "quantity")]
    if len(rows) > MAX_ITEMS:
        errors["items"] = f"A subscription has at most {MAX_ITEMS} items."
        rows = rows[:MAX_ITEMS]
    seen: set[int] = set()
    for i, raw in enumerate(raw_items or []):
        if raw not in rows:
            continue
        prefix = f"items-{i}-"
        plan_id = row_id(_text(raw, "plan_id"))
        plan = db.session.get(Plan, plan_id) if plan_id else None
        if plan is None or not (plan.active or plan.id in (allow_archived or set())):
            errors[prefix + "plan_id"] = "Choose an active plan."
            plan = None
        elif plan.currency != currency:
            errors[prefix + "plan_id"] = (f"This plan is billed in {plan.currency}; the client is billed in "
                                          f"{currency}.")
            plan = None
        elif plan.id in seen:
            errors[prefix + "plan_id"] = "This plan is already on the subscription: change its quantity."
            plan = None
        try:
            quantity = parse_quantity(_text(raw, "quantity"))
        except MoneyError as exc:
            errors[prefix + "quantity"] = str(exc)
            quantity = None
        if plan is not None:
            seen.add(plan.id)
            if quantity is not None:
                chosen.append(ItemChoice(plan, quantity))
    if not rows and "items" not in errors:
        errors["items"] = "Add at least one plan."
    cycles_seen = {(c.plan.unit, c.plan.interval) for c in chosen}
    if cycle is not None:
        cycles_seen.add(cycle)
    if len(cycles_seen) > 1 and "items" not in errors:
        errors["items"] = "Every plan on a subscription must bill on the same cycle."
    return chosen


def _item_rows(choices: list[ItemChoice]) -> list[SubscriptionItem]:
    return [SubscriptionItem(plan_id=c.plan.id, position=i, description=c.plan.name, quantity=c.quantity,
                             unit_price=c.plan.unit_price, tax_rate_id=c.plan.tax_rate_id)
            for i, c in enumerate(choices)]


def _items_snapshot(items) -> list[dict]:
    return [{"plan_id": i.plan_id, "description": i.description, "quantity": format(Decimal(i.quantity), "f"),
             "unit_price": int(i.unit_price)} for i in items]


# Settings shared by create and edit ------------------------------------------------------------

def _parse_settings(values: dict, errors: dict, start: date | None) -> dict:
    autopay = _text(values, "autopay")
    if autopay not in AUTOPAY_CHOICES:
        errors["autopay"] = "Choose the client's setting, on or off."
    timing = _text(values, "autopay_timing")
    if timing not in TIMINGS:
        errors["autopay_timing"] = "Choose when autopay charges."
    days_text = _text(values, "autopay_days_before")
    days = None
    if timing == "days_before_due":
        days = whole_number(days_text or "")
        if days is None or days > 60:
            errors["autopay_days_before"] = "Use 0 to 60 days."
    ends_on = None
    ends_text = _text(values, "ends_on")
    if ends_text:
        try:
            ends_on = date.fromisoformat(ends_text)
        except ValueError:
            errors["ends_on"] = "Use a date like 2027-12-31."
        else:
            if start is not None and ends_on <= start:
                errors["ends_on"] = "The end date must be after the start."
    max_cycles = None
    cycles_text = _text(values, "max_cycles")
    if cycles_text:
        max_cycles = whole_number(cycles_text)
        if max_cycles is None or not 1 <= max_cycles <= MAX_CYCLES:
            errors["max_cycles"] = f"Use 1 to {MAX_CYCLES} cycles, or leave it blank."
            max_cycles = None
    return {"autopay": {"": None, "on": True, "off": False}.get(autopay), "autopay_timing": timing or None,
            "autopay_days_before": days, "ends_on": ends_on, "max_cycles": max_cycles}


# Create -------------------------------------------------------------------------------------------

def new_subscription_defaults(client: Client) -> dict:
    return {"start_date": _today().isoformat(), "first_invoice": "auto", "autopay": "",
            "items": [{"plan_id": "", "quantity": "1"}]}


def create_subscription(client: Client, values: dict, actor: Actor, *, self_checkout: bool = False) -> Subscription:
    """Start a subscription for ``client`` from what was typed:

    ``items`` (``[{"plan_id", "quantity"}]``), ``start_date`` (ISO, default today), ``backlog``
    ("bill" the periods since a past start, or start "now"), ``first_invoice`` ("auto": on the start
    day; "manual": staff make the first invoice, the rest follow on its day), ``autopay`` (""/on/off),
    ``autopay_timing``, ``autopay_days_before``, ``ends_on``, ``max_cycles``, ``trial_days`` (blank:
    the plans')."""
    if client.archived_at is not None:
        raise ServiceError("This client is archived; restore it before starting a subscription.")
    errors: dict[str, str] = {}
    currency = client_currency(client)
    choices = parse_items(values.get("items") or [], currency, errors)
    today = _today()
    start = today
    start_text = _text(values, "start_date")
    if start_text:
        try:
            start = date.fromisoformat(start_text)
        except ValueError:
            errors["start_date"] = "Use a date like 2027-06-01."
    backlog = _text(values, "backlog")
    if start < today - timedelta(days=MAX_BACKLOG_DAYS) and "start_date" not in errors:
        errors["start_date"] = ("Start within the last year: for older periods, make their invoices by hand "
                                "and start the subscription today.")
    elif start < today and "start_date" not in errors:
        if backlog == "now":
            start = today
        elif backlog != "bill":
            errors["backlog"] = ("This start date is in the past: bill every period since then, "
                                 "or start today instead.")
    elif start > today + timedelta(days=3660):
        errors["start_date"] = "Start within the next ten years."
    first_invoice = _text(values, "first_invoice") or "auto"
    if first_invoice not in ("auto", "manual"):
        errors["first_invoice"] = "Choose how the first invoice is made."
    trial_text = _text(values, "trial_days")
    trial_days = max([c.plan.trial_days for c in choices] or [0])
    if trial_text:
        trial_days = whole_number(trial_text)
        if trial_days is None or trial_days > 730:
            errors["trial_days"] = "Use 0 to 730 days."
            trial_days = 0
    settings = _parse_settings(values, errors, start)
    if errors:
        raise SubscriptionInvalid(errors)
    unit, interval = choices[0].plan.unit, choices[0].plan.interval
    anchor = start + timedelta(days=trial_days)
    sub = Subscription(
        client_id=client.id, status="trialing" if trial_days else "active", currency=currency, unit=unit,
        interval=interval, anchor=anchor, started_on=start, trial_end=anchor if trial_days else None,
        invoice_anchor=anchor if first_invoice == "auto" else None, next_period=0, self_checkout=self_checkout,
        created_by_staff_id=actor.id if actor.kind == "staff" else None, **settings)
    sub.next_invoice_on = next_invoice_on(sub, 0)
    sub.items = _item_rows(choices)
    db.session.add(sub)
    db.session.flush()
    record_event("subscription.created", "subscription", sub.id, actor,
                 after={"items": _items_snapshot(sub.items), "status": sub.status},
                 data={"client_id": client.id, "start": start.isoformat(), "anchor": anchor.isoformat(),
                       "cycle": cycles.describe(unit, interval), "first_invoice": first_invoice,
                       "trial_days": trial_days, "backlog": start < today, "self_checkout": self_checkout})
    commit()
    return sub


def invoice_first_period(subscription_id: int, actor: Actor) -> Invoice | None:
    """Staff make the first invoice by hand (seed 004): its day becomes the invoice anchor, so the
    next periods are invoiced on the same day of their cycle, automatically."""
    sub = locks.subscription(subscription_id)
    if sub.invoice_anchor is not None or sub.next_period != 0:
        rollback()
        raise ServiceError("The first invoice of this subscription is already made.")
    if sub.status not in ("trialing", "active"):
        rollback()
        raise ServiceError(f"This subscription is {sub.status.replace('_', ' ')}.")
    today = _today()
    if sub.trial_end is not None and today < sub.trial_end:
        rollback()
        raise ServiceError(f"The trial runs until {sub.trial_end.isoformat()}: the first invoice can be made "
                           "from that day.")
    first = period(sub, 0)
    sub.invoice_anchor = min(today, first.last_day)  # made late: the periods since are caught up
    sub.next_invoice_on = invoice_date(sub, 0)
    record_event("subscription.first_invoice", "subscription", sub.id, actor,
                 data={"invoice_anchor": sub.invoice_anchor.isoformat()})
    commit()
    billing.bill_subscription(sub.id, clock.now())
    db.session.expire_all()
    return db.session.scalar(select(Invoice).where(Invoice.subscription_id == sub.id).order_by(Invoice.id).limit(1))


# Change ---------------------------------------------------------------------------------------------

def current_period(sub: Subscription, today: date) -> cycles.Period | None:
    """The period that contains ``today``, if it was billed (None if not: not yet, or skipped while
    paused)."""
    n = cycles.index_on(sub.anchor, sub.unit, sub.interval, today)
    if n < 0 or n >= sub.next_period or sub.id is None:
        return None
    p = period(sub, n)
    return p if _period_invoice_id(sub, p) is not None else None


def _net(quantity: Decimal, unit_price: int) -> int:
    return compute([Line(quantity, unit_price)]).total if quantity > 0 and unit_price >= 0 else 0


def _with_tax(amount: int, rate) -> int:
    if rate is None or amount <= 0:
        return amount
    return compute([Line(Decimal(1), amount, None,
                         TaxRule(rate.name, Decimal(rate.percent), rate.inclusive))]).total


def proration(sub: Subscription, choices: list[ItemChoice], today: date) -> list[dict]:
    """The proration parts of changing ``sub``'s items to ``choices`` on ``today``:
    ``[{"plan": Plan, "amount": ±minor, "description": …}]`` (empty outside a billed period)."""
    p = current_period(sub, today)
    if p is None:
        return []
    share = cycles.share_left(p, today)
    old = {(i.plan_id, int(i.unit_price)): (i, Decimal(i.quantity)) for i in sub.items}
    new = {(c.plan.id, c.plan.unit_price): c for c in choices}
    parts = []
    for key in sorted(set(old) | set(new)):
        old_qty = old[key][1] if key in old else Decimal(0)
        new_qty = new[key].quantity if key in new else Decimal(0)
        if old_qty == new_qty:
            continue
        plan = new[key].plan if key in new else db.session.get(Plan, key[0])
        amount = cycles.prorate(_net(new_qty, key[1]) - _net(old_qty, key[1]), share)
        if amount == 0:
            continue
        what = "Remaining time on" if amount > 0 else "Unused time on"
        qty = new_qty if amount > 0 else old_qty
        parts.append({"plan": plan, "amount": amount,
                      "description": f"{what} {plan.name} × {format(qty.normalize(), 'f')} "
                                     f"({_span(today, p)})"[:500],
                      "tax_rate": plan.tax_rate})
    return parts


def _span(today: date, p: cycles.Period) -> str:
    return cycles.Period(0, today, p.end).label()


def change_items(subscription_id: int, raw_items: list[dict], when: str, actor: Actor) -> Subscription:
    """Change the plans and quantities, ``when`` = "now" (proration on the next invoice, or credit)
    or "renewal" (from the next period on)."""
    sub = get_subscription(subscription_id)
    errors: dict[str, str] = {}
    if when not in ("now", "renewal"):
        errors["when"] = "Choose now or at the next renewal."
    current_plans = {i.plan_id for i in sub.items}
    choices = parse_items(raw_items, sub.currency, errors, cycle=(sub.unit, sub.interval),
                          allow_archived=current_plans)
    if errors:
        raise SubscriptionInvalid(errors)
    sub = locks.subscription(subscription_id)
    if sub.status not in LIVE:
        rollback()
        raise ServiceError(f"This subscription is {sub.status}; it can't change.")
    before = _items_snapshot(sub.items)
    if when == "renewal":
        sub.pending_items = [{"plan_id": c.plan.id, "quantity": format(c.quantity, "f")} for c in choices]
        record_event("subscription.change_scheduled", "subscription", sub.id, actor,
                     before={"items": before}, after={"items": sub.pending_items},
                     data={"from_period": sub.next_period})
        commit()
        return sub
    today = _today()
    parts = proration(sub, choices, today)
    for part in parts:
        if part["amount"] > 0:
            db.session.add(SubscriptionCharge(subscription_id=sub.id, description=part["description"],
                                              amount=part["amount"], tax_rate_id=part["plan"].tax_rate_id))
    credit = sum(_with_tax(-part["amount"], part["tax_rate"]) for part in parts if part["amount"] < 0)
    sub.items.clear()
    db.session.flush()
    sub.items = _item_rows(choices)
    sub.pending_items = None
    db.session.flush()
    record_event("subscription.changed", "subscription", sub.id, actor,
                 before={"items": before}, after={"items": _items_snapshot(sub.items)},
                 data={"when": "now", "proration": [{"description": p["description"], "amount": p["amount"]}
                                                    for p in parts], "credit": credit})
    if credit > 0:
        locks.client(sub.client_id)
        credits.add_entry(sub.client_id, sub.currency, credit, "credit", actor,
                          "Unused time after a subscription change: " +
                          "; ".join(p["description"] for p in parts if p["amount"] < 0)[:400])
    commit()
    return sub


# Pause, resume, cancel ----------------------------------------------------------------------------

def pause(subscription_id: int, actor: Actor) -> Subscription:
    """No period is billed while paused; the periods that start meanwhile are skipped."""
    sub = locks.subscription(subscription_id)
    if sub.status not in ("trialing", "active"):
        rollback()
        raise ServiceError("Only an active subscription can be paused.")
    before = sub.status
    sub.status = "paused"
    sub.paused_at = clock.now()
    record_event("subscription.paused", "subscription", sub.id, actor,
                 before={"status": before}, after={"status": "paused"})
    commit()
    return sub


def _first_starting(sub: Subscription, day: date) -> int:
    """The first period that starts on or after ``day``."""
    n = cycles.index_on(sub.anchor, sub.unit, sub.interval, day)
    return n + 1 if period(sub, n).start < day else n


def resume(subscription_id: int, actor: Actor) -> Subscription:
    """Billing resumes with the first period that starts on or after today; the periods that began
    while paused are not billed (the timeline says how many), unless a period that began before the
    pause is still unbilled (then billing resumes where it stopped). A subscription whose term is over by
    then (its last cycle skipped, or its end passed) ends."""
    sub = locks.subscription(subscription_id)
    if sub.status != "paused":
        rollback()
        raise ServiceError("This subscription is not paused.")
    today = _today()
    skipped = 0
    paused_on = cycles.local_date(sub.paused_at, get_business().timezone) if sub.paused_at else today
    first_next = _first_starting(sub, today)
    # Only periods that started while paused are skipped, and only once every period that started
    # before the pause is billed (a period under way at the pause, still waiting for its invoice day,
    # is billed; so is everything after it). Nothing is skipped before the first invoice is made.
    if sub.invoice_anchor is not None and sub.next_period >= _first_starting(sub, paused_on) \
            and first_next > sub.next_period:
        skipped = first_next - sub.next_period
        sub.next_period = first_next
    trialing = sub.trial_end is not None and today < sub.trial_end
    sub.status = "trialing" if trialing else "active"
    sub.paused_at = None
    sub.next_invoice_on = next_invoice_on(sub, sub.next_period)
    record_event("subscription.resumed", "subscription", sub.id, actor,
                 before={"status": "paused"}, after={"status": sub.status},
                 data={"skipped_periods": skipped, "next_period": sub.next_period,
                       "next_invoice_on": sub.next_invoice_on.isoformat() if sub.next_invoice_on else None})
    billing.settle_schedule(sub, today)  # skipped past its last cycle, or past its end: it ends now
    commit()
    return sub


def cancel(subscription_id: int, when: str, actor: Actor, credit_unused: bool = False) -> Subscription:
    """Cancel ``when`` = "now" (optionally a credit note for the unused part of the current period's
    invoice) or "period_end" (the subscription ends with the period under way, which is still billed
    if its invoice day has not come yet, or with the last period billed if that ends later)."""
    if when not in ("now", "period_end"):
        raise SubscriptionInvalid({"when": "Choose now or at the end of the period."})
    sub = locks.subscription(subscription_id)
    if sub.status not in LIVE:
        rollback()
        raise ServiceError("This subscription has already ended.")
    today = _today()
    before = sub.status
    if when == "period_end":
        # The end of the period under way today, billed or not (invoiced after its start, seed 004: it
        # is still billed on its day), or of the last period billed (billed ahead).
        end = period(sub, sub.next_period - 1).end if sub.next_period > 0 else sub.anchor
        under_way = cycles.index_on(sub.anchor, sub.unit, sub.interval, today)
        if under_way >= 0:
            end = max(end, period(sub, under_way).end)
        previous_end = sub.ends_on
        sub.cancel_at_period_end = True
        sub.ends_on = end if sub.ends_on is None else min(sub.ends_on, end)
        sub.pending_items = None
        record_event("subscription.cancel_scheduled", "subscription", sub.id, actor,
                     data={"ends_on": sub.ends_on.isoformat(),
                           "previous_ends_on": previous_end.isoformat() if previous_end else None})
        if billing.term_over(sub, today):
            billing.finish(sub, today)
        else:
            sub.next_invoice_on = next_invoice_on(sub, sub.next_period)
        commit()
        return sub
    if sub.status == "incomplete" and sub.held_invoice_id:
        _void_unpaid_first_invoice(sub, actor)  # a checkout that never started owes nothing
    p = current_period(sub, today)
    invoice_id = _period_invoice_id(sub, p) if credit_unused and p is not None else None
    in_force = in_force_total(sub.items)  # after a downgrade "now", less than the invoice's lines
    sub.status = "cancelled"
    sub.cancelled_at = clock.now()
    sub.next_invoice_on = None
    sub.pending_items = None
    sub.ends_on = today
    record_event("subscription.cancelled", "subscription", sub.id, actor,
                 before={"status": before}, after={"status": "cancelled"}, data={"when": "now"})
    commit()
    if invoice_id is not None:
        _credit_unused(invoice_id, cycles.share_left(p, today), in_force, actor)
    return sub


def _void_unpaid_first_invoice(sub: Subscription, actor: Actor) -> None:
    """Cancelling a self-checkout still waiting for its first payment voids that invoice, in the
    cancel's transaction (the subscription's lock is held; the invoice's is taken after it). Refused
    while money for it is on its way or part of it is paid."""
    invoice = locks.invoice(sub.held_invoice_id)
    if invoice.status not in states.PAYABLE:
        return
    if payments.money_on_its_way(invoice) or invoice.amount_paid or invoice.credit_applied:
        rollback()
        raise ServiceError("A payment for this subscription's first invoice is on its way or made: "
                           "settle that invoice first.")
    void_locked(invoice, actor, "Subscription cancelled before its first payment.")


def in_force_total(items) -> int:
    """What the items in force cost for a whole period, tax included (as their invoice lines)."""
    lines = []
    for item in items:
        rate = item.tax_rate
        tax = TaxRule(rate.name, Decimal(rate.percent), rate.inclusive) if rate is not None else None
        lines.append(Line(Decimal(item.quantity), int(item.unit_price), None, tax))
    return compute(lines).total if lines else 0


def keep(subscription_id: int, actor: Actor) -> Subscription:
    """Undo a cancellation at period end that has not happened yet."""
    sub = locks.subscription(subscription_id)
    if not sub.cancel_at_period_end or sub.status not in LIVE:
        rollback()
        raise ServiceError("This subscription is not set to cancel.")
    scheduled = db.session.scalar(select(Event).where(
        Event.subject_type == "subscription", Event.subject_id == sub.id,
        Event.type == "subscription.cancel_scheduled").order_by(Event.id.desc()).limit(1))
    previous = (scheduled.data or {}).get("previous_ends_on") if scheduled is not None else None
    sub.cancel_at_period_end = False
    sub.ends_on = date.fromisoformat(previous) if previous else None  # a fixed end date stays
    sub.next_invoice_on = next_invoice_on(sub, sub.next_period)
    record_event("subscription.cancel_undone", "subscription", sub.id, actor,
                 data={"ends_on": sub.ends_on.isoformat() if sub.ends_on else None})
    commit()
    return sub


def _period_invoice_id(sub: Subscription, p: cycles.Period) -> int | None:
    from portal.models import SubscriptionPeriod

    return db.session.scalar(select(SubscriptionPeriod.invoice_id).where(
        SubscriptionPeriod.subscription_id == sub.id, SubscriptionPeriod.period_start == p.start))


def _credit_unused(invoice_id: int, share, in_force: int, actor: Actor) -> None:
    """A credit note for the unused share of the period: of the items in force now (a downgrade
    "now" already credited the rest), at most the invoice's recurring lines; against what is still
    due, then to the client's balance for what was paid."""
    from portal.billing.money import to_major

    invoice = db.session.get(Invoice, invoice_id)
    if invoice is None or invoice.status not in (states.OPEN, states.OVERDUE, states.PAID):
        return
    recurring = sum(int(line.total) for line in invoice.lines if line.period_start is not None)
    amount = cycles.prorate(min(recurring, in_force), share)
    if amount <= 0:
        return
    to_due = min(amount, max(invoice.amount_due, 0))
    to_balance = min(amount - to_due, max(invoice.amount_paid + invoice.credit_applied - invoice.credit_noted, 0))
    typed = {"reason": "order_change", "memo": "Unused part of the period after cancelling the subscription."}
    if to_due:
        typed["to_due"] = format(to_major(to_due, invoice.currency), "f")
    if to_balance:
        typed["to_balance"] = format(to_major(to_balance, invoice.currency), "f")
    if not to_due and not to_balance:
        return
    credit_notes.issue(invoice.id, typed, actor)


def update_settings(subscription_id: int, values: dict, actor: Actor) -> Subscription:
    """Autopay override (""/on/off, timing, days), end date, number of cycles."""
    sub = get_subscription(subscription_id)
    errors: dict[str, str] = {}
    settings = _parse_settings(values, errors, sub.started_on)
    if settings["max_cycles"] is not None and settings["max_cycles"] < sub.next_period:
        errors["max_cycles"] = f"{sub.next_period} cycles are already billed."
    if errors:
        raise SubscriptionInvalid(errors)
    sub = locks.subscription(subscription_id)
    if sub.status not in LIVE:
        rollback()
        raise ServiceError("This subscription has ended.")
    before = {k: getattr(sub, k) for k in settings}
    for key, value in settings.items():
        setattr(sub, key, value)
    if sub.cancel_at_period_end and settings["ends_on"] is None:
        sub.cancel_at_period_end = False
    sub.next_invoice_on = next_invoice_on(sub, sub.next_period) if sub.status != "paused" else sub.next_invoice_on
    changed = {k: v for k, v in settings.items() if before[k] != v}
    if changed:
        record_event("subscription.settings_changed", "subscription", sub.id, actor,
                     before={k: _plain(before[k]) for k in changed}, after={k: _plain(v) for k, v in changed.items()})
    commit()
    return sub


def _plain(value):
    return value.isoformat() if isinstance(value, date) else value
