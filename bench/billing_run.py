"""The recurring billing run at 10k and 100k due subscriptions, on PostgreSQL with RQ workers.

    .venv/bin/python bench/billing_run.py [--subscriptions N ...] [--workers 2] [--fork]
                                          [--max-seconds 900] [--profile]

For each size (default 10,000 then 100,000), on a fresh PostgreSQL database: seeds a business (EUR),
one monthly plan, N clients with one billing contact each and N active subscriptions due today
(bulk inserts in chunks of 10k); starts the workers (RQ ``SimpleWorker``s on the ``default`` queue,
inside the app's context as ``worker.py`` runs them, so each job runs in the measured process; no
worker listens on ``emails``: deliveries stay pending); hands the run to them with
``subscriptions.enqueue_run`` and times it until the ``billing_run`` row says done.

Printed per size: invoices/s, the floor (a raw psycopg ``executemany`` of the very rows the run wrote,
into scratch copies of the six tables with the same indexes, measured in the same run) and the run's
rate as a % of it, each worker's peak memory (VmHWM), the seconds per invoice, the CPU time the
workers, PostgreSQL and Redis spent per invoice (the figure the machine's other load does not move
much), how often a worker was waiting for a row lock, the batch jobs' times (from RQ) and SQL
statements per invoice; at the end the cost per invoice of the largest size against the smallest.

``--fork`` runs the project's ``worker.py`` unchanged instead (a forked work-horse per job; the
horses' peak memory is sampled while they live, statements are not counted). ``--profile`` then bills
batches in-process on a small database of its own: timed plainly and with psycopg's statement
cache widened (an experiment, batches alternating), and one under cProfile, to show where the time goes.
"""
from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.servers import PostgresServer, RedisServer

TARGET_RATE = 2000  # invoices/s
TARGET_FLOOR_SHARE = 5.0  # % of the raw executemany
TARGET_MEMORY_MB = 300
TARGET_SCALING = 1.2
CHUNK = 10_000
PROFILE_PAIRS = 10  # --profile: batches billed plainly, and as many with psycopg's statement cache widened
# The tables a run inserts into, in the order it writes them.
TABLES = ["invoice", "subscription_period", "invoice_line", "invoice_token", "event", "delivery"]

# A worker as worker.py builds one (the app's context pushed once, the queues from Redis, the
# scheduler on for RQ's retries), but a SimpleWorker: each job runs in this process, whose peak
# memory is then the job's. Counts the SQL statements it sends and writes them out when stopped.
WORKER = '''
import json, sys
from rq.worker import SimpleWorker
from sqlalchemy import event
from portal import create_app
from portal.extensions import db
from portal.queues import redis_connection

out = sys.argv[1]
app = create_app()
with app.app_context():
    count = [0]
    event.listen(db.engine, "before_cursor_execute", lambda *a, **k: count.__setitem__(0, count[0] + 1))
    worker = SimpleWorker(["default"], connection=redis_connection())
    worker.work(with_scheduler=True, logging_level="WARNING")
    with open(out, "w") as f:
        json.dump({"statements": count[0]}, f)
'''


