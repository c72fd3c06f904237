"""F4: restricting clients with an invoice overdue more than N days.

The tick restricts from N+1 days overdue (in the business's timezone) and lifts what is clear;
paying lifts it at once (staff's manual payment, the contact's card in the portal); the portal
shows every contact of the client a banner and refuses the actions staff chose, never paying."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from portal import clock
from portal.extensions import db
from portal.models import Client, Contact, Event, Invoice
from portal.services import invoices, restrictions
from portal.services.errors import ServiceError
from portal.services.events import Actor
from portal.services.passwords import hash_password
from portal.services.scheduler import run_tick
from tests.support import make
from tests.support.web import csrf_token, post_form, text_of

STAFF = Actor("staff", None, "staff@portal.example")
VISA = "4242 4242 4242 4242"
BANNER = "Your account is restricted because of overdue invoices."


def today() -> date:
    return clock.today("UTC")


def noon(day: date) -> datetime:
    return datetime.combine(day, time(12), tzinfo=timezone.utc)


def client_row(client_id: int) -> Client:
    db.session.expire_all()
    return db.session.get(Client, client_id)


def events(type_: str, client_id: int) -> list[Event]:
    return list(db.session.scalars(select(Event).where(Event.type == type_, Event.subject_type == "client",
                                                       Event.subject_id == client_id).order_by(Event.id)))


def login(app, email, password):
    browser = app.test_client()
    response = post_form(browser, "/portal/login", {"email": email, "password": password})
    assert response.status_code == 302, response.get_data(as_text=True)
    return browser


@pytest.fixture
def setup(make):
    """A contact's client with one invoice 11 days overdue today, the rule at 10 days; another
    client with nothing overdue."""
    make.business(name="Tidewater Studio", currency="EUR", restrict_overdue_days=10,
                  restrict_actions=["payment_methods", "profile"])
    make.owner()
    contact = make.contact_with_login()
    late = make.invoice(contact.client, due=today() - timedelta(days=11))
    other = make.client(name="Other Co", contacts=[{"name": "Olu", "email": "olu@other.example",
                                                   "receives_invoices": True}])
    make.invoice(other, due=today() + timedelta(days=5))
    db.session.commit()
    return {"contact": contact, "client_id": contact.client_id, "late": late.id, "late_number": late.number,
            "other_id": other.id}


def restrict_now(setup) -> None:
    run_tick(clock.now())
    assert client_row(setup["client_id"]).access_restricted is True


# The rule, driven by the tick ------------------------------------------------------------------

def test_restriction_comes_on_at_n_plus_one_days_overdue_not_at_n(make, cli):
    """Due on D with N = 10: still allowed through the whole of D+10 in the business's timezone
    (New York here), restricted from the start of D+11 there, even though UTC is a day ahead."""
    make.business(currency="EUR", timezone="America/New_York", restrict_overdue_days=10)
    client = make.client()
    due = today() - timedelta(days=40)
    invoice = make.invoice(client, due=due)
    new_york = ZoneInfo("America/New_York")

    run_tick(datetime.combine(due + timedelta(days=1), time(12), tzinfo=new_york))
    db.session.expire_all()
    assert db.session.get(Invoice, invoice.id).status == "overdue"
    assert client_row(client.id).access_restricted is False

    late_on_day_n = datetime.combine(due + timedelta(days=10), time(23, 30), tzinfo=new_york)
    assert late_on_day_n.astimezone(timezone.utc).date() == due + timedelta(days=11)  # UTC's day N+1
    assert run_tick(late_on_day_n)["restrictions"] == 0
    assert client_row(client.id).access_restricted is False

    start_of_day_n1 = datetime.combine(due + timedelta(days=11), time(0, 5), tzinfo=new_york)
    result = cli.invoke(args=["portal", "tick", "--at", start_of_day_n1.isoformat()])
    assert result.exit_code == 0, result.output
    assert "restrictions=1" in result.output
    row = client_row(client.id)
    assert row.access_restricted is True
    assert row.restricted_at == start_of_day_n1.astimezone(timezone.utc)
    [event] = events("client.restricted", client.id)
    assert event.actor_kind == "system"
    assert event.data["overdue_days"] == 10 and event.data["invoice_ids"] == [invoice.id]


def test_the_tick_is_idempotent_and_touches_only_far_overdue_clients(setup):
    result = run_tick(clock.now())
    assert result["restrictions"] == 1
    assert run_tick(clock.now())["restrictions"] == 0
    assert len(events("client.restricted", setup["client_id"])) == 1
    assert client_row(setup["client_id"]).access_restricted is True
    assert client_row(setup["other_id"]).access_restricted is False


def test_nothing_owed_drafts_and_the_rule_off_never_restrict(make):
    make.business(currency="EUR", restrict_overdue_days=None)
    client = make.client()
    make.invoice(client, due=today() - timedelta(days=200))
    run_tick(clock.now())
    assert client_row(client.id).access_restricted is False

    make.business(restrict_overdue_days=5)
    paid_client = make.client(name="Paid Co", contacts=[{"name": "P", "email": "p@paid.example",
                                                         "receives_invoices": True}])
    paid = make.invoice(paid_client, due=today() - timedelta(days=30))
    make.payment(paid, "100.00")
    make.invoice(paid_client, "5", description="x", due=today() - timedelta(days=30), status="draft")
    run_tick(clock.now())
    assert client_row(paid_client.id).access_restricted is False
    assert client_row(client.id).access_restricted is True  # now the rule is on


def test_the_tick_lifts_when_the_owner_turns_the_rule_off(setup, make, client, auth):
    restrict_now(setup)
    owner = auth.login_staff("owner@portal.example", "correct horse battery")
    assert owner.status_code == 302
    form = {"name": "Tidewater Studio", "brand_color": "#3355cc", "currency": "EUR", "timezone": "UTC",
            "locale": "en_US", "invoice_number_format": "INV-{year}-{seq:05d}", "payment_terms": "net",
            "payment_terms_days": "30", "accept_card": "y", "restrict_overdue_days": "",
            "credit_note_number_format": "CN-{year}-{seq:05d}", "card_expiry_notice_days": "30",
            "autopay_timing": "on_issue"}
    response = post_form(client, "/staff/settings", form)
    assert response.status_code == 302, response.get_data(as_text=True)
    assert client_row(setup["client_id"]).access_restricted is True  # until the tick runs

    assert run_tick(clock.now())["restrictions"] == 1
    row = client_row(setup["client_id"])
    assert row.access_restricted is False and row.restricted_at is None
    [event] = events("client.unrestricted", setup["client_id"])
    assert event.data["reason"] == "rule_off"


def test_the_tick_lifts_when_the_limit_grows_or_the_invoice_is_cancelled(setup, make):
    restrict_now(setup)
    make.business(restrict_overdue_days=30)
    assert run_tick(clock.now())["restrictions"] == 1
    assert client_row(setup["client_id"]).access_restricted is False

    make.business(restrict_overdue_days=10)
    restrict_now(setup)
    invoices.void(db.session.get(Invoice, setup["late"]), STAFF, "sent by mistake")
    run_tick(clock.now())
    assert client_row(setup["client_id"]).access_restricted is False
    assert [e.data["reason"] for e in events("client.unrestricted", setup["client_id"])] == \
        ["no_longer_overdue", "no_longer_overdue"]


# Paying lifts it at once ---------------------------------------------------------------------------

def test_staff_manual_payment_lifts_at_once_only_when_nothing_far_overdue_is_left(setup):
    second = make.invoice(client_row(setup["client_id"]), "50.00", due=today() - timedelta(days=12))
    restrict_now(setup)

    invoices.record_manual_payment(db.session.get(Invoice, setup["late"]), "40.00", "wire", "", "", STAFF)
    assert client_row(setup["client_id"]).access_restricted is True, "a part payment leaves it overdue"
    invoices.record_manual_payment(db.session.get(Invoice, setup["late"]), "60.00", "wire", "", "", STAFF)
    assert client_row(setup["client_id"]).access_restricted is True, "another invoice is still far overdue"

    invoices.record_manual_payment(db.session.get(Invoice, second.id), "50.00", "wire", "", "", STAFF)
    row = client_row(setup["client_id"])
    assert row.access_restricted is False and row.restricted_at is None
    [event] = events("client.unrestricted", setup["client_id"])
    assert event.actor_kind == "staff" and event.data["reason"] == "paid"
    assert run_tick(clock.now())["restrictions"] == 0


def test_paying_by_card_in_the_portal_lifts_at_once_even_with_every_action_blocked(setup, make, app):
    make.business(restrict_actions=list(restrictions.RESTRICTABLE))
    restrict_now(setup)
    browser = login(app, "ana@acme.example", "client password 1")
    assert BANNER in text_of(browser.get("/portal/"))

    page = browser.get(f"/portal/invoices/{setup['late']}")
    assert page.status_code == 200 and 'name="card_number"' in page.get_data(as_text=True)
    response = browser.post(f"/portal/invoices/{setup['late']}/pay", data={
        "method": "card", "card_number": VISA, "expiry": "12/34", "cvc": "123",
        "csrf_token": csrf_token(browser, "/portal/")})
    assert response.status_code == 303, response.get_data(as_text=True)

    db.session.expire_all()
    assert db.session.get(Invoice, setup["late"]).status == "paid"
    assert client_row(setup["client_id"]).access_restricted is False
    [event] = events("client.unrestricted", setup["client_id"])
    assert event.data["reason"] == "paid"
    assert BANNER not in text_of(browser.get("/portal/invoices"))


def test_lift_if_clear_leaves_an_unrestricted_client_alone(setup):
    assert restrictions.lift_if_clear(setup["client_id"], STAFF) is False
    restrict_now(setup)
    assert restrictions.lift_if_clear(setup["client_id"], STAFF) is False  # still far overdue
    db.session.rollback()
    assert events("client.unrestricted", setup["client_id"]) == []


# What a restriction blocks -------------------------------------------------------------------------

def test_ensure_allowed_blocks_the_chosen_actions_and_never_paying(setup, make):
    client = client_row(setup["client_id"])
    restrictions.ensure_allowed(client, "payment_methods")  # not restricted: allowed

    restrict_now(setup)
    client = client_row(setup["client_id"])
    with pytest.raises(ServiceError) as refused:
        restrictions.ensure_allowed(client, "payment_methods")
    assert refused.value.message == ("Your account is restricted because of overdue invoices. "
                                     "Please pay your overdue invoices to add or remove payment methods again.")
    with pytest.raises(ServiceError):
        restrictions.ensure_allowed(client, "profile")
    restrictions.ensure_allowed(client, "autopay")  # not chosen
    restrictions.ensure_allowed(client, "new_subscriptions")
    make.business(restrict_actions=list(restrictions.RESTRICTABLE))
    for never in ("pay", "pay_all", "view_invoices"):
        restrictions.ensure_allowed(client_row(setup["client_id"]), never)


def test_a_restricted_contact_is_refused_a_blocked_portal_action_but_can_still_pay(setup, app):
    """Through the portal: adding a card is blocked (staff chose "payment methods"), paying is not."""
    from portal.models import PaymentMethod

    restrict_now(setup)
    browser = login(app, "ana@acme.example", "client password 1")
    response = browser.post("/portal/payment-methods/add", data={
        "method": "card", "card_number": VISA, "expiry": "12/34", "cvc": "123",
        "csrf_token": csrf_token(browser, "/portal/")})
    assert response.status_code == 422
    assert ("Your account is restricted because of overdue invoices. Please pay your overdue invoices to add or "
            "remove payment methods again.") in text_of(response)
    assert db.session.scalars(select(PaymentMethod)).all() == []

    response = browser.post(f"/portal/invoices/{setup['late']}/pay", data={
        "method": "card", "card_number": VISA, "expiry": "12/34", "cvc": "123",
        "csrf_token": csrf_token(browser, "/portal/")})
    assert response.status_code == 303
    assert client_row(setup["client_id"]).access_restricted is False
    response = browser.post("/portal/payment-methods/add", data={
        "method": "card", "card_number": VISA, "expiry": "12/34", "cvc": "123",
        "csrf_token": csrf_token(browser, "/portal/")})
    assert response.status_code == 303, "lifted: allowed again"


def test_a_restricted_contact_cannot_change_the_profile_when_staff_blocked_it(setup, app):
    from portal.models import Contact

    restrict_now(setup)
    browser = login(app, "ana@acme.example", "client password 1")
    response = browser.post("/portal/profile", data={"name": "Someone Else", "phone": "",
                                                     "csrf_token": csrf_token(browser, "/portal/")})
    assert response.status_code == 422
    assert "Please pay your overdue invoices to" in text_of(response)
    db.session.expire_all()
    assert db.session.get(Contact, setup["contact"].id).name == "Ana Ribeiro"


# What people see -----------------------------------------------------------------------------------

def test_the_banner_shows_to_every_contact_of_the_client_and_to_no_one_else(setup, app, make):
    restrict_now(setup)
    db.session.add(Contact(client_id=setup["client_id"], name="Ben Okafor", email="ben@acme.example",
                           portal_access=True, password_hash=hash_password("client password 2")))
    outsider = make.contact_with_login(email="zoe@zed.example", password="client password 3", client_name="Zed Ltd")
    db.session.commit()

    for email, password in (("ana@acme.example", "client password 1"), ("ben@acme.example", "client password 2")):
        browser = login(app, email, password)
        for url in ("/portal/", "/portal/invoices", "/portal/payments", "/portal/profile"):
            page = browser.get(url)
            assert page.status_code == 200, url
            text = text_of(page)
            assert BANNER in text, (email, url)
            assert f"overdue more than 10 days: {setup['late_number']} (€100.00, due" in text
            assert "you can't add or remove payment methods or change your profile" in text
            assert "You can still pay at any time" in text
        html = browser.get("/portal/").get_data(as_text=True)
        assert 'href="/portal/invoices?status=due"' in html
        assert f'href="/portal/invoices/{setup["late"]}"' in html

    other = login(app, outsider.email, "client password 3")
    for url in ("/portal/", "/portal/invoices"):
        assert BANNER not in text_of(other.get(url))


def test_an_unrestricted_client_sees_no_banner(setup, app):
    browser = login(app, "ana@acme.example", "client password 1")
    assert BANNER not in text_of(browser.get("/portal/"))


def test_the_staff_client_page_shows_the_restriction(setup, staff_client):
    page = staff_client.get(f"/staff/clients/{setup['client_id']}")
    assert 'class="badge badge-failed badge-restricted"' not in page.get_data(as_text=True)

    restrict_now(setup)
    page = staff_client.get(f"/staff/clients/{setup['client_id']}")
    html = page.get_data(as_text=True)
    assert 'class="badge badge-failed badge-restricted">Restricted<' in html
    text = text_of(page)
    assert "Restricted in the portal since" in text
    assert f"Why: an invoice is overdue more than 10 days: {setup['late_number']} " in text
    assert "€100.00 still owed" in text
    assert f'<a href="/staff/invoices/{setup["late"]}">{setup["late_number"]}</a>' in html
    assert "they can't: add or remove payment methods; change their portal profile." in text
    assert "They can always pay" in text
    other = staff_client.get(f"/staff/clients/{setup['other_id']}")
    assert "badge-restricted" not in other.get_data(as_text=True)


# Concurrency (PostgreSQL) ----------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["card", "manual"])
def test_a_tick_during_a_payment_does_not_restrict_the_client_who_is_paying(setup, make, app, db_kind,
                                                                            monkeypatch, path):
    """The payment holds the client's row until it commits; the tick waits for it, then reads the
    invoices again and sees them paid. (A manual payment's new row already holds the client through
    its foreign key; a card payment only updates rows, so the explicit lock is what holds it.)"""
    if db_kind != "postgresql":
        pytest.skip("row locks under real concurrency are PostgreSQL's; SQLite serialises writers")
    import threading

    from portal.models import Payment
    from portal.services import invoices as invoice_service
    from portal.services import payments

    make.business(restrict_overdue_days=None)
    run_tick(clock.now())  # overdue now, but the rule is off: not restricted
    make.business(restrict_overdue_days=10)
    invoice_id, client_id = setup["late"], setup["client_id"]
    payment_id = payments.start_payment(invoice_id).id if path == "card" else None
    db.session.remove()

    from portal.services.invoices import manual_payments
    from portal.services.payments import outcomes

    module = outcomes if path == "card" else manual_payments  # where each path commits
    real_commit = module.commit
    holding, go = threading.Event(), threading.Event()

    def slow_commit():
        if threading.current_thread().name == "payer":
            holding.set()
            go.wait(timeout=10)
        real_commit()

    monkeypatch.setattr(module, "commit", slow_commit)
    errors: list[BaseException] = []

    def in_app(fn):
        def run():
            with app.app_context():
                try:
                    fn()
                except BaseException as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)
                finally:
                    db.session.remove()
        return run

    def pay():
        if path == "card":
            payments.confirm_in_sandbox(db.session.get(Payment, payment_id), "card:4242424242424242")
        else:
            invoice_service.record_manual_payment(db.session.get(Invoice, invoice_id), "100.00", "wire", "", "",
                                                  STAFF)

    payer = threading.Thread(name="payer", target=in_app(pay))
    ticker = threading.Thread(name="ticker", target=in_app(lambda: run_tick(clock.now())))
    payer.start()
    assert holding.wait(timeout=10), "the payment never reached its commit"
    ticker.start()
    ticker.join(timeout=1)
    assert ticker.is_alive(), "the tick waits for the paying client's row"
    go.set()
    payer.join(timeout=10)
    ticker.join(timeout=10)
    assert not errors, errors
    db.session.expire_all()
    assert db.session.get(Invoice, invoice_id).status == "paid"
    assert client_row(client_id).access_restricted is False
    assert events("client.restricted", client_id) == []
