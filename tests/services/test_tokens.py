"""Single-use emailed secrets (portal/services/tokens.py), at the service level: only a SHA-256 of
the raw token is stored; a token opens only for its own purpose, before it expires, and once; a
revocation reaches only the principal and purpose named."""
from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from portal import clock
from portal.extensions import db
from portal.models import AuthToken
from portal.services import tokens
from tests.support import make

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)


@pytest.fixture
def staff(app):
    return make.staff()


@pytest.fixture
def namesake(staff):
    """A contact with the staff user's id: a principal is its kind and its id."""
    return SimpleNamespace(kind="contact", id=staff.id)


def issued(purpose, principal, ttl=HOUR, at=T0, by=None) -> str:
    with clock.frozen(at):
        raw = tokens.issue(purpose, principal, ttl, by)
    db.session.commit()
    return raw


def rows() -> list[AuthToken]:
    db.session.expire_all()
    return list(db.session.scalars(select(AuthToken).order_by(AuthToken.id)))


def usable(purpose, raw, at=T0 + timedelta(minutes=1)):
    with clock.frozen(at):
        return tokens.find_usable(purpose, raw)


# Issuing ----------------------------------------------------------------------------------------

def test_issue_stores_only_the_sha256_of_a_256_bit_url_safe_token(staff):
    raw = issued("password_reset", staff, by=staff.id)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", raw)  # 32 random bytes, URL-safe base64 without padding
    [row] = rows()
    assert row.token_hash == hashlib.sha256(raw.encode()).hexdigest() == tokens.token_hash(raw)
    assert (row.purpose, row.principal_kind, row.principal_id) == ("password_reset", "staff", staff.id)
    assert row.created_at == T0 and row.expires_at == T0 + HOUR
    assert row.used_at is None and row.revoked_at is None and row.created_by_staff_id == staff.id
    stored = [str(getattr(row, column.key)) for column in AuthToken.__table__.columns]
    assert not any(raw in value for value in stored), "the raw token must exist only in the email"


def test_every_issue_is_a_new_secret(staff):
    raws = {issued("password_reset", staff) for _ in range(20)}
    assert len(raws) == 20 and len({row.token_hash for row in rows()}) == 20


def test_issue_leaves_the_commit_to_the_caller(staff):
    tokens.issue("password_reset", staff, HOUR)
    db.session.rollback()
    assert rows() == []


# Finding -----------------------------------------------------------------------------------------

def test_find_usable_opens_the_live_token_for_its_own_purpose_only(staff):
    raw = issued("password_reset", staff)
    token = usable("password_reset", raw)
    assert token is not None and token.principal_id == staff.id
    assert usable("portal_invite", raw) is None
    assert usable("portal_link", raw) is None


@pytest.mark.parametrize("raw", ["", None, "x", "not-a-token", "A" * 43, "A" * 201, "%00", "' OR 1=1 --"])
def test_find_usable_refuses_unknown_empty_and_oversized_input(staff, raw):
    issued("password_reset", staff)
    assert usable("password_reset", raw) is None


def test_find_usable_refuses_the_stored_hash_itself(staff):
    """A leaked database opens nothing: the hash is not the token."""
    issued("password_reset", staff)
    [row] = rows()
    assert usable("password_reset", row.token_hash) is None


def test_a_token_expires_at_its_expiry_instant(staff):
    raw = issued("password_reset", staff, ttl=HOUR)
    assert usable("password_reset", raw, at=T0) is not None
    assert usable("password_reset", raw, at=T0 + HOUR - timedelta(microseconds=1)) is not None
    assert usable("password_reset", raw, at=T0 + HOUR) is None
    assert usable("password_reset", raw, at=T0 + timedelta(days=400)) is None


def test_used_and_revoked_tokens_are_refused(staff):
    used, revoked = issued("password_reset", staff), issued("portal_invite", staff)
    with clock.frozen(T0 + timedelta(minutes=1)):
        assert tokens.consume(tokens.find_usable("password_reset", used))
        tokens.revoke_all("portal_invite", staff)
    db.session.commit()
    assert usable("password_reset", used) is None
    assert usable("portal_invite", revoked) is None


# Single use ------------------------------------------------------------------------------------

def test_consume_marks_the_token_used_once(staff):
    raw = issued("password_reset", staff)
    token = usable("password_reset", raw)
    with clock.frozen(T0 + timedelta(minutes=2)):
        assert tokens.consume(token) is True
        assert tokens.consume(token) is False
    db.session.commit()
    [row] = rows()
    assert row.used_at == T0 + timedelta(minutes=2) and row.revoked_at is None


def test_of_two_requests_holding_the_same_token_only_the_first_consumes_it(app, staff):
    """Both found the token usable; the conditional UPDATE lets only one of them use it."""
    raw = issued("password_reset", staff)
    mine = usable("password_reset", raw)
    assert mine is not None
    with app.app_context():  # another request: its own session
        theirs = usable("password_reset", raw)
        assert theirs is not None and tokens.consume(theirs) is True
        db.session.commit()
    assert mine.used_at is None  # what this request read is stale …
    assert tokens.consume(mine) is False  # … and the UPDATE sees the other's commit
    db.session.commit()
    assert len([row for row in rows() if row.used_at is not None]) == 1


def test_a_token_revoked_after_it_was_found_cannot_be_consumed(app, staff):
    raw = issued("password_reset", staff)
    found = usable("password_reset", raw)
    with app.app_context():
        tokens.revoke_all("password_reset", staff)
        db.session.commit()
    assert tokens.consume(found) is False
    db.session.commit()
    [row] = rows()
    assert row.used_at is None and row.revoked_at is not None


# Revoking -----------------------------------------------------------------------------------------

def test_revoke_all_reaches_only_that_principal_and_purpose(staff, namesake):
    mine = [issued("password_reset", staff) for _ in range(2)]
    other_purpose = issued("portal_invite", staff)
    namesake_token = issued("password_reset", namesake)
    used = issued("password_reset", staff)
    with clock.frozen(T0 + timedelta(minutes=1)):
        assert tokens.consume(tokens.find_usable("password_reset", used))
    db.session.commit()

    with clock.frozen(T0 + timedelta(minutes=5)):
        tokens.revoke_all("password_reset", staff)
    db.session.commit()

    assert all(usable("password_reset", raw) is None for raw in mine)
    assert usable("portal_invite", other_purpose) is not None
    assert usable("password_reset", namesake_token) is not None  # same id, another kind
    by_hash = {row.token_hash: row for row in rows()}
    assert all(by_hash[tokens.token_hash(raw)].revoked_at == T0 + timedelta(minutes=5) for raw in mine)
    used_row = by_hash[tokens.token_hash(used)]
    assert used_row.revoked_at is None and used_row.used_at == T0 + timedelta(minutes=1)  # history kept


def test_revoke_all_with_nothing_to_revoke_is_harmless(staff):
    tokens.revoke_all("password_reset", staff)
    db.session.commit()
    assert rows() == []
