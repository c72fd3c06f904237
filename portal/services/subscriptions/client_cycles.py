"""A client's monthly billing cycle (seed 002) and what its extra charges do (seed 003).

Billing cycle. A client on "Monthly" has a billing day (1–31) and ``next_cycle_on``, the next day it
falls on (set when staff save the setting: today included; clamped to short months and back,
``settings.next_billing_day``). On that day (the business's timezone) the tick's ``client_cycles``
step hands the client to a job (``jobs.subscriptions.client_cycle``, id
``client-cycle-<client>-<yyyymmdd>``), which gathers ALL the client's open charges into invoices, one
per currency, and finalizes and sends them (a draft for review when the business reviews recurring
invoices; finalized without email when the client has no billing contact). One transaction holds
the ``client_cycle`` row (unique per client and day), the invoices and the claimed charges, so a
second job, a retry or a second tick gathers nothing: exactly once. With no open charges the row is
still written, and no invoice is made. Charges are claimed with a conditional UPDATE (``status =
'open'``), so a charge a subscription's invoice took meanwhile (a client whose charges wait for the
next cycle) is not taken twice. Then ``next_cycle_on`` moves to the next billing day after today.

Catch-up: after downtime the job gathers once, for the latest billing day that has come (the charges
are gathered once anyway), and ``next_cycle_on`` moves past today: missed days make no extra, empty
gatherings.

Extra charges (``client.charges_billing``): "manual" (staff draft invoices from them, as before),
"immediate" (``add_charge`` records the charge, then invoices and sends it at once, one invoice per
charge), "next_cycle" (the charge waits for the client's next subscription invoice,
``schedule.lines_for``, or its monthly cycle's invoice, whichever comes first). A monthly cycle
gathers whatever charges are still open, whatever the choice.

Locks: the invoices are new rows; finalizing locks each (and then the client, for credit, and the
business, for the number); ``next_cycle_on`` is moved by a conditional UPDATE at the very end, so
the client row is never locked before an invoice.
"""
from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from portal import clock
from portal.billing import states
from portal.extensions import db
from portal.models import Charge, Client, ClientCycle, Invoice, InvoiceLine
from portal.queues import enqueue_job
from portal.services import charges, invoices
from portal.services.business import get_business
from portal.services.events import Actor, commit, record_event, rollback
from portal.services.settings import latest_billing_day, next_billing_day
from portal.services.subscriptions.billing import today_at

log = logging.getLogger(__name__)
CYCLE = Actor("system", None, "billing cycle")
# Clients handed to the workers per tick (the rest on the next tick, a minute later).
MAX_PER_TICK = 2000


# The tick's step --------------------------------------------------------------------------------

def due_clients(at: datetime, limit: int = MAX_PER_TICK) -> list[tuple[int, date]]:
    """(client id, the billing day to gather for) of every monthly client whose billing day has come."""
    today = today_at(at)
    rows = db.session.execute(
        select(Client.id, Client.billing_day).where(
            Client.next_cycle_on <= today, Client.billing_cycle == "monthly", Client.archived_at.is_(None))
        .order_by(Client.next_cycle_on, Client.id).limit(limit)).all()
    rollback()
    return [(client_id, latest_billing_day(day, today)) for client_id, day in rows if day]


def tick_step(at: datetime) -> int:
    """Hand each client whose billing day has come to a job. Returns how many were handed over."""
    moment = clock.as_utc(at).isoformat()
    return sum(enqueue_job("portal.jobs.subscriptions.client_cycle", client_id, moment,
                           job_id=f"client-cycle-{client_id}-{day:%Y%m%d}")
               for client_id, day in due_clients(at))


# The job ----------------------------------------------------------------------------------------

