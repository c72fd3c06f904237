"""Getting deliveries out: enqueue, send, retry with backoff, sweep.

Delivery is at-least-once, with a stable ``Message-ID`` per delivery
(``message_id``), so a rare resend is recognised as the same message by the
receiving servers and mail clients.

A delivery is claimed with a conditional UPDATE before it is sent, so two
workers (or a job and its re-enqueued twin) never both send it. While the
message goes out, a heartbeat thread keeps the claim fresh; a claim not
refreshed for ``STALE_CLAIM`` belongs to a worker that died, and the sweep
makes it due again at once. Once the SMTP server has answered 250 to DATA the
message is the server's: an error after that (a connection dropped at QUIT)
does not make it fail, and it is not sent again.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import smtplib
import threading
import time
from datetime import datetime, timedelta

from flask import current_app, has_app_context
from flask_mail import BadHeaderError, Message, sanitize_address, sanitize_addresses
from redis.exceptions import RedisError
from sqlalchemy import case, event, or_, select, update
from sqlalchemy.orm import Session

from portal import clock
from portal.extensions import db
from portal.models import Delivery
from portal.queues import EMAILS, queue
from portal.services import attachments
from portal.services.mail import frozen_sender, mail_domain, sender

log = logging.getLogger(__name__)

# Minutes to wait after the n-th failed attempt (the last value repeats).
BACKOFF_MINUTES = (1, 5, 15, 60, 180, 360, 720)
# A claim whose heartbeat stopped this long ago belongs to a dead worker.
STALE_CLAIM = timedelta(seconds=60)
# How often a sending worker refreshes its claim.
HEARTBEAT_SECONDS = 15
# Socket timeout for each SMTP command (connect, DATA's reply...).
SMTP_TIMEOUT = 60
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


# Handing new deliveries to RQ once their transaction commits ----------------------------------
# ``events.queue_email`` adds the Delivery to the session and to ``session.info``; whoever commits,
# these hooks enqueue it afterwards (never before: a worker must find the row). A rollback forgets it.

@event.listens_for(Session, "after_flush")
def _note_new_deliveries(session, flush_context) -> None:
    new = session.info.get("portal_new_deliveries")
    if new:
        flushed = [d for d in new if d.id is not None]
        session.info["portal_new_deliveries"] = [d for d in new if d.id is None]
        session.info.setdefault("portal_flushed_deliveries", []).extend(d.id for d in flushed)


@event.listens_for(Session, "after_commit")
def _enqueue_after_commit(session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint released: the rows are not committed yet
    ids = session.info.pop("portal_flushed_deliveries", None)
    if ids and has_app_context():
        enqueue_new(ids)


@event.listens_for(Session, "after_rollback")
def _forget_new_deliveries(session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint's rollback: the outer transaction's deliveries stay (enqueue_new checks)
    session.info.pop("portal_new_deliveries", None)
    session.info.pop("portal_flushed_deliveries", None)


def note_inserted(delivery_ids: list[int]) -> None:
    """Deliveries a bulk writer inserted in the current transaction: enqueued once it commits (as if
    ``events.queue_email`` had added them)."""
    db.session.info.setdefault("portal_flushed_deliveries", []).extend(delivery_ids)


ENQUEUE_CHUNK = 200


def enqueue_new(delivery_ids: list[int]) -> int:
    """Enqueue deliveries that were just created (first attempt), outside any session: the hook runs
    after the commit, so ``enqueued_at`` is written on a connection of its own, first: only rows
    that really were committed (not ones a savepoint rolled back) come back and are enqueued. Those
    Redis refuses are given back to the sweep (``enqueued_at`` cleared)."""
    with db.engine.begin() as connection:
        committed = list(connection.execute(
            update(Delivery).where(Delivery.id.in_(delivery_ids), Delivery.enqueued_at.is_(None))
            .values(enqueued_at=clock.now()).returning(Delivery.id)).scalars())
    enqueued = []
    try:
        q = queue(EMAILS)
        ordered = sorted(committed)
        for start in range(0, len(ordered), ENQUEUE_CHUNK):  # one Redis round trip per chunk
            chunk = ordered[start:start + ENQUEUE_CHUNK]
            q.enqueue_many([q.prepare_data("portal.jobs.deliveries.deliver", (delivery_id,),
                                           job_id=job_id(delivery_id, 0), result_ttl=3600,
                                           failure_ttl=7 * 24 * 3600) for delivery_id in chunk])
            enqueued.extend(chunk)
    except RedisError as exc:
        log.warning("could not enqueue deliveries %s: %s (the sweep will retry)", committed, exc)
    missed = sorted(set(committed) - set(enqueued))
    if missed:
        with db.engine.begin() as connection:
            connection.execute(update(Delivery).where(Delivery.id.in_(missed)).values(enqueued_at=None))
    return len(enqueued)


def sweep(at=None) -> int:
    """Re-enqueue every delivery that is due and not done, as of ``at``.

    Also frees claims whose heartbeat stopped (a worker that died mid-send):
    that try counts as an attempt, and the next one is due at once. The
    message may have gone out before the worker died; the resend carries the
    same Message-ID.
    """
    at = at or clock.now()
    tried = Delivery.attempts + 1
    db.session.execute(
        update(Delivery)
        .where(Delivery.status == "sending", Delivery.claimed_at < at - STALE_CLAIM)
        .values(
            attempts=tried,
            status=case((tried >= Delivery.max_attempts, "failed"), else_="retrying"),
            next_attempt_at=at,
            claimed_at=None,
            enqueued_at=None,
            last_error="worker stopped while sending",
        )
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


def _claim(delivery_id: int) -> tuple[Delivery, datetime] | None:
    now = clock.now()
    result = db.session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.status.in_(DUE_STATUSES))
        .values(status="sending", claimed_at=now)
    )
    db.session.commit()
    if result.rowcount != 1:
        return None
    return db.session.get(Delivery, delivery_id), now


class _Heartbeat:
    """Refresh a claim every ``HEARTBEAT_SECONDS`` while the message goes out.

    Runs in a thread with its own connection. The new ``claimed_at`` is the
    claim's time plus the (monotonic) time elapsed, so it follows the clock
    the claim was made with. It only touches its own claim: if the row moved
    on (the sweep took it back), it stops.
    """

    def __init__(self, delivery_id: int, claimed_at: datetime):
        self.delivery_id = delivery_id
        self.claimed_at = claimed_at
        self.started = time.monotonic()
        self.engine = db.engine
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"delivery-{delivery_id}-heartbeat", daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.stopped.set()
        self.thread.join()

    def _run(self) -> None:
        while not self.stopped.wait(HEARTBEAT_SECONDS):
            fresh = self.claimed_at + timedelta(seconds=time.monotonic() - self.started)
            try:
                with self.engine.begin() as conn:
                    result = conn.execute(
                        update(Delivery)
                        .where(Delivery.id == self.delivery_id, Delivery.status == "sending",
                               Delivery.claimed_at == self.claimed_at)
                        .values(claimed_at=fresh)
                    )
            except Exception as exc:  # noqa: BLE001 - a missed beat is retried at the next one
                log.warning("delivery %s: could not refresh the claim: %s", self.delivery_id, exc)
                continue
            if result.rowcount != 1:
                log.warning("delivery %s: the claim was taken back; no longer refreshing it", self.delivery_id)
                return
            self.claimed_at = fresh


def deliver(delivery_id: int) -> str:
    """Send one delivery. Idempotent: a delivery already sent is not sent again.

    Returns the resulting status. On failure the error is recorded and the
    next attempt is scheduled with backoff; after ``max_attempts`` the
    delivery is marked failed.
    """
    claim = _claim(delivery_id)
    if claim is None:
        current = db.session.get(Delivery, delivery_id)
        return current.status if current else "missing"
    delivery, claimed_at = claim
    if delivery.kind != "email":
        raise ValueError(f"unknown delivery kind {delivery.kind!r}")

    if not current_app.config.get("MAIL_SERVER"):
        delivery.status = "logged"
        delivery.sent_at = clock.now()
        delivery.claimed_at = None
        db.session.commit()
        return delivery.status

    try:
        with _Heartbeat(delivery.id, claimed_at):
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


def message_id(delivery: Delivery) -> str:
    """The delivery's ``Message-ID``: the same on every attempt, unique to this deployment.

    ``<delivery-{id}.{tag}@{domain of the sender}>``, the tag an HMAC
    (keyed with ``SECRET_KEY``) of the id and the row's creation time, so
    another deployment, or this one after its database was reset, never
    reuses one, and nothing about the key shows.
    """
    config = current_app.config
    created = clock.as_utc(delivery.created_at).strftime("%Y%m%d%H%M%S%f")
    tag = hmac.new(str(config["SECRET_KEY"]).encode(), f"message-id:{delivery.id}:{created}".encode(),
                   hashlib.sha256).hexdigest()[:20]
    domain = (delivery.payload or {}).get("message_domain") or mail_domain()
    return f"<delivery-{delivery.id}.{tag}@{domain}>"


def _send_email(delivery: Delivery) -> None:
    """Send over SMTP with the app's MAIL_* settings.

    Returns once the server has answered 250 to DATA. A failure before that
    raises (the delivery is retried); a failure after it (QUIT, closing) is
    logged and ignored: the server has the message.
    """
    payload = delivery.payload
    config = current_app.config
    message = Message(
        subject=payload["subject"],
        recipients=payload["to"],
        body=payload.get("text"),
        html=payload.get("html"),
        sender=frozen_sender(payload.get("sender")) or sender(),
        extra_headers={"X-Portal-Delivery": str(delivery.id)},
    )
    message.msgId = message_id(delivery)
    message.date = time.time()
    for spec in payload.get("attachments") or []:
        name, content_type, data = attachments.render(spec)
        message.attach(name, content_type, data)
    if message.has_bad_headers():
        raise BadHeaderError("newline in a header")
    state = current_app.extensions.get("mail")
    if state is not None and state.suppress:
        return

    smtp = _smtp_connect(config)
    try:
        smtp.sendmail(
            sanitize_address(message.sender),
            list(sanitize_addresses(message.send_to)),
            message.as_bytes(),
            message.mail_options,
            message.rcpt_options,
        )
    except BaseException:
        smtp.close()
        raise
    # 250 after DATA: accepted. Whatever happens from here, it was sent.
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError) as exc:
        log.info("delivery %s: accepted by the SMTP server; error at QUIT ignored: %s", delivery.id, exc)
        smtp.close()


def _smtp_connect(config) -> smtplib.SMTP:
    """Connect, STARTTLS and log in as Flask-Mail would, with a socket timeout."""
    use_ssl = bool(config.get("MAIL_USE_SSL"))
    port = config.get("MAIL_PORT") or (465 if use_ssl else 25)
    smtp_class = smtplib.SMTP_SSL if use_ssl else smtplib.SMTP
    smtp = smtp_class(config["MAIL_SERVER"], port, timeout=config.get("MAIL_TIMEOUT") or SMTP_TIMEOUT)
    try:
        if config.get("MAIL_USE_TLS"):
            smtp.starttls()
        if config.get("MAIL_USERNAME") and config.get("MAIL_PASSWORD"):
            smtp.login(config["MAIL_USERNAME"], config["MAIL_PASSWORD"])
    except BaseException:
        smtp.close()
        raise
    return smtp


__all__ = ["backoff", "deliver", "enqueue", "enqueue_new", "message_id", "sweep"]
