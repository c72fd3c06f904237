"""Credit notes: numbered documents that take money off a finalized invoice. F4 stub."""
from __future__ import annotations

from portal.models import Invoice


def invoice_panel(invoice: Invoice) -> dict | None:
    """What the staff invoice page shows about credit notes (None: nothing)."""
    return None
