"""R1, staff: start a subscription from a client's page; its page (schedule for the next 12 periods,
invoices so far, timeline, last error, past-due notice); the actions (first invoice by hand, change
now or at renewal with the proration preview, pause, resume, cancel now or at period end, keep,
settings); the subscriptions list. Through HTTP, as staff use them: bad input is a field error (422)
and writes nothing, every change is a POST with CSRF, ids that name nothing are 404s, output is
escaped, and the pages read a fixed number of statements whatever the number of rows."""
from __future__ import annotations

import html
import re
from datetime import UTC, date, datetime

import pytest
from playwright.sync_api import expect
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from portal import clock
from portal.extensions import db
from portal.models import CreditNote, Event, Invoice, Subscription, SubscriptionCharge
from portal.services import subscriptions
from tests.support.make import STAFF
from tests.support.web import post_form, text_of

NOW = datetime(2027, 7, 10, 10, tzinfo=UTC)  # Saturday 10 Jul 2027 in Lisbon
XSS = "<script>alert(1)</script>"


@pytest.fixture(autouse=True)
def frozen():
    with clock.frozen(NOW):
        yield


@pytest.fixture
def business(make):
    return make.business(name="Tidewater Studio", currency="EUR", locale="en_IE", timezone="Europe/Lisbon",
                         invoice_number_format="INV-{seq:04d}")


@pytest.fixture
def acme(make, business):
    return make.client(currency="EUR")


@pytest.fixture
def desk(make, business):
    return make.plan("Hot desk", "120.00")


def fresh():
    return Session(db.engine)


def count(model) -> int:
    with fresh() as s:
        return s.scalar(select(func.count()).select_from(model))


def subs() -> list[Subscription]:
    with fresh() as s:
        rows = s.scalars(select(Subscription).order_by(Subscription.id)).all()
        for row in rows:
            row.items  # noqa: B018 - load them before the session closes
        s.expunge_all()
        return rows


def sub_events(sub_id: int) -> list[str]:
    with fresh() as s:
        return list(s.scalars(select(Event.type).where(Event.subject_type == "subscription",
                                                       Event.subject_id == sub_id).order_by(Event.id)))


def page_text(response) -> str:
    return response.get_data(as_text=True)


def field_error(page: str, field_id: str) -> str:
    match = re.search(rf'id="{re.escape(field_id)}-error"[^>]*>([^<]*)<', page)
    return html.unescape(match.group(1)).strip() if match else ""


def start_form(plan, **values) -> dict:
    data = {"items-0-plan_id": str(plan.id), "items-0-quantity": "2", "items-1-plan_id": "", "items-1-quantity": "",
            "start_date": "2027-07-10", "first_invoice": "auto", "autopay": "", "autopay_timing": "",
            "autopay_days_before": "", "ends_on": "", "max_cycles": "", "trial_days": ""}
    data.update(values)
    return data


def statements(staff_client, url: str) -> tuple[int, object]:
    staff_client.get(url)  # the session's once-a-minute "last seen" write happens here, not below
    seen: list[str] = []

    def note(conn, cursor, statement, *args):
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", note)
    try:
        response = staff_client.get(url)
    finally:
        event.remove(db.engine, "before_cursor_execute", note)
    assert response.status_code == 200
    return len(seen), response


def words(response) -> str:
    """The page's text, with a link inside parentheses read as it shows: "(INV-0001)"."""
    return re.sub(r"\( (.*?) \)", r"(\1)", text_of(response))


def bill(sub_id: int) -> None:
    subscriptions.bill_subscription(sub_id, NOW)
    db.session.expire_all()


# Starting one ---------------------------------------------------------------------------------------

