"""What the staff client page and the portal show about saved methods and autopay.
"""
from __future__ import annotations

from portal.gateways import get_gateway
from portal.models import Client, PaymentMethod
from portal.services import restrictions
from portal.services.payment_methods.manage import autopay_timing_text
from portal.services.payment_methods.saved import (
    BRAND_LABELS,
    TYPE_LABELS,
    accepted_types,
    client_methods,
    describe,
    get_client,
)
from portal.services.settings import get_business

# Pages -----------------------------------------------------------------------------------------------

def autopay_view(client: Client) -> dict:
    business = get_business()
    return {"on": client.autopay, "timing": autopay_timing_text(client),
            "clients_manage": business.clients_manage_autopay}


def method_view(method: PaymentMethod) -> dict:
    """How a saved method is shown: ``name`` (card brand or bank name), ``kind`` (Card, SEPA Direct
    Debit...), ``last4``, ``expires`` (MM/YYYY, cards only) and ``default``."""
    if method.type == "card":
        name = BRAND_LABELS.get(method.brand or "", (method.brand or "Card").title())
        expires = f"{method.exp_month:02d}/{method.exp_year}" if method.exp_month and method.exp_year else None
    else:
        name, expires = method.bank_name or TYPE_LABELS.get(method.type, "Bank account"), None
    return {"id": method.id, "method": method, "type": method.type, "name": name,
            "kind": TYPE_LABELS.get(method.type, method.type), "last4": method.last4, "expires": expires,
            "default": method.is_default, "description": describe(method)}


def method_views(client_id: int) -> list[dict]:
    return [method_view(m) for m in client_methods(client_id)]


def methods_page(client_id: int) -> dict:
    """Everything the portal's payment methods page shows for the client."""
    client = get_client(client_id)
    gateway = get_gateway()
    methods = method_views(client_id)
    return {"client": client, "methods": methods, "default": next((m for m in methods if m["default"]), None),
            "autopay": autopay_view(client), "types": accepted_types(client), "gateway": gateway.name,
            "test_mode": bool(gateway.test_mode),
            # What a restricted client may not do here, and why (the page hides or disables it).
            "blocked": {action: restrictions.refusal(client, action) for action in ("payment_methods", "autopay")}}


def client_panel(client) -> dict | None:
    """What the staff client page shows about saved methods and autopay."""
    methods = method_views(client.id)
    return {"methods": methods, "default": next((m for m in methods if m["default"]), None),
            "autopay": autopay_view(client)}


def portal_summary(client_id: int) -> dict | None:
    """What the portal's Billing tab shows: the default method, how many are saved, autopay."""
    client = get_client(client_id)
    methods = method_views(client_id)
    return {"default": next((m for m in methods if m["default"]), None), "count": len(methods),
            "autopay": autopay_view(client)}
