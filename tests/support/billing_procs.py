"""Billing runs in processes of their own (``multiprocessing``, spawned: a fresh interpreter, its own app,
engine and connections), for the tests of two runs at once and of a worker killed half-way.

    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=billing_procs.bill_run, args=(database_url, redis_url, str(instance_dir),
                                                             "2030-03-01T10:00:00+00:00"))

``bill_run`` does what ``flask portal bill`` does (start a run as of the moment, bill its batches in
this process), optionally in batches of ``batch_size`` (the last batch first with ``reverse``), after
waiting at ``barrier`` (so two runs read the same due subscriptions), and optionally dies (``os._exit``, no cleanup, mid-transaction) when it
is about to number the invoice after the first ``die_after_numbers`` ones.
"""
from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path


def _die_when_numbering_past(limit: int) -> None:
    """Kill this process, as ``kill -9`` would, when an invoice number beyond the first ``limit`` is
    taken (inside the transaction that would commit it): both billing paths number through these."""
    from portal.services import numbering

    handed = {"count": 0}
    take, take_many = numbering.take, getattr(numbering, "take_many", None)

    def guarded_take(kind):
        if kind == "invoice" and handed["count"] >= limit:
            os._exit(9)
        handed["count"] += kind == "invoice"
        return take(kind)

    def guarded_take_many(kind, count):
        if kind == "invoice" and handed["count"] + count > limit:
            os._exit(9)
        handed["count"] += count if kind == "invoice" else 0
        return take_many(kind, count)

    numbering.take = guarded_take
    if take_many is not None:
        numbering.take_many = guarded_take_many


def bill_run(database_url: str, redis_url: str, instance: str, at: str, batch_size: int | None = None,
             barrier=None, die_after_numbers: int | None = None, results=None, reverse: bool = False) -> None:
    from tests.support.apps import make_app

    app = make_app(database_url, redis_url, Path(instance),
                   SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True})
    with app.app_context():
        from portal import clock
        from portal.extensions import db
        from portal.services.subscriptions import runs

        if die_after_numbers is not None:
            _die_when_numbering_past(die_after_numbers)
        moment = datetime.fromisoformat(at)
        totals = {"processed": 0, "invoices": 0, "caught_up": 0, "errors": 0}
        with clock.frozen(moment):
            run, due = runs.start_run(moment, "cli")
            if barrier is not None:
                barrier.wait(timeout=60)
            if run is not None:
                batches = runs.batches(due, batch_size or runs.BATCH_SIZE)
                for batch in reversed(batches) if reverse else batches:
                    done = runs.bill_batch(run.id, [s for s, _ in batch], moment)
                    totals = {k: totals[k] + done[k] for k in totals}
        if results is not None:
            results.put({"run_id": run.id if run else None, "due": len(due), **totals})
        db.session.remove()
        db.engine.dispose()
