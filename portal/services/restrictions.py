"""Restricting clients who are far behind on payments (settings: ``restrict_overdue_days``).

The rule: with ``Business.restrict_overdue_days = N`` set, a client is restricted while it has an
invoice still owing money (open, overdue or uncollectible, amount due > 0) whose due date is before
today − N days in the business's timezone, i.e. from N+1 days overdue. A restricted client carries
``Client.access_restricted`` (read by other systems) and ``restricted_at``; its portal shows a banner
and refuses the actions listed in ``Business.restrict_actions`` (keys of ``RESTRICTABLE``). Paying is
never refused, and a payment that leaves nothing far overdue lifts the restriction in its own
transaction (``lift_if_clear``). The tick (``refresh``) restricts, and lifts whatever is clear for
any other reason (the rule turned off or made longer, an invoice voided or credited).

Locking: ``lift_if_clear`` holds the client row until the payment commits; ``refresh`` locks the
clients it is about to change and only then re-reads their invoices, so a payment committed
meanwhile is seen and a client who has just paid is never restricted again.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import and_, or_, select

from portal import clock
from portal.billing import states
from portal.extensions import db
from portal.models import Client, Invoice
from portal.services import locks
from portal.services.business import get_business
from portal.services.errors import ServiceError
from portal.services.events import Actor, commit, record_event

# What staff may choose to block for a restricted client. Paying is never blocked.
RESTRICTABLE = {
    "new_subscriptions": "Start new subscriptions",
    "payment_methods": "Add or remove payment methods",
    "autopay": "Turn autopay on or off",
    "profile": "Change their portal profile",
}

# What the settings page offers, and what the banner lists: every action above ("new_subscriptions"
# blocks the portal's self-checkout, R1).
OFFERED = dict(RESTRICTABLE)

# The same actions, as the client reads them ("Please pay … to <this> again.").
_CLIENT_WORDS = {
    "new_subscriptions": "start new subscriptions",
    "payment_methods": "add or remove payment methods",
    "autopay": "turn autopay on or off",
    "profile": "change your profile",
}

SCHEDULER = Actor("system", None, "scheduler")
MAX_PER_TICK = 5000


def _business():
    return get_business()


def limit_date(business, at: datetime | None = None) -> date | None:
    """Invoices due before this date (business timezone) are "far" overdue; None when the rule is off."""
    days = business.restrict_overdue_days
    if days is None:
        return None
    today = clock.as_utc(at or clock.now()).astimezone(ZoneInfo(business.timezone)).date()
    return today - timedelta(days=days)


def _far_overdue(cutoff: date):
    """The SQL condition for an invoice that makes its client restricted."""
    return and_(Invoice.status.in_(states.PAYABLE), Invoice.due_date.is_not(None), Invoice.due_date < cutoff,
                Invoice.amount_due > 0)


def far_overdue_invoices(client_id: int, at: datetime | None = None) -> list[Invoice]:
    """The client's invoices overdue beyond the limit, oldest due first (empty when the rule is off)."""
    cutoff = limit_date(_business(), at)
    if cutoff is None:
        return []
    return list(db.session.scalars(
        select(Invoice).where(Invoice.client_id == client_id, _far_overdue(cutoff))
        .order_by(Invoice.due_date, Invoice.id)))


def blocked_actions(business=None) -> list[tuple[str, str]]:
    """(key, staff label) of the portal actions a restricted client loses, in RESTRICTABLE's order."""
    chosen = set((business or _business()).restrict_actions or [])
    return [(key, label) for key, label in OFFERED.items() if key in chosen]


def _restrict(client: Client, actor: Actor, days: int, invoices: list[tuple[int, str | None]]) -> None:
    client.access_restricted = True
    client.restricted_at = clock.now()
    record_event("client.restricted", "client", client.id, actor,
                 before={"access_restricted": False}, after={"access_restricted": True},
                 data={"overdue_days": days, "invoice_ids": [i for i, _ in invoices],
                       "invoices": [n for _, n in invoices]})


