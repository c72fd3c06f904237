"""Guest links (``/pay/<token>``): 256-bit tokens, stored as SHA-256, revocable; the first view per
token records ``invoice.viewed``.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select, update

from portal import clock
from portal.billing import states
from portal.extensions import db
from portal.models import Invoice, InvoiceToken
from portal.services.errors import ServiceError
from portal.services.events import Actor, commit, record_event

# Guest tokens ------------------------------------------------------------------------------

def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def issue(invoice: Invoice) -> str:
    """A new 256-bit link token for this invoice; only its hash is stored."""
    if invoice.status == states.DRAFT:
        raise ServiceError("Drafts have no payment link.")
    raw = secrets.token_urlsafe(32)
    db.session.add(InvoiceToken(invoice_id=invoice.id, token_hash=token_hash(raw), created_at=clock.now()))
    return raw


def invoice_for_token(raw: str) -> Invoice | None:
    """The finalized invoice this live token opens, recording the first view; else None."""
    if not raw or len(raw) > 200:
        return None
    digest = token_hash(raw)
    token = db.session.scalar(select(InvoiceToken).where(InvoiceToken.token_hash == digest))
    if token is None or not hmac.compare_digest(token.token_hash, digest) or token.revoked_at is not None:
        return None
    invoice = db.session.get(Invoice, token.invoice_id)
    if invoice is None or invoice.status == states.DRAFT:
        return None
    if token.first_viewed_at is None:
        # Conditional: two first requests at once (a mail scanner and the person) record one view.
        first = db.session.execute(
            update(InvoiceToken).where(InvoiceToken.id == token.id, InvoiceToken.first_viewed_at.is_(None))
            .values(first_viewed_at=clock.now())
        ).rowcount == 1
        if first:
            record_event("invoice.viewed", "invoice", invoice.id, Actor("guest", None, "guest link"),
                         data={"token_id": token.id})
        commit()
    return invoice


def revoke(invoice: Invoice, actor: Actor) -> int:
    result = db.session.execute(
        update(InvoiceToken).where(InvoiceToken.invoice_id == invoice.id, InvoiceToken.revoked_at.is_(None))
        .values(revoked_at=clock.now())
    )
    record_event("invoice.links_revoked", "invoice", invoice.id, actor, data={"count": result.rowcount})
    commit()
    return result.rowcount
