"""The billing run's fast path (``subscriptions/bulk.py``) writes what the one-by-one path writes:
the same invoice, lines, period row, events and deliveries; and it leaves to the one-by-one path
every subscription it can't bill plainly."""
from datetime import date, datetime, timezone

from sqlalchemy import func, select

from portal import clock

RUN_AT = datetime(2027, 3, 1, 9, tzinfo=timezone.utc)


def _db():
    from portal.extensions import db

    db.session.rollback()
    db.session.expire_all()
    return db


def _invoice_of(sub_id):
    from portal.models import Invoice

    return _db().session.scalar(select(Invoice).where(Invoice.subscription_id == sub_id))


def _shape(invoice):
    """What must match between the two paths (ids, numbers and the client aside)."""
    from portal.models import Delivery, Event, InvoiceToken, SubscriptionPeriod

    db = _db()
    columns = ("status", "currency", "issue_date", "due_date", "payment_terms_days", "memo", "footer", "subtotal",
               "discount_total", "tax_total", "included_tax_total", "total", "amount_paid", "credit_applied",
               "credit_noted", "amount_due", "tax_breakdown", "bill_from", "autopay_on")
    lines = [(ln.position, ln.description, ln.quantity, ln.unit_price, ln.tax_name, ln.tax_percent, ln.gross, ln.net,
              ln.tax_amount, ln.total, ln.period_start, ln.period_end) for ln in invoice.lines]
    events = sorted(db.session.scalars(select(Event.type).where(Event.subject_type == "invoice",
                                                                Event.subject_id == invoice.id)))
    period = db.session.scalar(select(SubscriptionPeriod).where(SubscriptionPeriod.invoice_id == invoice.id))
    mails = db.session.scalars(select(Delivery).where(Delivery.subject_type == "invoice",
                                                      Delivery.subject_id == invoice.id)).all()
    tokens = db.session.scalar(select(func.count()).select_from(InvoiceToken)
                               .where(InvoiceToken.invoice_id == invoice.id))
    return {
        "invoice": {c: getattr(invoice, c) for c in columns}, "bill_to_keys": sorted(invoice.bill_to),
        "lines": lines, "events": events, "tokens": tokens,
        "period": (period.period_index, period.period_start, period.period_end, period.invoice_on),
        "mails": [(m.template, m.status, m.payload["attachments"][0]["type"], "Pay invoice" in m.payload["html"],
                   m.event_id is not None) for m in mails],
    }


def test_bulk_and_one_by_one_write_the_same_invoice(app, make):
    from portal.services import subscriptions
    from portal.services.subscriptions import billing, bulk

    make.business(currency="EUR", timezone="Europe/Lisbon")
    vat = make.tax_rate()
    desk = make.plan("Hot desk", "120.00", tax_rate=vat)
    lockers = make.plan("Locker", "9.99")
    with clock.frozen(datetime(2027, 2, 1, 9, tzinfo=timezone.utc)):
        subs = []
        for name, email in (("Acme Ltd", "ana@acme.example"), ("Bravo Ltd", "ana@bravo.example")):
            client = make.client(name, contacts=[{"name": "Ana", "email": email, "receives_invoices": True}],
                                 currency="EUR")
            subs.append(make.subscription(client, [(desk, "2"), (lockers, "1.5")], start=date(2027, 3, 1)))
    fast, slow = subs
    with clock.frozen(RUN_AT):
        made, rest = bulk.bill_plain([fast.id], RUN_AT, None)
        assert (made, rest) == (1, [])
        assert billing.bill_subscription(slow.id, RUN_AT).invoices == 1
    a, b = _invoice_of(fast.id), _invoice_of(slow.id)
    assert a.sequence_number + 1 == b.sequence_number  # gapless across the two paths
    assert _shape(a) == _shape(b)
    from portal.models import Delivery

    for invoice in (a, b):  # the number, never a stand-in, in every part of the email
        [mail] = _db().session.scalars(select(Delivery).where(Delivery.subject_id == invoice.id)).all()
        parts = (mail.subject, mail.payload["subject"], mail.payload["text"], mail.payload["html"])
        assert invoice.number in mail.payload["text"] and invoice.number in mail.payload["html"]
        assert not any(bulk._STAND_IN in text for text in parts)
        assert mail.payload["attachments"] == [{"type": "invoice_pdf", "invoice_id": invoice.id}]
        assert mail.subject.replace(invoice.number, "N") == _db().session.scalars(select(Delivery.subject).where(
            Delivery.subject_id == (b.id if invoice is a else a.id))).one().replace(
            (b if invoice is a else a).number, "N")
    assert a.total == 2 * 12000 + 5520 + 1499  # VAT 23 % of 240.00; 9.99 × 1.5 = 14.985 → 14.99 (half up)
    db = _db()
    from portal.models import Subscription

    for sub_id in (fast.id, slow.id):
        row = db.session.get(Subscription, sub_id)
        assert (row.next_period, row.next_invoice_on) == (1, date(2027, 4, 1))
    # Billing again makes nothing on either path.
    with clock.frozen(RUN_AT):
        assert subscriptions.bill_batch(None, [fast.id, slow.id], RUN_AT)["invoices"] == 0


