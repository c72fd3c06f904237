"""The upcoming-invoice notice (seed 003): N days before each cycle's invoice, one email per period.

``business.upcoming_notice_days`` = N (None: off). The tick's ``upcoming_notices`` step finds every
billable subscription (trialing or active) whose next invoice is made within N days, today excluded
(``today < next_invoice_on <= today + N``, the business's timezone; a bounded range read on
``ix_subscription_due``) and whose next period has had no notice yet (``noticed_period <
next_period``), and hands them to the workers in batches (``jobs.subscriptions.upcoming_notices``).
The job claims each subscription with a conditional UPDATE (``noticed_period = next_period WHERE
noticed_period < next_period``) in the same transaction as its emails (``upcoming_invoice``, to each
billing contact) and the ``subscription.upcoming_notice`` event: a second job, a retry or a second
tick sends nothing. So: one notice per period, ever.

The email gives the amount (``schedule.preview``, the billing run's own lines), the invoice date, the
service period, and either the saved method autopay will charge ("We will charge VISA •••• 4242":
autopay on for the subscription, else the client, and a default method that can pay the currency) or
"You will receive a payment link".

After downtime: a subscription whose invoice day has already come gets no notice (the billing run
bills it; the notice is for the period after, once it is within N days), so the backlog sends at most
one notice per subscription, for its next period, never for a period already invoiced.
"""
from __future__ import annotations

import hashlib
from datetime import date, datetime, timedelta

from babel.dates import format_date
from sqlalchemy import select, update

from portal import clock
from portal.extensions import db
from portal.models import Subscription
from portal.queues import enqueue_job
from portal.services import email_templates
from portal.services.business import get_business
from portal.services.events import Actor, commit, queue_email, record_event, rollback
from portal.services.formats import money
from portal.services.links import external_url
from portal.services.payment_methods import method_label, usable_method
from portal.services.subscriptions.billing import ACTIVE, today_at
from portal.services.subscriptions.schedule import period, preview

NOTICES = Actor("system", None, "upcoming-invoice notice")
MAX_PER_TICK = 5000
BATCH_SIZE = 100


def due(at: datetime, limit: int = MAX_PER_TICK) -> list[tuple[int, int]]:
    """(subscription id, next period) of the subscriptions whose notice is due as of ``at``."""
    days = get_business().upcoming_notice_days
    if not days:
        return []
    today = today_at(at)
    rows = db.session.execute(
        select(Subscription.id, Subscription.next_period).where(
            Subscription.next_invoice_on > today, Subscription.next_invoice_on <= today + timedelta(days=days),
            Subscription.status.in_(ACTIVE), Subscription.noticed_period < Subscription.next_period)
        .order_by(Subscription.next_invoice_on, Subscription.id).limit(limit)).all()
    rollback()
    return [(row[0], row[1]) for row in rows]


def _job_id(batch: list[tuple[int, int]]) -> str:
    """The same subscriptions at the same periods make the same id (not queued twice while waiting)."""
    digest = hashlib.sha1(",".join(f"{s}.{n}" for s, n in batch).encode()).hexdigest()[:16]
    return f"upcoming-notices-{batch[0][0]}-{len(batch)}-{digest}"


def tick_step(at: datetime) -> int:
    """Hand the subscriptions whose notice is due to the workers. Returns how many were handed over."""
    found = due(at)
    moment = clock.as_utc(at).isoformat()
    handed = 0
    for i in range(0, len(found), BATCH_SIZE):
        batch = found[i:i + BATCH_SIZE]
        if enqueue_job("portal.jobs.subscriptions.upcoming_notices", [s for s, _ in batch], moment,
                       job_id=_job_id(batch)):
            handed += len(batch)
    return handed


def send_notices(subscription_ids: list[int], at: datetime) -> int:
    """The job: each subscription's notice, once per period. Returns how many were sent."""
    return sum(notify(subscription_id, at) for subscription_id in subscription_ids)


def notify(subscription_id: int, at: datetime | None = None) -> bool:
    """Queue one subscription's upcoming-invoice notice if it is due and not yet given for its next
    period. Returns whether this call gave it."""
    at = clock.as_utc(at) if at else clock.now()
    business = get_business()
    days = business.upcoming_notice_days
    today = today_at(at)
    sub = db.session.get(Subscription, subscription_id, populate_existing=True)
    if (not days or sub is None or sub.status not in ACTIVE or sub.next_invoice_on is None
            or not today < sub.next_invoice_on <= today + timedelta(days=days)
            or sub.noticed_period >= sub.next_period):
        rollback()
        return False
    n = sub.next_period
    claimed = db.session.execute(
        update(Subscription).where(Subscription.id == sub.id, Subscription.next_period == n,
                                   Subscription.noticed_period < n, Subscription.status.in_(ACTIVE))
        .values(noticed_period=n).execution_options(synchronize_session=False))
    if claimed.rowcount != 1:
        rollback()
        return False
    upcoming = preview(sub, 1)
    amount = upcoming[0].amount if upcoming else 0
    method = charged_method(sub)
    variables = {
        "company_name": business.name,
        "amount_due": money(amount, sub.currency, business.locale),
        "invoice_date": _long(sub.next_invoice_on, business.locale),
        "service_period": period(sub, n).label(),
        "payment_method": method_label(method) if method is not None else "",
        "invoice_number": "", "due_date": "", "line_summary": "",
    }
    link = external_url("client.home")
    recipients = sub.client.billing_contacts
    event = record_event("subscription.upcoming_notice", "subscription", sub.id, NOTICES, data={
        "period_index": n, "invoice_on": sub.next_invoice_on.isoformat(), "amount": amount,
        "currency": sub.currency, "payment_method": variables["payment_method"] or None,
        "to": [c.email for c in recipients]})
    for contact in recipients:
        subject, body = email_templates.render("upcoming_invoice", {
            **variables, "customer_name": contact.name, "invoice_url": link, "pay_now_url": link})
        queue_email(contact.email, "templated",
                    {"business": business, "subject": subject, "body": body, "link": link,
                     "label": "View your account"},
                    event=event, subject_type="subscription", subject_id=sub.id)
    commit()
    return True


def charged_method(sub: Subscription):
    """The saved method autopay will charge for the subscription's next invoice, or None (a payment
    link will come): autopay on for the subscription (its override) or else the client, and a default
    method that can pay the currency."""
    enabled = sub.autopay if sub.autopay is not None else bool(sub.client.autopay)
    if not enabled:
        return None
    return usable_method(sub.client_id, sub.currency)


def _long(day: date, locale: str) -> str:
    return format_date(day, "long", locale=locale)
