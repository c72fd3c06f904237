"""R1, staff: the "Billing runs" page. Each run (when, trigger, subscriptions, invoices, caught up,
errors, duration, status); "Run billing now" starts one on the workers (a real Redis, the jobs run
here); while a run is going the page shows a progress bar that htmx polls every 2 s on the same URL,
which answers an htmx request with just the runs block, and stops polling once no run is going."""
from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from portal import clock
from portal.extensions import db
from portal.models import BillingRun, Invoice
from tests.support.jobs import run_jobs
from tests.support.web import post_form, text_of

NOW = datetime(2027, 7, 10, 10, tzinfo=UTC)
POLL = 'hx-trigger="every 2s"'


@pytest.fixture(autouse=True)
def frozen():
    with clock.frozen(NOW):
        yield


@pytest.fixture
def business(make):
    return make.business(name="Tidewater Studio", currency="EUR", locale="en_IE", timezone="Europe/Lisbon",
                         invoice_number_format="INV-{seq:04d}")


def runs() -> list[BillingRun]:
    with Session(db.engine) as s:
        rows = s.scalars(select(BillingRun).order_by(BillingRun.id)).all()
        s.expunge_all()
        return rows


def invoices() -> int:
    with Session(db.engine) as s:
        return s.scalar(select(func.count()).select_from(Invoice))


def body(response) -> str:
    return response.get_data(as_text=True)


def test_no_runs_yet_and_nothing_to_bill(staff_client, business):
    page = staff_client.get("/staff/billing-runs")
    assert page.status_code == 200
    assert "No billing runs yet." in body(page) and "Run billing now" in body(page)
    assert POLL not in body(page)
    response = post_form(staff_client, "/staff/billing-runs")
    assert response.status_code == 303
    assert "Nothing to bill" in text_of(staff_client.get("/staff/billing-runs"))
    assert runs() == []


def test_run_billing_now_shows_live_progress_until_done(staff_client, business, make):
    desk = make.plan("Hot desk", "120.00")
    for i in range(3):
        client = make.client(name=f"Client {i}", currency="EUR",
                             contacts=[{"name": "C", "email": f"c{i}@x.example", "receives_invoices": True}])
        make.subscription(client, desk, start=date(2027, 6, 1) if i == 0 else None)  # one is two periods behind
    assert staff_client.get("/staff/billing-runs").status_code == 200 and runs() == []  # a GET starts nothing

    response = post_form(staff_client, "/staff/billing-runs")
    assert response.status_code == 303 and response.headers["Location"].endswith("/staff/billing-runs")
    [run] = runs()
    assert (run.status, run.trigger, run.total, run.processed) == ("running", "staff", 3, 0)

    page = staff_client.get("/staff/billing-runs")
    html = body(page)
    assert "Billing run started: 3 subscriptions to bill." in text_of(page)
    assert re.search(r'<progress[^>]*value="0"[^>]*max="100"', html)
    assert POLL in html and 'hx-get="/staff/billing-runs"' in html
    # The poll: the same URL, for htmx just the block (no page around it), and caches told so.
    poll = staff_client.get("/staff/billing-runs", headers={"HX-Request": "true"})
    assert poll.status_code == 200
    assert "<html" not in body(poll) and "<nav" not in body(poll)
    assert body(poll).lstrip().startswith('<div id="billing-runs"') and POLL in body(poll)
    assert "0 of 3 subscriptions done (0%)" in text_of(poll)
    assert "HX-Request" in poll.headers.get("Vary", "")

    assert run_jobs() >= 1  # the workers bill the batch
    [run] = runs()
    assert (run.status, run.processed, run.invoices, run.caught_up, run.errors) == ("done", 3, 4, 2, 0)
    assert invoices() == 4
    poll = staff_client.get("/staff/billing-runs", headers={"HX-Request": "true"})
    assert POLL not in body(poll) and "<progress" not in body(poll)  # the bar stops polling
    row = re.search(rf'<tr id="run-{run.id}">.*?</tr>', body(poll), re.DOTALL).group(0)
    cells = [" ".join(re.sub(r"<[^>]+>", " ", c).split()) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.DOTALL)]
    assert cells[2:] == ["Staff", "3", "4", "2", "0", "0.0 s", "Done"]


def test_csrf_is_required(staff_client, business, make):
    make.subscription(make.client(currency="EUR"), make.plan())
    assert staff_client.post("/staff/billing-runs").status_code == 400
    assert runs() == []


def test_only_staff(client, business, make):
    assert client.get("/staff/billing-runs").status_code in (302, 401)
    contact = make.contact_with_login()
    post_form(client, "/portal/login", {"email": contact.email, "password": "client password 1"})
    assert client.get("/staff/billing-runs").status_code == 403
    assert post_form(client, "/staff/billing-runs").status_code == 403


def test_the_list_pages_and_reads_a_fixed_number_of_statements(staff_client, business):
    def add(count: int) -> None:
        for _ in range(count):
            db.session.add(BillingRun(trigger="tick", as_of=NOW, status="done", total=2, processed=2, invoices=2,
                                      started_at=NOW - timedelta(seconds=90), finished_at=NOW))
        db.session.commit()

    def statements() -> tuple[int, str]:
        staff_client.get("/staff/billing-runs")
        seen = []

        def listener(conn, cursor, statement, *args):
            seen.append(statement)

        event.listen(db.engine, "before_cursor_execute", listener)
        try:
            page = staff_client.get("/staff/billing-runs")
        finally:
            event.remove(db.engine, "before_cursor_execute", listener)
        return len(seen), body(page)

    add(2)
    few, _ = statements()
    add(40)
    many, page = statements()
    assert many == few
    assert len(re.findall(r'<tr id="run-', page)) == 25 and "1 min 30 s" in page
    older = body(staff_client.get("/staff/billing-runs?page=2"))
    assert len(re.findall(r'<tr id="run-', older)) == 17
    for hostile in ("abc", "²", "99999999999999999999999", "-1"):
        assert staff_client.get(f"/staff/billing-runs?page={hostile}").status_code == 200


def test_with_the_queue_down_the_page_says_so_instead_of_nothing_to_bill(staff_client, business, make, app,
                                                                          monkeypatch):
    desk = make.plan("Hot desk", "120.00")
    make.subscription(make.client(name="Acme", currency="EUR"), desk)
    monkeypatch.setitem(app.config, "REDIS_URL", "redis://127.0.0.1:9/0")  # nothing listens there
    response = post_form(staff_client, "/staff/billing-runs")
    assert response.status_code == 303
    monkeypatch.undo()
    page = text_of(staff_client.get("/staff/billing-runs"))
    assert "could not reach the workers" in page and "Nothing to bill" not in page
    [run] = runs()
    assert run.status == "interrupted" and invoices() == 0
