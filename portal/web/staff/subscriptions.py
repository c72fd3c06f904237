"""Staff pages for recurring billing (R1): subscriptions. Filled in by the R1 work."""
from portal.web.staff import bp  # noqa: F401
