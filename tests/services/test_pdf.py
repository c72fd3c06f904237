"""Invoice PDFs: WeasyPrint with the app's URL fetcher only, the filename, the DRAFT mark, long invoices.

The fetcher is held to its promise twice: called directly (it refuses the
network, ``file://`` and paths escaping ``portal/static``) and through real
renders, with a loopback HTTP server standing by to catch any request that
slips out.
"""
from __future__ import annotations

import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pypdf import PdfReader
from weasyprint import HTML

from portal.extensions import db
from portal.services import invoice_documents, invoices, pdf
from portal.services.events import Actor
from tests.support import make

STAFF = Actor("staff", None, "staff@portal.example")


def png_bytes(colour=(200, 30, 30)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (24, 12), colour).save(out, format="PNG")
    return out.getvalue()


# Fixtures ----------------------------------------------------------------------------------

class Trap:
    """A loopback HTTP server that counts every request it gets (there must be none)."""

    def __init__(self):
        trap = self
        self.requests: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                trap.requests.append(self.path)
                body = png_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def trap():
    with Trap() as server:
        yield server


class RecordingFetcher(pdf.PortalFetcher):
    """The app's fetcher, noting what it was asked for and what it answered."""

    calls: list[tuple[str, str]] = []

    def fetch(self, url, headers=None):
        try:
            response = super().fetch(url, headers)
        except pdf.FetchRefused:
            RecordingFetcher.calls.append((url, "refused"))
            raise
        RecordingFetcher.calls.append((url, "served"))
        return response


@pytest.fixture
def recorder(monkeypatch):
    RecordingFetcher.calls = []
    monkeypatch.setattr(pdf, "PortalFetcher", RecordingFetcher)
    return RecordingFetcher


@pytest.fixture
def vat(app):
    return make.tax_rate()  # VAT 23 %, on top of prices


@pytest.fixture
def acme(make):
    make.business(name="Tidewater Studio", currency="EUR", invoice_number_format="INV-{year}-{seq:04d}")
    return make.client(name="Acme Ltd")


def draft(client, vat, lines=None, memo="", footer=""):
    return make.invoice(client, status="draft", memo=memo, footer=footer, lines=lines or [
        {"description": "Design, hours", "quantity": "10", "unit_price": "120.00", "tax_rate_id": str(vat.id)},
    ])


def pdf_text(data: bytes) -> list[str]:
    return [page.extract_text() for page in PdfReader(io.BytesIO(data)).pages]


def squash(text: str) -> str:
    """Text without whitespace: PDF extraction breaks long words across lines."""
    return "".join(text.split())


# The fetcher, called directly ------------------------------------------------------------------

REFUSED = [
    "http://127.0.0.1:{port}/pixel.png",
    "https://example.com/logo.png",
    "file:///etc/passwd",
    "file:///{static}/css/portal.css",          # even the app's own files, when asked for by path
    "ftp://example.com/x.png",
    pdf.BASE + "static/../../../../../../etc/passwd",
    pdf.BASE + "static/css/../../__init__.py",  # portal/__init__.py: outside the static folder
    pdf.BASE + "static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    pdf.BASE + "static/",
    pdf.BASE + "static/no-such-file.css",
    pdf.BASE + "etc/passwd",
    pdf.BASE + "branding/logo",                 # no logo uploaded yet
    "https://portal.invalid.example.com/static/css/portal.css",
]


@pytest.mark.parametrize("url", REFUSED)
def test_the_fetcher_refuses_the_network_files_and_escapes_from_static(app, trap, url):
    url = url.format(port=trap.server.server_port, static=app.static_folder.lstrip("/"))
    with pytest.raises(pdf.FetchRefused):
        pdf.PortalFetcher().fetch(url)
    assert trap.requests == []


def test_the_fetcher_serves_static_files_the_logo_and_inline_data(app, make):
    fetcher = pdf.PortalFetcher()
    css = fetcher.fetch(pdf.STATIC_PREFIX + "css/portal.css")
    assert css.content_type == "text/css"
    assert b".invoice-doc" in css.read()
    icon = fetcher.fetch(pdf.STATIC_PREFIX + "favicon.svg")
    assert icon.content_type == "image/svg+xml"

    logo = png_bytes()
    make.business(logo=logo, logo_content_type="image/png")
    served = fetcher.fetch(pdf.LOGO_URL)
    assert served.read() == logo and served.content_type == "image/png"

    inline = fetcher.fetch("data:text/plain;base64,aGVsbG8=")
    assert inline.read() == b"hello"


# The fetcher, through real renders -------------------------------------------------------------

