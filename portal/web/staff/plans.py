"""Staff pages for recurring billing (R1): plans. Filled in by the R1 work."""
from portal.web.staff import bp  # noqa: F401
