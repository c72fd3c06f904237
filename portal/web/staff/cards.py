"""Staff: charge a client's saved payment method ("Attempt card"). F4."""
from __future__ import annotations

from portal.web.staff import bp  # noqa: F401
