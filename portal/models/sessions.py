"""Server-side session records: one row per sign-in, so a session can be ended at once.

The browser's signed cookie carries a random 256-bit token; only its SHA-256 is
stored here. A request whose token is unknown, ended or past its idle or
absolute limit is treated as signed out.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from portal import clock
from portal.extensions import db
from portal.models.types import UTCDateTime

# Why a session ended (``ended_reason``).
END_REASONS = ("logout", "replaced", "signed_out", "signed_out_others", "password_changed", "password_reset",
               "deactivated", "access_revoked", "removed", "idle", "expired")


class UserSession(db.Model):
    __tablename__ = "user_session"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    principal_kind: Mapped[str] = mapped_column(String(10))  # "staff" | "contact"
    principal_id: Mapped[int] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(255))
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_reason: Mapped[str | None] = mapped_column(String(20))

    __table_args__ = (Index("ix_user_session_principal", "principal_kind", "principal_id"),)

    @property
    def active(self) -> bool:
        return self.ended_at is None