def memory_kb(pid: int, field: str = "VmHWM") -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pid: int, waited: bool = False) -> float:
    """User + system CPU time of a process (with ``waited``, also of its children it has reaped)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if waited else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def postgres_cpu(pg: PostgresServer) -> float:
    """CPU time of the PostgreSQL cluster: the postmaster, its live processes and those it reaped."""
    postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])
    return cpu_seconds(postmaster, waited=True) + sum(cpu_seconds(c) for c in children(postmaster))


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


# Seeding ----------------------------------------------------------------------------------------

def seed(app, n: int, run_day) -> float:
    from flask_migrate import upgrade
    from sqlalchemy import insert, select

    from portal.extensions import db
    from portal.models import Client, Contact, Subscription, SubscriptionItem
    from portal.services import subscriptions
    from portal.services.events import SYSTEM
    from portal.services.settings import get_business

    start = time.perf_counter()
    with app.app_context():
        upgrade()
        business = get_business()
        business.name, business.currency = "Bench Studio", "EUR"
        db.session.commit()
        plan = subscriptions.create_plan({"name": "Desk", "unit_price": "100.00", "currency": "EUR",
                                          "unit": "month", "interval": "1"}, SYSTEM)
        plan_id, price, name = plan.id, plan.unit_price, plan.name
        now = datetime.now(UTC)
        for offset in range(0, n, CHUNK):
            size = min(CHUNK, n - offset)
            client_ids = list(db.session.execute(
                insert(Client).returning(Client.id, sort_by_parameter_order=True),
                [{"name": f"Client {offset + i:06d} Ltd", "kind": "company", "currency": "EUR",
                  "created_at": now, "updated_at": now} for i in range(size)]).scalars())
            db.session.execute(insert(Contact), [
                {"client_id": c, "name": f"Contact {c}", "email": f"billing{c}@c.example", "receives_invoices": True,
                 "portal_access": False, "session_nonce": secrets.token_hex(16), "created_at": now}
                for c in client_ids])
            sub_ids = list(db.session.execute(
                insert(Subscription).returning(Subscription.id, sort_by_parameter_order=True),
                [{"client_id": c, "status": "active", "currency": "EUR", "unit": "month", "interval": 1,
                  "anchor": run_day, "invoice_anchor": run_day, "started_on": run_day, "next_period": 0,
                  "next_invoice_on": run_day, "created_at": now, "updated_at": now} for c in client_ids]).scalars())
            db.session.execute(insert(SubscriptionItem), [
                {"subscription_id": s, "plan_id": plan_id, "position": 0, "description": name,
                 "quantity": Decimal(1), "unit_price": price} for s in sub_ids])
            db.session.commit()
        assert db.session.scalar(select(db.func.count(Subscription.id))) == n
        db.session.execute(db.text("ANALYZE"))
        db.session.commit()
    return time.perf_counter() - start


# Workers --------------------------------------------------------------------------------------

class Workers:
    def __init__(self, count: int, env: dict, folder: Path, fork: bool):
        self.fork = fork
        self.folder = folder
        self.processes: list[subprocess.Popen] = []
        self.outs: list[Path] = []
        self.horse_peak_kb = 0
        self.cpu_at_start = 0.0
        launcher = folder / "bench_worker.py"
        launcher.write_text(WORKER)
        for i in range(count):
            out = folder / f"worker{i}.json"
            out.unlink(missing_ok=True)
            if fork:
                command = [sys.executable, str(ROOT / "worker.py"), "default"]
            else:
                command = [sys.executable, str(launcher), str(out)]
            with open(folder / f"worker{i}.log", "w") as log:  # the child keeps its own copy of the descriptor
                self.processes.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log))
            self.outs.append(out)

    def wait_ready(self, connection) -> None:
        from rq import Worker

        deadline = time.monotonic() + 60
        while Worker.count(connection=connection) < len(self.processes):
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.processes):
                raise SystemExit(f"workers did not start: see {self.folder}/worker*.log")
            time.sleep(0.1)

    def cpu_now(self) -> float:
        return sum(cpu_seconds(p.pid, waited=True) for p in self.processes)

    def sample_horses(self) -> None:
        for p in self.processes:
            for child in children(p.pid):
                kb = memory_kb(child)
                if kb:
                    self.horse_peak_kb = max(self.horse_peak_kb, kb)

    def peaks_kb(self) -> list[int | None]:
        return [memory_kb(p.pid) for p in self.processes]

    def problems(self) -> list[str]:
        """Warnings and errors the workers logged (a batch that fell back to one by one, a failed job)."""
        lines = []
        for i in range(len(self.processes)):
            text = (self.folder / f"worker{i}.log").read_text(errors="replace")
            lines += [f"worker {i}: {line}" for line in text.splitlines()
                      if any(word in line for word in ("WARNING", "ERROR", "Traceback", "failed"))]
        return lines

    def stop(self) -> int | None:
        for p in self.processes:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.processes:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self.fork:
            return None
        total = 0
        for out in self.outs:
            if not out.exists():
                return None
            total += json.loads(out.read_text())["statements"]
        return total


# The floor --------------------------------------------------------------------------------------

def floor(pg_url: str, before: dict[str, int]) -> dict:
    """Re-insert the rows the run wrote (ids > ``before``) with a raw psycopg executemany into scratch
    copies of their tables (``LIKE … INCLUDING ALL``: same columns, defaults, indexes and checks; no
    foreign keys), one transaction per 10k rows. Only the executemany and commits are timed."""
    import psycopg
    from psycopg.types.json import Jsonb

    seconds = 0.0
    rows_by_table = {}
    with psycopg.connect(pg_url) as reader, psycopg.connect(pg_url) as writer:
        for table in TABLES:
            scratch = f"bench_floor_{table}"
            writer.execute(f'DROP TABLE IF EXISTS {scratch}')
            writer.execute(f'CREATE TABLE {scratch} (LIKE "{table}" INCLUDING ALL)')
            writer.commit()
            info = reader.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s "
                "AND column_name <> 'id' ORDER BY ordinal_position", (table,)).fetchall()
            reader.commit()
            columns = [c for c, _ in info]
            json_at = [i for i, (_, kind) in enumerate(info) if kind in ("json", "jsonb")]
            names = ", ".join(f'"{c}"' for c in columns)
            statement = f"INSERT INTO {scratch} ({names}) VALUES ({', '.join(['%s'] * len(columns))})"
            count = 0
            with reader.cursor(name=f"read_{table}") as source:
                source.execute(f'SELECT {names} FROM "{table}" WHERE id > %s ORDER BY id', (before[table],))
                while True:
                    chunk = source.fetchmany(CHUNK)
                    if not chunk:
                        break
                    if json_at:
                        chunk = [tuple(Jsonb(v) if i in json_at and v is not None else v for i, v in enumerate(row))
                                 for row in chunk]
                    began = time.perf_counter()
                    with writer.cursor() as target:
                        target.executemany(statement, chunk)
                    writer.commit()
                    seconds += time.perf_counter() - began
                    count += len(chunk)
            reader.commit()
            rows_by_table[table] = count
        for table in TABLES:
            writer.execute(f"DROP TABLE bench_floor_{table}")
        writer.commit()
    return {"seconds": seconds, "rows": rows_by_table}


def job_times(redis_url: str) -> dict:
    """How long the batch jobs ran (RQ's started/ended times of the finished jobs of ``default``)."""
    from redis import Redis
    from rq import Queue
    from rq.job import Job

    connection = Redis.from_url(redis_url)
    registry = Queue("default", connection=connection).finished_job_registry
    spans = []
    for job in Job.fetch_many(registry.get_job_ids(), connection=connection):
        if job is not None and job.started_at and job.ended_at:
            spans.append((job.ended_at - job.started_at).total_seconds())
    failed = Queue("default", connection=connection).failed_job_registry.count
    spans.sort()
    return {"jobs": len(spans), "busy": sum(spans), "median": spans[len(spans) // 2] if spans else 0.0,
            "max": spans[-1] if spans else 0.0, "failed": failed}


def max_ids(pg_url: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(pg_url) as conn:
        return {t: conn.execute(f'SELECT coalesce(max(id), 0) FROM "{t}"').fetchone()[0] for t in TABLES}


# One size ---------------------------------------------------------------------------------------

def bench(n: int, args, pg: PostgresServer, redis: RedisServer, tmp: Path) -> dict:
    import psycopg
    from redis import Redis

    from portal import clock, create_app
    from portal.services import subscriptions

    name = f"billing_{n}"
    pg_url = pg.create_database(name)
    database_url = pg_url.replace("postgresql://", "postgresql+psycopg://")
    Redis.from_url(redis.url).flushdb()
    at = datetime.now(UTC).replace(microsecond=0)
    run_day = at.date()
    env = {**os.environ, "PORTAL_ENV": "development", "DATABASE_URL": database_url, "REDIS_URL": redis.url,
           "SECRET_KEY": "b" * 40, "PORTAL_INSTANCE_PATH": str(tmp), "PYTHONPATH": str(ROOT)}
    env.pop("MAIL_SERVER", None)
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "PORTAL_INSTANCE_PATH")})
    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "REDIS_URL": redis.url, "EMBEDDED_REDIS": False,
                      "PORTAL_INSTANCE_PATH": str(tmp), "SECRET_KEY": "b" * 40})
    seeded = seed(app, n, run_day)
    print(f"\n== {n:,} subscriptions: seeded in {seeded:.1f} s", flush=True)
    before = max_ids(pg_url)

    workers = Workers(args.workers, env, tmp, args.fork)
    partial = False
    try:
        with app.app_context():
            from portal.queues import redis_connection

            workers.wait_ready(redis_connection())
            workers.cpu_at_start = workers.cpu_now()
            load_before = os.getloadavg()[0]
            pg_cpu = postgres_cpu(pg)
            redis_cpu = cpu_seconds(redis.process.pid)
            started = time.perf_counter()
            with clock.not_before(at):
                handed = subscriptions.enqueue_run(at, "cli")
            enqueued = time.perf_counter() - started
        with psycopg.connect(pg_url, autocommit=True) as watch:
            run_id, total = watch.execute("SELECT id, total FROM billing_run ORDER BY id DESC LIMIT 1").fetchone()
            print(f"run {run_id}: {total:,} due, {handed:,} handed to {args.workers} workers in {enqueued:.2f} s",
                  flush=True)
            last_print = started
            samples = lock_samples = 0
            while True:
                status, processed, made, errors = watch.execute(
                    "SELECT status, processed, invoices, errors FROM billing_run WHERE id = %s", (run_id,)).fetchone()
                waiting = watch.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'").fetchone()[0]
                samples += 1
                lock_samples += min(waiting, 1)
                now = time.perf_counter()
                if status != "running":
                    break
                if now - started > args.max_seconds:
                    partial = True
                    break
                if any(p.poll() is not None for p in workers.processes):
                    raise SystemExit(f"a worker died: see {tmp}/worker*.log")
                if now - last_print > 30:
                    print(f"  … {processed:,}/{total:,} after {now - started:.0f} s "
                          f"({made / (now - started):.0f} invoices/s)", flush=True)
                    last_print = now
                if args.fork:
                    workers.sample_horses()
                time.sleep(0.05 if args.fork else 0.2)
            elapsed = now - started
            peaks = workers.peaks_kb()
            cpu = {"workers": workers.cpu_now() - workers.cpu_at_start,
                   "postgres": postgres_cpu(pg) - pg_cpu, "redis": cpu_seconds(redis.process.pid) - redis_cpu,
                   "load": (load_before, os.getloadavg()[0])}
    finally:
        statements = workers.stop()
        problems = workers.problems()
        for line in problems[:10]:
            print("  " + line)
        if len(problems) > 10:
            print(f"  … and {len(problems) - 10} more lines of warnings/errors in the workers' logs")

    with psycopg.connect(pg_url) as conn:
        check = conn.execute(
            "SELECT count(*), count(number), count(*) FILTER (WHERE status = 'open') FROM invoice "
            "WHERE subscription_id IS NOT NULL").fetchone()
        pending = conn.execute("SELECT count(*) FROM delivery WHERE status = 'pending'").fetchone()[0]
        periods = conn.execute("SELECT count(*) FROM subscription_period").fetchone()[0]
    print(f"invoices {check[0]:,} (numbered {check[1]:,}, open {check[2]:,}), periods {periods:,}, "
          f"pending deliveries {pending:,}, run errors {errors}" + ("  [PARTIAL RUN]" if partial else ""))

    result = {"n": n, "status": status, "partial": partial, "processed": processed, "invoices": made,
              "seconds": elapsed, "rate": made / elapsed if elapsed else 0.0, "peaks_kb": peaks,
              "horse_kb": workers.horse_peak_kb, "statements": statements, "errors": errors, "cpu": cpu,
              "lock_share": lock_samples / samples if samples else 0.0}
    result["per_invoice"] = elapsed / made if made else float("inf")
    result["jobs"] = job_times(redis.url)
    fl = floor(pg_url, before)
    result["floor_rows"] = fl["rows"]
    result["floor_seconds"] = fl["seconds"]
    result["floor_rate"] = fl["rows"]["invoice"] / fl["seconds"] if fl["seconds"] else 0.0
    report(result, args)

    return result


