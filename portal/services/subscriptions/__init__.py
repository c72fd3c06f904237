"""Recurring billing. Modules, by purpose:

- ``plans``: the catalogue's plans (a service priced per cycle), their public checkout key;
- ``schedule``: when and what a subscription bills (periods, invoice days, a period's lines, the
  12-period preview), the one place the run and the pages ask;
- ``billing``: billing one subscription's due periods exactly once, in order (catch-up), the hold
  after a failed automatic charge;
- ``runs``: billing runs (the tick's step, ``flask portal bill``, the batches the workers share);
- ``manage``: starting, changing, pausing, resuming and cancelling subscriptions, their settings;
- ``pages``: what the staff pages read (plans, lists, a subscription's page, proration preview, runs).

- ``client_cycles``: a client's monthly billing cycle (open charges gathered on its billing day, once)
  and extra charges invoiced at once;
- ``notices``: the upcoming-invoice notice, once per period;
- ``checkout``: the portal's self-checkout (subscribe to a self-serve plan, pay the first invoice, the
  card saved for the next cycles), and the client's own cancel at period end;
- ``portal``: what the client portal reads (the client's subscriptions, plans on offer, a plan's page).

The names below are the package's public surface.
"""
from portal.services.subscriptions.billing import Outcome, bill_subscription
from portal.services.subscriptions.checkout import (
    CheckoutInvalid,
    activate_if_paid,
    cancel_at_period_end,
    checkout_outcome,
    drop_checkout,
    pay_first_invoice,
    start_self_checkout,
)
from portal.services.subscriptions.client_cycles import add_charge, run_cycle
from portal.services.subscriptions.client_cycles import tick_step as client_cycles_step
from portal.services.subscriptions.manage import (
    AUTOPAY_CHOICES,
    MAX_QUANTITY,
    TIMINGS,
    SubscriptionInvalid,
    cancel,
    change_items,
    client_currency,
    create_subscription,
    current_period,
    get_subscription,
    invoice_first_period,
    keep,
    new_subscription_defaults,
    pause,
    proration,
    resume,
    update_settings,
)
from portal.services.subscriptions.pages import (
    FILTERS,
    STATUS_LABELS,
    checkout_link,
    client_subscriptions,
    item_values,
    list_subscriptions,
    plan_choices,
    plan_rows,
    price_label,
    proration_preview,
    runs_page,
    status_label,
    subscription_page,
)
from portal.services.subscriptions.plans import (
    UNIT_CHOICES,
    PlanInvalid,
    create_plan,
    cycle_label,
    get_plan,
    list_plans,
    new_plan_defaults,
    plan_by_key,
    plan_form_values,
    set_plan_active,
    update_plan,
)
from portal.services.subscriptions.portal import (
    pay_page,
    plan_offer,
    public_offer,
    portal_subscription,
    portal_subscriptions,
    self_serve_plans,
)
from portal.services.subscriptions.runs import (
    BATCH_SIZE,
    batches,
    bill_batch,
    due_ids,
    enqueue_run,
    get_run,
    list_runs,
    progress,
    running,
    start_run,
    tick_step,
)
from portal.services.subscriptions.notices import send_notices
from portal.services.subscriptions.notices import tick_step as upcoming_notices_step
from portal.services.subscriptions.schedule import invoice_date, lines_for, period, preview

__all__ = [
    "AUTOPAY_CHOICES", "MAX_QUANTITY", "TIMINGS", "SubscriptionInvalid", "cancel", "change_items", "client_currency",
    "create_subscription", "current_period", "get_subscription", "invoice_first_period", "keep",
    "new_subscription_defaults", "pause", "proration", "resume", "update_settings",
    "BATCH_SIZE", "UNIT_CHOICES", "Outcome", "PlanInvalid", "batches", "bill_batch", "bill_subscription",
    "create_plan", "cycle_label", "due_ids", "enqueue_run", "get_plan", "get_run", "invoice_date", "lines_for",
    "list_plans", "list_runs", "new_plan_defaults", "period", "plan_by_key", "plan_form_values", "preview",
    "progress", "running", "set_plan_active", "start_run", "tick_step", "update_plan",
    # pages: the staff pages' read side
    "FILTERS", "STATUS_LABELS", "checkout_link", "client_subscriptions", "item_values", "list_subscriptions",
    "plan_choices", "plan_rows", "price_label", "proration_preview", "runs_page", "status_label", "subscription_page",
    # client_cycles, notices
    "add_charge", "client_cycles_step", "run_cycle", "send_notices", "upcoming_notices_step",
]
__all__ += [  # the portal's self-checkout and read side
    "CheckoutInvalid", "activate_if_paid", "cancel_at_period_end", "checkout_outcome", "drop_checkout",
    "pay_first_invoice", "pay_page", "plan_offer", "portal_subscription", "portal_subscriptions", "public_offer",
    "self_serve_plans", "start_self_checkout",
]
