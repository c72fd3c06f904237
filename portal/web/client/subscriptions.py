"""The portal's subscriptions (R1). Filled in by the R1 work."""
from portal.web.client import bp  # noqa: F401
