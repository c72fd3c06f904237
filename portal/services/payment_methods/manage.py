"""Removing a method, choosing the default, and the client's autopay switch.

Removing detaches the method at the gateway, then keeps the row with ``removed_at`` so old payments
still name it; removing the last method turns autopay off. Contacts may turn autopay on or off only
when the business lets them (``Business.clients_manage_autopay``); staff always may. A restricted
client's contacts may be refused (``restrictions.ensure_allowed``).
"""
from __future__ import annotations

from sqlalchemy import func, select

from portal import clock
from portal.extensions import db
from portal.gateways import get_gateway
from portal.gateways.base import GatewayError
from portal.models import Client, PaymentMethod
from portal.services.errors import ServiceError
from portal.services.events import Actor, commit, record_event, rollback
from portal.services.payment_methods.saved import (
    active_methods,
    default_method,
    describe,
    ensure_allowed,
    get_client,
    get_method,
)
from portal.services.settings import get_business

# Remove, make default --------------------------------------------------------------------------

def remove(client_id: int, method_id: int, actor: Actor) -> dict:
    """Detach the method at the gateway and mark it removed. Returns ``{"method", "new_default",
    "autopay_off"}``: the next newest method becomes the default if this one was; removing the last
    one turns autopay off."""
    client = get_client(client_id, lock=True)
    if actor.kind == "contact":
        ensure_allowed(client, "payment_methods")
    row = get_method(client_id, method_id, lock=True)
    gateway = get_gateway()
    if row.gateway == gateway.name:
        try:
            gateway.detach_payment_method(row.gateway_method_id)
        except GatewayError as exc:
            if exc.code != "resource_missing":  # gone at the gateway already: nothing to detach
                rollback()
                raise ServiceError("We couldn't remove it right now. Please try again in a moment.") from exc
    was_default = row.is_default
    row.removed_at = clock.now()
    row.is_default = False
    db.session.flush()
    new_default = None
    if was_default:
        new_default = db.session.scalar(active_methods(client_id).order_by(PaymentMethod.created_at.desc(),
                                                                    PaymentMethod.id.desc()).limit(1))
        if new_default is not None:
            new_default.is_default = True
    record_event("payment_method.removed", "client", client.id, actor,
                 before={"payment_method_id": row.id, "default": was_default},
                 data={"payment_method_id": row.id, "description": describe(row),
                       "new_default_id": new_default.id if new_default is not None else None})
    autopay_off = False
    if client.autopay and db.session.scalar(select(func.count()).select_from(active_methods(client_id).subquery())) == 0:
        client.autopay = False
        autopay_off = True
        record_event("autopay.turned_off", "client", client.id, actor, before={"autopay": True},
                     after={"autopay": False}, data={"reason": "no saved payment method left"})
    commit()
    return {"method": row, "new_default": new_default, "autopay_off": autopay_off}


def set_default(client_id: int, method_id: int, actor: Actor) -> PaymentMethod:
    """Make one of the client's methods the default (what autopay charges)."""
    client = get_client(client_id, lock=True)
    row = get_method(client_id, method_id, lock=True)
    if row.is_default:
        commit()
        return row
    previous = default_method(client_id)
    if previous is not None:
        previous.is_default = False
        db.session.flush()
    row.is_default = True
    record_event("payment_method.default_changed", "client", client.id, actor,
                 before={"payment_method_id": previous.id if previous is not None else None},
                 after={"payment_method_id": row.id}, data={"description": describe(row)})
    commit()
    return row


# Autopay -------------------------------------------------------------------------------------------

def autopay_timing_text(client: Client) -> str:
    """When autopay charges, in words: the client's own rule, else the business default."""
    business = get_business()
    timing = client.autopay_timing or business.autopay_timing
    if timing == "on_due_date":
        return "on the due date"
    if timing == "days_before_due":
        days = (client.autopay_days_before if client.autopay_timing == "days_before_due"
                and client.autopay_days_before else business.autopay_days_before)
        return f"{days} day{'' if days == 1 else 's'} before the due date"
    return "on the day an invoice is issued"


def set_autopay(client_id: int, on: bool, actor: Actor) -> Client:
    """Turn the client's autopay on or off. A contact may only when the business lets clients
    manage autopay (staff always may); turning it on needs a default saved method."""
    business = get_business()
    client = get_client(client_id, lock=True)
    if actor.kind == "contact":
        if not business.clients_manage_autopay:
            rollback()
            raise ServiceError(f"Autopay is set by {business.name}. Please contact them to change it.",
                               field="autopay")
        ensure_allowed(client, "autopay")
    if bool(on) == client.autopay:
        commit()
        return client
    if on and default_method(client_id) is None:
        rollback()
        raise ServiceError("Add a payment method first: autopay charges your default payment method.",
                           field="autopay")
    client.autopay = bool(on)
    method = default_method(client_id)
    record_event("autopay.turned_on" if on else "autopay.turned_off", "client", client.id, actor,
                 before={"autopay": not on}, after={"autopay": bool(on)},
                 data={"payment_method_id": method.id if method is not None else None,
                       "timing": autopay_timing_text(client)})
    commit()
    return client
