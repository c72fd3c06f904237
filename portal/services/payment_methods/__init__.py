"""Payment methods saved for a client through the gateway, the client's autopay switch, and the
expiring-card notice. Modules, by purpose:

- ``saved``: reading a client's methods (default, what fits a currency, labels, accepted types);
- ``setup``: saving one through a SetupIntent (sandbox form or Stripe's Payment Element);
- ``manage``: remove, make default, the autopay switch;
- ``pages``: what the staff client page and the portal show;
- ``expiring``: the expiring-card notice (tick decides, one job per card).

The names below are the package's public surface.
"""
from portal.services.payment_methods.expiring import (
    enqueue_expiring,
    expiring_cards,
    notify_expiring_card,
)
from portal.services.payment_methods.manage import (
    autopay_timing_text,
    remove,
    set_autopay,
    set_default,
)
from portal.services.payment_methods.pages import (
    client_panel,
    method_view,
    methods_page,
    portal_summary,
)
from portal.services.payment_methods.saved import (
    BRAND_LABELS,
    TYPE_LABELS,
    accepted_types,
    client_methods,
    default_method,
    describe,
    method_fits,
    method_label,
    methods_for,
    usable_method,
)
from portal.services.payment_methods.setup import (
    UNREACHABLE,
    add_in_sandbox,
    add_method,
    apply_setup_intent,
    ensure_customer,
    start_setup,
)

__all__ = [
    "BRAND_LABELS", "TYPE_LABELS", "UNREACHABLE", "accepted_types", "add_in_sandbox", "add_method",
    "apply_setup_intent", "autopay_timing_text", "client_methods", "client_panel", "default_method", "describe",
    "enqueue_expiring", "ensure_customer", "expiring_cards", "method_fits", "method_label", "method_view",
    "methods_for", "methods_page", "notify_expiring_card", "portal_summary", "remove", "set_autopay",
    "set_default", "start_setup", "usable_method",
]
