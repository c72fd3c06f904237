"""Getting deliveries out: enqueue, send exactly once, retry with backoff, sweep.

A delivery is claimed with a conditional UPDATE before it is sent, so two
workers (or a job and its re-enqueued twin) never both send it. A claim older
than ``STALE_CLAIM`` is taken to belong to a worker that died, and the sweep
makes it due again.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from flask import current_app
from flask_mail import Message
from redis.exceptions import RedisError
from sqlalchemy import func, or_, select, update

from portal import clock
from portal.extensions import db, mail
from portal.models import Delivery
from portal.queues import EMAILS, queue

log = logging.getLogger(__name__)

# Minutes to wait after the n-th failed attempt (the last value repeats).
BACKOFF_MINUTES = (1, 5, 15, 60, 180, 360, 720)
STALE_CLAIM = timedelta(minutes=15)
# A delivery handed to RQ is left alone by the sweep for this long.
ENQUEUE_GRACE = timedelta(minutes=5)
DUE_STATUSES = ("pending", "retrying")


def backoff(attempts: int) -> timedelta:
    index = min(max(attempts, 1), len(BACKOFF_MINUTES)) - 1
    return timedelta(minutes=BACKOFF_MINUTES[index])


def job_id(delivery_id: int, attempts: int) -> str:
    return f"delivery-{delivery_id}-attempt-{attempts + 1}"


def enqueue(delivery_ids: list[int]) -> int:
    """Hand deliveries to RQ. Returns how many were enqueued.

    If Redis is unreachable nothing is lost: the rows stay due and the next
    tick's sweep enqueues them.
    """
    if not delivery_ids:
        return 0
    rows = db.session.execute(
        select(Delivery.id, Delivery.attempts).where(Delivery.id.in_(delivery_ids))
    ).all()
    enqueued = []
    try:
        q = queue(EMAILS)
        for delivery_id, attempts in rows:
            q.enqueue(
                "portal.jobs.deliveries.deliver",
                delivery_id,
                job_id=job_id(delivery_id, attempts),
                result_ttl=3600,
                failure_ttl=7 * 24 * 3600,
            )
            enqueued.append(delivery_id)
    except RedisError as exc:
        log.warning("could not enqueue deliveries %s: %s (the sweep will retry)", delivery_ids, exc)
    if enqueued:
        db.session.execute(
            update(Delivery).where(Delivery.id.in_(enqueued)).values(enqueued_at=clock.now())
        )
        db.session.commit()
    return len(enqueued)


def sweep(at=None) -> int:
    """Re-enqueue every delivery that is due and not done, as of ``at``.

    Also frees claims left by a worker that died mid-send.
    """
    at = at or clock.now()
    db.session.execute(
        update(Delivery)
        .where(Delivery.status == "sending", Delivery.claimed_at < at - STALE_CLAIM)
        .values(status="retrying", claimed_at=None, enqueued_at=None, last_error="worker stopped while sending")
    )
    db.session.commit()
    due = db.session.scalars(
        select(Delivery.id)
        .where(
            Delivery.status.in_(DUE_STATUSES),
            Delivery.next_attempt_at <= at,
            or_(Delivery.enqueued_at.is_(None), Delivery.enqueued_at < at - ENQUEUE_GRACE),
        )
        .order_by(Delivery.next_attempt_at)
        .limit(1000)
    ).all()
    return enqueue(list(due))


def _claim(delivery_id: int) -> Delivery | None:
    now = clock.now()
    result = db.session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.status.in_(DUE_STATUSES))
        .values(status="sending", claimed_at=now)
    )
    db.session.commit()
    if result.rowcount != 1:
        return None
    return db.session.get(Delivery, delivery_id)


def deliver(delivery_id: int) -> str:
    """Send one delivery. Idempotent: a delivery already sent is not sent again.

    Returns the resulting status. On failure the error is recorded and the
    next attempt is scheduled with backoff; after ``max_attempts`` the
    delivery is marked failed.
    """
    delivery = _claim(delivery_id)
    if delivery is None:
        current = db.session.get(Delivery, delivery_id)
        return current.status if current else "missing"
    if delivery.kind != "email":
        raise ValueError(f"unknown delivery kind {delivery.kind!r}")

    if not current_app.config.get("MAIL_SERVER"):
        delivery.status = "logged"
        delivery.sent_at = clock.now()
        delivery.claimed_at = None
        db.session.commit()
        return delivery.status

    try:
        _send_email(delivery)
    except Exception as exc:  # noqa: BLE001 - any failure to send is recorded and retried
        delivery.attempts += 1
        delivery.last_error = f"{type(exc).__name__}: {exc}"[:2000]
        delivery.claimed_at = None
        delivery.enqueued_at = None
        if delivery.attempts >= delivery.max_attempts:
            delivery.status = "failed"
        else:
            delivery.status = "retrying"
            delivery.next_attempt_at = clock.now() + backoff(delivery.attempts)
        db.session.commit()
        log.warning("delivery %s attempt %s failed: %s", delivery.id, delivery.attempts, delivery.last_error)
        return delivery.status

    delivery.attempts += 1
    delivery.payload = _redacted(delivery.payload)
    delivery.status = "sent"
    delivery.sent_at = clock.now()
    delivery.claimed_at = None
    delivery.last_error = None
    db.session.commit()
    return delivery.status


REDACTED = "[secret removed after sending]"


def _redacted(payload: dict) -> dict:
    secrets = payload.get("redact") or []
    if not secrets:
        return payload
    clean = dict(payload)
    for key in ("subject", "html", "text"):
        value = clean.get(key) or ""
        for secret in secrets:
            value = value.replace(secret, REDACTED)
        clean[key] = value
    clean["redact"] = []
    return clean


def _send_email(delivery: Delivery) -> None:
    payload = delivery.payload
    message = Message(
        subject=payload["subject"],
        recipients=payload["to"],
        body=payload.get("text"),
        html=payload.get("html"),
        sender=current_app.config["MAIL_DEFAULT_SENDER"],
        extra_headers={"X-Portal-Delivery": str(delivery.id)},
    )
    for spec in payload.get("attachments") or []:
        name, content_type, data = _attachment(spec)
        message.attach(name, content_type, data)
    mail.send(message)


def _attachment(spec: dict) -> tuple[str, str, bytes]:
    if spec.get("type") == "invoice_pdf":
        from portal.models import Invoice
        from portal.services import pdf

        invoice = db.session.get(Invoice, spec["invoice_id"])
        if invoice is None:
            raise ValueError(f"invoice {spec['invoice_id']} no longer exists")
        return pdf.filename(invoice), "application/pdf", pdf.render_pdf(invoice)
    if spec.get("type") == "credit_note_pdf":
        from portal.services import credit_notes

        note = credit_notes.get_credit_note(spec["credit_note_id"])
        return credit_notes.filename(note), "application/pdf", credit_notes.render_pdf(note)
    raise ValueError(f"unknown attachment {spec!r}")


def list_emails(status: str | None = None, page: int = 1, per_page: int = 50):
    query = select(Delivery).where(Delivery.kind == "email").order_by(Delivery.id.desc())
    if status:
        query = query.where(Delivery.status == status)
    return db.paginate(query, page=page, per_page=per_page, error_out=False)


def get_delivery(delivery_id: int) -> Delivery | None:
    return db.session.get(Delivery, delivery_id)


def counts_by_status() -> dict[str, int]:
    rows = db.session.execute(
        select(Delivery.status, func.count()).where(Delivery.kind == "email").group_by(Delivery.status)
    ).all()
    return {status: n for status, n in rows}


__all__ = ["backoff", "counts_by_status", "deliver", "enqueue", "get_delivery", "list_emails", "sweep"]
