"""Invoice PDFs as downloads: one response shape for the guest page and the client portal."""
from __future__ import annotations

from io import BytesIO

from flask import Response, send_file

from portal.models import Invoice
from portal.services import pdf


def invoice_pdf(invoice: Invoice) -> Response:
    """The invoice's PDF as an attachment named ``<number>.pdf``; never cached (it is private)."""
    response = send_file(BytesIO(pdf.render_pdf(invoice)), mimetype="application/pdf", as_attachment=True,
                         download_name=pdf.filename(invoice), conditional=False, etag=False)
    response.headers["Cache-Control"] = "no-store"
    response.headers.pop("Expires", None)
    return response
