"""PDF downloads: the one place that builds a PDF response (staff, client portal and guest page).

The services render the bytes and name the file; every PDF view answers through ``pdf_response``,
so every PDF goes out the same way: an attachment, never cached (it is private), no ETag.
"""
from __future__ import annotations

from io import BytesIO

from flask import Response, send_file

from portal.models import CreditNote, Invoice
from portal.services import credit_notes, invoice_documents


def pdf_response(data: bytes, filename: str) -> Response:
    """``data`` as a PDF attachment named ``filename``; never cached."""
    response = send_file(BytesIO(data), mimetype="application/pdf", as_attachment=True, download_name=filename,
                         conditional=False, etag=False)
    response.headers["Cache-Control"] = "no-store"
    response.headers.pop("Expires", None)
    return response


def invoice_pdf(invoice: Invoice) -> Response:
    """The invoice's PDF, named ``<number>.pdf`` (a draft's says DRAFT on every page)."""
    return pdf_response(invoice_documents.render_pdf(invoice), invoice_documents.filename(invoice))


def credit_note_pdf(note: CreditNote) -> Response:
    """The credit note's PDF, named ``<number>.pdf``."""
    return pdf_response(credit_notes.render_pdf(note), credit_notes.filename(note))
