"""Staff: a client's credit balance, custom credits, one-time charges, applying credit. F4."""
from __future__ import annotations

from portal.web.staff import bp  # noqa: F401
