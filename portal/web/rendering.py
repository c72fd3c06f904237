"""One URL, two answers: the full page, or for htmx just the block that changed.

This is the only place that reads HX-* request headers.
"""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import render_template, request
from jinja2_fragments.flask import render_block

from portal.services.typed import row_id


def is_htmx() -> bool:
    return bool(request.htmx) and not request.htmx.boosted and not request.htmx.history_restore_request


def render(template: str, block: str | None = None, **context) -> str:
    if block and is_htmx():
        return render_block(template, block, **context)
    return render_template(template, **context)


def safe_next(target: str | None, prefix: str, default: str) -> str:
    """Only same-site paths inside ``prefix`` may be a post-login destination.

    Anything else goes to ``default``: another host (``//evil``, ``https://evil``, ``/\\evil``, which
    browsers read as ``//evil``), and control characters (CR/LF would split the Location header).
    """
    if not target or len(target) > 2000 or not target.startswith(prefix):
        return default
    if "\\" in target or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or "//" in parts.path:
        return default
    return target


MAX_PAGE = 1_000_000


def page_arg(name: str = "page") -> int:
    """The page number in the query string: ASCII digits only (``?page=²`` or ``?page=-3`` is page 1),
    at most ``MAX_PAGE`` (a 30-digit page would overflow the database's OFFSET)."""
    return min(row_id(request.args.get(name)) or 1, MAX_PAGE)
