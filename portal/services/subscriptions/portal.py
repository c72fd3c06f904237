"""What the client portal shows about subscriptions (R1): the client's own subscriptions, the
self-serve plans on offer, a plan's page, the public checkout page and the first invoice's payment
page. Read only; every query is scoped to the client (another client's subscription is NotFound).

Amounts and dates come from ``schedule`` (the billing run's own code): a subscription's next invoice
is ``schedule.preview(sub, 1)``; a plan's first invoices are the preview of the subscription the
checkout would make (a transient row, never added to the session). The method that will be charged
follows autopay's rule (org → client → subscription, ``autopay.autopay_rules``): the subscription's
own switch, else the client's; then the client's default method if it can pay the currency.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from portal import clock
from portal.extensions import db
from portal.models import Client, Invoice, Plan, Subscription, SubscriptionItem
from portal.services import invoices, payments
from portal.services.business import get_business
from portal.services.errors import NotFound
from portal.services.formats import money
from portal.services.payment_methods import method_label, usable_method
from portal.services.subscriptions import checkout, manage, schedule
from portal.services.subscriptions.plans import cycle_label, plan_by_key

LIST_SIZE = 50
LIVE = ("incomplete", "trialing", "active", "past_due", "paused")
STATUS_LABELS = {
    "incomplete": "Waiting for payment", "trialing": "Free trial", "active": "Active", "past_due": "Payment due",
    "paused": "Paused", "cancelled": "Cancelled", "ended": "Ended",
}


@dataclass
class Item:
    name: str
    quantity: Decimal


@dataclass
class ClientSubscription:
    id: int
    status: str
    status_label: str
    currency: str
    items: list[Item]
    started_on: date
    trial_last_day: date | None = None
    next_invoice_on: date | None = None
    next_amount: int | None = None
    charged_to: str | None = None        # "VISA •••• 4242"; None: a payment link is sent
    ends_on: date | None = None          # the last day of service, once it is set to end
    waiting_invoice: Invoice | None = None  # a checkout's unpaid first invoice
    overdue_invoice_id: int | None = None   # past due: the invoice that holds billing
    can_cancel: bool = False
    can_drop: bool = False

    @property
    def name(self) -> str:
        return ", ".join(i.name for i in self.items) or "Subscription"

    @property
    def live(self) -> bool:
        return self.status in LIVE


def _charged_to(sub: Subscription, client: Client, cache: dict) -> str | None:
    """What autopay will charge for this subscription's invoices (None: the client pays by link)."""
    enabled = bool(client.autopay) if sub.autopay is None else sub.autopay  # as autopay.autopay_rules reads it
    if not enabled:
        return None
    if sub.currency not in cache:
        method = usable_method(client.id, sub.currency)
        cache[sub.currency] = method_label(method) if method is not None else None
    return cache[sub.currency]


def _last_day(end: date | None) -> date | None:
    return end - timedelta(days=1) if end is not None else None


def _row(sub: Subscription, client: Client, may_cancel: bool, methods: dict) -> ClientSubscription:
    row = ClientSubscription(
        id=sub.id, status=sub.status, status_label=STATUS_LABELS.get(sub.status, sub.status.replace("_", " ")),
        currency=sub.currency, items=[Item(i.description, Decimal(i.quantity)) for i in sub.items],
        started_on=sub.started_on,
        trial_last_day=_last_day(sub.trial_end) if sub.status == "trialing" else None)
    if not row.live:
        return row
    row.waiting_invoice = checkout.waiting_invoice(sub)
    if sub.status == "incomplete" and row.waiting_invoice is None:
        # Paid (on the invoice's page, by link): active from the next billing run on; say so now.
        row.status, row.status_label = "active", STATUS_LABELS["active"]
    if sub.cancel_at_period_end or sub.ends_on is not None:
        row.ends_on = _last_day(sub.ends_on)
    upcoming = schedule.preview(sub, 1) if row.waiting_invoice is None else []
    if upcoming and upcoming[0].invoice_on is not None:
        row.next_invoice_on, row.next_amount = upcoming[0].invoice_on, upcoming[0].amount
    row.charged_to = _charged_to(sub, client, methods)
    if sub.status == "past_due":
        row.overdue_invoice_id = sub.held_invoice_id
    row.can_cancel = may_cancel and row.status in checkout.CANCELLABLE and not sub.cancel_at_period_end
    row.can_drop = sub.self_checkout and row.waiting_invoice is not None
    return row


def portal_subscriptions(client_id: int) -> dict:
    """The Subscriptions tab: the client's subscriptions (live ones first, newest first), whether the
    client may cancel them, and whether any self-serve plan is on offer."""
    client = db.session.get(Client, client_id)
    if client is None:
        raise NotFound("No such client.")
    subs = db.session.scalars(
        select(Subscription).where(Subscription.client_id == client_id)
        .options(selectinload(Subscription.items).selectinload(SubscriptionItem.plan),
                 selectinload(Subscription.items).selectinload(SubscriptionItem.tax_rate))
        .order_by(Subscription.id.desc()).limit(LIST_SIZE)).all()
    may_cancel = bool(get_business().clients_cancel_subscriptions)
    methods: dict = {}
    rows = [_row(sub, client, may_cancel, methods) for sub in subs]
    rows.sort(key=lambda r: not r.live)  # stable: newest first within each group
    return {"subscriptions": rows, "may_cancel": may_cancel, "plans_on_offer": plans_on_offer(client)}