def test_a_hostile_document_fetches_nothing_outside_the_app(app, trap, recorder):
    """Whatever a template could ever reference, WeasyPrint asks only our fetcher, which refuses."""
    hostile = f"""
    <html><head>
      <link rel="stylesheet" href="{trap.url}/style.css">
      <link rel="stylesheet" href="file:///etc/passwd">
      <style>
        @import url("{trap.url}/import.css");
        body {{ background: url("file:///etc/hostname"); }}
        @font-face {{ font-family: X; src: url("{trap.url}/font.woff"); }}
      </style>
    </head><body>
      <p>Hello</p>
      <img src="{trap.url}/pixel.png">
      <img src="file:///etc/passwd">
      <img src="static/../../../../etc/passwd">
      <img src="/static/../../config.py">
      <img src="static/favicon.svg">
      <object data="{trap.url}/object"></object>
      <svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="10" height="10">
        <image href="{trap.url}/svg-image.png" width="10" height="10"/>
        <image xlink:href="file:///etc/passwd" width="10" height="10"/>
      </svg>
    </body></html>
    """
    data = HTML(string=hostile, base_url=pdf.BASE, url_fetcher=pdf.PortalFetcher()).write_pdf()

    assert data.startswith(b"%PDF")
    assert trap.requests == [], "the PDF renderer reached the network"
    served = [url for url, answer in recorder.calls if answer == "served"]
    refused = [url for url, answer in recorder.calls if answer == "refused"]
    assert served == [pdf.STATIC_PREFIX + "favicon.svg"]
    assert f"{trap.url}/pixel.png" in refused and "file:///etc/passwd" in refused
    assert f"{trap.url}/style.css" in refused and f"{trap.url}/svg-image.png" in refused
    assert not any("passwd" in url or "hostname" in url or "config.py" in url for url in served)


def test_urls_typed_into_an_invoice_stay_text_and_only_the_logo_is_fetched(acme, vat, make, trap, recorder):
    make.business(logo=png_bytes(), logo_content_type="image/png")
    memo = (f'<img src="{trap.url}/memo.png"> <link rel="stylesheet" href="file:///etc/passwd">\n'
            f'See {trap.url}/terms and file:///etc/passwd')
    line = f'<img src="{pdf.BASE}static/../../../etc/passwd">Consulting'
    invoice = draft(acme, vat, memo=memo, footer=f'<style>@import "{trap.url}/x.css";</style>', lines=[
        {"description": line, "quantity": "1", "unit_price": "100.00"},
    ])
    invoices.finalize(invoice, STAFF)

    data = invoice_documents.render_pdf(invoice)

    assert trap.requests == []
    assert recorder.calls == [(pdf.LOGO_URL, "served")], "only the stored logo may be fetched"
    reader = PdfReader(io.BytesIO(data))
    assert len(reader.pages[0].images) == 1, "the logo is drawn"
    text = squash(reader.pages[0].extract_text())
    assert squash(f'<img src="{trap.url}/memo.png">') in text
    assert squash("See " + trap.url + "/terms and file:///etc/passwd") in text
    assert squash(line) in text
    assert squash(f'<style>@import "{trap.url}/x.css";</style>') in text


# Name, draft mark, long invoices ----------------------------------------------------------------

def test_filename_is_the_invoice_number(acme, vat):
    invoice = draft(acme, vat)
    assert invoice_documents.filename(invoice) == f"draft-{invoice.id}.pdf"
    invoices.finalize(invoice, STAFF)
    assert invoice.number.startswith("INV-")
    assert invoice_documents.filename(invoice) == f"{invoice.number}.pdf"


def test_guest_pdf_download_is_an_attachment_named_by_number(acme, vat, client):
    invoice = draft(acme, vat)
    invoices.finalize(invoice, STAFF)
    token = invoices.issue_guest_token(invoice)
    db.session.commit()
    number = invoice.number

    response = client.get(f"/pay/{token}/pdf")

    assert response.status_code == 200
    assert response.mimetype == "application/pdf"
    assert response.headers["Content-Disposition"] == f"attachment; filename={number}.pdf"
    assert response.headers["Cache-Control"] == "no-store"
    assert number in pdf_text(response.data)[0]


def test_a_draft_pdf_says_draft_and_a_finalized_one_does_not(acme, vat):
    invoice = draft(acme, vat)
    [page] = pdf_text(invoice_documents.render_pdf(invoice))
    assert "DRAFT" in page
    assert "Draft invoice" in page

    invoices.finalize(invoice, STAFF)
    [page] = pdf_text(invoice_documents.render_pdf(invoice))
    assert "DRAFT" not in page and "Draft" not in page
    assert invoice.number in page


def test_a_hundred_line_invoice_breaks_across_pages_with_the_header_repeated(acme, vat):
    lines = [{"description": f"Line item {i:03d}", "quantity": "1", "unit_price": f"{i}.00",
              "tax_rate_id": str(vat.id)} for i in range(1, 101)]
    invoice = draft(acme, vat, lines=lines)
    invoices.finalize(invoice, STAFF)

    pages = pdf_text(invoice_documents.render_pdf(invoice))

    assert len(pages) > 1
    assert "Description" in pages[0] and "Line item 001" in pages[0]
    assert "Description" in pages[1], "the table header repeats on page 2"
    assert "Unit price" in pages[1]
    assert "Line item 001" not in pages[1]
    continued = [n for n in range(2, 101) if f"Line item {n:03d}" in pages[1]]
    assert continued, "page 2 carries on with the lines"
    everything = "\n".join(pages)
    assert all(f"Line item {n:03d}" in everything for n in range(1, 101)), "no line lost at a page break"
    assert f"page 2 of {len(pages)}" in pages[1]
    assert "Total" in pages[-1]
