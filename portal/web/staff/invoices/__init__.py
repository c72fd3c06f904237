"""Staff invoices, by purpose: ``lists`` (list, items, CSVs), ``editor`` (new drafts, the editor,
save, preview, delete), ``actions`` (finalize, send, void, replace, revoke links, PDF), ``payments``
(record a payment, mark as paid, refunds) and ``page`` (the invoice page, shared with the credit and
credit note views). Importing them registers their routes on the staff blueprint."""
from portal.web.staff.invoices import actions, editor, lists, page, payments  # noqa: F401
