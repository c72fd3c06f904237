"""Append-only domain events and the durable outbox of deliveries."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, event
from sqlalchemy.orm import Mapped, Session, mapped_column

from portal import clock
from portal.extensions import db
from portal.models.types import UTCDateTime


class Event(db.Model):
    """Something that happened: who did what to which record, before and after.

    Rows are never updated or deleted (see the flush guard below); timelines
    and audit trails are read from here.
    """

    __tablename__ = "event"

    id: Mapped[int] = mapped_column(primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    type: Mapped[str] = mapped_column(String(64))
    actor_kind: Mapped[str] = mapped_column(String(10))  # staff, contact, guest, system
    actor_id: Mapped[int | None] = mapped_column()
    actor_label: Mapped[str | None] = mapped_column(String(254))
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[int | None] = mapped_column()
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    __table_args__ = (
        Index("ix_event_subject", "subject_type", "subject_id", "occurred_at"),
        Index("ix_event_type_occurred", "type", "occurred_at"),
    )


DELIVERY_STATUSES = ("pending", "sending", "retrying", "sent", "logged", "failed")


class Delivery(db.Model):
    """Something that must go out (an email, later a webhook).

    Written in the same transaction as the change that causes it; an RQ job
    sends it; the tick's sweep re-enqueues whatever is due and not done.
    ``logged`` means no mail server is configured: the message is kept here
    and readable on the staff Emails page.
    """

    __tablename__ = "delivery"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # email, webhook
    template: Mapped[str | None] = mapped_column(String(64))
    recipient: Mapped[str] = mapped_column(String(500))
    subject: Mapped[str | None] = mapped_column(String(300))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=8)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("event.id", ondelete="SET NULL"))
    subject_type: Mapped[str | None] = mapped_column(String(32))
    subject_id: Mapped[int | None] = mapped_column()

    __table_args__ = (
        Index("ix_delivery_due", "status", "next_attempt_at"),
        Index("ix_delivery_created", "created_at"),
        Index("ix_delivery_subject", "subject_type", "subject_id"),
    )

    @property
    def done(self) -> bool:
        return self.status in {"sent", "logged", "failed"}


class AppendOnlyError(RuntimeError):
    pass


APPEND_ONLY = (Event,)


@event.listens_for(Session, "before_flush")
def _refuse_changes_to_append_only_rows(session: Session, flush_context, instances) -> None:
    for obj in list(session.dirty) + list(session.deleted):
        if isinstance(obj, APPEND_ONLY) and (obj in session.deleted or session.is_modified(obj)):
            raise AppendOnlyError(f"{type(obj).__name__} rows are append-only")
