"""Recording what happened, and what must go out because of it.

``record_event`` and ``queue_email`` only add rows to the current session: the
caller's commit writes them together with the change itself. Once the
transaction commits, ``deliveries`` (a session after-commit hook) hands the new
deliveries to RQ; if Redis is down they wait for the tick's sweep.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from flask import render_template

from portal import clock
from portal.extensions import db
from portal.models import Delivery, Event
from portal.services.mail import mail_domain, sender

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Actor:
    kind: str  # staff, contact, guest, system
    id: int | None = None
    label: str | None = None

    @classmethod
    def of(cls, principal) -> "Actor":
        if principal is None or not getattr(principal, "is_authenticated", False):
            return SYSTEM
        return cls(principal.kind, principal.id, principal.email)


SYSTEM = Actor("system", None, "system")


def record_event(
    type: str,
    subject_type: str,
    subject_id: int | None,
    actor: Actor = SYSTEM,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
) -> Event:
    event = Event(**event_fields(type, subject_type, subject_id, actor, before, after, data))
    db.session.add(event)
    return event


def event_fields(type: str, subject_type: str, subject_id: int | None, actor: Actor = SYSTEM,
                 before: dict[str, Any] | None = None, after: dict[str, Any] | None = None,
                 data: dict[str, Any] | None = None) -> dict[str, Any]:
    """An event row's columns: ``record_event`` adds it to the session; a bulk writer (the billing
    run) inserts many at once."""
    return {"type": type, "subject_type": subject_type, "subject_id": subject_id, "actor_kind": actor.kind,
            "actor_id": actor.id, "actor_label": actor.label, "before": before, "after": after, "data": data,
            "occurred_at": clock.now()}


def queue_email(
    to: str,
    template: str,
    context: dict[str, Any],
    event: Event | None = None,
    subject_type: str | None = None,
    subject_id: int | None = None,
    redact: list[str] | None = None,
    attachments: list[dict] | None = None,
) -> Delivery:
    """Render ``emails/<template>.{subject,html,txt}`` now and keep the result.

    The delivery log then shows exactly what was sent, and the job that sends
    it needs no templates or request context. Strings in ``redact`` (raw
    sign-in or reset tokens) are removed from the stored copy once the
    message has gone out through SMTP, so the log does not keep live secrets.
    ``attachments`` are specs made at send time (``{"type": "invoice_pdf",
    "invoice_id": 7}``), so a retry attaches the same document.
    """
    delivery = Delivery(**email_fields(to, template, context, subject_type, subject_id, redact, attachments))
    if event is not None:
        if event.id is None:
            db.session.flush([event])
        delivery.event_id = event.id
    db.session.add(delivery)
    db.session.info.setdefault("portal_new_deliveries", []).append(delivery)
    return delivery


def email_fields(to: str, template: str, context: dict[str, Any], subject_type: str | None = None,
                 subject_id: int | None = None, redact: list[str] | None = None,
                 attachments: list[dict] | None = None, event_id: int | None = None) -> dict[str, Any]:
    """A delivery row's columns, the email rendered now (``queue_email``'s work without the session;
    a bulk writer inserts many and hands their ids to ``deliveries.note_inserted``)."""
    subject = render_template(f"emails/{template}.subject.txt", **context).strip()
    html = render_template(f"emails/{template}.html", **context)
    text = render_template(f"emails/{template}.txt", **context)
    now = clock.now()
    return {
        "kind": "email", "template": template, "recipient": to, "subject": subject,
        # The sender and the Message-ID's domain are frozen now, so every attempt sends the same
        # message even if Settings change meanwhile (receivers de-duplicate a retry by its id).
        "payload": {"to": [to], "subject": subject, "html": html, "text": text, "redact": list(redact or []),
                    "attachments": list(attachments or []), "sender": sender(), "message_domain": mail_domain()},
        "status": "pending", "next_attempt_at": now, "created_at": now, "subject_type": subject_type,
        "subject_id": subject_id, "event_id": event_id,
    }


def commit() -> None:
    """Commit the unit of work. Its new deliveries are handed to RQ by ``deliveries``' after-commit
    hook (whoever commits), so this is a plain commit kept as the services' one verb."""
    db.session.commit()


def rollback() -> None:
    db.session.rollback()
