"""The expiring-card notice. The tick decides (``enqueue_expiring``) and enqueues one job per card;
the job claims the card with a conditional UPDATE (``expiry_notified_at IS NULL``) committed with its
emails, so two ticks or a retried job never send it twice.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select, update

from portal import clock
from portal.extensions import db
from portal.models import Client, PaymentMethod
from portal.queues import enqueue_job
from portal.services import email_templates
from portal.services.events import SYSTEM, commit, queue_email, record_event, rollback
from portal.services.links import external_url
from portal.services.payment_methods.saved import describe
from portal.services.settings import get_business

BATCH = 500  # cards told per tick at most (the rest the next minute)


# Expiring cards (the tick) ------------------------------------------------------------------------

def expiring_cards(at: datetime) -> list[int]:
    """The tick's decision: saved cards that expire (at the end of their expiry month, in the
    business's timezone) within ``Business.card_expiry_notice_days`` of ``at`` and were not told yet."""
    business = get_business()
    horizon = (clock.as_utc(at) + timedelta(days=business.card_expiry_notice_days)).astimezone(
        ZoneInfo(business.timezone))
    # A card good through month M expires when month M+1 begins; that is before the horizon
    # exactly when M is before the horizon's month.
    month_index = horizon.year * 12 + horizon.month
    return list(db.session.scalars(
        select(PaymentMethod.id).where(
            PaymentMethod.type == "card", PaymentMethod.removed_at.is_(None),
            PaymentMethod.expiry_notified_at.is_(None), PaymentMethod.exp_year.is_not(None),
            PaymentMethod.exp_month.is_not(None),
            PaymentMethod.exp_year * 12 + PaymentMethod.exp_month < month_index,
        ).order_by(PaymentMethod.id).limit(BATCH)))


def enqueue_expiring(at: datetime) -> int:
    """The tick's ``expiring_cards`` step: one job per card to tell (``notify_expiring_card``,
    job id ``card-expiring-<id>``, retried with backoff). Returns how many were handed over."""
    due = expiring_cards(at)
    db.session.rollback()  # only read
    return sum(enqueue_job("portal.jobs.payment_methods.notify_expiring", method_id, clock.as_utc(at).isoformat(),
                           job_id=f"card-expiring-{method_id}") for method_id in due)


def notify_expiring_card(method_id: int, at: datetime) -> bool:
    """The job: the ``payment_method_expiring`` email to the client's billing contacts, once per card.
    The card is claimed with a conditional UPDATE committed together with its emails, so a repeated
    job or tick never sends twice. Returns whether this call sent it."""
    business = get_business()
    claimed = db.session.execute(
        update(PaymentMethod).where(PaymentMethod.id == method_id, PaymentMethod.expiry_notified_at.is_(None),
                                    PaymentMethod.removed_at.is_(None))
        .values(expiry_notified_at=clock.as_utc(at)).execution_options(synchronize_session=False))
    if claimed.rowcount != 1:
        rollback()
        return False
    method = db.session.get(PaymentMethod, method_id, populate_existing=True)
    client = db.session.get(Client, method.client_id)
    link = external_url("client.payment_methods")
    extra = f"\n\n{describe(method)}."
    if client.autopay and method.is_default:
        extra += " Autopay charges this card: add a new one before it expires so your payments keep going through."
    for contact in [c for c in client.contacts if c.receives_invoices]:
        variables = {"customer_name": contact.name, "company_name": business.name, "invoice_number": "",
                     "amount_due": "", "due_date": "", "invoice_url": link, "pay_now_url": link}
        subject, body = email_templates.render("payment_method_expiring", variables)
        queue_email(contact.email, "templated",
                    {"business": business, "subject": subject, "body": body + extra, "link": link,
                     "label": "Update your payment methods"},
                    subject_type="client", subject_id=client.id)
    record_event("payment_method.expiry_notified", "client", client.id, SYSTEM,
                 data={"payment_method_id": method.id, "description": describe(method)})
    commit()
    return True
