"""The credit balance at the service level: custom credits, one-time charges, applying credit (on
demand and at finalize), the ledger with its running balance, and concurrent applies."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import CreditEntry, Event, Invoice
from portal.services import credits, invoices
from portal.services.errors import ServiceError
from portal.services.events import Actor
from tests.support import make

STAFF = Actor("staff", None, "staff@portal.example")


@pytest.fixture
def client_row(make):
    make.business(name="Tidewater Studio", currency="EUR")
    return make.client()


def fresh(model, row_id):
    db.session.expire_all()
    return db.session.get(model, row_id)


def ledger_rows(client_id):
    return db.session.scalars(select(CreditEntry).where(CreditEntry.client_id == client_id)
                              .order_by(CreditEntry.id)).all()


# Custom credits and one-time charges ---------------------------------------------------------

def test_add_credit_writes_a_ledger_row_and_an_event(client_row):
    entry = credits.add_credit(client_row.id, "25.50", "", "Goodwill for the delay", STAFF)
    assert (entry.kind, entry.amount, entry.currency, entry.description) == ("credit", 2550, "EUR",
                                                                             "Goodwill for the delay")
    assert credits.balance(client_row.id, "EUR") == 2550
    assert db.session.scalar(select(func.count()).select_from(Event).where(Event.type == "credit.credit")) == 1


def test_credit_currency_defaults_to_the_clients_then_the_business(client_row):
    client_row.currency = "USD"
    db.session.commit()
    assert credits.add_credit(client_row.id, "5", None, "x", STAFF).currency == "USD"
    assert credits.add_credit(client_row.id, "5", "gbp", "x", STAFF).currency == "GBP"
    assert credits.balances(client_row.id) == {"GBP": 500, "USD": 500}


@pytest.mark.parametrize("amount, currency, description, fields", [
    ("", "EUR", "x", {"amount"}),
    ("0", "EUR", "x", {"amount"}),
    ("-5.00", "EUR", "x", {"amount"}),
    ("1.234", "EUR", "x", {"amount"}),
    ("abc", "EUR", "x", {"amount"}),
    ("9999999999999", "EUR", "x", {"amount"}),
    ("5.00", "XXQ", "x", {"currency"}),
    ("5.00", "EUR", "   ", {"description"}),
    ("", "ZZZ", "", {"amount", "currency", "description"}),
])
def test_bad_credit_or_charge_input_changes_nothing(client_row, amount, currency, description, fields):
    for add in (credits.add_credit, credits.add_charge):
        with pytest.raises(credits.CreditInvalid) as caught:
            add(client_row.id, amount, currency, description, STAFF)
        assert set(caught.value.errors) == fields
    db.session.rollback()
    assert ledger_rows(client_row.id) == []


def test_a_charge_may_take_the_balance_below_zero_and_later_credit_pays_it_off(client_row):
    credits.add_credit(client_row.id, "10.00", "EUR", "Credit", STAFF)
    credits.add_charge(client_row.id, "30.00", "EUR", "Setup fee", STAFF)
    assert credits.balance(client_row.id, "EUR") == -2000
    assert credits.balance_rows(client_row.id) == [{"currency": "EUR", "amount": -2000, "owed": True}]
    credits.add_credit(client_row.id, "25.00", "EUR", "More credit", STAFF)
    assert credits.balance(client_row.id, "EUR") == 500


# Applying credit on demand -------------------------------------------------------------------------

def test_apply_defaults_to_the_most_it_can_and_pays_the_invoice(client_row):
    invoice = make.invoice(client_row, "40.00")
    credits.add_credit(client_row.id, "100.00", "EUR", "Credit", STAFF)
    entry = credits.apply_credit(invoice.id, None, STAFF)
    assert (entry.kind, entry.amount, entry.invoice_id) == ("applied", -4000, invoice.id)
    paid = fresh(Invoice, invoice.id)
    assert (paid.status, paid.credit_applied, paid.amount_due) == ("paid", 4000, 0)
    assert credits.balance(client_row.id, "EUR") == 6000
    types = db.session.scalars(select(Event.type).where(Event.subject_type == "invoice",
                                                        Event.subject_id == invoice.id)
                               .order_by(Event.id)).all()
    assert types[-2:] == ["invoice.credit_applied", "invoice.paid"]


def test_a_partial_apply_leaves_the_rest_due(client_row):
    invoice = make.invoice(client_row, "100.00")
    credits.add_credit(client_row.id, "30.00", "EUR", "Credit", STAFF)
    credits.apply_credit(invoice.id, "12.50", STAFF)
    partly = fresh(Invoice, invoice.id)
    assert (partly.status, partly.credit_applied, partly.amount_due) == ("open", 1250, 8750)
    credits.apply_credit(invoice.id, "", STAFF)  # the rest of the balance
    assert fresh(Invoice, invoice.id).amount_due == 10000 - 3000
    assert credits.balance(client_row.id, "EUR") == 0


@pytest.mark.parametrize("typed, message", [
    ("50.01", "only €50.00 of credit"),
    ("0", "above zero"),
    ("-1", "above zero"),
    ("ten", "like 25.00"),
])
def test_apply_refuses_bad_amounts(client_row, typed, message):
    invoice = make.invoice(client_row, "100.00")
    credits.add_credit(client_row.id, "50.00", "EUR", "Credit", STAFF)
    with pytest.raises(ServiceError) as caught:
        credits.apply_credit(invoice.id, typed, STAFF)
    assert message in caught.value.message and caught.value.field == "amount"
    assert fresh(Invoice, invoice.id).credit_applied == 0
    assert credits.balance(client_row.id, "EUR") == 5000


def test_apply_refuses_more_than_is_due(client_row):
    invoice = make.invoice(client_row, "20.00")
    credits.add_credit(client_row.id, "50.00", "EUR", "Credit", STAFF)
    with pytest.raises(ServiceError) as caught:
        credits.apply_credit(invoice.id, "20.01", STAFF)
    assert "Only €20.00 is due" in caught.value.message


def test_apply_refuses_credit_in_another_currency_and_unpayable_invoices(client_row):
    invoice = make.invoice(client_row, "20.00")
    credits.add_credit(client_row.id, "50.00", "USD", "Credit", STAFF)
    with pytest.raises(ServiceError) as caught:
        credits.apply_credit(invoice.id, None, STAFF)
    assert "credit is in USD" in caught.value.message
    credits.add_credit(client_row.id, "50.00", "EUR", "Credit", STAFF)
    invoices.void(fresh(Invoice, invoice.id), STAFF)
    with pytest.raises(ServiceError) as caught:
        credits.apply_credit(invoice.id, None, STAFF)
    assert "cancelled" in caught.value.message
    draft = make.invoice(client_row, status="draft")
    with pytest.raises(ServiceError):
        credits.apply_credit(draft.id, None, STAFF)
    assert credits.balances(client_row.id) == {"EUR": 5000, "USD": 5000}


def test_a_negative_balance_is_not_applied(client_row):
    invoice = make.invoice(client_row, "20.00")
    credits.add_charge(client_row.id, "5.00", "EUR", "Fee", STAFF)
    with pytest.raises(ServiceError) as caught:
        credits.apply_credit(invoice.id, None, STAFF)
    assert "no EUR credit" in caught.value.message


# Applying credit at finalize ---------------------------------------------------------------------------

@pytest.mark.parametrize("business_default, client_setting, applied", [
    (True, None, 3000),
    (False, None, 0),
    (False, True, 3000),
    (True, False, 0),
])
def test_auto_apply_at_finalize_follows_the_client_then_the_business(make, client_row, business_default,
                                                                      client_setting, applied):
    make.business(auto_apply_credit=business_default)
    client_row.auto_apply_credit = client_setting
    db.session.commit()
    credits.add_credit(client_row.id, "30.00", "EUR", "Credit", STAFF)
    invoice = make.invoice(client_row, "100.00")
    done = fresh(Invoice, invoice.id)
    assert done.credit_applied == applied and done.amount_due == 10000 - applied
    assert credits.balance(client_row.id, "EUR") == 3000 - applied


def test_auto_apply_pays_a_small_invoice_in_full_and_keeps_the_rest(client_row):
    credits.add_credit(client_row.id, "30.00", "EUR", "Credit", STAFF)
    invoice = make.invoice(client_row, "12.00")
    done = fresh(Invoice, invoice.id)
    assert (done.status, done.credit_applied, done.amount_due) == ("paid", 1200, 0)
    assert credits.balance(client_row.id, "EUR") == 1800
    event = db.session.scalar(select(Event).where(Event.type == "invoice.credit_applied"))
    assert event.data["automatic"] is True and event.data["amount"] == 1200


def test_auto_apply_uses_only_the_invoice_currency(client_row):
    credits.add_credit(client_row.id, "30.00", "USD", "Credit", STAFF)
    invoice = make.invoice(client_row, "12.00")
    assert fresh(Invoice, invoice.id).credit_applied == 0


# The ledger ----------------------------------------------------------------------------------------------

def test_the_ledger_is_newest_first_with_a_running_balance_per_currency(client_row):
    credits.add_credit(client_row.id, "10.00", "EUR", "one", STAFF)
    credits.add_credit(client_row.id, "7.00", "USD", "two", STAFF)
    credits.add_charge(client_row.id, "15.00", "EUR", "three", STAFF)
    credits.add_credit(client_row.id, "1.00", "EUR", "four", STAFF)
    invoice = make.invoice(client_row, "50.00", currency="USD")  # auto-applies the 7.00
    page = credits.ledger(client_row.id, page=1, per_page=3)
    assert page.total == 5 and page.pages == 2 and page.has_next and not page.has_prev
    assert [(r.entry.description, r.running) for r in page.rows] == [
        (f"Applied to invoice {invoice.number}", 0), ("four", -400), ("three", -500)]
    assert page.rows[0].invoice_id == invoice.id and page.rows[0].invoice_number == invoice.number
    assert page.rows[2].owed
    second = credits.ledger(client_row.id, page=2, per_page=3)
    assert [(r.entry.description, r.running) for r in second.rows] == [("two", 700), ("one", 1000)]


def test_the_ledger_reads_in_two_queries_whatever_its_length(client_row):
    from sqlalchemy import event

    for i in range(15):
        credits.add_credit(client_row.id, "1.00", "EUR", f"c{i}", STAFF)
    statements = []

    def count(*args):
        statements.append(args[2])

    client_id = client_row.id
    db.session.expire_all()
    event.listen(db.engine, "before_cursor_execute", count)
    try:
        page = credits.ledger(client_id, page=1, per_page=15)
        [r.entry.description for r in page.rows]
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert len(page.rows) == 15 and len(statements) == 2


# Concurrency (PostgreSQL: real row locks) -----------------------------------------------------------------

@pytest.fixture
def app_settings(app_settings):
    return {**app_settings, "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True, "pool_size": 15}}


def _concurrently(app, n, work):
    barrier = threading.Barrier(n)
    outcomes: list[str] = []

    def run(i):
        with app.app_context():
            try:
                barrier.wait(timeout=30)
                work(i)
                outcomes.append("applied")
            except ServiceError:
                outcomes.append("refused")
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return outcomes


def test_concurrent_applies_never_overdraw_the_balance(app, make, db_kind):
    if db_kind != "postgresql":
        pytest.skip("row locks under real concurrency are PostgreSQL's; SQLite serialises writers")
    make.business(currency="EUR", auto_apply_credit=False)
    client_row = make.client()
    ids = [make.invoice(client_row, "30.00").id for _ in range(8)]
    credits.add_credit(client_row.id, "100.00", "EUR", "Credit", STAFF)
    client_id = client_row.id
    db.session.remove()

    outcomes = _concurrently(app, 8, lambda i: credits.apply_credit(ids[i], "30.00", STAFF))
    assert sorted(outcomes) == ["applied"] * 3 + ["refused"] * 5
    assert credits.balance(client_id, "EUR") == 1000
    applied = db.session.scalar(select(func.sum(Invoice.credit_applied)).where(Invoice.id.in_(ids)))
    assert applied == 9000


def test_concurrent_default_applies_share_the_balance(app, make, db_kind):
    if db_kind != "postgresql":
        pytest.skip("row locks under real concurrency are PostgreSQL's; SQLite serialises writers")
    make.business(currency="EUR", auto_apply_credit=False)
    client_row = make.client()
    ids = [make.invoice(client_row, "80.00").id for _ in range(4)]
    credits.add_credit(client_row.id, "100.00", "EUR", "Credit", STAFF)
    client_id = client_row.id
    db.session.remove()

    outcomes = _concurrently(app, 4, lambda i: credits.apply_credit(ids[i], None, STAFF))
    assert sorted(outcomes) == ["applied"] * 2 + ["refused"] * 2
    assert credits.balance(client_id, "EUR") == 0
    dues = sorted(db.session.scalars(select(Invoice.credit_applied).where(Invoice.id.in_(ids))))
    assert dues == [0, 0, 2000, 8000]
