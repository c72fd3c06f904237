"""What payments tell people: receipts, failures, late payments and refunds, to the invoice's
addressees (with a fresh link to the invoice page) and to the owners.
"""
from __future__ import annotations

from sqlalchemy import select

from portal.extensions import db
from portal.models import Client, Invoice, Payment, Refund, StaffUser
from portal.services import (
    credits,
    email_templates,
    formats,
    guest_links,
    invoice_documents,
)
from portal.services.events import Actor, queue_email, record_event
from portal.services.links import external_url
from portal.services.settings import get_business


def email_client(invoice: Invoice, key: str, extra: str, payment: Payment, label: str) -> None:
    """Email the invoice's addressees, with a fresh link to the invoice page (status, PDF, pay)."""

    business = get_business()
    raw = guest_links.issue(invoice)
    link = external_url("pay.invoice", token=raw)
    for contact in [c for c in invoice.client.contacts if c.receives_invoices]:
        variables = invoice_documents.email_variables(invoice, contact.name, link)
        subject, body = email_templates.render(key, variables)
        queue_email(contact.email, "templated",
                    {"business": business, "subject": subject, "body": body + extra, "link": link, "label": label},
                    subject_type="invoice", subject_id=invoice.id, redact=[raw])


def email_owners(invoice: Invoice, subject: str, body: str) -> None:
    business = get_business()
    owners = db.session.scalars(select(StaffUser).where(StaffUser.role == "owner", StaffUser.active.is_(True)))
    for owner in owners:
        queue_email(owner.email, "templated",
                    {"business": business, "subject": subject, "body": body, "link": None, "label": None},
                    subject_type="invoice", subject_id=invoice.id)


def receipt_lines(payment: Payment) -> list[str]:
    """What a receipt says about where the money went: each invoice paid, and any credit kept."""

    lines = [f"{invoice.number}: {formats.money(row.amount, payment.currency)}"
             for row, invoice in credits.payment_allocations(payment.id)]
    if payment.credited_amount:
        lines.append(f"Added to your credit balance: {formats.money(payment.credited_amount, payment.currency)}")
    return lines


def send_receipt(invoice: Invoice, payment: Payment, invoices: list[Invoice] | None = None) -> None:
    business = get_business()
    paid = formats.money(payment.amount, payment.currency)
    numbers = ", ".join(inv.number for inv in (invoices or [invoice]) if inv.number)
    extra = (f"\n\nAmount paid: {paid}\nMethod: {payment.method_label}\n"
             f"Date: {payment.received_on.isoformat()}\nInvoice: {numbers}")
    where = receipt_lines(payment)
    if len(where) > 1 or payment.credited_amount:
        extra += "\n\n" + "\n".join(where)
    if business.notify_payment_receipt:
        email_client(invoice, "payment_receipt", extra, payment, "View receipt and invoice PDF")
    if business.notify_staff_on_payment:
        email_owners(invoice, f"Payment received: {numbers} ({paid})",
                     f"{invoice.client.name} paid {paid} on invoice {numbers} by {payment.method_label}.")


def notify_failure(payment: Payment, actor: Actor) -> None:
    if payment.invoice_id is None:  # "pay all"
        record_event("payment.failed", "client", payment.client_id, actor,
                     data={"payment_id": payment.id, "code": payment.failure_code,
                           "message": payment.failure_message, "invoice_ids": payment.invoice_ids})
        if payment.method not in BANK_METHODS or not payment.invoice_ids:
            return  # a card declined on the page: the payer sees why there and then
        invoice = db.session.get(Invoice, payment.invoice_ids[0])  # a bank debit that bounced later
        email_client(invoice, "payment_failed", f"\n\nReason: {payment.failure_message or payment.failure_code}",
                      payment, "Pay the invoice")
        return
    invoice = db.session.get(Invoice, payment.invoice_id)
    record_event("invoice.payment_failed", "invoice", invoice.id, actor,
                 data={"payment_id": payment.id, "code": payment.failure_code, "message": payment.failure_message})
    email_client(invoice, "payment_failed", f"\n\nReason: {payment.failure_message or payment.failure_code}",
                  payment, "Pay the invoice")
    if get_business().notify_staff_on_payment:
        email_owners(invoice, f"Payment failed: {invoice.number}",
                     f"A payment of {formats.money(payment.amount, payment.currency)} for invoice {invoice.number} "
                     f"({invoice.client.name}) failed: {payment.failure_message or payment.failure_code}.")


def refund_email(payment: Payment, row: Refund, invoice: Invoice | None) -> None:

    business = get_business()
    about = f" for invoice {invoice.number}" if invoice is not None else ""
    text = (f"We refunded {formats.money(row.amount, payment.currency)} of your payment{about}."
            + (f"\n\nReason: {row.reason}" if row.reason else ""))
    client = db.session.get(Client, payment.client_id)
    for contact in [c for c in client.contacts if c.receives_invoices]:
        queue_email(contact.email, "templated",
                    {"business": business, "subject": f"Refund{about}",
                     "body": f"Hello {contact.name},\n\n{text}", "link": None, "label": None},
                    subject_type="invoice" if invoice is not None else "client",
                    subject_id=invoice.id if invoice is not None else client.id)


# The guest payment page (/pay/<token>) ------------------------------------------------------------
# Added for the guest page (F3 web): what the page offers, the sandbox's server-side confirmation,
# Stripe's Payment Element bootstrap, and the return/confirmation page. Views call these only.

BANK_METHODS = ("sepa_debit", "us_bank_account")
