"""Row locks, in the one order every money path takes them.

The order: subscription → invoices (ascending id) → payment rows → client → business (numbering). A path that needs
several takes them in that order, and never takes an earlier kind after a later one, so two paths
cannot deadlock. Each lock re-reads the row (``populate_existing``): a row already in the session
shows what the previous lock holder committed.
"""
from __future__ import annotations

from sqlalchemy import select

from portal.extensions import db
from portal.models import Business, Client, Invoice, Payment, Subscription
from portal.services.errors import NotFound


def for_update(query, skip_locked: bool = False):
    """``query`` (a select) that locks the rows it reads and refreshes them in the session: the one
    way a service locks rows; the helpers below are it for one row of each kind. ``skip_locked``
    leaves out rows another transaction holds (a billing run's batch: another worker has them)."""
    return query.with_for_update(skip_locked=skip_locked).execution_options(populate_existing=True)


def invoice(invoice_id: int) -> Invoice:
    found = db.session.scalar(for_update(select(Invoice).where(Invoice.id == invoice_id)))
    if found is None:
        raise NotFound("No such invoice.")
    return found


def invoices(invoice_ids) -> list[Invoice]:
    """The invoices that exist among ``invoice_ids``, locked in ascending id order (returned in it)."""
    ids = sorted(set(invoice_ids))
    if not ids:
        return []
    return list(db.session.scalars(for_update(select(Invoice).where(Invoice.id.in_(ids)).order_by(Invoice.id))))


def payment(payment_id: int) -> Payment | None:
    return db.session.scalar(for_update(select(Payment).where(Payment.id == payment_id)))


def client(client_id: int) -> Client:
    """Every spend of a client's credit balance takes this before reading the balance, after the
    invoices' locks (never before)."""
    found = db.session.scalar(for_update(select(Client).where(Client.id == client_id)))
    if found is None:
        raise NotFound("No such client.")
    return found


def business() -> Business | None:
    return db.session.scalar(for_update(select(Business).order_by(Business.id).limit(1)))


def subscription(subscription_id: int) -> Subscription:
    """Billing a period and every change to a subscription take this first, before any invoice."""
    found = db.session.scalar(for_update(select(Subscription).where(Subscription.id == subscription_id)))
    if found is None:
        raise NotFound("No such subscription.")
    return found