def report(r: dict, args) -> None:
    ok = lambda good: "ok" if good else "MISSED"
    share = r["rate"] / r["floor_rate"] * 100 if r["floor_rate"] else 0.0
    rows = ", ".join(f"{t} {c:,}" for t, c in r["floor_rows"].items())
    print(f"billing run     {r['invoices']:>9,} invoices in {r['seconds']:8.2f} s = {r['rate']:8.0f} invoices/s  "
          f"(target ≥ {TARGET_RATE:,}/s: {ok(r['rate'] >= TARGET_RATE)})")
    print(f"floor           raw executemany of the same rows ({rows}) in {r['floor_seconds']:.2f} s "
          f"= {r['floor_rate']:.0f} invoices/s")
    print(f"run vs floor    {share:.1f}% of the raw executemany  (target ≥ {TARGET_FLOOR_SHARE:.0f}%: "
          f"{ok(share >= TARGET_FLOOR_SHARE)})")
    kind = "worker.py (forking) worker" if args.fork else "SimpleWorker (jobs in-process)"
    for i, kb in enumerate(r["peaks_kb"]):
        mb = (kb or 0) / 1024
        print(f"peak memory     {kind} {i}: VmHWM {mb:.0f} MB  (target < {TARGET_MEMORY_MB} MB: "
              f"{ok(mb < TARGET_MEMORY_MB)})")
    if args.fork:
        print(f"peak memory     work-horses (sampled while alive): VmHWM ≥ {r['horse_kb'] / 1024:.0f} MB")
    print(f"cost            {r['per_invoice'] * 1000:.3f} ms per invoice")
    cpu = r["cpu"]
    if r["invoices"]:
        per = {k: cpu[k] / r["invoices"] * 1000 for k in ("workers", "postgres", "redis")}
        print(f"CPU             workers {cpu['workers']:.1f} s, PostgreSQL {cpu['postgres']:.1f} s, Redis "
              f"{cpu['redis']:.1f} s = {per['workers']:.2f} + {per['postgres']:.2f} + {per['redis']:.2f} ms CPU per "
              f"invoice; load average {cpu['load'][0]:.1f} before, {cpu['load'][1]:.1f} after "
              f"({os.cpu_count()} cores)")
    jobs = r["jobs"]
    print(f"jobs            {jobs['jobs']:,} batch jobs finished ({jobs['failed']} failed): busy {jobs['busy']:.1f} s "
          f"in all ({jobs['busy'] / r['seconds'] / len(r['peaks_kb']) * 100:.0f}% of the workers' wall time), "
          f"median {jobs['median'] * 1000:.0f} ms, slowest {jobs['max'] * 1000:.0f} ms per batch; a worker was "
          f"waiting for a row lock in {r['lock_share'] * 100:.0f}% of the progress samples")
    if r["statements"] is not None and r["invoices"]:
        print(f"SQL             {r['statements']:,} statements = {r['statements'] / r['invoices']:.2f} per invoice "
              "(as SQLAlchemy sends them; a multi-row insert counts once)")


