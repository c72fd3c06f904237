"""Single-use secrets sent by email: password reset, portal invite, portal link.

The raw token (256 bits, URL-safe) exists only in the email; the database
holds its SHA-256, so a leaked database opens nothing.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from sqlalchemy import select, update

from portal import clock
from portal.extensions import db
from portal.models import AuthToken


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def issue(purpose: str, principal, ttl: timedelta, created_by_staff_id: int | None = None) -> str:
    raw = secrets.token_urlsafe(32)
    db.session.add(
        AuthToken(
            purpose=purpose,
            token_hash=token_hash(raw),
            principal_kind=principal.kind,
            principal_id=principal.id,
            created_at=clock.now(),
            expires_at=clock.now() + ttl,
            created_by_staff_id=created_by_staff_id,
        )
    )
    return raw


def find_usable(purpose: str, raw: str) -> AuthToken | None:
    """The live token for ``raw``, or None if unknown, used, revoked or expired."""
    if not raw or len(raw) > 200:
        return None
    digest = token_hash(raw)
    token = db.session.scalar(select(AuthToken).where(AuthToken.token_hash == digest))
    if token is None or not hmac.compare_digest(token.token_hash, digest):
        return None
    if token.purpose != purpose or not token.usable(clock.now()):
        return None
    return token


def consume(token: AuthToken) -> bool:
    """Mark used; False if another request used it first (single use under races)."""
    result = db.session.execute(
        update(AuthToken)
        .where(AuthToken.id == token.id, AuthToken.used_at.is_(None), AuthToken.revoked_at.is_(None))
        .values(used_at=clock.now())
    )
    return result.rowcount == 1


def revoke_all(purpose: str, principal) -> None:
    db.session.execute(
        update(AuthToken)
        .where(
            AuthToken.purpose == purpose,
            AuthToken.principal_kind == principal.kind,
            AuthToken.principal_id == principal.id,
            AuthToken.used_at.is_(None),
            AuthToken.revoked_at.is_(None),
        )
        .values(revoked_at=clock.now())
    )
