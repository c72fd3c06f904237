"""Charging saved payment methods: autopay on a schedule, and staff's "Attempt card".

Stub hooks, filled in by the charging work of F4 (issue 5)."""
from __future__ import annotations

from datetime import datetime

from portal.models import Invoice
from portal.services.events import Actor


def schedule(invoice: Invoice, actor: Actor) -> None:
    """Called in finalize's transaction: set ``invoice.autopay_on`` when the client has autopay."""
    return None


def run_due(at: datetime) -> int:
    """The tick's step: charge invoices whose autopay day has come. Returns how many were attempted."""
    return 0


def invoice_panel(invoice: Invoice) -> dict | None:
    """What the staff invoice page shows about charging a saved method (None: nothing)."""
    return None
