"""What the staff pages for recurring billing read: the plans list (with each self-serve plan's public
checkout link), the subscriptions list (a status filter and keyset paging by id, newest first: no
count over the table), a client's subscriptions, one subscription's page (items, schedule, invoices,
timeline, the actions it allows), the proration a change "now" would make, and the billing runs.

Reads only: every change goes through ``manage``, ``plans`` and ``runs``. Each page reads a fixed
number of statements whatever the number of rows (the items, clients and plans come with their
rows, never one query per row).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import joinedload, selectinload
from werkzeug.routing import BuildError

from portal import clock
from portal.billing import cycles
from portal.extensions import db
from portal.models import (
    BillingRun,
    Client,
    Event,
    Invoice,
    Plan,
    Subscription,
    SubscriptionItem,
    SubscriptionPeriod,
)
from portal.services import links
from portal.services.business import get_business
from portal.services.errors import NotFound
from portal.services.formats import money
from portal.services.paging import Page
from portal.services.settings import AUTOPAY_TIMINGS
from portal.services.subscriptions import manage, runs, schedule
from portal.services.subscriptions.plans import cycle_label
from portal.services.typed import row_id

LIST_SIZE = 25
CLIENT_LIST_SIZE = 50
INVOICES_SHOWN = 24
TIMELINE_SHOWN = 100
SCHEDULE_PERIODS = 12
STATUS_LABELS = {
    "trialing": "Trial", "active": "Active", "past_due": "Past due", "paused": "Paused",
    "cancelled": "Cancelled", "ended": "Ended", "incomplete": "Incomplete",
}
# The list's filter: a status, or every subscription whose last billing failed.
FILTERS = {**STATUS_LABELS, "error": "Billing failed"}
# The invoice events shown on a subscription's timeline beside its own.
INVOICE_EVENTS = ("invoice.paid", "invoice.payment_failed", "invoice.voided", "invoice.past_due")


def status_label(status: str) -> str:
    return STATUS_LABELS.get(status, status.replace("_", " ").capitalize())


# Plans -------------------------------------------------------------------------------------------

def price_label(plan: Plan) -> str:
    """"€49.00 every 3 months"."""
    return f"{money(plan.unit_price, plan.currency)} {cycle_label(plan)}"


def checkout_link(plan: Plan) -> str | None:
    """The public link that starts a self-serve plan (None for a plan that isn't self-serve or is
    archived). Built from PORTAL_BASE_URL only, like every link shown to be shared."""
    if not plan.self_serve or not plan.active:
        return None
    try:
        return links.external_url("public.subscribe", key=plan.checkout_key)
    except BuildError:  # the public checkout page isn't registered: its address all the same
        return f"{links.base_url()}/subscribe/{plan.checkout_key}"


@dataclass
class PlanRow:
    plan: Plan
    price: str
    checkout_link: str | None


def plan_rows() -> list[PlanRow]:
    """Every plan, active first, by name; with its tax rate (one statement for all of them)."""
    plans = db.session.scalars(select(Plan).options(joinedload(Plan.tax_rate))
                               .order_by(Plan.active.desc(), Plan.name, Plan.id)).all()
    return [PlanRow(p, price_label(p), checkout_link(p)) for p in plans]


def plan_choices(currency: str) -> list[tuple[str, str]]:
    """(id, "Name — €49.00 every month") of the active plans a client billed in ``currency`` can take."""
    plans = db.session.scalars(select(Plan).where(Plan.active.is_(True), Plan.currency == currency)
                               .order_by(Plan.name, Plan.id)).all()
    return [(str(p.id), f"{p.name} — {price_label(p)}") for p in plans]


# Lists -------------------------------------------------------------------------------------------

@dataclass
class SubscriptionRow:
    sub: Subscription
    client: Client
    plans: str
    status: str

    @property
    def id(self) -> int:
        return self.sub.id


@dataclass
class SubscriptionList:
    rows: list[SubscriptionRow]
    status: str
    before: int | None
    next_before: int | None  # the keyset of the next (older) page; None on the last


def _row(sub: Subscription) -> SubscriptionRow:
    plans = ", ".join(f"{i.description} × {format(i.quantity.normalize(), 'f')}" if i.quantity != 1
                      else i.description for i in sub.items)
    return SubscriptionRow(sub, sub.client, plans, status_label(sub.status))


def list_subscriptions(status: str = "", before=None, limit: int = LIST_SIZE) -> SubscriptionList:
    """Newest first, ``limit`` a page; ``before`` (an id) starts the page after the row it names.
    Two statements per page (the subscriptions with their clients, then their items)."""
    status = status if status in FILTERS else ""
    before_id = row_id(before)
    query = (select(Subscription).options(joinedload(Subscription.client), selectinload(Subscription.items))
             .order_by(Subscription.id.desc()).limit(limit + 1))
    if status == "error":
        query = query.where(Subscription.last_error.is_not(None))
    elif status:
        query = query.where(Subscription.status == status)
    if before_id:
        query = query.where(Subscription.id < before_id)
    subs = db.session.scalars(query).unique().all()
    more = len(subs) > limit
    subs = subs[:limit]
    return SubscriptionList([_row(s) for s in subs], status, before_id,
                            subs[-1].id if more and subs else None)


def client_subscriptions(client_id: int, limit: int = CLIENT_LIST_SIZE) -> list[SubscriptionRow]:
    """A client's subscriptions, newest first (the client page's section)."""
    subs = db.session.scalars(
        select(Subscription).options(joinedload(Subscription.client), selectinload(Subscription.items))
        .where(Subscription.client_id == client_id).order_by(Subscription.id.desc()).limit(limit)).unique().all()
    return [_row(s) for s in subs]


# One subscription --------------------------------------------------------------------------------

@dataclass
class InvoiceRow:
    invoice: Invoice
    period: str


@dataclass
class Entry:
    """One line of the timeline: when, what (in words, with the invoice it names as a link), who.
    ``parts`` are (text, invoice id or None): a part with an id is that invoice's link."""

    occurred_at: datetime
    parts: list[tuple[str, int | None]]
    actor: str
    detail: str | None = None

    @property
    def text(self) -> str:
        return "".join(text for text, _ in self.parts)