def test_start_a_subscription_from_the_client_page(staff_client, acme, desk, make):
    make.plan("Dollar desk", "99.00", currency="USD")
    client_page = page_text(staff_client.get(f"/staff/clients/{acme.id}"))
    assert "Subscriptions" in client_page and "Start a subscription" in client_page
    form = page_text(staff_client.get(f"/staff/clients/{acme.id}/subscriptions/new"))
    assert "Hot desk — €120.00 every month" in form
    assert "Dollar desk" not in form  # only plans in the client's currency are offered
    assert "On the start date, automatically" in form and "I&#39;ll make the first invoice by hand" in form

    response = post_form(staff_client, f"/staff/clients/{acme.id}/subscriptions/new", start_form(desk))
    assert response.status_code == 303
    [sub] = subs()
    assert response.headers["Location"].endswith(f"/staff/subscriptions/{sub.id}")
    assert (sub.client_id, sub.status, sub.anchor, sub.next_invoice_on) == (
        acme.id, "active", date(2027, 7, 10), date(2027, 7, 10))
    assert [(i.plan_id, i.quantity) for i in sub.items] == [(desk.id, 2)]
    assert sub_events(sub.id) == ["subscription.created"]

    page = staff_client.get(response.headers["Location"])
    shown = text_of(page)
    assert "Subscription started." in shown
    # The next 12 periods: service period, invoice date, amount (the billing code's own numbers).
    schedule = re.search(r'<section id="schedule".*?</section>', page_text(page), re.DOTALL).group(0)
    assert len(re.findall(r"<tr><td>", schedule)) == 12
    assert "10 Jul – 9 Aug 2027" in schedule and "€240.00" in schedule and "10 Jun – 9 Jul 2028" in schedule
    assert "Started" in shown and "Autopay Off (the client&#39;s setting)" in page_text(page).replace("\n", " ") \
        or "Off (the client's setting)" in shown
    client_page = text_of(staff_client.get(f"/staff/clients/{acme.id}"))
    assert "Hot desk × 2" in client_page and "Active" in client_page


def test_add_another_plan_row_saves_nothing(staff_client, acme, desk):
    response = post_form(staff_client, f"/staff/clients/{acme.id}/subscriptions/new",
                         {**start_form(desk), "op": "add"})
    assert response.status_code == 200
    page = page_text(response)
    assert 'name="items-2-plan_id"' in page and 'name="items-0-quantity"' in page
    assert count(Subscription) == 0


def test_two_plans_on_one_subscription(staff_client, acme, desk, make):
    lockers = make.plan("Locker", "10.00")
    response = post_form(staff_client, f"/staff/clients/{acme.id}/subscriptions/new",
                         start_form(desk, **{"items-1-plan_id": str(lockers.id), "items-1-quantity": "3"}))
    assert response.status_code == 303
    [sub] = subs()
    assert [(i.plan_id, int(i.quantity)) for i in sub.items] == [(desk.id, 2), (lockers.id, 3)]
    assert "€270.00" in page_text(staff_client.get(f"/staff/subscriptions/{sub.id}"))


