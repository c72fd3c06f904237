"""Staff: credit notes on finalized invoices. F4."""
from __future__ import annotations

from portal.web.staff import bp  # noqa: F401
