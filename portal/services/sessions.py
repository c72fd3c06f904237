"""Server-side sessions: the database decides whether a signed-in browser is still signed in.

Each sign-in creates a ``user_session`` row. The browser's signed cookie holds the raw
256-bit token; the row holds only its SHA-256. Every request looks the row up by that hash
(one indexed query) and is treated as signed out if the row is unknown, ended, idle for
longer than ``IDLE_TIMEOUT`` or older than ``SESSION_ABSOLUTE_LIFETIME``. Logout, a password
change (other sessions), a password reset and deactivation end rows at once, whatever the
browsers still hold. ``last_seen_at`` is written at most once a minute per session.

The functions that end sessions as part of a larger change (``end_all``) only add the
UPDATE to the caller's transaction; the ones the web layer calls on their own commit.
"""
from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select, update

from portal import clock
from portal.extensions import db
from portal.models import UserSession
from portal.services.errors import NotFound
from portal.services.events import Actor, commit, record_event

TOUCH_EVERY = timedelta(minutes=1)
DEFAULT_ABSOLUTE_LIFETIME = timedelta(hours=12)
USER_AGENT_MAX = 255
IP_MAX = 45
TOKEN_MAX = 100  # a token_urlsafe(32) is 43 characters; anything much longer is not ours


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def _idle() -> timedelta:
    return current_app.config["IDLE_TIMEOUT"]


def _lifetime() -> timedelta:
    return current_app.config.get("SESSION_ABSOLUTE_LIFETIME") or DEFAULT_ABSOLUTE_LIFETIME


def _expiry_reason(row: UserSession, now: datetime) -> str | None:
    if now - row.created_at > _lifetime():
        return "expired"
    if now - row.last_seen_at > _idle():
        return "idle"
    return None


def start(principal, ip: str | None, user_agent: str | None) -> str:
    """A new session for ``principal``; returns the raw token for the cookie."""
    raw = secrets.token_urlsafe(32)
    now = clock.now()
    db.session.add(UserSession(
        token_hash=token_hash(raw), principal_kind=principal.kind, principal_id=principal.id,
        created_at=now, last_seen_at=now, ip=(ip or "")[:IP_MAX] or None,
        user_agent=(user_agent or "")[:USER_AGENT_MAX] or None,
    ))
    db.session.commit()
    return raw


@dataclass(frozen=True)
class Resumed:
    id: int | None  # the live session's id, or None: treat the request as signed out
    just_ended: str | None = None  # "idle"/"expired" when this request found it past its time


def resume(raw: str | None, kind: str, principal_id: int) -> Resumed:
    """Look the cookie's token up: the live session of this principal, or why not."""
    if not raw or not isinstance(raw, str) or len(raw) > TOKEN_MAX:
        return Resumed(None)
    row = db.session.scalar(select(UserSession).where(UserSession.token_hash == token_hash(raw)))
    if row is None or row.principal_kind != kind or row.principal_id != principal_id or row.ended_at is not None:
        return Resumed(None)
    now = clock.now()
    session_id, last_seen = row.id, row.last_seen_at
    reason = _expiry_reason(row, now)
    if reason:
        _end_where(reason, now, UserSession.id == session_id)
        db.session.commit()
        return Resumed(None, reason)
    if now - last_seen >= TOUCH_EVERY:
        db.session.execute(
            update(UserSession)
            .where(UserSession.id == session_id, UserSession.ended_at.is_(None))
            .values(last_seen_at=now)
            .execution_options(synchronize_session=False)
        )
        db.session.commit()
    return Resumed(session_id)


def _end_where(reason: str, now: datetime, *where) -> int:
    result = db.session.execute(
        update(UserSession)
        .where(UserSession.ended_at.is_(None), *where)
        .values(ended_at=now, ended_reason=reason)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0


def end_all(principal, reason: str, keep: int | None = None) -> int:
    """End every live session of ``principal`` (but ``keep``), in the caller's transaction."""
    where = [UserSession.principal_kind == principal.kind, UserSession.principal_id == principal.id]
    if keep is not None:
        where.append(UserSession.id != keep)
    return _end_where(reason, clock.now(), *where)


def end_token(raw: str | None, reason: str = "logout") -> None:
    """Sign-out: end the session this cookie holds, whoever it belongs to (it is the browser's own)."""
    if raw and isinstance(raw, str) and len(raw) <= TOKEN_MAX:
        _end_where(reason, clock.now(), UserSession.token_hash == token_hash(raw))
        db.session.commit()


def _live(principal) -> list[UserSession]:
    rows = db.session.scalars(
        select(UserSession)
        .where(UserSession.principal_kind == principal.kind, UserSession.principal_id == principal.id,
               UserSession.ended_at.is_(None))
        .order_by(UserSession.last_seen_at.desc(), UserSession.id.desc())
    ).all()
    now = clock.now()
    return [row for row in rows if _expiry_reason(row, now) is None]


def list_active(principal, current_id: int | None) -> list[dict]:
    """The principal's live sessions for the profile page, most recently used first."""
    return [
        {"id": row.id, "created_at": row.created_at, "last_seen_at": row.last_seen_at, "ip": row.ip or "",
         "browser": describe_agent(row.user_agent), "current": row.id == current_id}
        for row in _live(principal)
    ]


def sign_out(principal, session_id: int) -> None:
    """The profile's "Sign out" on one of the principal's own sessions; anyone else's is NotFound."""
    row = db.session.get(UserSession, session_id)
    if row is None or row.principal_kind != principal.kind or row.principal_id != principal.id \
            or row.ended_at is not None:
        raise NotFound("There is no such session.")
    _end_where("signed_out", clock.now(), UserSession.id == row.id)
    record_event("session.signed_out", principal.kind, principal.id, Actor.of(principal),
                 data={"session_id": session_id})
    commit()


def sign_out_others(principal, current_id: int | None) -> int:
    """The profile's "Sign out all other sessions"."""
    ended = end_all(principal, "signed_out_others", keep=current_id)
    if ended:
        record_event("session.signed_out_others", principal.kind, principal.id, Actor.of(principal),
                     data={"sessions": ended})
    commit()
    return ended


# A readable name for a User-Agent ("Firefox on Linux"). Order matters: Edge and Opera say
# "Chrome", Chrome says "Safari", and iPhones say "Mac OS X".
_BROWSERS = (("Edg/", "Edge"), ("EdgA/", "Edge"), ("OPR/", "Opera"), ("Firefox/", "Firefox"),
             ("FxiOS/", "Firefox"), ("CriOS/", "Chrome"), ("Chromium/", "Chromium"), ("Chrome/", "Chrome"),
             ("Safari/", "Safari"))
_SYSTEMS = (("Android", "Android"), ("iPhone", "iOS"), ("iPad", "iPadOS"), ("Windows", "Windows"),
            ("Mac OS X", "macOS"), ("Macintosh", "macOS"), ("CrOS", "ChromeOS"), ("Linux", "Linux"))
_PRINTABLE = re.compile(r"[^\x20-\x7e]")


def describe_agent(user_agent: str | None) -> str:
    if not user_agent:
        return "Unknown browser"
    browser = next((name for mark, name in _BROWSERS if mark in user_agent), None)
    system = next((name for mark, name in _SYSTEMS if mark in user_agent), None)
    if browser and system:
        return f"{browser} on {system}"
    if browser or system:
        return browser or system
    return _PRINTABLE.sub("", user_agent)[:60] or "Unknown browser"