@pytest.mark.parametrize("values, field, message", [
    ({"items-0-quantity": "0"}, "items-0-quantity", "Use a quantity above 0 and at most 10,000, up to 3 decimals."),
    ({"items-0-quantity": "10001"}, "items-0-quantity", "Use a quantity above 0 and at most 10,000, up to 3 decimals."),
    ({"items-0-quantity": "-1"}, "items-0-quantity", None),
    ({"items-0-quantity": "9" * 40}, "items-0-quantity", None),
    ({"items-0-quantity": "abc"}, "items-0-quantity", None),
    ({"items-0-plan_id": "99999999999999999999999"}, "items-0-plan_id", "Choose an active plan."),
    ({"items-0-plan_id": "²"}, "items-0-plan_id", "Choose an active plan."),
    ({"start_date": "someday"}, "start_date", "Use a date like 2027-06-01."),
    ({"start_date": "2040-01-01"}, "start_date", "Start within the next ten years."),
    ({"first_invoice": "whenever"}, "first_invoice", None),
    ({"autopay": "maybe"}, "autopay", "Choose the client's setting, on or off."),
    ({"autopay_timing": "days_before_due", "autopay_days_before": "61"}, "autopay_days_before", "Use 0 to 60 days."),
    ({"ends_on": "2027-07-01"}, "ends_on", "The end date must be after the start."),
    ({"ends_on": "never"}, "ends_on", "Use a date like 2027-12-31."),
    ({"max_cycles": "0"}, "max_cycles", "Use 1 to 1000 cycles, or leave it blank."),
    ({"max_cycles": "1001"}, "max_cycles", "Use 1 to 1000 cycles, or leave it blank."),
    ({"trial_days": "731"}, "trial_days", "Use 0 to 730 days."),
])
def test_bad_input_is_a_field_error_and_nothing_is_written(staff_client, acme, desk, values, field, message):
    events_before = count(Event)
    response = post_form(staff_client, f"/staff/clients/{acme.id}/subscriptions/new", start_form(desk, **values))
    page = page_text(response)
    assert response.status_code == 422
    assert "Nothing was saved." in page
    if field == "first_invoice":
        assert "Choose how the first invoice is made." in page
    else:
        error = field_error(page, field)
        assert error, f"no message on {field}"
        if message:
            assert error == message
    assert count(Subscription) == 0 and count(Event) == events_before


def test_a_plan_in_another_currency_is_refused(staff_client, acme, make):
    dollars = make.plan("Dollar desk", "99.00", currency="USD")
    response = post_form(staff_client, f"/staff/clients/{acme.id}/subscriptions/new", start_form(dollars))
    assert response.status_code == 422
    assert field_error(page_text(response), "items-0-plan_id") == \
        "This plan is billed in USD; the client is billed in EUR."
    assert count(Subscription) == 0


def test_no_plan_at_all_is_refused(staff_client, acme, desk):
    response = post_form(staff_client, f"/staff/clients/{acme.id}/subscriptions/new",
                         start_form(desk, **{"items-0-plan_id": "", "items-0-quantity": ""}))
    assert response.status_code == 422
    assert "Add at least one plan." in page_text(response)
    assert count(Subscription) == 0


def test_a_start_date_in_the_past_asks_about_the_backlog(staff_client, acme, desk):
    url = f"/staff/clients/{acme.id}/subscriptions/new"
    response = post_form(staff_client, url, start_form(desk, start_date="2027-05-01"))
    page = page_text(response)
    assert response.status_code == 422
    assert "Bill every period since 1 May 2027" in page and "Start today instead" in page
    assert 'name="backlog" type="radio" value="bill"' in page or 'value="bill"' in page
    assert count(Subscription) == 0

    response = post_form(staff_client, url, start_form(desk, start_date="2027-05-01", backlog="now"))
    assert response.status_code == 303
    response = post_form(staff_client, url, start_form(desk, start_date="2027-05-01", backlog="bill"))
    assert response.status_code == 303
    today, backlog = subs()
    assert today.anchor == date(2027, 7, 10)
    assert (backlog.anchor, backlog.next_invoice_on) == (date(2027, 5, 1), date(2027, 5, 1))


def test_an_archived_client_cannot_start_one(staff_client, acme, desk):
    acme_row = db.session.get(type(acme), acme.id)
    acme_row.archived_at = NOW
    db.session.commit()
    response = post_form(staff_client, f"/staff/clients/{acme.id}/subscriptions/new", start_form(desk))
    assert response.status_code == 422
    assert "archived" in page_text(response)
    assert count(Subscription) == 0


# The page ----------------------------------------------------------------------------------------------