def portal_subscription(client_id: int, subscription_id) -> ClientSubscription:
    """One of the client's subscriptions, as its card on the tab shows it."""
    sub = manage.get_subscription(subscription_id, client_id)
    client = sub.client
    return _row(sub, client, bool(get_business().clients_cancel_subscriptions), {})


# Plans on offer ------------------------------------------------------------------------------------

@dataclass
class Offer:
    """A self-serve plan as a client (or a visitor, on the public link) reads it."""

    plan: Plan
    price: str                         # "€49.00 every month"
    cycle: str                         # "every month"
    tax_note: str | None = None        # "plus VAT 23 %", "VAT 23 % included"
    blocked: str | None = None         # why this client can't subscribe (restricted, currency, closed)
    first_on: date | None = None       # the first invoice's day (today, or when the trial ends)
    first_amount: int | None = None    # what it comes to, setup fee and tax included
    then_amount: int | None = None     # each later cycle
    quantity: int = 1

    @property
    def currency(self) -> str:
        return self.plan.currency


def _tax_note(plan: Plan) -> str | None:
    rate = plan.tax_rate
    if rate is None:
        return None
    percent = format(Decimal(rate.percent).normalize(), "f")
    return f"{rate.name} {percent} % included" if rate.inclusive else f"plus {rate.name} {percent} %"


def _offer(plan: Plan) -> Offer:
    return Offer(plan=plan, price=f"{money(plan.unit_price, plan.currency)} {cycle_label(plan)}",
                 cycle=cycle_label(plan), tax_note=_tax_note(plan))


def _priced(offer: Offer, client: Client, quantity: int) -> Offer:
    """The first two invoices the checkout would make, priced by ``schedule.preview`` on a transient
    subscription built as ``manage.create_subscription`` builds it (never added to the session)."""
    plan = offer.plan
    today = clock.today(get_business().timezone)
    anchor = today + timedelta(days=plan.trial_days or 0)
    sub = Subscription(client=client, client_id=client.id, status="trialing" if plan.trial_days else "active",
                       currency=plan.currency, unit=plan.unit, interval=plan.interval, anchor=anchor,
                       invoice_anchor=anchor, started_on=today, next_period=0, pending_items=None,
                       max_cycles=None, ends_on=None)
    sub.items = [SubscriptionItem(plan=plan, plan_id=plan.id, position=0, description=plan.name,
                                  quantity=Decimal(quantity), unit_price=plan.unit_price, tax_rate=plan.tax_rate,
                                  tax_rate_id=plan.tax_rate_id)]
    rows = schedule.preview(sub, 2)
    if rows:
        offer.first_on, offer.first_amount = rows[0].invoice_on, rows[0].amount
    if len(rows) > 1:
        offer.then_amount = rows[1].amount
    offer.quantity = quantity
    return offer


def _on_offer(client: Client):
    return select(Plan).where(Plan.active.is_(True), Plan.self_serve.is_(True),
                              Plan.currency == manage.client_currency(client))


def self_serve_plans(client: Client) -> list[Offer]:
    """The active self-serve plans in the client's currency, cheapest first."""
    plans = db.session.scalars(_on_offer(client).options(selectinload(Plan.tax_rate))
                               .order_by(Plan.unit_price, Plan.id)).all()
    return [_offer(plan) for plan in plans]


def plans_on_offer(client: Client) -> bool:
    return db.session.scalar(select(_on_offer(client).exists())) or False


def plan_offer(client_id: int, plan_id, quantity: int = 1) -> Offer:
    """A self-serve plan's page for this client: the price, the first invoices, or why the client
    can't subscribe. An archived or not self-serve plan is NotFound."""
    plan = checkout.self_serve_plan(plan_id)
    client = db.session.get(Client, client_id)
    if client is None:
        raise NotFound("No such client.")
    offer = _offer(plan)
    offer.blocked = checkout.refusal(client, plan)
    if offer.blocked is None:
        _priced(offer, client, quantity)
    return offer


def public_offer(key: str) -> Offer:
    """The public checkout link's plan (``/subscribe/<key>``): an active self-serve plan, else NotFound."""
    return _offer(plan_by_key(key))


# The first invoice's payment page -------------------------------------------------------------------

def pay_page(client_id: int, subscription_id) -> dict:
    """What the checkout's payment page shows: the subscription, its waiting first invoice (the
    invoice document) and how it can be paid online. NotFound when nothing is waiting."""
    sub = manage.get_subscription(subscription_id, client_id)
    invoice = checkout.waiting_invoice(sub)
    if invoice is None:
        raise NotFound("Nothing to pay on this subscription.")
    invoice = invoices.client_invoice(client_id, invoice.id)
    context = invoices.client_document(invoice)
    context.update(payments.checkout_options(invoice))
    context["subscription"] = portal_subscription(client_id, sub.id)
    return context