def profile(pg: PostgresServer, tmp: Path) -> None:
    """Bill batches of due subscriptions in-process on a fresh small database (the same app code the
    workers run, without RQ): two to warm up, then ``PROFILE_PAIRS`` pairs, one batch timed plainly and
    one with psycopg's cache of converted statements widened to the run's long multi-row INSERTs (an
    experiment: psycopg caches only statements under 4 KB and 50 parameters, so it parses every
    ``INSERT … VALUES`` that SQLAlchemy's insertmanyvalues sends again, placeholder by placeholder),
    and one under cProfile."""
    import gc

    import psycopg._queries as psycopg_queries

    from portal import clock, create_app
    from portal.services import subscriptions

    database_url = pg.create_database("billing_profile").replace("postgresql://", "postgresql+psycopg://")
    at = datetime.now(UTC).replace(microsecond=0)
    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "EMBEDDED_REDIS": False,
                      "PORTAL_INSTANCE_PATH": str(tmp), "SECRET_KEY": "b" * 40})
    seed(app, (3 + 2 * PROFILE_PAIRS) * 100, at.date())
    collections = {False: [], True: []}  # per mode: [seconds, generation] of each garbage collection
    mode = [False]

    def on_gc(phase, info):
        if phase == "start":
            collections[mode[0]].append([time.perf_counter(), info["generation"]])
        elif collections[mode[0]]:
            collections[mode[0]][-1][0] = time.perf_counter() - collections[mode[0]][-1][0]

    limits = psycopg_queries.MAX_CACHED_STATEMENT_LENGTH, psycopg_queries.MAX_CACHED_STATEMENT_PARAMS

    def bill(batch: list[int], widened: bool) -> float:
        if widened:
            psycopg_queries.MAX_CACHED_STATEMENT_LENGTH = psycopg_queries.MAX_CACHED_STATEMENT_PARAMS = 10**7
        try:
            began = time.perf_counter()
            subscriptions.bill_batch(run.id, batch, at)
            return time.perf_counter() - began
        finally:
            psycopg_queries.MAX_CACHED_STATEMENT_LENGTH, psycopg_queries.MAX_CACHED_STATEMENT_PARAMS = limits

    with app.app_context(), clock.not_before(at):
        run, due = subscriptions.start_run(at, "cli")
        batches = [[s for s, _ in batch] for batch in subscriptions.batches(due)]
        bill(batches[0], False)
        bill(batches[1], True)
        times = {False: 0.0, True: 0.0}
        for i, batch in enumerate(batches[2:2 + 2 * PROFILE_PAIRS]):  # alternating, so the machine's load hits both
            widened = mode[0] = bool(i % 2)
            gc.callbacks.append(on_gc)
            times[widened] += bill(batch, widened)
            gc.callbacks.remove(on_gc)
        plain, cached = (times[w] / (PROFILE_PAIRS * len(batches[0])) for w in (False, True))
        prof = cProfile.Profile()
        prof.enable()
        subscriptions.bill_batch(run.id, batches[2 + 2 * PROFILE_PAIRS], at)
        prof.disable()
    def collected(widened: bool) -> str:
        done = collections[widened]
        pause = sum(seconds for seconds, _ in done)
        full = sum(1 for _, generation in done if generation == 2)
        return f"{pause * 1000:.0f} ms in {len(done)} garbage collections ({full} full)"

    print(f"\n== in-process, warm, no RQ, one process, {PROFILE_PAIRS} batches of 100 each way: "
          f"{plain * 1000:.2f} ms per invoice ({1 / plain:.0f}/s), of which {collected(False)}; "
          f"with psycopg's statement cache widened: {cached * 1000:.2f} ms per invoice ({1 / cached:.0f}/s), "
          f"{collected(True)}. One batch under cProfile:")
    pstats.Stats(prof).sort_stats("cumulative").print_stats(45)
    pstats.Stats(prof).sort_stats("tottime").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscriptions", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--fork", action="store_true", help="Run worker.py unchanged (a work-horse per job).")
    parser.add_argument("--max-seconds", type=float, default=900,
                        help="Stop timing a run after this long and report the partial rate.")
    parser.add_argument("--profile", action="store_true", help="Then bill batches in-process, timed and under cProfile.")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="portal-bench-"))
    redis = RedisServer(tmp / "redis")
    pg = PostgresServer(Path("/tmp") / f"portal-bench-pg-{os.getpid()}")
    shutil.rmtree(pg.folder, ignore_errors=True)
    redis.start()
    pg.start()
    results = []
    try:
        print(f"machine: {os.cpu_count()} cores; PostgreSQL (fsync off), Redis, {args.workers} workers and this "
              "script on the same cores")
        for n in args.subscriptions:
            results.append(bench(n, args, pg, redis, tmp))
        if args.profile:
            profile(pg, tmp)
        if len(results) > 1:
            small, large = results[0], results[-1]
            ratio = large["per_invoice"] / small["per_invoice"]
            print(f"\n== scaling: {small['n']:,} → {large['n']:,} subscriptions: "
                  f"{small['per_invoice'] * 1000:.3f} → {large['per_invoice'] * 1000:.3f} ms per invoice = "
                  f"{ratio:.2f}×  (target within {TARGET_SCALING}×: "
                  f"{'ok' if ratio <= TARGET_SCALING else 'MISSED'})")
    finally:
        redis.stop()
        pg.stop()
        shutil.rmtree(pg.folder, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