def test_the_page_shows_invoices_timeline_and_catch_up(staff_client, acme, desk, make):
    sub = make.subscription(acme, desk, start=date(2027, 5, 1))
    bill(sub.id)
    page = staff_client.get(f"/staff/subscriptions/{sub.id}")
    shown = words(page)
    invoices = db.session.scalars(select(Invoice).where(Invoice.subscription_id == sub.id)
                                  .order_by(Invoice.id)).all()
    assert len(invoices) == 3
    for inv in invoices:
        assert f'href="/staff/invoices/{inv.id}"' in page_text(page)
    assert "1 May – 31 May 2027" in shown and "1 Jul – 31 Jul 2027" in shown
    assert f"Invoiced 1 Jul – 31 Jul 2027 ({invoices[-1].number})" in shown
    assert "Caught up 3 periods" in shown
    # The schedule continues after the billed periods.
    schedule = re.search(r'<section id="schedule".*?</section>', page_text(page), re.DOTALL).group(0)
    assert "1 Aug – 31 Aug 2027" in schedule and "1 Jul – 31 Jul 2027" not in schedule


def test_last_error_and_past_due_are_shown(staff_client, acme, desk, make):
    sub = make.subscription(acme, desk)
    bill(sub.id)
    [held] = db.session.scalars(select(Invoice).where(Invoice.subscription_id == sub.id)).all()
    row = db.session.get(Subscription, sub.id)
    row.status, row.held_invoice_id = "past_due", held.id
    row.last_error, row.last_error_at = f"Tax rate gone {XSS}", NOW
    db.session.commit()
    page = page_text(staff_client.get(f"/staff/subscriptions/{sub.id}"))
    assert 'id="last-error"' in page and "Billing failed" in page and "Tax rate gone" in page
    assert XSS not in page
    past_due = re.search(r'<div class="flash flash-error" role="status" id="past-due">.*?</div>', page, re.DOTALL).group(0)
    assert f'href="/staff/invoices/{held.id}"' in past_due and held.number in past_due
    listing = page_text(staff_client.get("/staff/subscriptions?status=error"))
    assert f'id="subscription-{sub.id}"' in listing and "Billing failed" in listing


def test_the_page_reads_a_fixed_number_of_statements(staff_client, acme, desk, make):
    few_sub = make.subscription(acme, desk)
    bill(few_sub.id)
    many_sub = make.subscription(acme, desk, start=date(2026, 8, 1))  # a year of backlog
    bill(many_sub.id)
    assert db.session.scalar(select(func.count()).select_from(Invoice)
                             .where(Invoice.subscription_id == many_sub.id)) == 12
    few, _ = statements(staff_client, f"/staff/subscriptions/{few_sub.id}")
    many, page = statements(staff_client, f"/staff/subscriptions/{many_sub.id}")
    assert "Caught up 12 periods" in text_of(page)
    assert many == few, (few, many)
    assert many <= 20, many


@pytest.mark.parametrize("sub_id", ["abc", "99999999999999999999999", "0", "²", "424242"])
def test_ids_that_name_nothing_are_404(staff_client, acme, desk, make, sub_id):
    make.subscription(acme, desk)
    assert staff_client.get(f"/staff/subscriptions/{sub_id}").status_code == 404
    assert staff_client.get(f"/staff/subscriptions/{sub_id}/change").status_code == 404
    for action in ("pause", "resume", "keep", "cancel", "settings", "first-invoice", "change"):
        assert post_form(staff_client, f"/staff/subscriptions/{sub_id}/{action}",
                         {"when": "now"}).status_code == 404, action
    assert staff_client.get(f"/staff/clients/{sub_id}/subscriptions/new").status_code == 404


def test_staff_login_is_needed(client, make, acme, desk):
    sub = make.subscription(acme, desk)
    assert client.get(f"/staff/subscriptions/{sub.id}").status_code in (302, 401)
    contact = make.contact_with_login(email="ben@other.example", client_name="Other Ltd")
    post_form(client, "/portal/login", {"email": contact.email, "password": "client password 1"})
    assert client.get(f"/staff/subscriptions/{sub.id}").status_code == 403
    assert client.get("/staff/subscriptions").status_code == 403
    assert post_form(client, f"/staff/subscriptions/{sub.id}/pause").status_code == 403
    assert subs()[0].status == "active"


# Actions -----------------------------------------------------------------------------------------------

