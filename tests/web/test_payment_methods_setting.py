"""The owner chooses which online payment methods the payment page offers."""
from portal.extensions import db
from portal.services import payment_methods
from portal.services.settings import get_business
from tests.support.web import post_form


def _settings_form(business) -> dict:
    return {
        "name": business.name, "brand_color": business.brand_color, "currency": business.currency,
        "timezone": business.timezone, "locale": business.locale,
        "invoice_number_format": business.invoice_number_format, "payment_terms": "net",
        "payment_terms_days": str(business.payment_terms_days),
        "invoice_next_number_was": str(business.invoice_next_number),
        "invoice_next_number": str(business.invoice_next_number),
    }


def test_turning_off_sepa_removes_it_from_eur_payments(owner_client, make):
    make.business(currency="EUR")
    assert payment_methods.methods_for("EUR") == ["card", "sepa_debit"]
    form = _settings_form(get_business())
    form.update(accept_card="y", accept_us_bank_account="y")  # SEPA unticked
    response = post_form(owner_client, "/staff/settings", form)
    assert response.status_code == 302, response.get_data(as_text=True)
    db.session.expire_all()
    assert payment_methods.methods_for("EUR") == ["card"]
    assert payment_methods.methods_for("USD") == ["card", "us_bank_account"]


def test_at_least_one_method_stays_on(owner_client, make):
    make.business(currency="EUR")
    response = post_form(owner_client, "/staff/settings", _settings_form(get_business()))
    assert response.status_code == 422
    assert "Offer at least one way to pay online." in response.get_data(as_text=True)
    db.session.expire_all()
    assert get_business().accept_card is True
