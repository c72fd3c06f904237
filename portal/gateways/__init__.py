"""Payment gateways behind one interface (``base.Gateway``): ``stripe.py`` (the only module
that imports ``stripe``) and ``sandbox.py`` (test mode, moves no money).
"""
from __future__ import annotations

from flask import current_app

from portal.gateways.base import Gateway


def get_gateway() -> Gateway:
    """Stripe when STRIPE_SECRET_KEY is set, else the sandbox (refused in production)."""
    cache = current_app.extensions.setdefault("portal_gateway", {})
    if "gateway" not in cache:
        config = current_app.config
        if config.get("STRIPE_SECRET_KEY"):
            from portal.gateways.stripe import StripeGateway

            cache["gateway"] = StripeGateway.from_config(config)
        else:
            if config.get("PRODUCTION"):
                raise RuntimeError("the sandbox gateway is refused in production: set STRIPE_SECRET_KEY")
            from portal import clock
            from portal.gateways.sandbox import SandboxGateway
            from portal.queues import redis_connection

            cache["gateway"] = SandboxGateway(redis_connection(), clock.now)
    return cache["gateway"]