def test_get_never_changes_anything_and_csrf_is_required(staff_client, acme, desk, make):
    sub = make.subscription(acme, desk)
    for action in ("pause", "resume", "keep", "cancel", "settings", "first-invoice"):
        assert staff_client.get(f"/staff/subscriptions/{sub.id}/{action}").status_code == 405
        assert staff_client.post(f"/staff/subscriptions/{sub.id}/{action}",
                                 data={"when": "now"}).status_code == 400
    assert staff_client.post(f"/staff/clients/{acme.id}/subscriptions/new", data=start_form(desk)).status_code == 400
    staff_client.get(f"/staff/subscriptions/{sub.id}")
    staff_client.get(f"/staff/subscriptions/{sub.id}/change")
    assert count(Subscription) == 1 and subs()[0].status == "active"
    assert sub_events(sub.id) == ["subscription.created"]


def test_make_the_first_invoice_by_hand(staff_client, acme, desk, make):
    sub = make.subscription(acme, desk, start=date(2027, 7, 1), first_invoice="manual")
    page = page_text(staff_client.get(f"/staff/subscriptions/{sub.id}"))
    assert "Make the first invoice now" in page and "when you make it" in page
    response = post_form(staff_client, f"/staff/subscriptions/{sub.id}/first-invoice")
    assert response.status_code == 303
    [invoice] = db.session.scalars(select(Invoice).where(Invoice.subscription_id == sub.id)).all()
    assert invoice.issue_date == date(2027, 7, 10)
    page = text_of(staff_client.get(f"/staff/subscriptions/{sub.id}"))
    assert f"Invoice {invoice.number} made" in page and "First invoice made by hand" in page
    assert "Make the first invoice now" not in page
    # A second time is refused: the page again with the message, nothing made.
    response = post_form(staff_client, f"/staff/subscriptions/{sub.id}/first-invoice")
    assert response.status_code == 422
    assert "already made" in page_text(response)
    assert count(Invoice) == 1


def test_pause_resume_and_a_refused_pause(staff_client, acme, desk, make):
    sub = make.subscription(acme, desk)
    assert post_form(staff_client, f"/staff/subscriptions/{sub.id}/pause").status_code == 303
    assert subs()[0].status == "paused"
    page = text_of(staff_client.get(f"/staff/subscriptions/{sub.id}"))
    assert "Paused" in page and "Resume" in page
    response = post_form(staff_client, f"/staff/subscriptions/{sub.id}/pause")
    assert response.status_code == 422
    assert "Only an active subscription can be paused." in page_text(response)
    assert post_form(staff_client, f"/staff/subscriptions/{sub.id}/resume").status_code == 303
    assert subs()[0].status == "active"
    assert sub_events(sub.id) == ["subscription.created", "subscription.paused", "subscription.resumed"]


def test_cancel_at_period_end_then_keep(staff_client, acme, desk, make):
    sub = make.subscription(acme, desk)
    bill(sub.id)
    response = post_form(staff_client, f"/staff/subscriptions/{sub.id}/cancel", {"when": "period_end"})
    assert response.status_code == 303
    [row] = subs()
    assert row.cancel_at_period_end and row.ends_on == date(2027, 8, 10)
    page = text_of(staff_client.get(f"/staff/subscriptions/{sub.id}"))
    assert "Cancels at the end of the period" in page and "Set to cancel at the end of the period" in page
    # Saving the settings form as the page shows it keeps the cancellation.
    form = page_text(staff_client.get(f"/staff/subscriptions/{sub.id}"))
    typed = dict(re.findall(r'<input[^>]*name="(ends_on|max_cycles|autopay_days_before)"[^>]*value="([^"]*)"', form))
    assert typed["ends_on"] == "2027-08-10"
    assert post_form(staff_client, f"/staff/subscriptions/{sub.id}/settings",
                     {"autopay": "", "autopay_timing": "", **typed}).status_code == 303
    assert subs()[0].cancel_at_period_end
    assert post_form(staff_client, f"/staff/subscriptions/{sub.id}/keep").status_code == 303
    [row] = subs()
    assert not row.cancel_at_period_end and row.ends_on is None
    assert "Kept: it no longer cancels" in text_of(staff_client.get(f"/staff/subscriptions/{sub.id}"))


