"""Clients list at scale, against floors measured in the same run.

    .venv/bin/python bench/bench_clients.py [N]

Prints: (1) inserting N clients + contacts through the ORM vs a raw-SQL
executemany of the same rows; (2) the staff clients page (first page, and a
search) vs a bare Flask route returning a page of the same size; (3) the
number of SQL statements one clients page runs (N+1 check).
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from flask import Flask
from sqlalchemy import event, insert

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from portal import clock, create_app  # noqa: E402
from portal.extensions import db  # noqa: E402
from portal.models import Client, Contact  # noqa: E402
from tests.support.servers import RedisServer  # noqa: E402


def timed(fn, repeat=20):
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main(n: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="portal-bench-"))
    redis = RedisServer(tmp / "redis")
    redis.start()
    try:
        app = create_app({
            "TESTING": True, "EMBEDDED_REDIS": False, "REDIS_URL": redis.url,
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp / 'bench.db'}", "PORTAL_INSTANCE_PATH": str(tmp),
            "SECRET_KEY": "bench" * 10, "WTF_CSRF_ENABLED": False,
        })
        with app.app_context():
            from flask_migrate import upgrade

            from portal.services.auth import create_staff

            upgrade()
            now = clock.now()
            rows = [{"name": f"Client {i:06d}", "kind": "company", "email": f"billing{i}@client.example",
                     "created_at": now, "updated_at": now} for i in range(n)]

            start = time.perf_counter()
            db.session.execute(insert(Client), rows)
            db.session.commit()
            orm_insert = time.perf_counter() - start
            ids = db.session.scalars(db.select(Client.id)).all()
            db.session.execute(insert(Contact), [
                {"client_id": cid, "name": f"Contact {cid}", "email": f"c{cid}@client.example",
                 "receives_invoices": True, "portal_access": False, "session_nonce": "x" * 32, "created_at": now}
                for cid in ids])
            db.session.commit()

            raw = db.engine.raw_connection()
            try:
                cur = raw.cursor()
                cur.execute("CREATE TABLE floor_client (id INTEGER PRIMARY KEY, name TEXT, kind TEXT, email TEXT,"
                            " created_at TEXT, updated_at TEXT)")
                start = time.perf_counter()
                cur.executemany("INSERT INTO floor_client (name, kind, email, created_at, updated_at)"
                                " VALUES (?, ?, ?, ?, ?)",
                                [(r["name"], r["kind"], r["email"], str(now), str(now)) for r in rows])
                raw.commit()
                raw_insert = time.perf_counter() - start
            finally:
                raw.close()

            create_staff("bench@staff.example", "bench password 1", role="owner")

        client = app.test_client()
        client.post("/staff/login", data={"email": "bench@staff.example", "password": "bench password 1"})
        html = client.get("/staff/clients").get_data()

        statements = []

        @event.listens_for(_engine(app), "before_cursor_execute")
        def count(conn, cursor, statement, params, context, executemany):
            statements.append(statement)

        client.get("/staff/clients")
        page_queries = len(statements)

        floor_app = Flask("floor")
        floor_app.add_url_rule("/", "floor", lambda: html)
        floor = floor_app.test_client()

        page = timed(lambda: client.get("/staff/clients"))
        search = timed(lambda: client.get("/staff/clients?q=client%200123", headers={"HX-Request": "true"}))
        bare = timed(lambda: floor.get("/"))

        print(f"clients: {n}")
        print(f"insert   orm bulk {orm_insert * 1000:8.1f} ms   raw executemany floor {raw_insert * 1000:8.1f} ms"
              f"   ratio {orm_insert / raw_insert:5.2f}")
        print(f"page     /staff/clients {page * 1000:8.2f} ms   bare Flask floor {bare * 1000:8.2f} ms"
              f"   ratio {page / bare:6.1f}")
        print(f"search   htmx rows      {search * 1000:8.2f} ms")
        print(f"queries  per clients page: {page_queries}")
    finally:
        redis.stop()


def _engine(app):
    with app.app_context():
        return db.engine


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000)
