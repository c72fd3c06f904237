"""Sending an invoice: finalize if needed, a new guest link per send, one delivery per billing contact
with the PDF attached at send time.
"""
from __future__ import annotations

from portal import clock
from portal.billing import states
from portal.models import Invoice
from portal.services import email_templates
from portal.services.errors import ServiceError
from portal.services.events import Actor, commit, queue_email, record_event
from portal.services.guest_links import issue
from portal.services.invoice_documents import email_variables
from portal.services.invoices.finalize import finalize
from portal.services.links import external_url
from portal.services.settings import get_business


def send(invoice: Invoice, actor: Actor, commit_now: bool = True) -> list[str]:
    """Finalize if needed, then email every billing contact the pay link and the PDF.

    One transaction: the finalization, the new guest link, one delivery per
    contact and the ``invoice.sent`` event. Returns the recipients. Sending
    again (resend) makes a new link; earlier links keep working until revoked.
    """
    recipients = [c for c in invoice.client.contacts if c.receives_invoices]
    if not recipients:
        raise ServiceError("This client has no contact who receives invoices. Add one, then send.")
    resend = invoice.status != states.DRAFT
    if invoice.status == states.DRAFT:
        finalize(invoice, actor, commit_now=False)
    elif invoice.status not in (states.OPEN, states.OVERDUE):
        raise ServiceError(f"An invoice that is {invoice.status_label.lower()} can't be sent.")
    raw = issue(invoice)
    pay_url = external_url("pay.invoice", token=raw)
    event = record_event("invoice.resent" if resend else "invoice.sent", "invoice", invoice.id, actor,
                         data={"to": [c.email for c in recipients]})
    business = get_business()
    for contact in recipients:
        subject, body = email_templates.render("invoice_issued", email_variables(invoice, contact.name, pay_url))
        queue_email(
            contact.email, "templated",
            {"business": business, "subject": subject, "body": body, "link": pay_url, "label": "Pay invoice"},
            event=event, subject_type="invoice", subject_id=invoice.id, redact=[raw],
            attachments=[{"type": "invoice_pdf", "invoice_id": invoice.id}],
        )
    invoice.sent_at = clock.now()
    if commit_now:
        commit()
    return [c.email for c in recipients]


def make_ready(invoice: Invoice, actor: Actor) -> Invoice:
    """Finalize & lock without sending ("ready for payment").

    With the business's "invoice ready" notification on, billing contacts get
    the same email as Send (link + PDF); with it off, nothing goes out and the
    invoice simply appears in the client portal.
    """
    if get_business().notify_invoice_ready and any(c.receives_invoices for c in invoice.client.contacts):
        send(invoice, actor)
        return invoice
    finalize(invoice, actor)
    return invoice
