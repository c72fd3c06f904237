"""What an invoice document shows (the staff page, the guest page, the portal, emails and the PDF all
read ``document()``), the email variables, and the invoice PDF (also an email attachment).
"""
from __future__ import annotations

from babel.dates import format_date

from portal.billing import states
from portal.extensions import db
from portal.models import Business, Client, Invoice
from portal.services import attachments, formats, pdf
from portal.services.settings import get_business

# Finalize & lock ------------------------------------------------------------------------

def snapshot_client(client: Client) -> dict:
    return {
        "name": client.name, "email": client.email, "address": client.address, "tax_id": client.tax_id,
        "contacts": [{"name": c.name, "email": c.email} for c in client.contacts if c.receives_invoices],
    }


def snapshot_business(business: Business) -> dict:
    return {
        "name": business.name, "legal_name": business.legal_name, "address": business.address,
        "email": business.email, "phone": business.phone, "tax_id": business.tax_id,
        "website": business.website,
    }


def related(invoice: Invoice) -> dict:
    """The invoices this one is linked to by a replacement: the one it replaces and the finalized
    one that replaced it (drafts are staff-only and not shown on the document)."""
    replaces = db.session.get(Invoice, invoice.replaces_invoice_id) if invoice.replaces_invoice_id else None
    replaced_by = db.session.get(Invoice, invoice.replaced_by_invoice_id) if invoice.replaced_by_invoice_id \
        else None
    if replaced_by is not None and replaced_by.status == states.DRAFT:
        replaced_by = None
    return {"replaces": replaces, "replaced_by": replaced_by}


# What an invoice document shows -------------------------------------------------------------

def document(invoice: Invoice) -> dict:
    """Everything the HTML page, the guest page, the email and the PDF show, in one place.

    A finalized invoice shows its frozen parties; a draft shows them as they are now.
    """
    business = get_business()
    seller = invoice.bill_from or snapshot_business(business)
    buyer = invoice.bill_to or snapshot_client(invoice.client)
    context = {
        "invoice": invoice,
        "seller": seller,
        "buyer": buyer,
        "lines": invoice.lines,
        "currency": invoice.currency,
        "locale": business.locale,
        "brand_color": business.brand_color,
        "has_logo": business.has_logo,
        "tax_breakdown": invoice.tax_breakdown or [],
        "is_draft": invoice.status == states.DRAFT,
        "status_label": invoice.status_label,
        "related": related(invoice),
    }
    # The Discount and Tax columns show only when some line has one.
    context["has_discount"] = any(line.discount_amount for line in invoice.lines)
    context["has_tax"] = any(line.tax_name for line in invoice.lines)
    context["line_columns"] = 4 + context["has_discount"] + context["has_tax"]
    return context


# Sending ------------------------------------------------------------------------------------------

def email_variables(invoice: Invoice, contact_name: str, pay_url: str) -> dict:

    business = get_business()
    return {
        "customer_name": contact_name,
        "invoice_number": invoice.number or "",
        "amount_due": formats.money(invoice.amount_due, invoice.currency, business.locale),
        "due_date": format_date(invoice.due_date, "long", locale=business.locale) if invoice.due_date else "",
        "invoice_url": pay_url,
        "pay_now_url": pay_url,
        "company_name": business.name,
        "line_summary": line_summary(invoice, business.locale),
    }


SUMMARY_LINES = 5


def line_summary(invoice: Invoice, locale: str) -> str:
    """The invoice's lines for an email, one a line ("- Design work: €1,000.00"): at most
    ``SUMMARY_LINES``, then "and N more"."""
    lines = list(invoice.lines)
    shown = [f"- {next(iter((line.description or '').strip().splitlines()), '')[:80] or 'Item'}: "
             f"{formats.money(line.net, invoice.currency, locale)}" for line in lines[:SUMMARY_LINES]]
    if len(lines) > SUMMARY_LINES:
        shown.append(f"and {len(lines) - SUMMARY_LINES} more")
    return "\n".join(shown)


def client_document(invoice: Invoice) -> dict:
    """``document()`` plus what the client can do with it: whether anything is payable now and
    how to pay (the invoice's footer carries the bank details until online payment, F3)."""
    context = document(invoice)
    context["payable"] = invoice.status in states.PAYABLE and invoice.amount_due > 0
    context["how_to_pay"] = invoice.footer
    return context


# The invoice PDF: the same document, through the one PDF path; also an email attachment ----------

def filename(invoice: Invoice) -> str:
    return f"{invoice.number or f'draft-{invoice.id}'}.pdf"


def render_html(invoice: Invoice) -> str:
    return pdf.html("pdf/invoice.html", document(invoice))


def render_pdf(invoice: Invoice) -> bytes:
    return pdf.render("pdf/invoice.html", document(invoice))


@attachments.renderer("invoice_pdf")
def attachment(spec: dict) -> tuple[str, str, bytes]:
    """``{"type": "invoice_pdf", "invoice_id": 7}`` → the invoice's PDF, as it is when the email goes out."""
    invoice = db.session.get(Invoice, spec["invoice_id"])
    if invoice is None:
        raise ValueError(f"invoice {spec['invoice_id']} no longer exists")
    return filename(invoice), "application/pdf", render_pdf(invoice)