def test_cancel_now_with_credit_for_the_unused_part(staff_client, acme, desk, make):
    sub = make.subscription(acme, desk, start=date(2027, 7, 1))
    bill(sub.id)
    page = page_text(staff_client.get(f"/staff/subscriptions/{sub.id}"))
    cancel_now = re.search(r'<form[^>]*hx-confirm="Cancel subscription[^"]*"[^>]*>', page)
    assert cancel_now and "hx-disabled-elt" in cancel_now.group(0)  # asked first, busy while it runs
    assert "Credit the unused part of this period" in page
    response = post_form(staff_client, f"/staff/subscriptions/{sub.id}/cancel", {"when": "now", "credit_unused": "y"})
    assert response.status_code == 303
    [row] = subs()
    assert row.status == "cancelled"
    assert count(CreditNote) == 1
    page = text_of(staff_client.get(f"/staff/subscriptions/{sub.id}"))
    assert "Cancelled now" in page and "Nothing more to bill." in page
    # Already cancelled: refused, nothing changes.
    response = post_form(staff_client, f"/staff/subscriptions/{sub.id}/cancel", {"when": "now"})
    assert response.status_code == 422
    assert "already ended" in page_text(response)
    assert count(CreditNote) == 1


def test_a_bad_cancel_choice_is_refused(staff_client, acme, desk, make):
    sub = make.subscription(acme, desk)
    response = post_form(staff_client, f"/staff/subscriptions/{sub.id}/cancel", {"when": "tomorrow"})
    assert response.status_code == 422
    assert "Choose now or at the end of the period." in page_text(response)
    assert subs()[0].status == "active"


def test_settings(staff_client, acme, desk, make):
    sub = make.subscription(acme, desk)
    response = post_form(staff_client, f"/staff/subscriptions/{sub.id}/settings",
                         {"autopay": "on", "autopay_timing": "on_due_date", "autopay_days_before": "",
                          "ends_on": "2028-01-01", "max_cycles": "6"})
    assert response.status_code == 303
    [row] = subs()
    assert (row.autopay, row.autopay_timing, row.ends_on, row.max_cycles) == (True, "on_due_date",
                                                                               date(2028, 1, 1), 6)
    page = text_of(staff_client.get(f"/staff/subscriptions/{sub.id}"))
    assert "On (this subscription's setting)" in page and "On the due date" in page
    response = post_form(staff_client, f"/staff/subscriptions/{sub.id}/settings",
                         {"autopay": "on", "autopay_timing": "", "ends_on": "", "max_cycles": "0"})
    assert response.status_code == 422
    assert field_error(page_text(response), "max_cycles") == "Use 1 to 1000 cycles, or leave it blank."
    assert subs()[0].max_cycles == 6


def test_change_now_shows_the_proration_and_prorates(staff_client, acme, desk, make):
    sub = make.subscription(acme, desk, start=date(2027, 7, 1))  # Jul 1–31 billed; today Jul 10: 22 of 31 days left
    bill(sub.id)
    url = f"/staff/subscriptions/{sub.id}/change"
    form = page_text(staff_client.get(url))
    assert 'name="items-0-plan_id"' in form and f'value="{desk.id}" selected' in form
    typed = {"items-0-plan_id": str(desk.id), "items-0-quantity": "2", "when": "now"}
    preview = post_form(staff_client, url + "/preview", typed, htmx=True)
    assert preview.status_code == 200
    body = page_text(preview)
    assert "<html" not in body and 'id="proration"' in body  # just the block
    assert "Remaining time on Hot desk × 2 (10 Jul – 31 Jul 2027)" in html.unescape(body)
    assert "€85.16" in body  # 120.00 × 22/31, half up
    assert count(SubscriptionCharge) == 0  # a preview writes nothing
    assert post_form(staff_client, url, typed).status_code == 303
    [charge] = db.session.scalars(select(SubscriptionCharge)).all()
    assert charge.amount == 8516
    assert [int(i.quantity) for i in subs()[0].items] == [2]
    assert "Plans changed" in text_of(staff_client.get(f"/staff/subscriptions/{sub.id}"))


