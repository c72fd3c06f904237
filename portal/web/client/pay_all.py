"""The client portal's "Pay all open invoices" and payment receipts. F4."""
from __future__ import annotations

from portal.web.client import bp  # noqa: F401
