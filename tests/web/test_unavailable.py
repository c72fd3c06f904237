"""When Redis or the database is down, pages answer 503 with a friendly "try again in a minute"
page and a Retry-After header (JSON for /webhooks and /api); and an error page never needs the
database: a request whose transaction failed still gets its 500 page (issue X1, points 3 and 8).
"""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import Invoice, Payment
from tests.support.apps import make_app
from tests.support.servers import free_port
from tests.support.web import csrf_token, text_of

FRIENDLY = "We can't take this right now. Try again in a minute."


def guest_link(make) -> tuple[int, str]:
    make.business(name="Tidewater Studio", currency="EUR")
    invoice = make.invoice(make.client())
    return invoice.id, make.guest_link(invoice)


def assert_unavailable_page(response):
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    assert FRIENDLY in text_of(response)
    assert response.headers["Content-Type"].startswith("text/html")


# Redis down ---------------------------------------------------------------------------------------

def test_a_guest_payment_while_redis_is_down_answers_503_and_books_nothing(make, client, redis_server):
    invoice_id, link = guest_link(make)
    token = csrf_token(client, link)
    redis_server.stop()
    try:
        response = client.post(f"{link}/pay", data={"method": "card", "card_number": "4242 4242 4242 4242",
                                                    "expiry": "12/34", "cvc": "123", "csrf_token": token})
        assert_unavailable_page(response)
        db.session.expire_all()
        invoice = db.session.get(Invoice, invoice_id)
        assert invoice.status == "open" and invoice.amount_due == 10000
        assert not db.session.scalar(select(func.count()).select_from(Payment).where(Payment.status == "succeeded"))
        # the page itself still opens (nothing on it needs Redis), and it still takes the payment later
        assert client.get(link).status_code == 200
    finally:
        redis_server.start()
    again = client.post(f"{link}/pay", data={"method": "card", "card_number": "4242 4242 4242 4242",
                                             "expiry": "12/34", "cvc": "123", "csrf_token": token})
    assert again.status_code == 303
    db.session.expire_all()
    assert db.session.get(Invoice, invoice_id).status == "paid"


# The database down --------------------------------------------------------------------------------

@pytest.fixture
def unreachable_db_app(db_kind, redis_server, instance_dir, tmp_path):
    """A second app whose database cannot be reached: a closed port (PostgreSQL), a folder that
    does not exist (SQLite)."""
    if db_kind == "postgresql":
        url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/portal_test?connect_timeout=2"
    else:
        url = f"sqlite:///{tmp_path / 'missing' / 'folder' / 'portal.db'}"
    app = make_app(url, redis_server.url, instance_dir, PROPAGATE_EXCEPTIONS=False)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def test_the_guest_page_while_the_database_is_down_answers_503(app, unreachable_db_app):
    guest = unreachable_db_app.test_client()
    assert_unavailable_page(guest.get("/pay/" + "a" * 43))
    assert_unavailable_page(guest.get("/portal/login"))


def test_a_json_client_gets_the_503_in_json(app, unreachable_db_app):
    response = unreachable_db_app.test_client().get("/pay/" + "a" * 43, headers={"Accept": "application/json"})
    assert response.status_code == 503 and response.is_json
    assert response.get_json() == {"error": "unavailable",
                                   "message": "We can't take this right now. Try again in a minute."}
    assert int(response.headers["Retry-After"]) > 0


# Error pages never need the database -----------------------------------------------------------

def test_a_failed_transaction_still_gets_its_500_page(app, make, client):
    """A flush the database refuses leaves the session needing a rollback; the error page must
    neither query on it nor fail itself."""
    from portal.services.settings import get_business

    make.business(name="Tidewater Studio")
    app.config["PROPAGATE_EXCEPTIONS"] = False

    def boom():
        business = get_business()
        business.invoice_next_number = 10 ** 20  # beyond any integer column
        db.session.flush()
        return "unreachable"

    app.add_url_rule("/boom-for-test", view_func=boom)
    response = client.get("/boom-for-test")
    assert response.status_code == 500
    assert "Something went wrong on our side." in text_of(response)
    assert client.get("/staff/login").status_code == 200