def run_cycle(client_id: int, at: datetime | None = None) -> list[int]:
    """Gather the client's open charges for its billing day that has come, as of ``at`` (default now).
    Returns the ids of the invoices made (none when there was nothing to gather, or when this day's
    gathering already ran)."""
    at = clock.as_utc(at) if at else clock.now()
    today = today_at(at)
    client = db.session.get(Client, client_id, populate_existing=True)
    if (client is None or client.billing_cycle != "monthly" or not client.billing_day
            or client.next_cycle_on is None or client.next_cycle_on > today):
        rollback()
        return []
    day = latest_billing_day(client.billing_day, today)
    try:
        cycle = ClientCycle(client_id=client.id, cycle_on=day)
        db.session.add(cycle)
        db.session.flush()  # the unique (client, day) row: a second job stops here
    except IntegrityError:
        rollback()
        _advance(client_id, client.billing_day, today)
        commit()
        return []
    made = gather(client, day)
    cycle.invoice_id = made[0].id if made else None
    record_event("client.cycle_gathered", "client", client.id, CYCLE,
                 data={"cycle_on": day.isoformat(), "invoices": [i.id for i in made],
                       "late": day < today})
    ids = [i.id for i in made]
    _advance(client_id, client.billing_day, today)
    commit()
    return ids


def _advance(client_id: int, billing_day: int, today: date) -> None:
    """``next_cycle_on`` → the next billing day after today (only if staff didn't change it meanwhile)."""
    db.session.execute(update(Client).where(Client.id == client_id, Client.next_cycle_on <= today)
                       .values(next_cycle_on=next_billing_day(billing_day, today + timedelta(days=1)))
                       .execution_options(synchronize_session=False))


def gather(client: Client, day: date) -> list[Invoice]:
    """Claim every open charge of the client and make one invoice per currency (not committed)."""
    claimed = _claim(select(Charge.id).where(Charge.client_id == client.id, Charge.status == "open"))
    business = get_business()
    made = []
    for currency in sorted({c.currency for c in claimed}):
        made.append(invoice_charges(client, [c for c in claimed if c.currency == currency], CYCLE,
                                    review=business.review_recurring_invoices,
                                    data={"client_cycle": day.isoformat()}))
    return made


def _claim(ids_query) -> list[Charge]:
    """Take the charges still open among ``ids_query``'s (``charges.claim_open``: a charge another
    invoice took meanwhile is skipped), oldest first."""
    return charges.claim_open(db.session.scalars(ids_query))


def invoice_charges(client: Client, claimed: list[Charge], actor: Actor, *, review: bool = False,
                    data: dict | None = None) -> Invoice:
    """One invoice holding ``claimed`` (charges already taken, one currency), finalized and sent to the
    billing contacts (finalized only, without any; left a draft with ``review``). Not committed."""
    business = get_business()
    invoice = Invoice(client_id=client.id, status=states.DRAFT,
                      **{**invoices.defaults(client, business), "currency": claimed[0].currency})
    db.session.add(invoice)
    db.session.flush()
    for position, charge in enumerate(claimed):
        invoice.lines.append(InvoiceLine(
            position=position, description=charge.description, quantity=charge.quantity,
            unit_price=charge.unit_price, service_id=charge.service_id, charge_id=charge.id,
            **invoices.tax_columns(charge.tax_rate)))
        charge.status, charge.invoice_id = "drafted", invoice.id
    invoices.recompute(invoice)
    record_event("invoice.created", "invoice", invoice.id, actor,
                 data={"client_id": client.id, "charges": [c.id for c in claimed], **(data or {})})
    if review:
        return invoice  # a draft for staff to review and send
    if client.billing_contacts:
        invoices.send(invoice, actor, commit_now=False)
    else:
        invoices.finalize(invoice, actor, commit_now=False)
    return invoice


# Extra charges ----------------------------------------------------------------------------------

def add_charge(client: Client, values: dict, actor: Actor) -> tuple[Charge, Invoice | None]:
    """Record an extra charge on a client (``charges.create_charge``: all-or-nothing); for a client
    whose charges are invoiced at once, invoice and send it in the next transaction. Returns the
    charge and that invoice (None: the charge waits, open)."""
    charge = charges.create_charge(client, values, actor)
    if client.charges_billing != "immediate":
        return charge, None
    claimed = _claim(select(Charge.id).where(Charge.id == charge.id))
    if not claimed:  # taken by another invoice in the meantime
        rollback()
        return charge, None
    invoice = invoice_charges(client, claimed, actor, data={"immediate": True})
    commit()
    return db.session.get(Charge, charge.id), invoice