def _lift(client: Client, actor: Actor, reason: str) -> None:
    since = client.restricted_at
    client.access_restricted = False
    client.restricted_at = None
    record_event("client.unrestricted", "client", client.id, actor,
                 before={"access_restricted": True}, after={"access_restricted": False},
                 data={"reason": reason, "restricted_at": since.isoformat() if since else None})


def lift_if_clear(client_id: int, actor: Actor) -> bool:
    """Called in the transaction of every payment or credit applied: lift the client's restriction
    when no invoice is overdue beyond the limit any more. Returns whether it was lifted.

    Holds the client's row until the caller commits (so the tick cannot restrict it meanwhile
    from what it read before this payment); the caller commits."""
    client = db.session.scalar(locks.for_update(select(Client).where(Client.id == client_id)))
    if client is None or not client.access_restricted:
        return False
    cutoff = limit_date(_business())
    if cutoff is not None and db.session.scalar(
            select(Invoice.id).where(Invoice.client_id == client_id, _far_overdue(cutoff)).limit(1)) is not None:
        return False
    _lift(client, actor, "paid" if cutoff is not None else "rule_off")
    return True


def refresh(at: datetime) -> int:
    """The tick's step: restrict clients with an invoice overdue more than N days, lift the ones
    with none any more (all of them when the rule is off). Returns how many changed."""
    business = _business()
    days = business.restrict_overdue_days
    cutoff = limit_date(business, at)
    if cutoff is None:
        candidates = db.session.scalars(locks.for_update(
            select(Client).where(Client.access_restricted.is_(True)).order_by(Client.id).limit(MAX_PER_TICK))).all()
        for client in candidates:
            _lift(client, SCHEDULER, "rule_off")
        commit()
        return len(candidates)

    far_clients = select(Invoice.client_id).where(_far_overdue(cutoff))
    # 1. Lock the clients whose flag looks wrong …
    candidates = db.session.scalars(locks.for_update(
        select(Client).where(or_(
            and_(Client.access_restricted.is_(False), Client.id.in_(far_clients)),
            and_(Client.access_restricted.is_(True), Client.id.not_in(far_clients)),
        )).order_by(Client.id).limit(MAX_PER_TICK))).all()
    if not candidates:
        commit()
        return 0
    # 2. … then read their invoices again: a payment that held one of them has committed by now.
    far: dict[int, list[tuple[int, str | None]]] = {}
    for client_id, invoice_id, number in db.session.execute(
            select(Invoice.client_id, Invoice.id, Invoice.number)
            .where(Invoice.client_id.in_([c.id for c in candidates]), _far_overdue(cutoff))
            .order_by(Invoice.due_date, Invoice.id)):
        far.setdefault(client_id, []).append((invoice_id, number))
    changed = 0
    for client in candidates:
        if client.id in far and not client.access_restricted:
            _restrict(client, SCHEDULER, days, far[client.id])
            changed += 1
        elif client.id not in far and client.access_restricted:
            _lift(client, SCHEDULER, "no_longer_overdue")
            changed += 1
    commit()
    return changed


def refusal(client, action: str) -> str | None:
    """Why ``action`` (a RESTRICTABLE key) is blocked for this client, in the client's words; None when
    it is allowed. Pages use it to hide or disable what would be refused, and say why.

    Paying, and anything else that is not a RESTRICTABLE key, is never blocked."""
    if action not in RESTRICTABLE or client is None or not client.access_restricted:
        return None
    if action in (_business().restrict_actions or []):
        return ("Your account is restricted because of overdue invoices. "
                f"Please pay your overdue invoices to {_CLIENT_WORDS[action]} again.")
    return None


def ensure_allowed(client, action: str) -> None:
    """Raise ServiceError when ``action`` (a RESTRICTABLE key) is blocked for this restricted client."""
    reason = refusal(client, action)
    if reason is not None:
        raise ServiceError(reason)


def notice(client) -> dict | None:
    """What the portal banner and the staff client page say about a restricted client (None if not)."""
    if client is None or not client.access_restricted:
        return None
    business = _business()
    return {
        "since": client.restricted_at,
        "days": business.restrict_overdue_days,
        "invoices": far_overdue_invoices(client.id),
        "blocked": blocked_actions(business),
        "client_blocked": [_CLIENT_WORDS[key] for key, _ in blocked_actions(business)],
    }
