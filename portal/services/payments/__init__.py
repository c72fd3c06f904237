"""Getting paid through a gateway. The package's modules, by purpose:

- ``attempts``: one live attempt per invoice (``clear_the_way``), the re-check before confirming;
- ``checkout``: paying one invoice (guest page, portal), the sandbox's confirmation, Stripe's bootstrap;
- ``pay_all``: the portal's "pay all open invoices";
- ``outcomes``: ``apply_intent``, the only way a gateway outcome reaches the books;
- ``webhooks``: gateway events, stored once, applied in the same transaction;
- ``stale``: cancelling intents an invoice change made stale (session hook + job + sweep);
- ``refunds``: staff refunds, credit-note refunds, refunds of late payments;
- ``reconcile``: the tick's step (decide, enqueue one job per payment) and the job's work;
- ``history``: the portal's payment history and receipts;
- ``notices``: the emails payments send.

The names below are the package's public surface for views, jobs and other services.
"""
from portal.services.payments.attempts import (
    BANK_ON_ITS_WAY,
    LIVE,
    AttemptChanged,
    clear_the_way,
    live_attempts,
    money_on_its_way,
    recheck,
    refuse_unpayable,
    still_payable,
    targets,
)
from portal.services.payments.checkout import (
    GUEST,
    checkout_options,
    confirm_in_sandbox,
    guest_pay,
    luhn_ok,
    pay_in_sandbox,
    payment_outcome,
    payment_state,
    start_payment,
    stripe_checkout,
    typed_number,
)
from portal.services.payments.history import (
    PORTAL_HISTORY_PAGE_SIZE,
    RECEIPT_STATUSES,
    client_payment_history,
    client_receipt,
    invoice_payments,
    receipt,
    receipt_pdf,
)
from portal.services.payments.notices import BANK_METHODS, email_owners, notify_failure, receipt_lines
from portal.services.payments.outcomes import GATEWAY, apply_intent
from portal.services.payments.pay_all import (
    busy_invoice_ids,
    pay_all,
    pay_all_outcome,
    pay_all_page,
    pay_all_saved,
    pay_all_summary,
    payable_invoices,
    start_pay_all,
)
from portal.services.payments.reconcile import (
    RECONCILE_AFTER,
    due_work,
    reconcile,
    reconcile_payment,
)
from portal.services.payments.refunds import (
    lock_succeeded_payment,
    refund,
    refund_excess,
    refund_invoice_payment,
    refund_money,
    refundable,
)
from portal.services.payments.stale import (
    ABANDON_AFTER,
    cancel_stale,
    cancel_stale_payment,
    stale_candidates,
)
from portal.services.payments.webhooks import HANDLED, handle_webhook

__all__ = [
    "ABANDON_AFTER", "AttemptChanged", "BANK_METHODS", "BANK_ON_ITS_WAY", "GATEWAY", "GUEST", "HANDLED", "LIVE",
    "PORTAL_HISTORY_PAGE_SIZE", "RECEIPT_STATUSES", "RECONCILE_AFTER", "apply_intent", "busy_invoice_ids",
    "cancel_stale", "cancel_stale_payment", "checkout_options", "clear_the_way", "client_payment_history", "client_receipt",
    "confirm_in_sandbox", "due_work", "guest_pay", "handle_webhook", "invoice_payments", "live_attempts", "lock_succeeded_payment",
    "luhn_ok", "money_on_its_way", "notify_failure", "email_owners", "pay_all", "pay_all_outcome", "pay_all_page", "pay_all_saved",
    "pay_all_summary", "pay_in_sandbox", "payable_invoices", "payment_outcome", "payment_state", "receipt",
    "receipt_lines", "receipt_pdf", "recheck", "reconcile", "reconcile_payment", "refund", "refund_excess",
    "refund_invoice_payment", "refund_money", "refundable", "refuse_unpayable", "stale_candidates", "start_pay_all",
    "start_payment", "still_payable", "stripe_checkout", "targets", "typed_number",
]
