"""The billing run's fast path: the plain subscriptions of a batch, billed together in one transaction.

Most subscriptions of a run are billed the same way: one period due, its plan lines and nothing else
(no proration charge waiting, no open charges to gather, no setup fee, no credit to apply, no autopay,
no pending change, no review). ``bill_plain`` bills those in bulk and hands back the rest, which
``billing.bill_subscription`` bills one by one. Same rules, same rows as the one-by-one path:
lines from ``schedule.item_lines``, totals from ``billing.invoice_math.compute`` (as ``recompute``),
gapless numbers from ``numbering.take_many`` (the same business-row lock as ``take``), the same events
(``invoice.created``, ``invoice.finalized``, ``invoice.sent``, ``subscription.invoiced``), a guest link
and one delivery per billing contact rendered as ``invoices.send`` renders them, and the same
``subscription_period`` row, unique per subscription and period start.

The batch's subscriptions are locked ``FOR UPDATE SKIP LOCKED`` (PostgreSQL): a row another worker
holds is left to the one-by-one path, which waits for it and finds it billed. Any error rolls the
whole batch back (numbers included) and the one-by-one path takes every subscription of it, so a
fault costs speed, never an invoice.
"""
from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta

from markupsafe import escape
from sqlalchemy import func, insert, select
from sqlalchemy.orm import selectinload

from portal import clock
from portal.billing import states
from portal.billing.invoice_math import compute
from portal.extensions import db
from portal.models import (
    Charge,
    Client,
    CreditEntry,
    Delivery,
    Event,
    Invoice,
    InvoiceLine,
    InvoiceToken,
    Subscription,
    SubscriptionCharge,
    SubscriptionItem,
    SubscriptionPeriod,
)
from portal.services import deliveries, email_templates, invoices, locks, numbering
from portal.services.business import get_business
from portal.services.events import email_fields, event_fields, rollback
from portal.services.guest_links import token_hash
from portal.services.invoice_documents import (
    email_variables,
    snapshot_business,
    snapshot_client,
)
from portal.services.links import external_url
from portal.services.subscriptions.billing import ACTIVE, RUNNER, today_at
from portal.services.subscriptions.schedule import (
    invoice_date,
    item_lines,
    next_invoice_on,
    period,
)

log = logging.getLogger(__name__)
# Stands for the invoice number in an email rendered before the number is taken: digits only, so
# neither HTML escaping nor the default template changes it; replaced once the number is known.
_STAND_IN = "7305194826" + "".join(secrets.choice("0123456789") for _ in range(14))


def _email(business, contact, transient: Invoice, pay_url: str, raw: str, render_one) -> dict:
    """The delivery row of one billing contact's invoice email (``invoice_id`` set later)."""
    subject, body = render_one(email_variables(transient, contact.name, pay_url))
    return email_fields(contact.email, "templated",
                        {"business": business, "subject": subject, "body": body, "link": pay_url,
                         "label": "Pay invoice"},
                        "invoice", None, redact=[raw], attachments=[{"type": "invoice_pdf", "invoice_id": None}])


def _numbered(mail: dict, stand_in: str | None, number: str, invoice_id: int, event_id: int) -> dict:
    """``mail`` with its invoice's id, its event, and the number in place of the stand-in."""
    row = dict(mail, subject_id=invoice_id, event_id=event_id)
    payload = dict(mail["payload"], attachments=[{"type": "invoice_pdf", "invoice_id": invoice_id}])
    if stand_in is not None:
        row["subject"] = mail["subject"].replace(stand_in, number)
        payload["subject"] = payload["subject"].replace(stand_in, number)
        payload["text"] = payload["text"].replace(stand_in, number)
        payload["html"] = payload["html"].replace(stand_in, str(escape(number)))
    row["payload"] = payload
    return row


def _exclusions(subs: list[Subscription]) -> set[int]:
    """Ids of subscriptions that need the one-by-one path (a few set queries for the whole batch)."""
    ids = [s.id for s in subs]
    client_ids = sorted({s.client_id for s in subs})
    out: set[int] = set(db.session.scalars(select(SubscriptionCharge.subscription_id).where(
        SubscriptionCharge.subscription_id.in_(ids), SubscriptionCharge.invoice_id.is_(None))))
    out |= set(db.session.scalars(select(Invoice.subscription_id).where(
        Invoice.subscription_id.in_(ids), Invoice.status.in_(states.PAYABLE), Invoice.amount_due > 0,
        Invoice.autopay_attempted_at.is_not(None))))
    gathering = set(db.session.scalars(select(Charge.client_id).where(
        Charge.client_id.in_(client_ids), Charge.status == "open")))
    credit = {(row[0], row[1]) for row in db.session.execute(
        select(CreditEntry.client_id, CreditEntry.currency).where(CreditEntry.client_id.in_(client_ids))
        .group_by(CreditEntry.client_id, CreditEntry.currency).having(func.sum(CreditEntry.amount) > 0))}
    for sub in subs:
        client = sub.client
        autopay = sub.autopay if sub.autopay is not None else client.autopay
        if (autopay or (client.charges_billing == "next_cycle" and client.id in gathering)
                or (client.id, sub.currency) in credit):
            out.add(sub.id)
    return out


