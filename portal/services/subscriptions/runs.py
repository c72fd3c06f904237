"""Billing runs: the tick's ``subscriptions`` step, ``flask portal bill``, and the "Billing runs" page.

A run finds every subscription with a period to bill as of a moment (next invoice day ≤ today in the
business's timezone, or a held one whose held invoice is settled: paid, voided or written off),
writes a ``billing_run`` row, and bills them in batches of ``BATCH_SIZE``: handed to RQ
(``jobs.subscriptions.bill_batch``, job id derived from the run and the batch's subscriptions and
periods, so several workers share one run, a repeated hand-over is not queued twice, and a job still
waiting from an earlier run doesn't stand in for this run's), or in this process (``flask portal
bill``). The run's ``total`` counts what was handed over; with nothing handed over (Redis down) the
run is interrupted at once. Each batch adds its counts to the run's row with one UPDATE; the last one
marks it done. A run that stops reporting for ``STALE_AFTER`` (a killed worker) is marked
interrupted, and the next tick starts a new run, which bills only what is still due: the periods are
the record, not the run.

The step also ends subscriptions whose term is over, marks past due those whose cycle invoice's
automatic charge failed (when the charge ran outside a run: the tick's autopay step), and drops
self-checkouts left unpaid for two days (``checkout.expire_checkouts``).
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update

from portal import clock
from portal.billing import states
from portal.extensions import db
from portal.models import BillingRun, Invoice, Payment, Subscription
from portal.queues import enqueue_job
from portal.services import locks
from portal.services.events import commit, rollback
from portal.services.paging import Page
from portal.services.subscriptions import bulk, checkout
from portal.services.subscriptions.billing import (
    ACTIVE,
    HELD,
    STILL_DUE,
    bill_subscription,
    finish,
    held_by_failure,
    term_over,
    today_at,
)

BATCH_SIZE = 100
STALE_AFTER = timedelta(minutes=10)
MAX_PER_RUN = 500_000
RUNS_PAGE_SIZE = 25


def due_ids(at: datetime, limit: int = MAX_PER_RUN) -> list[tuple[int, int]]:
    """(subscription id, next period) of every subscription with something to bill as of ``at``: an
    active one whose next invoice day has come, and a held one whose held invoice is settled (it is
    active again at once, and bills what it held back, if anything is due; a checkout whose first
    invoice was voided or written off unpaid is cancelled instead: ``billing.release_hold``)."""
    today = today_at(at)
    held = Invoice.__table__.alias("held")
    settled = or_(held.c.id.is_(None), held.c.status.not_in(STILL_DUE), held.c.amount_due <= 0)
    due = (select(Subscription.id, Subscription.next_period)
           .where(Subscription.next_invoice_on <= today, Subscription.status.in_(ACTIVE))
           .order_by(Subscription.id).limit(limit))
    released = (select(Subscription.id, Subscription.next_period)
                .outerjoin(held, held.c.id == Subscription.held_invoice_id)
                .where(Subscription.status.in_(HELD), settled)
                .order_by(Subscription.id).limit(limit))
    rows = {row[0]: row[1] for query in (due, released) for row in db.session.execute(query)}
    return sorted(rows.items())[:limit]


def batch_job_id(run_id: int, batch: list[tuple[int, int]]) -> str:
    """``bill-<run>-<first sub>_<period>-<last sub>_<period>-<n>-<digest>``: the same run's batch of
    the same subscriptions at the same periods makes the same id (a second hand-over of that batch
    is not queued twice). A job still waiting from an earlier run has another id, so this run's own
    job is queued and reports to this run; both bill each period once (the period rows decide)."""
    digest = hashlib.sha1(",".join(f"{s}.{n}" for s, n in batch).encode()).hexdigest()[:12]
    (first, fn), (last, ln) = batch[0], batch[-1]
    return f"bill-{run_id}-{first}_{fn}-{last}_{ln}-{len(batch)}-{digest}"


def _interrupt_stale(now: datetime) -> None:
    db.session.execute(update(BillingRun).where(
        BillingRun.status == "running",
        func.coalesce(BillingRun.heartbeat_at, BillingRun.started_at) < now - STALE_AFTER,
    ).values(status="interrupted", finished_at=now).execution_options(synchronize_session=False))


def running() -> BillingRun | None:
    return db.session.scalar(select(BillingRun).where(BillingRun.status == "running")
                             .order_by(BillingRun.id.desc()).limit(1))


def start_run(at: datetime, trigger: str, *, only_if_idle: bool = False) -> tuple[BillingRun | None, list]:
    """Write a run for what is due as of ``at``; (None, []) when nothing is due (or, with
    ``only_if_idle``, while another run is still going)."""
    now = clock.now()
    _interrupt_stale(now)
    commit()
    if only_if_idle and running() is not None:
        rollback()
        return None, []
    due = due_ids(at)
    if not due:
        rollback()
        return None, []
    run = BillingRun(trigger=trigger, as_of=clock.as_utc(at), status="running", total=len(due), started_at=now,
                     heartbeat_at=now)
    db.session.add(run)
    commit()
    return run, due


def batches(due: list, size: int = BATCH_SIZE) -> list[list[tuple[int, int]]]:
    return [due[i:i + size] for i in range(0, len(due), size)]


def enqueue_run(at: datetime, trigger: str = "tick") -> int:
    """Start a run and hand its batches to RQ. Returns how many subscriptions were handed over. The
    run's ``total`` is then what was handed over (a batch Redis refused is left to the next run); if
    nothing was (Redis is down), the run is interrupted at once, so the next tick starts another."""
    run, due = start_run(at, trigger, only_if_idle=trigger == "tick")
    if run is None:
        return 0
    run_id = run.id
    handed = 0
    for batch in batches(due):
        if enqueue_job("portal.jobs.subscriptions.bill_batch", run_id, [s for s, _ in batch],
                       clock.as_utc(at).isoformat(), job_id=batch_job_id(run_id, batch)):
            handed += len(batch)
    settle_total(run_id, handed)
    return handed


def settle_total(run_id: int, handed: int) -> None:
    """The run counts what was handed over; done if its jobs already processed that much (a fast
    worker), interrupted if nothing was handed over."""
    now = clock.now()
    if handed == 0:
        db.session.execute(update(BillingRun).where(BillingRun.id == run_id, BillingRun.status == "running")
                           .values(total=0, status="interrupted", finished_at=now)
                           .execution_options(synchronize_session=False))
    else:
        db.session.execute(update(BillingRun).where(BillingRun.id == run_id).values(total=handed)
                           .execution_options(synchronize_session=False))
        db.session.execute(update(BillingRun).where(
            BillingRun.id == run_id, BillingRun.status.in_(("running", "interrupted")),
            BillingRun.processed >= BillingRun.total,
        ).values(status="done", finished_at=now).execution_options(synchronize_session=False))
    commit()
    db.session.expire_all()


def bill_batch(run_id: int | None, subscription_ids: list[int], at: datetime) -> dict:
    """Bill a batch (the job, or ``flask portal bill`` in-process): the plain ones together
    (``bulk.bill_plain``), the rest one by one; add its counts to the run."""
    totals = {"processed": 0, "invoices": 0, "caught_up": 0, "errors": 0}
    made, rest = bulk.bill_plain(subscription_ids, at, run_id)
    totals["invoices"] += made
    totals["processed"] += len(subscription_ids) - len(rest)
    for subscription_id in rest:
        outcome = bill_subscription(subscription_id, at, run_id)
        totals["processed"] += 1
        totals["invoices"] += outcome.invoices
        totals["caught_up"] += outcome.caught_up
        totals["errors"] += 1 if outcome.error else 0
    if run_id is not None:
        record_progress(run_id, totals)
    return totals


def record_progress(run_id: int, totals: dict) -> None:
    now = clock.now()
    db.session.execute(update(BillingRun).where(BillingRun.id == run_id).values(
        processed=BillingRun.processed + totals["processed"], invoices=BillingRun.invoices + totals["invoices"],
        caught_up=BillingRun.caught_up + totals["caught_up"], errors=BillingRun.errors + totals["errors"],
        heartbeat_at=now).execution_options(synchronize_session=False))
    db.session.execute(update(BillingRun).where(
        BillingRun.id == run_id, BillingRun.status.in_(("running", "interrupted")),
        BillingRun.processed >= BillingRun.total,
    ).values(status="done", finished_at=now).execution_options(synchronize_session=False))
    commit()


# The tick's step --------------------------------------------------------------------------------

def tick_step(at: datetime) -> int:
    """End what is over, mark past due what failed, then start a run if anything is due and no run
    is going. Returns how many subscriptions were handed to the workers."""
    end_terms(at)
    flag_failures(at)
    checkout.expire_checkouts(at)
    return enqueue_run(at, "tick")


def end_terms(at: datetime) -> int:
    """End the subscriptions whose term is over (``billing.term_over``). An active one with a period
    of its term still to bill is left to the run, which bills it and then ends it."""
    today = today_at(at)
    ids = db.session.scalars(select(Subscription.id).where(
        Subscription.ends_on <= today, Subscription.status.in_(ACTIVE + HELD + ("paused",)),
        or_(Subscription.next_invoice_on.is_(None), Subscription.status.not_in(ACTIVE)))
        .order_by(Subscription.id).limit(5000)).all()
    for subscription_id in ids:
        sub = locks.subscription(subscription_id)
        if sub.status in ACTIVE + HELD + ("paused",) and term_over(sub, today):
            finish(sub, today)
        commit()
    rollback()
    return len(ids)


FAILURE_WINDOW = timedelta(days=7)


def flag_failures(at: datetime) -> int:
    """Active subscriptions whose cycle invoice's automatic charge failed lately → past due. (A charge
    made by the run itself is checked there and then; this finds the ones the tick's autopay step
    made later, e.g. "on the due date". Older failures were flagged when they happened, or by the
    next period's billing, which checks the latest invoice itself.)"""
    failed = (select(Invoice.subscription_id)
              .join(Subscription, Subscription.id == Invoice.subscription_id)
              .where(Invoice.autopay_attempted_at >= clock.as_utc(at) - FAILURE_WINDOW,
                     Subscription.status.in_(ACTIVE), Invoice.status.in_(states.PAYABLE), Invoice.amount_due > 0,
                     ~select(Payment.id).where(Payment.invoice_id == Invoice.id,
                                               Payment.status.in_(("pending", "processing"))).exists())
              .distinct().limit(5000))
    ids = db.session.scalars(failed).all()
    marked = 0
    for subscription_id in ids:
        sub = locks.subscription(subscription_id)
        if sub.status in ACTIVE and held_by_failure(sub):
            marked += 1
        commit()
    rollback()
    return marked


# What staff see ---------------------------------------------------------------------------------

def list_runs(page: int = 1) -> Page:
    """Newest first. The total is the newest run's id (ids only grow): no count over the table."""
    newest = db.session.scalar(select(func.max(BillingRun.id))) or 0
    rows = db.session.scalars(select(BillingRun).order_by(BillingRun.id.desc())
                              .offset((page - 1) * RUNS_PAGE_SIZE).limit(RUNS_PAGE_SIZE)).all()
    return Page(list(rows), page, RUNS_PAGE_SIZE, newest)


def get_run(run_id: int) -> BillingRun | None:
    return db.session.get(BillingRun, run_id)


def progress(run: BillingRun) -> int:
    """Percent done (0–100)."""
    if not run.total:
        return 100
    return min(100, run.processed * 100 // run.total)
