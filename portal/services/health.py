"""What /healthz reports: can we reach the database and Redis?"""
from __future__ import annotations

from sqlalchemy import text

from portal.extensions import db
from portal.queues import redis_connection


def check() -> dict[str, str]:
    status: dict[str, str] = {}
    try:
        db.session.execute(text("SELECT 1"))
        status["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means unreachable
        db.session.rollback()
        status["database"] = f"unreachable: {type(exc).__name__}"
    try:
        redis_connection().ping()
        status["redis"] = "ok"
    except Exception as exc:  # noqa: BLE001
        status["redis"] = f"unreachable: {type(exc).__name__}"
    return status