def _plain(sub: Subscription, today) -> bool:
    n = sub.next_period
    if sub.status not in ACTIVE or sub.held_invoice_id is not None or sub.pending_items:
        return False
    due_on = invoice_date(sub, n)
    if due_on is None or due_on > today or sub.next_invoice_on is None:
        return False
    if invoice_date(sub, n + 1) <= today or next_invoice_on(sub, n + 1) is None:
        return False  # a backlog, or the term ends: the one-by-one path
    return not (n == 0 and any(item.plan is not None and item.plan.setup_fee for item in sub.items))


def bill_plain(subscription_ids: list[int], at: datetime, run_id: int | None) -> tuple[int, list[int]]:
    """Bill the plain subscriptions among ``subscription_ids`` as of ``at``. Returns (invoices made,
    the ids left for the one-by-one path)."""
    business = get_business()
    if business.review_recurring_invoices or not subscription_ids:
        return 0, list(subscription_ids)
    try:
        made, rest = _bill(sorted(set(subscription_ids)), at, run_id, business)
    except Exception:
        rollback()
        log.exception("bulk billing of %d subscriptions failed; billing them one by one", len(subscription_ids))
        return 0, list(subscription_ids)
    return made, rest


def _bill(ids: list[int], at: datetime, run_id: int | None, business) -> tuple[int, list[int]]:
    run_day = today_at(at)
    subs = db.session.scalars(locks.for_update(
        select(Subscription).where(Subscription.id.in_(ids)).order_by(Subscription.id), skip_locked=True)
        .options(selectinload(Subscription.items).selectinload(SubscriptionItem.plan),
                 selectinload(Subscription.items).selectinload(SubscriptionItem.tax_rate),
                 selectinload(Subscription.client).selectinload(Client.contacts))).all()
    excluded = _exclusions(subs) if subs else set()
    plain = [s for s in subs if s.id not in excluded and _plain(s, run_day)]
    if not plain:
        rollback()
        return 0, ids
    now = clock.now()
    today = clock.today(business.timezone)
    bill_from = snapshot_business(business)
    subject_source, body_source, customised = email_templates.current("invoice_issued")
    render_one = email_templates.renderer("invoice_issued")
    # The gapless numbers lock the business row until the commit: everything that does not need a
    # number (totals, rows, and the emails, rendered with a stand-in number when the template is
    # ours) is made before they are taken, so other workers wait only for the inserts.
    stand_in = None if customised else _STAND_IN

    # Before the numbers ---------------------------------------------------------------------------
    built = []
    for sub in plain:
        client = sub.client
        n = sub.next_period
        p = period(sub, n)
        specs = item_lines(sub.items, p)
        totals = compute([spec.rule() for spec in specs])
        terms = invoices.defaults(client, business)
        contacts = client.billing_contacts
        row = {
            "client_id": client.id, "status": states.transition(states.DRAFT, "finalize"), "number": None,
            "sequence_number": None, "currency": sub.currency, "issue_date": today,
            "due_date": today + timedelta(days=terms["payment_terms_days"] or 0),
            "payment_terms_days": terms["payment_terms_days"], "memo": terms["memo"], "footer": terms["footer"],
            "subtotal": totals.subtotal, "discount_total": totals.discounts, "tax_total": totals.taxes,
            "included_tax_total": totals.included_taxes, "total": totals.total, "amount_paid": 0,
            "credit_applied": 0, "credit_noted": 0, "amount_due": totals.total,
            "tax_breakdown": [{"name": t.name, "percent": str(t.percent), "inclusive": t.inclusive, "base": t.base,
                               "amount": t.amount} for t in totals.tax_breakdown],
            "bill_to": snapshot_client(client), "bill_from": bill_from, "subscription_id": sub.id,
            "created_at": now, "updated_at": now, "finalized_at": now, "sent_at": now if contacts else None,
        }
        transient = Invoice(currency=row["currency"], amount_due=row["amount_due"], due_date=row["due_date"])
        for spec, result in zip(specs, totals.lines):
            transient.lines.append(InvoiceLine(description=spec.description, net=result.net))
        raw = pay_url = None
        mails = []
        if contacts:
            raw = secrets.token_urlsafe(32)
            pay_url = external_url("pay.invoice", token=raw)
            if stand_in is not None:
                transient.number = stand_in
                mails = [_email(business, contact, transient, pay_url, raw, render_one) for contact in contacts]
        built.append((sub, n, p, specs, totals, contacts, row, transient, raw, pay_url, mails))

    # The numbers, then the rows ---------------------------------------------------------------------
    numbers = numbering.take_many("invoice", len(plain))
    for (seq, number), item in zip(numbers, built):
        item[6]["sequence_number"], item[6]["number"] = seq, number
    invoice_ids = list(db.session.execute(
        insert(Invoice.__table__).returning(Invoice.__table__.c.id, sort_by_parameter_order=True),
        [item[6] for item in built]).scalars())

    line_rows, period_rows, token_rows, event_rows, sent = [], [], [], [], []
    for invoice_id, (sub, n, p, specs, totals, contacts, row, transient, raw, pay_url, mails) in zip(invoice_ids,
                                                                                                    built):
        for position, (spec, result) in enumerate(zip(specs, totals.lines)):
            line_rows.append({
                "invoice_id": invoice_id, "position": position, "description": spec.description,
                "quantity": spec.quantity, "unit_price": spec.unit_price, "service_id": spec.service_id,
                "charge_id": None, "period_start": spec.period.start if spec.period else None,
                "period_end": spec.period.last_day if spec.period else None,
                **invoices.tax_columns(spec.tax_rate), "discount_kind": None, "discount_percent": None,
                "discount_fixed": None, "gross": result.gross, "discount_amount": result.discount,
                "net": result.net, "tax_amount": result.tax, "total": result.total})
        period_rows.append({"subscription_id": sub.id, "period_index": n, "period_start": p.start,
                            "period_end": p.end, "invoice_on": invoice_date(sub, n), "invoice_id": invoice_id,
                            "billing_run_id": run_id, "caught_up": False, "created_at": now})
        event_rows.append(event_fields("invoice.created", "invoice", invoice_id, RUNNER,
                                       data={"client_id": sub.client_id, "subscription_id": sub.id,
                                             "period": p.label(), "charges": []}))
        event_rows.append(event_fields("invoice.finalized", "invoice", invoice_id, RUNNER,
                                       before={"status": states.DRAFT},
                                       after={"status": row["status"], "number": row["number"],
                                              "total": row["total"], "currency": row["currency"]}))
        if contacts:
            token_rows.append({"invoice_id": invoice_id, "token_hash": token_hash(raw), "created_at": now})
            event_rows.append(event_fields("invoice.sent", "invoice", invoice_id, RUNNER,
                                           data={"to": [c.email for c in contacts]}))
            transient.number = row["number"]
            if not mails:  # a staff-edited template: rendered now, with the number
                mails = [_email(business, contact, transient, pay_url, raw, render_one) for contact in contacts]
            sent.append((len(event_rows) - 1, invoice_id, row["number"], mails))
        event_rows.append(event_fields("subscription.invoiced", "subscription", sub.id, RUNNER, data={
            "period_index": n, "period": p.label(), "invoice_id": invoice_id, "number": row["number"],
            "total": row["total"], "currency": row["currency"], "late": False, "draft": False,
            "items_changed": False, "run_id": run_id}))
        sub.next_period = n + 1
        sub.next_invoice_on = next_invoice_on(sub, n + 1)
        if sub.status == "trialing":
            sub.status = "active"
        sub.last_error = None
        sub.last_error_at = None
    db.session.execute(insert(SubscriptionPeriod.__table__), period_rows)  # the exactly-once rows first
    db.session.execute(insert(InvoiceLine.__table__), line_rows)
    if token_rows:
        db.session.execute(insert(InvoiceToken.__table__), token_rows)
    event_ids = list(db.session.execute(
        insert(Event.__table__).returning(Event.__table__.c.id, sort_by_parameter_order=True), event_rows).scalars())

    # One delivery per billing contact, as invoices.send queues them ------------------------------------
    delivery_rows = []
    for event_index, invoice_id, number, mails in sent:
        for mail in mails:
            delivery_rows.append(_numbered(mail, stand_in, number, invoice_id, event_ids[event_index]))
    if delivery_rows:
        delivery_ids = list(db.session.execute(
            insert(Delivery.__table__).returning(Delivery.__table__.c.id, sort_by_parameter_order=True),
            delivery_rows).scalars())
        deliveries.note_inserted(delivery_ids)
    done = {sub.id for sub in plain}  # read before the commit expires them
    db.session.commit()
    return len(plain), [i for i in ids if i not in done]
