"""F4: the portal's invoice list, filtered by status (All / Due / Overdue / Paid / Cancelled).

Drafts and other clients' invoices never appear, whatever the filter; htmx swaps just the rows
(with the tabs, so the current one follows); pages keep the filter."""
from __future__ import annotations

import re

import pytest

from portal import clock
from portal.extensions import db
from portal.models import Invoice
from portal.services import invoices
from portal.services.events import Actor
from portal.services.scheduler import run_tick
from tests.support import make

STAFF = Actor("staff", None, "staff@portal.example")


def make_invoice(client_row, status: str, amount="100.00") -> Invoice:
    """An invoice in ``status``; "overdue" is an open one 5 days past due (the tick marks it)."""
    return make.invoice(client_row, amount, description=f"Work ({status})",
                        due_in_days=-5 if status == "overdue" else 30, status="open" if status == "overdue" else status)


STATUSES = ("open", "overdue", "paid", "void", "uncollectible", "draft")


@pytest.fixture
def setup(make, auth):
    make.business(name="Tidewater Studio", currency="EUR")
    contact = make.contact_with_login()
    other = make.client(name="Other Co", contacts=[{"name": "Olu", "email": "olu@other.example",
                                                   "receives_invoices": True}])
    mine = {status: make_invoice(contact.client, status) for status in STATUSES}
    theirs = {status: make_invoice(other, status) for status in STATUSES}
    run_tick(clock.now())  # the overdue ones become overdue
    db.session.expire_all()
    assert db.session.get(Invoice, mine["overdue"].id).status == "overdue"
    assert auth.login_contact().status_code == 302
    return {"mine": {k: (v.id, v.number) for k, v in mine.items()},
            "theirs": {k: (v.id, v.number) for k, v in theirs.items()}}


def listed_ids(body: str) -> set[int]:
    return {int(i) for i in re.findall(r'<th scope="row"><a href="/portal/invoices/(\d+)"', body)}


def current_tab(body: str) -> list[str]:
    return re.findall(r'<a href="[^"]*"[^>]*aria-current="page">([^<]+)</a>', body.split('id="invoice-rows"')[1])


EXPECTED = {
    None: {"open", "overdue", "paid", "void", "uncollectible"},
    "all": {"open", "overdue", "paid", "void", "uncollectible"},
    "due": {"open", "overdue", "uncollectible"},
    "overdue": {"overdue"},
    "paid": {"paid"},
    "cancelled": {"void"},
}
LABELS = {None: "All", "all": "All", "due": "Due", "overdue": "Overdue", "paid": "Paid", "cancelled": "Cancelled"}


@pytest.mark.parametrize("status", list(EXPECTED))
def test_each_filter_shows_its_invoices_and_never_drafts_or_other_clients(setup, client, status):
    url = "/portal/invoices" + (f"?status={status}" if status else "")
    response = client.get(url)
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert listed_ids(body) == {setup["mine"][s][0] for s in EXPECTED[status]}
    for _id, number in setup["theirs"].values():
        assert f"/portal/invoices/{_id}\"" not in body
    assert f'/portal/invoices/{setup["mine"]["draft"][0]}"' not in body
    assert current_tab(body) == [LABELS[status]]


def test_the_tabs_link_every_filter(setup, client):
    body = client.get("/portal/invoices").get_data(as_text=True)
    nav = body.split('aria-label="Show invoices"')[1].split("</nav>")[0]
    hrefs = re.findall(r'<a href="([^"]+)"', nav)
    assert hrefs == ["/portal/invoices", "/portal/invoices?status=due", "/portal/invoices?status=overdue",
                     "/portal/invoices?status=paid", "/portal/invoices?status=cancelled"]
    assert 'hx-target="#invoice-rows"' in nav and 'hx-push-url="true"' in nav


def test_htmx_gets_just_the_rows_with_the_tabs(setup, client):
    response = client.get("/portal/invoices?status=paid", headers={"HX-Request": "true"})
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert "<html" not in body and body.lstrip().startswith('<div id="invoice-rows">')
    assert listed_ids(body) == {setup["mine"]["paid"][0]}
    assert current_tab(body) == ["Paid"]


def test_an_unknown_status_shows_everything(setup, client):
    response = client.get("/portal/invoices?status=draft")
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert listed_ids(body) == {setup["mine"][s][0] for s in EXPECTED["all"]}
    assert current_tab(body) == ["All"]


def test_an_empty_filter_says_so(make, auth, client):
    make.business(name="Tidewater Studio", currency="EUR")
    contact = make.contact_with_login()
    make_invoice(contact.client, "open")
    auth.login_contact()
    body = client.get("/portal/invoices?status=paid").get_data(as_text=True)
    assert "No paid invoices yet." in body and listed_ids(body) == set()
    assert 'href="/portal/invoices">Show all invoices' in body


def test_pages_keep_the_filter(make, auth, client):
    make.business(name="Tidewater Studio", currency="EUR")
    contact = make.contact_with_login()
    paid = [make_invoice(contact.client, "paid", amount="10.00") for _ in range(invoices.PORTAL_PAGE_SIZE + 1)]
    opened = make_invoice(contact.client, "open")
    auth.login_contact()

    first = client.get("/portal/invoices?status=paid").get_data(as_text=True)
    assert len(listed_ids(first)) == invoices.PORTAL_PAGE_SIZE
    assert opened.id not in listed_ids(first)
    assert "Page 1 of 2" in first
    assert 'href="/portal/invoices?page=2&amp;status=paid"' in first

    second = client.get("/portal/invoices?page=2&status=paid", headers={"HX-Request": "true"})
    body = second.get_data(as_text=True)
    assert listed_ids(body) == {paid[0].id}  # the oldest
    assert 'href="/portal/invoices?page=1&amp;status=paid"' in body
    assert current_tab(body) == ["Paid"]

    everything = client.get("/portal/invoices").get_data(as_text=True)
    assert opened.id in listed_ids(everything)
    assert 'href="/portal/invoices?page=2"' in everything
