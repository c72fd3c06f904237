"""R1 review fixes (drafts): a recurring cycle's draft, left for review ("review recurring invoices
before sending"), can't be deleted: its period is already counted as billed, so deleting it would
leave the period never billed. The editor offers no "Delete draft" for it and says what to do; a
POST to the delete URL is refused and the draft stays, still the period's invoice."""
from __future__ import annotations

import html
import re
from datetime import UTC, date, datetime

from sqlalchemy import select

from portal import clock
from portal.extensions import db
from portal.models import Invoice, SubscriptionPeriod
from portal.services import subscriptions
from tests.support.web import post_form

JUN_1 = datetime(2027, 6, 1, 12, tzinfo=UTC)


def flashes(response) -> str:
    page = response.get_data(as_text=True)
    return " ".join(html.unescape(m) for m in re.findall(r'<p class="flash flash-\w+">(.*?)</p>', page))


def test_a_subscription_draft_cannot_be_deleted(make, staff_client):
    make.business(name="Tidewater Studio", currency="EUR", timezone="UTC", review_recurring_invoices=True)
    client = make.client(currency="EUR")
    plan = make.plan("Hot desk", "120.00")
    with clock.frozen(JUN_1):
        sub = make.subscription(client, plan, start=date(2027, 6, 1))
        subscriptions.bill_subscription(sub.id, JUN_1)
    db.session.expire_all()
    [draft] = db.session.scalars(select(Invoice).where(Invoice.subscription_id == sub.id)).all()
    assert draft.status == "draft"
    plain = make.invoice(client, status="draft")  # an ordinary draft keeps its Delete button
    assert plain.status == "draft"

    editor = staff_client.get(f"/staff/invoices/{draft.id}")
    assert editor.status_code == 200
    page = html.unescape(editor.get_data(as_text=True))
    assert f"/staff/invoices/{draft.id}/delete" not in page and "Delete draft" not in page
    assert "a subscription's invoice for its period, so it can't be deleted" in page
    assert f"/staff/invoices/{plain.id}/delete" in staff_client.get(f"/staff/invoices/{plain.id}").get_data(as_text=True)

    refused = post_form(staff_client, f"/staff/invoices/{draft.id}/delete", follow_redirects=True)
    assert refused.status_code == 200
    assert ("This draft is a subscription's invoice for its period: send it, or edit its lines; "
            "to bill nothing for the period, finalize it and void it.") in flashes(refused)
    db.session.expire_all()
    assert db.session.get(Invoice, draft.id).status == "draft"
    period = db.session.scalar(select(SubscriptionPeriod).where(SubscriptionPeriod.subscription_id == sub.id))
    assert period.invoice_id == draft.id
