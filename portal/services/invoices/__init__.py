"""Invoices. Modules, by purpose:

- ``drafts``: parse what was typed (all-or-nothing), create, save, recompute, delete a draft;
- ``finalize``: number (gapless), freeze and lock; apply credit and schedule autopay;
- ``sending``: send and resend (a new guest link per send, the PDF attached);
- ``lifecycle``: void, replacement drafts, the tick's overdue step;
- ``manual_payments``: payments recorded by staff, "Mark as paid";
- ``queries``: reading invoices (one, a client's, status totals).

The document every page, email and PDF shows is ``services.invoice_documents``; guest links are
``services.guest_links`` (both below payments, which need them). Every function here owns its
transaction (``commit()`` at the end) and writes an event in it. The names below are the package's
public surface.
"""
from portal.models.payments import MANUAL_METHODS
from portal.services.guest_links import invoice_for_token
from portal.services.guest_links import issue as issue_guest_token
from portal.services.guest_links import revoke as revoke_guest_tokens
from portal.services.invoice_documents import (
    client_document,
    document,
    email_variables,
    line_summary,
    related,
)
from portal.services.invoices.drafts import (
    MAX_LINE_AMOUNT,
    MAX_LINES,
    DraftInput,
    InvoiceInvalid,
    ParsedLine,
    create_draft,
    defaults,
    delete_draft,
    parse_draft,
    preview,
    recompute,
    save_draft,
    services_catalogue,
    tax_columns,
)
from portal.services.invoices.finalize import finalize
from portal.services.invoices.lifecycle import mark_overdue, replace, void, void_locked
from portal.services.invoices.manual_payments import (
    MAX_PAYMENT,
    ExcessNeedsConfirmation,
    mark_paid,
    record_manual_payment,
)
from portal.services.invoices.queries import (
    PORTAL_PAGE_SIZE,
    PORTAL_STATUS_FILTERS,
    client_invoice,
    client_invoices,
    get_invoice,
    status_totals,
)
from portal.services.invoices.sending import make_ready, send

__all__ = [
    "MANUAL_METHODS",
    "MAX_LINES",
    "MAX_LINE_AMOUNT",
    "MAX_PAYMENT",
    "PORTAL_PAGE_SIZE",
    "PORTAL_STATUS_FILTERS",
    "DraftInput",
    "ExcessNeedsConfirmation",
    "InvoiceInvalid",
    "ParsedLine",
    "client_document",
    "client_invoice",
    "client_invoices",
    "create_draft",
    "defaults",
    "delete_draft",
    "document",
    "email_variables",
    "finalize",
    "get_invoice",
    "invoice_for_token",
    "issue_guest_token",
    "line_summary",
    "make_ready",
    "mark_overdue",
    "mark_paid",
    "parse_draft",
    "preview",
    "recompute",
    "record_manual_payment",
    "related",
    "replace",
    "revoke_guest_tokens",
    "save_draft",
    "send",
    "services_catalogue",
    "status_totals",
    "tax_columns",
    "void",
    "void_locked",
]