def test_change_at_renewal_and_bad_changes(staff_client, acme, desk, make):
    sub = make.subscription(acme, desk)
    bill(sub.id)
    url = f"/staff/subscriptions/{sub.id}/change"
    response = post_form(staff_client, url, {"items-0-plan_id": str(desk.id), "items-0-quantity": "0",
                                             "when": "now"})
    assert response.status_code == 422
    assert field_error(page_text(response), "items-0-quantity")
    response = post_form(staff_client, url, {"items-0-plan_id": str(desk.id), "items-0-quantity": "3",
                                             "when": "later"})
    assert response.status_code == 422
    assert "Choose now or at the next renewal." in page_text(response)
    assert subs()[0].pending_items is None and count(SubscriptionCharge) == 0
    response = post_form(staff_client, url, {"items-0-plan_id": str(desk.id), "items-0-quantity": "3",
                                             "when": "renewal"})
    assert response.status_code == 303
    page = text_of(staff_client.get(f"/staff/subscriptions/{sub.id}"))
    assert "At the next renewal: Hot desk × 3" in page and "Change scheduled for the next renewal" in page
    assert "€360.00" in page  # the schedule prices the change in


# The list --------------------------------------------------------------------------------------------

def test_the_list_filters_pages_and_reads_a_fixed_number_of_statements(staff_client, business, desk, make):
    clients = [make.client(name=f"Client {i:02d}", currency="EUR",
                           contacts=[{"name": "C", "email": f"c{i}@x.example", "receives_invoices": True}])
               for i in range(30)]
    made = [make.subscription(c, desk) for c in clients[:3]]
    few, page = statements(staff_client, "/staff/subscriptions")
    assert len(re.findall(r'<tr id="subscription-', page_text(page))) == 3
    made += [make.subscription(c, desk) for c in clients[3:]]
    subscriptions.pause(made[0].id, STAFF)
    many, page = statements(staff_client, "/staff/subscriptions")
    assert many == few, (few, many)
    rows = re.findall(r'<tr id="subscription-(\d+)"', page_text(page))
    assert len(rows) == 25 and int(rows[0]) == made[-1].id  # newest first
    assert "Billing runs" in page_text(page)
    older = re.search(r'href="(/staff/subscriptions\?before=\d+)"', page_text(page)).group(1)
    rest = re.findall(r'<tr id="subscription-(\d+)"', page_text(staff_client.get(older)))
    assert len(rest) == 5 and set(rows).isdisjoint(rest)
    paused = page_text(staff_client.get("/staff/subscriptions?status=paused"))
    assert re.findall(r'<tr id="subscription-(\d+)"', paused) == [str(made[0].id)]
    # The htmx filter gets just the rows.
    block = staff_client.get("/staff/subscriptions?status=paused", headers={"HX-Request": "true"})
    assert "<html" not in page_text(block) and 'id="subscription-rows"' in page_text(block)
    assert "HX-Request" in block.headers.get("Vary", "")
    for hostile in ("abc", "99999999999999999999999", "²", "-1"):
        assert staff_client.get(f"/staff/subscriptions?before={hostile}&status={hostile}").status_code == 200


