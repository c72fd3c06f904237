"""Invoice PDFs: WeasyPrint renders the same Jinja document the pages show.

The URL fetcher serves only the app's own static files and the stored logo:
no network, no ``file://`` outside ``portal/static``.
"""
from __future__ import annotations

import mimetypes
from pathlib import Path

from flask import current_app, render_template
from weasyprint import HTML
from weasyprint.urls import URLFetcher, URLFetcherResponse

from portal.models import Invoice
from portal.services import invoices as invoice_service
from portal.services.settings import get_business

BASE = "https://portal.invalid/"
LOGO_URL = BASE + "branding/logo"
STATIC_PREFIX = BASE + "static/"


class FetchRefused(ValueError):
    pass


class PortalFetcher(URLFetcher):
    """Serves the stored logo, files under portal/static and inline data: URLs; refuses the rest."""

    def fetch(self, url, headers=None):
        if url.startswith("data:"):
            return super().fetch(url, headers)
        if url == LOGO_URL:
            business = get_business()
            if business.has_logo:
                return URLFetcherResponse(url, business.logo, {"Content-Type": business.logo_content_type})
            raise FetchRefused(url)
        if url.startswith(STATIC_PREFIX):
            root = Path(current_app.static_folder).resolve()
            target = (root / url[len(STATIC_PREFIX):].split("?")[0]).resolve()
            if root in target.parents and target.is_file():
                mime, _ = mimetypes.guess_type(target.name)
                return URLFetcherResponse(url, target.read_bytes(),
                                          {"Content-Type": mime or "application/octet-stream"})
        raise FetchRefused(f"the PDF may not fetch {url}")


def filename(invoice: Invoice) -> str:
    return f"{invoice.number or f'draft-{invoice.id}'}.pdf"


def render_html(invoice: Invoice) -> str:
    context = invoice_service.document(invoice)
    return render_template("pdf/invoice.html", logo_url=LOGO_URL, in_pdf=True, **context)


def render_pdf(invoice: Invoice) -> bytes:
    return HTML(string=render_html(invoice), base_url=BASE, url_fetcher=PortalFetcher()).write_pdf()