def test_bulk_leaves_what_is_not_plain_to_the_one_by_one_path(app, make):
    from portal.extensions import db
    from portal.models import SubscriptionCharge
    from portal.services import subscriptions
    from portal.services.subscriptions import bulk

    make.business(currency="EUR")
    desk = make.plan("Hot desk", "120.00")
    with_fee = make.plan("Studio", "50.00", setup_fee="25.00")
    with clock.frozen(datetime(2027, 1, 1, 9, tzinfo=timezone.utc)):
        plain = make.subscription(make.client("Plain", currency="EUR"), desk, start=date(2027, 3, 1))
        backlog = make.subscription(make.client("Backlog", currency="EUR"), desk, start=date(2027, 1, 1))
        fee = make.subscription(make.client("Fee", currency="EUR"), with_fee, start=date(2027, 3, 1))
        autopay = make.subscription(make.client("Auto", currency="EUR"), desk, start=date(2027, 3, 1), autopay="on")
        waiting = make.subscription(make.client("Waiting", currency="EUR"), desk, start=date(2027, 3, 1))
    db.session.add(SubscriptionCharge(subscription_id=waiting.id, description="Remaining time", amount=500))
    db.session.commit()
    ids = [plain.id, backlog.id, fee.id, autopay.id, waiting.id]
    with clock.frozen(RUN_AT):
        made, rest = bulk.bill_plain(ids, RUN_AT, None)
    assert made == 1 and sorted(rest) == sorted(ids[1:])
    with clock.frozen(RUN_AT):
        totals = subscriptions.bill_batch(None, rest, RUN_AT)
    # backlog: Jan, Feb and Mar; the others their first period.
    assert totals["invoices"] == 3 + 1 + 1 + 1
    assert _invoice_of(waiting.id).lines[-1].unit_price == 500
    assert any(ln.description.startswith("Setup") for ln in _invoice_of(fee.id).lines)


def test_a_staff_edited_invoice_email_is_rendered_with_the_number(app, make):
    from portal.models import Delivery
    from portal.services import email_templates
    from portal.services.subscriptions import bulk
    from tests.support.make import STAFF

    make.business(currency="EUR")
    email_templates.save("invoice_issued", "Bill {{ invoice_number|lower }} is ready",
                         "Hello {{ customer_name }}, {{ invoice_number|title }}: {{ pay_now_url }}", STAFF)
    desk = make.plan("Hot desk", "120.00")
    with clock.frozen(datetime(2027, 2, 1, 9, tzinfo=timezone.utc)):
        sub = make.subscription(make.client("Acme Ltd", currency="EUR"), desk, start=date(2027, 3, 1))
    with clock.frozen(RUN_AT):
        assert bulk.bill_plain([sub.id], RUN_AT, None) == (1, [])
    invoice = _invoice_of(sub.id)
    [mail] = _db().session.scalars(select(Delivery).where(Delivery.subject_id == invoice.id)).all()
    assert mail.subject == f"Bill {invoice.number.lower()} is ready"
    assert invoice.number.title() in mail.payload["text"]