@dataclass
class Autopay:
    on: bool
    source: str  # "subscription" or "client"
    timing: str
    timing_source: str  # "subscription", "client" or "business"


@dataclass
class SubscriptionPage:
    sub: Subscription
    client: Client
    status: str
    cycle: str
    schedule: list
    invoices: list[InvoiceRow]
    more_invoices: bool
    timeline: list[Entry]
    held: Invoice | None
    autopay: Autopay
    actions: set[str]
    pending: list = field(default_factory=list)
    today: date | None = None


def _load(subscription_id) -> Subscription:
    sub = db.session.scalar(
        select(Subscription).where(Subscription.id == (row_id(subscription_id) or 0)).options(
            joinedload(Subscription.client),
            selectinload(Subscription.items).joinedload(SubscriptionItem.plan).joinedload(Plan.tax_rate),
            selectinload(Subscription.items).joinedload(SubscriptionItem.tax_rate)))
    if sub is None:
        raise NotFound("No such subscription.")
    return sub


def allowed_actions(sub: Subscription) -> set[str]:
    actions: set[str] = set()
    if sub.invoice_anchor is None and sub.next_period == 0 and sub.status in ("trialing", "active"):
        actions.add("first_invoice")
    if sub.status in manage.LIVE:
        actions |= {"change", "cancel", "settings"}
    if sub.status in ("trialing", "active"):
        actions.add("pause")
    if sub.status == "paused":
        actions.add("resume")
    if sub.cancel_at_period_end and sub.status in manage.LIVE:
        actions.add("keep")
    return actions


def autopay_of(sub: Subscription) -> Autopay:
    """What autopay does for this subscription's invoices, and whose setting decides it (org → client →
    subscription, as ``autopay.autopay_rules`` reads them)."""
    business = get_business()
    client = sub.client
    on = bool(client.autopay) if sub.autopay is None else sub.autopay
    source = "client" if sub.autopay is None else "subscription"
    timing, days, timing_source = business.autopay_timing, business.autopay_days_before, "business"
    for layer, name in ((client, "client"), (sub, "subscription")):
        if layer.autopay_timing:
            timing, timing_source = layer.autopay_timing, name
            if timing == "days_before_due" and layer.autopay_days_before is not None:
                days = layer.autopay_days_before
    label = AUTOPAY_TIMINGS.get(timing, timing)
    if timing == "days_before_due":
        label = f"{days} day{'s' if days != 1 else ''} before the due date"
    return Autopay(on, source, label, timing_source)


def _invoice_rows(sub: Subscription) -> tuple[list[InvoiceRow], bool]:
    rows = db.session.execute(
        select(Invoice, SubscriptionPeriod.period_index, SubscriptionPeriod.period_start,
               SubscriptionPeriod.period_end)
        .outerjoin(SubscriptionPeriod, SubscriptionPeriod.invoice_id == Invoice.id)
        .where(Invoice.subscription_id == sub.id).order_by(Invoice.id.desc()).limit(INVOICES_SHOWN + 1)).all()
    out = [InvoiceRow(inv, cycles.Period(idx, start, end).label() if start is not None else "")
           for inv, idx, start, end in rows[:INVOICES_SHOWN]]
    return out, len(rows) > INVOICES_SHOWN


