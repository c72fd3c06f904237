"""Credit: the client's credit balance, and how money received is spread over invoices. Modules:

- ``ledger``: the append-only ledger, balances, the client lock every spend takes;
- ``settlement``: ``settle_payment``, the one way succeeded money reaches invoices (oldest first);
- ``entries``: staff's custom credits and one-time charges;
- ``applying``: spending the balance on an invoice (by staff, or when an invoice is finalized);
- ``pages``: what the staff pages and the portal show.

Invariant (``tests/services/test_credit_properties.py``): the balance goes below zero only through a
staff one-time charge; per currency, the rows that are not charges never sum below zero.
"""
from portal.services.credits.applying import (
    apply_credit,
    auto_applies,
    auto_apply_on_finalize,
)
from portal.services.credits.entries import (
    MAX_AMOUNT,
    MAX_DESCRIPTION,
    CreditInvalid,
    add_charge,
    add_credit,
)
from portal.services.credits.ledger import (
    add_entry,
    balance,
    balances,
    default_currency,
    lock_client,
    money_text,
)
from portal.services.credits.pages import (
    LEDGER_PAGE_SIZE,
    LedgerRow,
    balance_rows,
    client_panel,
    invoice_panel,
    ledger,
    portal_credit,
    portal_summary,
)
from portal.services.credits.settlement import (
    after_payment,
    lock_invoices,
    oldest_first_key,
    payment_allocations,
    refresh_due,
    settle_payment,
)

__all__ = [
    "LEDGER_PAGE_SIZE", "MAX_AMOUNT", "MAX_DESCRIPTION", "CreditInvalid", "LedgerRow", "add_charge",
    "add_credit", "add_entry", "after_payment", "apply_credit", "auto_applies", "auto_apply_on_finalize", "balance",
    "balance_rows", "balances", "client_panel", "default_currency", "invoice_panel", "ledger",
    "lock_client", "lock_invoices", "money_text", "oldest_first_key", "payment_allocations", "portal_credit",
    "portal_summary", "refresh_due", "settle_payment",
]
