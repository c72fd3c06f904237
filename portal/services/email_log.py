"""The staff Emails page's view of the delivery log, with secrets held back.

A delivery keeps its raw secrets (password-reset, invitation, portal sign-in
and guest pay tokens, listed in ``payload["redact"]``) until SMTP accepts it;
with no mail server it keeps them for good (``logged``), so that the owner can
read and click them. Everyone else sees each of those strings replaced by
``HIDDEN`` in the subject, the HTML and the text, whatever the status: a plain
staff user must not read the owner's reset link, nor a contact's sign-in link.
The owner's own reset link is also printed by ``flask portal reset-link``.

Pay links are held back too: staff can already open every invoice and send a
fresh link, so hiding them costs nothing, and a pay link is a bearer secret
that should reach only its recipient.

Every page that shows a delivery's content goes through ``page``/``get``: the
views never see the raw payload.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select

from portal.extensions import db
from portal.models import Delivery
from portal.services import mail

HIDDEN = "[link hidden]"


def sees_secrets(viewer) -> bool:
    """Only the owner reads secret links in the log (the recipient has them in their mailbox)."""
    return bool(getattr(viewer, "is_owner", False))


def _hide(value: str | None, secrets: list[str]) -> str:
    value = value or ""
    for secret in secrets:
        if secret:
            value = value.replace(secret, HIDDEN)
    return value


@dataclass(frozen=True)
class ShownEmail:
    """One delivery as a viewer may see it; has no ``payload``."""

    id: int
    kind: str
    template: str | None
    recipient: str
    subject: str
    html: str
    text: str
    status: str
    attempts: int
    max_attempts: int
    created_at: datetime
    sent_at: datetime | None
    next_attempt_at: datetime | None
    last_error: str | None
    hidden: bool  # some secret was held back from this viewer
    pdf: bool  # a PDF (invoice, credit note) was attached


def shown(delivery: Delivery, viewer) -> ShownEmail:
    payload = delivery.payload or {}
    secrets = [] if sees_secrets(viewer) else [s for s in (payload.get("redact") or []) if s]
    return ShownEmail(
        id=delivery.id,
        kind=delivery.kind,
        template=delivery.template,
        recipient=delivery.recipient,
        subject=_hide(delivery.subject, secrets),
        html=_hide(payload.get("html"), secrets),
        text=_hide(payload.get("text"), secrets),
        status=delivery.status,
        attempts=delivery.attempts,
        max_attempts=delivery.max_attempts,
        created_at=delivery.created_at,
        sent_at=delivery.sent_at,
        next_attempt_at=delivery.next_attempt_at,
        last_error=_hide(delivery.last_error, secrets) or None,
        hidden=bool(secrets),
        pdf=any(str(spec.get("type", "")).endswith("_pdf") for spec in (payload.get("attachments") or [])
                if isinstance(spec, dict)),
    )


class _ShownPage:
    """A page of the log (the pagination's numbers, the items as the viewer sees them)."""

    def __init__(self, pagination, viewer):
        self._pagination = pagination
        self.items = [shown(d, viewer) for d in pagination.items]

    def __getattr__(self, name):
        if name in {"page", "pages", "per_page", "total", "has_prev", "has_next", "prev_num", "next_num"}:
            return getattr(self._pagination, name)
        raise AttributeError(name)


def page(viewer, status: str | None = None, page: int = 1, per_page: int = 50, q: str | None = None) -> _ShownPage:
    """A page of the log; ``q`` searches recipient and subject (see ``list_emails``)."""
    return _ShownPage(list_emails(status=status, page=page, per_page=per_page, q=q), viewer)


def sender() -> str:
    """Who the emails come from, as shown on an email's page."""
    return mail.sender_text()




def get(viewer, delivery_id: int) -> ShownEmail | None:
    delivery = db.session.get(Delivery, delivery_id)
    if delivery is None or delivery.kind != "email":
        return None
    return shown(delivery, viewer)


# Reading the log (bounded: never a count or a sort of the whole table per request) ---------------

SEARCH_WINDOW = 10_000  # a search reads at most the latest this many emails (by primary key)
SEARCH_MAX = 100  # characters of search text


def list_emails(status: str | None = None, page: int = 1, per_page: int = 50, q: str | None = None):
    """A page of the email log, newest first. With ``q``, only emails whose recipient or subject
    contains it (any case), among the latest ``SEARCH_WINDOW`` emails: a bounded read, whatever
    the log's size."""
    query = select(Delivery).where(Delivery.kind == "email")
    if status:
        query = query.where(Delivery.status == status)
    q = (q or "").strip()[:SEARCH_MAX].lower()
    if q:
        window = (select(Delivery.id).where(Delivery.kind == "email").order_by(Delivery.id.desc())
                  .limit(SEARCH_WINDOW).subquery())
        query = query.where(Delivery.id.in_(select(window.c.id)), or_(
            func.lower(Delivery.recipient).contains(q, autoescape=True),
            func.lower(Delivery.subject).contains(q, autoescape=True)))
    return db.paginate(query.order_by(Delivery.id.desc()), page=page, per_page=per_page, error_out=False)


def counts_by_status() -> dict[str, int]:
    rows = db.session.execute(
        select(Delivery.status, func.count()).where(Delivery.kind == "email").group_by(Delivery.status)
    ).all()
    return {status: n for status, n in rows}


__all__ = ["HIDDEN", "SEARCH_MAX", "SEARCH_WINDOW", "ShownEmail", "counts_by_status", "get", "page", "sees_secrets",
           "sender", "shown"]
