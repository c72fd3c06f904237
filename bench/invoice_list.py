"""The invoice list, guest page and PDF at 100k invoices, against a floor measured in the same run.

    .venv/bin/python bench/invoice_list.py [--db postgresql|sqlite] [--invoices 100000] [--clients 10000]
                                           [--seconds 10] [--concurrency 8]

Seeds N invoices (about 5 lines each) for M clients through bulk inserts,
starts gunicorn on loopback, and loads each URL with a threaded HTTP load
generator for a fixed time: requests per second, p50 and p95. The floor is a
bare route of the same app (no database, no template) served by the same
gunicorn in the same run.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.servers import PostgresServer, RedisServer, free_port  # noqa: E402

BENCH_APP = '''
from portal import create_app
app = create_app()
app.config["WTF_CSRF_ENABLED"] = False  # the load generator signs in without a form
@app.get("/_bench/bare")
def bare():
    return "ok"
'''


def seed(database_url: str, invoices: int, clients: int) -> dict:
    from flask_migrate import upgrade
    from sqlalchemy import insert, select

    from portal import create_app
    from portal.extensions import db
    from portal.models import Client, Contact, Invoice, InvoiceLine, InvoiceToken, TaxRate
    from portal.services.auth import create_staff
    from portal.services.settings import get_business

    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "EMBEDDED_REDIS": False, "TESTING": True})
    start = time.perf_counter()
    with app.app_context():
        upgrade()
        business = get_business()
        business.name, business.currency = "Bench Studio", "EUR"
        db.session.add(TaxRate(name="VAT", percent=Decimal("23")))
        db.session.commit()
        create_staff("bench@staff.example", "bench password 1", role="owner")
        now = datetime.now(timezone.utc)
        db.session.execute(insert(Client), [
            {"name": f"Client {i:05d} Ltd", "kind": "company", "email": f"billing{i}@c.example",
             "created_at": now, "updated_at": now} for i in range(clients)])
        db.session.commit()
        client_ids = db.session.scalars(select(Client.id)).all()
        db.session.execute(insert(Contact), [
            {"client_id": cid, "name": f"Contact {cid}", "email": f"c{cid}@c.example", "receives_invoices": True,
             "portal_access": False, "session_nonce": secrets.token_hex(16), "created_at": now}
            for cid in client_ids])
        db.session.commit()
        rng = random.Random(7)
        statuses = ["open"] * 4 + ["paid"] * 4 + ["overdue", "void"]
        batch = 10000
        seq = 1
        for offset in range(0, invoices, batch):
            rows = []
            for i in range(offset, min(offset + batch, invoices)):
                issued = date(2024, 1, 1) + timedelta(days=i % 900)
                status = statuses[i % len(statuses)]
                rows.append({
                    "client_id": client_ids[i % len(client_ids)], "status": status, "number": f"INV-{seq:07d}",
                    "sequence_number": seq, "currency": "EUR", "issue_date": issued,
                    "due_date": issued + timedelta(days=30), "payment_terms_days": 30,
                    "subtotal": 61500, "discount_total": 0, "tax_total": 14145, "included_tax_total": 0,
                    "total": 75645, "amount_paid": 75645 if status == "paid" else 0, "credit_applied": 0,
                    "amount_due": 0 if status in ("paid", "void") else 75645,
                    "tax_breakdown": [{"name": "VAT", "percent": "23", "inclusive": False, "base": 61500,
                                       "amount": 14145}],
                    "bill_to": {"name": f"Client {i % len(client_ids):05d} Ltd", "contacts": []},
                    "bill_from": {"name": "Bench Studio"},
                    "created_at": now, "updated_at": now, "finalized_at": now,
                })
                seq += 1
            db.session.execute(insert(Invoice), rows)
            db.session.commit()
        business.invoice_next_number = seq
        db.session.commit()
        invoice_ids = db.session.scalars(select(Invoice.id)).all()
        for offset in range(0, len(invoice_ids), 4000):
            lines = []
            for iid in invoice_ids[offset:offset + 4000]:
                for n in range(rng.choice([4, 5, 5, 6])):
                    lines.append({
                        "invoice_id": iid, "position": n, "description": f"Service item {n}",
                        "quantity": Decimal("1"), "unit_price": 12300, "tax_name": "VAT",
                        "tax_percent": Decimal("23"), "tax_inclusive": False, "gross": 12300,
                        "discount_amount": 0, "net": 12300, "tax_amount": 2829, "total": 15129,
                    })
            db.session.execute(insert(InvoiceLine), lines)
            db.session.commit()
        raw = secrets.token_urlsafe(32)
        db.session.add(InvoiceToken(invoice_id=invoice_ids[len(invoice_ids) // 2],
                                    token_hash=hashlib.sha256(raw.encode()).hexdigest(), created_at=now))
        db.session.commit()
        line_count = db.session.query(InvoiceLine).count()
        db.engine.dispose()
    return {"seconds": time.perf_counter() - start, "token": raw, "lines": line_count,
            "deep_page": max(1, invoices // 25 - 5)}


def load(port: int, path: str, seconds: float, concurrency: int, cookie: str | None) -> dict:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine = []
        bad = 0
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            conn.request("GET", path, headers={"Cookie": cookie} if cookie else {})
            response = conn.getresponse()
            response.read()
            mine.append(time.perf_counter() - start)
            if response.status != 200:
                bad += 1
        conn.close()
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50": statistics.median(latencies) * 1000,
        "p95": latencies[int(len(latencies) * 0.95) - 1] * 1000 if latencies else 0.0,
        "n": len(latencies),
        "errors": errors[0],
    }


def login(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = urlencode({"email": "bench@staff.example", "password": "bench password 1"})
    conn.request("POST", "/staff/login", body=body,
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    response = conn.getresponse()
    response.read()
    cookie = response.getheader("Set-Cookie").split(";")[0]
    if response.status != 302:
        raise SystemExit(f"bench login failed: {response.status}")
    return cookie


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--invoices", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="portal-bench-"))
    redis = RedisServer(tmp / "redis")
    redis.start()
    pg = None
    gunicorn = None
    try:
        if args.db == "postgresql":
            pg = PostgresServer(Path("/tmp") / f"portal-bench-pg-{os.getpid()}")
            shutil.rmtree(pg.folder, ignore_errors=True)
            pg.start()
            database_url = pg.create_database("bench").replace("postgresql://", "postgresql+psycopg://")
        else:
            database_url = f"sqlite:///{tmp / 'bench.db'}"
        os.environ.update({
            "DATABASE_URL": database_url, "REDIS_URL": redis.url, "SECRET_KEY": "b" * 40,
            "PORTAL_INSTANCE_PATH": str(tmp), "PORTAL_RATELIMIT_TOKEN_PAGE": "1000000 per minute",
        })
        seeded = seed(database_url, args.invoices, args.clients)
        print(f"seeded {args.invoices} invoices, {seeded['lines']} lines, {args.clients} clients "
              f"in {seeded['seconds']:.1f} s ({args.db})", flush=True)

        (tmp / "bench_wsgi.py").write_text(BENCH_APP)
        port = free_port()
        gunicorn = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "--bind", f"127.0.0.1:{port}",
             "--workers", str(args.workers), "--threads", "4", "--chdir", str(tmp),
             "--pythonpath", str(ROOT), "bench_wsgi:app"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                http.client.HTTPConnection("127.0.0.1", port, timeout=1).request("GET", "/_bench/bare")
                break
            except OSError:
                time.sleep(0.1)
        time.sleep(1)
        cookie = login(port)
        token = seeded["token"]
        targets = [
            ("floor: bare route", "/_bench/bare", None),
            ("staff list, page 1, status=open", "/staff/invoices?status=open", cookie),
            (f"staff list, deep page {seeded['deep_page']}", f"/staff/invoices?page={seeded['deep_page']}", cookie),
            ("staff list, search by client", "/staff/invoices?q=Client+01234", cookie),
            ("guest page /pay/<token>", f"/pay/{token}", None),
            ("guest PDF /pay/<token>/pdf", f"/pay/{token}/pdf", None),
        ]
        print(f"load: {args.concurrency} connections × {args.seconds:.0f} s each, gunicorn {args.workers} workers "
              "× 4 threads, loopback")
        print(f"{'target':<38} {'req/s':>9} {'p50 ms':>9} {'p95 ms':>9} {'n':>7} {'non-200':>8}")
        floor = None
        for label, path, auth in targets:
            result = load(port, path, args.seconds, args.concurrency, auth)
            floor = floor or result
            print(f"{label:<38} {result['rps']:9.1f} {result['p50']:9.2f} {result['p95']:9.2f} {result['n']:7d} "
                  f"{result['errors']:8d}   ({result['rps'] / floor['rps'] * 100:5.1f}% of floor req/s)",
                  flush=True)
    finally:
        if gunicorn is not None:
            gunicorn.send_signal(signal.SIGTERM)
            gunicorn.wait(timeout=20)
        redis.stop()
        if pg is not None:
            pg.stop()
            shutil.rmtree(pg.folder, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