def _items_text(items, plan_names: dict[int, str]) -> str:
    names = []
    for item in items or []:
        qty = str(item.get("quantity", "1"))
        qty = qty.rstrip("0").rstrip(".") if "." in qty else qty
        name = item.get("description") or plan_names.get(row_id(item.get("plan_id")) or 0) \
            or f"plan #{item.get('plan_id')}"
        names.append(name if qty == "1" else f"{name} × {qty}")
    return ", ".join(names)


SETTING_NAMES = {"autopay": "autopay", "autopay_timing": "autopay timing", "autopay_days_before": "autopay days",
                 "ends_on": "end date", "max_cycles": "number of cycles"}


def _day(iso) -> str:
    """"2027-05-01" → "1 May 2027" (as the period labels write days); anything else as it is."""
    try:
        day = date.fromisoformat(str(iso))
    except ValueError:
        return str(iso)
    return f"{day.day} {day:%b %Y}"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def describe(event: Event, numbers: dict[int, str], plan_names: dict[int, str] | None = None) -> Entry:
    """An event in words: "Invoiced 1 Jul – 31 Jul 2027 (INV-0007)", "Caught up 3 periods"…
    ``numbers`` names the invoices (id → number); ``plan_names`` the plans a change names by id."""
    d = event.data or {}
    kind = event.type
    plan_names = plan_names or {}
    actor = event.actor_label or event.actor_kind
    invoice_id = row_id(d.get("invoice_id")) if kind.startswith("subscription.") else event.subject_id
    label = d.get("number") or numbers.get(invoice_id) or (f"Draft #{invoice_id}" if invoice_id else None)
    link = [(label, invoice_id)] if invoice_id else [("the invoice", None)]
    parts: list[tuple[str, int | None]] = [(kind.replace(".", " ").replace("_", " ").capitalize(), None)]
    detail = None
    if kind == "subscription.created":
        parts = [("Started", None)]
        bits = [d.get("cycle") and f"every {d['cycle']}", d.get("start") and f"from {_day(d['start'])}"]
        if d.get("trial_days"):
            bits.append(f"{d['trial_days']}-day trial")
        if d.get("first_invoice") == "manual":
            bits.append("first invoice by hand")
        if d.get("backlog"):
            bits.append("billing the periods since the start")
        if d.get("self_checkout"):
            bits.append("self-checkout")
        detail = ", ".join(b for b in bits if b) or None
    elif kind == "subscription.invoiced":
        what = "Drafted the invoice for " if d.get("draft") else "Invoiced "
        parts = [(what + str(d.get("period") or ""), None)] + ([(" (", None), *link, (")", None)] if invoice_id else [])
        detail = "late: caught up" if d.get("late") else None
    elif kind == "subscription.caught_up":
        parts = [(f"Caught up {_plural(int(d.get('periods') or 0), 'period')}", None)]
    elif kind == "subscription.past_due":
        parts = [("Past due: the charge for ", None), *link, (" failed", None)]
    elif kind == "subscription.reactivated" and (event.before or {}).get("status") == "incomplete":
        parts = [("Started: the first invoice", None)] + ([(" ", None), *link] if invoice_id else []) + \
            [(" is paid", None)]
    elif kind == "subscription.reactivated":
        parts = [("Active again", None)] + ([(": ", None), *link, (" is settled", None)] if invoice_id else [])
    elif kind == "subscription.self_checkout":
        parts = [("Self-checkout by the client", None)] + \
            ([(": waiting for the first invoice ", None), *link, (" to be paid", None)]
             if (event.after or {}).get("status") == "incomplete" and invoice_id else [])
    elif kind == "subscription.checkout_expired":
        parts = [("Checkout expired: ", None), *link, (" was not paid within two days and is cancelled", None)]
    elif kind == "subscription.upcoming_notice":
        parts = [("Upcoming-invoice email sent", None)]
        detail = f"for the invoice of {_day(d['invoice_on'])}" if d.get("invoice_on") else None
    elif kind == "subscription.paused":
        parts = [("Paused", None)]
    elif kind == "subscription.resumed":
        parts = [("Resumed", None)]
        skipped = int(d.get("skipped_periods") or 0)
        detail = f"{_plural(skipped, 'period')} skipped while paused" if skipped else None
    elif kind == "subscription.cancelled":
        parts = [("Cancelled" + (" now" if d.get("when") == "now" else " at the end of the period"), None)]
    elif kind == "subscription.ended":
        parts = [("Ended", None)]
    elif kind == "subscription.cancel_scheduled":
        parts = [("Set to cancel at the end of the period", None)]
        detail = f"ends {_day(d['ends_on'])}" if d.get("ends_on") else None
    elif kind == "subscription.cancel_undone":
        parts = [("Kept: it no longer cancels at the end of the period", None)]
    elif kind == "subscription.changed":
        parts = [("Plans changed" + (" at the renewal" if d.get("when") == "renewal" else ""), None)]
        detail = _items_text((event.after or {}).get("items"), plan_names)
        if d.get("proration"):
            detail += "; prorated: " + "; ".join(str(p.get("description", "")) for p in d["proration"])
    elif kind == "subscription.change_scheduled":
        parts = [("Change scheduled for the next renewal", None)]
        detail = _items_text((event.after or {}).get("items"), plan_names)
    elif kind == "subscription.settings_changed":
        parts = [("Settings changed", None)]
        detail = ", ".join(SETTING_NAMES.get(k, k) for k in (event.after or {})) or None
    elif kind == "subscription.first_invoice":
        parts = [("First invoice made by hand", None)]
        detail = (f"dated {_day(d['invoice_anchor'])}: later invoices follow on the same day of their cycle"
                  if d.get("invoice_anchor") else None)
    elif kind == "subscription.billing_failed":
        parts = [("Billing failed", None)]
        detail = str(d.get("error") or "") or None
    elif kind == "invoice.paid":
        parts = [*link, (" paid", None)]
    elif kind == "invoice.payment_failed":
        parts = [("A payment of ", None), *link, (" failed", None)]
    elif kind == "invoice.voided":
        parts = [*link, (" cancelled (voided)", None)]
    elif kind == "invoice.past_due":
        parts = [*link, (" is overdue", None)]
    return Entry(event.occurred_at, parts, actor, detail)


