"""Staff's per-client billing settings: the service alone holds the rules (H1: each rule once); the
page's form only renders and reads, so an option the page never offered is refused by the service."""
from __future__ import annotations

import pytest

from portal.extensions import db
from portal.models import Client
from portal.services import settings
from portal.services.errors import ServiceError
from portal.services.events import Actor

STAFF = Actor("staff", None, "staff@portal.example")


@pytest.mark.parametrize("values, field", [
    ({"autopay": False, "autopay_timing": "hourly", "auto_apply_credit": None}, "autopay_timing"),
    ({"autopay": False, "autopay_timing": None, "auto_apply_credit": "sometimes"}, "auto_apply_credit"),
    ({"autopay": "yes", "autopay_timing": None, "auto_apply_credit": None}, "autopay"),
    ({"autopay": False, "autopay_timing": "days_before_due", "autopay_days_before": 0, "auto_apply_credit": None},
     "autopay_days_before"),
])
def test_the_service_refuses_what_the_page_never_offered(make, values, field):
    client = make.client()
    with pytest.raises(ServiceError) as refused:
        settings.update_client_billing(client.id, values, STAFF)
    assert field in refused.value.errors
    db.session.expire_all()
    row = db.session.get(Client, client.id)
    assert (row.autopay_timing, row.auto_apply_credit) == (None, None), "nothing changed"


def test_good_values_are_saved(make):
    client = make.client()
    settings.update_client_billing(client.id, {"autopay": False, "autopay_timing": "on_due_date",
                                               "auto_apply_credit": True}, STAFF)
    db.session.expire_all()
    row = db.session.get(Client, client.id)
    assert (row.autopay_timing, row.auto_apply_credit) == ("on_due_date", True)
