"""One URL, two answers: the full page, or for htmx just the block that changed.

This is the only place that reads HX-* request headers.
"""
from __future__ import annotations

from flask import render_template, request
from jinja2_fragments.flask import render_block


def is_htmx() -> bool:
    return bool(request.htmx) and not request.htmx.boosted and not request.htmx.history_restore_request


def render(template: str, block: str | None = None, **context) -> str:
    if block and is_htmx():
        return render_block(template, block, **context)
    return render_template(template, **context)


def safe_next(target: str | None, prefix: str, default: str) -> str:
    """Only same-site paths inside ``prefix`` may be a post-login destination."""
    if target and target.startswith(prefix) and not target.startswith("//") and "\\" not in target:
        return target
    return default