def _timeline(sub: Subscription, invoices: list[InvoiceRow]) -> list[Entry]:
    numbers = {row.invoice.id: row.invoice.display_number for row in invoices}
    condition = (Event.subject_type == "subscription") & (Event.subject_id == sub.id)
    if numbers:
        condition = or_(condition, (Event.subject_type == "invoice") & Event.subject_id.in_(list(numbers))
                        & Event.type.in_(INVOICE_EVENTS))
    events = db.session.scalars(select(Event).where(condition).order_by(Event.occurred_at.desc(), Event.id.desc())
                                .limit(TIMELINE_SHOWN)).all()
    # A change at the renewal names its plans by id: their names, in one statement.
    wanted = {row_id(item.get("plan_id")) for e in events if e.type in ("subscription.changed",
                                                                       "subscription.change_scheduled")
              for item in (e.after or {}).get("items") or [] if not item.get("description")} - {None}
    plan_names = dict(db.session.execute(select(Plan.id, Plan.name).where(Plan.id.in_(wanted))).all()) \
        if wanted else {}
    return [describe(e, numbers, plan_names) for e in events]


def subscription_page(subscription_id) -> SubscriptionPage:
    """Everything the subscription's page shows (``NotFound`` for an id no subscription has)."""
    sub = _load(subscription_id)
    invoices, more = _invoice_rows(sub)
    held = None
    if sub.held_invoice_id:
        held = next((row.invoice for row in invoices if row.invoice.id == sub.held_invoice_id), None) \
            or db.session.get(Invoice, sub.held_invoice_id)
    pending = schedule.pending_items(sub) or []
    return SubscriptionPage(
        sub=sub, client=sub.client, status=status_label(sub.status), cycle=cycles.describe(sub.unit, sub.interval),
        schedule=schedule.preview(sub, SCHEDULE_PERIODS), invoices=invoices, more_invoices=more,
        timeline=_timeline(sub, invoices), held=held, autopay=autopay_of(sub), actions=allowed_actions(sub),
        pending=pending, today=clock.today(get_business().timezone))


def item_values(sub: Subscription) -> list[dict]:
    """The subscription's items as the change form shows them."""
    return [{"plan_id": str(i.plan_id), "quantity": format(i.quantity.normalize(), "f")} for i in sub.items]


def proration_preview(sub: Subscription, raw_items: list[dict]) -> tuple[list[dict], dict[str, str]]:
    """The proration parts changing ``sub``'s items to ``raw_items`` today would make (nothing is
    written), or the field errors the change would get."""
    errors: dict[str, str] = {}
    choices = manage.parse_items(raw_items, sub.currency, errors, cycle=(sub.unit, sub.interval),
                                 allow_archived={i.plan_id for i in sub.items})
    if errors:
        return [], errors
    return manage.proration(sub, choices, clock.today(get_business().timezone)), {}


# Billing runs ------------------------------------------------------------------------------------

@dataclass
class RunsPage:
    runs: Page
    current: BillingRun | None
    progress: int


def runs_page(page: int = 1) -> RunsPage:
    """The runs, newest first, and the one going now with how far it is."""
    current = runs.running()
    return RunsPage(runs.list_runs(page), current, runs.progress(current) if current else 0)
