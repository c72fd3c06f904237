"""The client portal's payment history and receipts (HTML and PDF), scoped to one client.
"""
from __future__ import annotations

from zoneinfo import ZoneInfo

from sqlalchemy import select

from portal.extensions import db
from portal.models import (
    Client,
    Invoice,
    Payment,
    PaymentAllocation,
    PaymentMethod,
    Refund,
)
from portal.services import credits, pdf
from portal.services.errors import NotFound
from portal.services.settings import get_business


def invoice_payments(invoice_id: int) -> list[Payment]:
    """The invoice's own payments (attempts included) and "pay all" payments that paid part of it."""

    shared = select(PaymentAllocation.payment_id).where(PaymentAllocation.invoice_id == invoice_id)
    return list(db.session.scalars(select(Payment).where((Payment.invoice_id == invoice_id) | Payment.id.in_(shared))
                                   .order_by(Payment.created_at, Payment.id)))


# The client portal's payment history (/portal/payments) ------------------------------------------
# Added for F4 (client portal): read-only, scoped to one client.

PORTAL_HISTORY_PAGE_SIZE = 20


def client_payment_history(client_id: int, page: int = 1, per_page: int = PORTAL_HISTORY_PAGE_SIZE) -> dict:
    """One page of a client's payments (newest first, with their invoice) and the refunds on them.

    Failed or abandoned gateway attempts that never moved money are left out: only payments that
    succeeded, are processing, or were refunded appear."""
    query = (
        select(Payment)
        .where(Payment.client_id == client_id, Payment.status.in_(("succeeded", "processing")))
        .order_by(Payment.created_at.desc(), Payment.id.desc())
    )
    result = db.paginate(query, page=min(max(int(page or 1), 1), 1_000_000), per_page=per_page, error_out=False)
    invoice_ids = {payment.invoice_id for payment in result.items if payment.invoice_id is not None}
    by_id = ({invoice.id: invoice for invoice in db.session.scalars(select(Invoice).where(Invoice.id.in_(invoice_ids)))}
             if invoice_ids else {})
    rows = [{"payment": payment, "invoice": by_id.get(payment.invoice_id)} for payment in result.items]
    refunds = list(db.session.execute(
        select(Refund, Payment, Invoice)
        .join(Payment, Payment.id == Refund.payment_id)
        .outerjoin(Invoice, Invoice.id == Refund.invoice_id)
        .where(Payment.client_id == client_id, Refund.status != "failed")
        .order_by(Refund.created_at.desc(), Refund.id.desc())
    ))
    return {"pages": result, "payments": rows,
            "refunds": [{"refund": refund, "payment": payment, "invoice": invoice}
                        for refund, payment, invoice in refunds]}


# Receipts (client portal; HTML and PDF) ----------------------------------------------------------

RECEIPT_STATUSES = ("succeeded", "processing")


def client_receipt(client_id: int, payment_id: int) -> dict:
    """The receipt of one of this client's payments that moved money (else NotFound)."""
    payment = db.session.scalar(select(Payment).where(Payment.id == payment_id, Payment.client_id == client_id,
                                                      Payment.status.in_(RECEIPT_STATUSES)))
    if payment is None:
        raise NotFound("No such payment.")
    return receipt(payment)


def receipt(payment: Payment) -> dict:
    """What a receipt shows: who was paid, when, how much and how, each invoice paid and with how
    much, what went to the credit balance, and refunds given on it."""


    business = get_business()
    lines = [{"invoice": invoice, "amount": row.amount} for row, invoice in credits.payment_allocations(payment.id)]
    awaiting: list[Invoice] = []
    if not lines:
        ids = [payment.invoice_id] if payment.invoice_id else list(payment.invoice_ids or [])
        found = list(db.session.scalars(select(Invoice).where(Invoice.id.in_(ids)))) if ids else []
        if payment.status == "succeeded" and payment.invoice_id and found:
            # booked before allocations were kept: all of it (less any credit) went to its invoice
            lines = [{"invoice": found[0], "amount": payment.amount - payment.credited_amount}]
        else:
            awaiting = sorted(found, key=credits.oldest_first_key)  # a bank payment still clearing
    refunds = list(db.session.scalars(select(Refund).where(Refund.payment_id == payment.id,
                                                           Refund.status != "failed")
                                      .order_by(Refund.created_at, Refund.id)))
    saved = db.session.get(PaymentMethod, payment.payment_method_id) if payment.payment_method_id else None
    when = payment.received_on or payment.created_at.astimezone(ZoneInfo(business.timezone)).date()
    return {"payment": payment, "issuer": business, "client": db.session.get(Client, payment.client_id),
            "lines": lines, "awaiting": awaiting, "credited": payment.credited_amount, "refunds": refunds,
            "refunded": sum(r.amount for r in refunds), "saved_method": saved, "paid_on": when,
            "receipt_number": f"R-{payment.id:06d}", "locale": business.locale,
            "brand_color": business.brand_color, "has_logo": business.has_logo}


def receipt_pdf(client_id: int, payment_id: int) -> tuple[bytes, str]:
    """The receipt as a PDF (WeasyPrint, through the same guarded fetcher as invoice PDFs)."""


    context = client_receipt(client_id, payment_id)
    return pdf.render("pdf/receipt.html", context), f"receipt-{context['receipt_number']}.pdf"