def test_a_plan_name_is_escaped_on_every_page(staff_client, acme, make):
    plan = make.plan(XSS, "10.00")
    sub = make.subscription(acme, plan)
    bill(sub.id)
    subscriptions.change_items(sub.id, [{"plan_id": str(plan.id), "quantity": "2"}], "renewal", STAFF)
    for url in (f"/staff/subscriptions/{sub.id}", "/staff/subscriptions", f"/staff/clients/{acme.id}",
                f"/staff/clients/{acme.id}/subscriptions/new", f"/staff/subscriptions/{sub.id}/change",
                "/staff/catalogue/plans"):
        page = page_text(staff_client.get(url))
        assert XSS not in page, url
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page, url


# Phones ------------------------------------------------------------------------------------------------

FITS = """() => {
  const out = [];
  for (const el of document.body.querySelectorAll('*')) {
    const box = el.getBoundingClientRect();
    const spills = el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).overflowX === 'visible';
    if (box.right > window.innerWidth + 0.5 || spills) {
      out.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + '.' + el.className + ' right=' + Math.round(box.right) + ' sw=' + el.scrollWidth + ' cw=' + el.clientWidth);
    }
  }
  return {scroll: document.documentElement.scrollWidth, inner: window.innerWidth, out: out.slice(0, 12)};
}"""


@pytest.mark.browser
def test_every_page_fits_a_phone(page, live_server, business, make):
    """Every new staff page at 375 px (and 1280 px) without sideways scrolling: wide tables scroll
    inside their box, the page never does."""
    from portal.models import BillingRun

    long_name = "Acme Robotics and Industrial Automation Holdings Ltd"
    acme = make.client(name=long_name, currency="EUR")
    plan = make.plan("Coworking membership with meeting-room hours and a locker", "1249.99", setup_fee="250.00",
                     trial_days=0, self_serve=True)
    sub = make.subscription(acme, plan, start=date(2027, 3, 1), quantity="3")
    bill(sub.id)
    subscriptions.change_items(sub.id, [{"plan_id": str(plan.id), "quantity": "4"}], "renewal", STAFF)
    row = db.session.get(Subscription, sub.id)
    row.last_error, row.last_error_at = "TaxRateMissing: the tax rate of " + "a-very-long-word" * 8, NOW
    db.session.add(BillingRun(trigger="staff", as_of=NOW, status="running", total=300, processed=120,
                              invoices=118, caught_up=4, errors=2, started_at=NOW, heartbeat_at=NOW))
    db.session.commit()
    user = make.staff()
    page.goto("/staff/login")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill(user.plain_password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/staff/(\?.*)?$"))
    paths = ["/staff/catalogue/plans", "/staff/catalogue/plans/new", f"/staff/catalogue/plans/{plan.id}/edit",
             "/staff/subscriptions", f"/staff/clients/{acme.id}", f"/staff/clients/{acme.id}/subscriptions/new",
             f"/staff/subscriptions/{sub.id}", f"/staff/subscriptions/{sub.id}/change", "/staff/billing-runs"]
    too_wide = []
    for width in (375, 1280):
        page.set_viewport_size({"width": width, "height": 800})
        for path in paths:
            response = page.goto(path)
            assert response is not None and response.status == 200, path
            page.evaluate("document.querySelectorAll('main details').forEach(d => d.open = true)")
            found = page.evaluate(FITS)
            if found["scroll"] > found["inner"]:
                too_wide.append(f"{path} at {width}: {found}")
    assert not too_wide, "\n".join(too_wide)

    # The change form: htmx previews the proration as it changes (nothing saved); the button still
    # posts the change itself.
    page.goto(f"/staff/subscriptions/{sub.id}/change")
    page.wait_for_load_state("load")
    page.get_by_label("Quantity 1").fill("5")
    page.get_by_label("Quantity 1").dispatch_event("change")
    expect(page.locator("#proration .proration-preview")).to_be_visible()
    assert subs()[0].pending_items == [{"plan_id": plan.id, "quantity": "4"}]
    page.get_by_label("At the next renewal").check()
    page.get_by_role("button", name="Change plans").click()
    page.wait_for_url(re.compile(rf"/staff/subscriptions/{sub.id}$"))
    expect(page.locator("#pending-change")).to_contain_text("× 5")
