"""Absolute links for emails and jobs, built from PORTAL_BASE_URL only.

Never from the request: a forged Host header must not plant its own domain in
a password-reset, invitation, sign-in or pay link. Production refuses to start
without PORTAL_BASE_URL; in development without it, links point at the local
address ``make run`` serves (``PORTAL_DEFAULT_BASE_URL``, http://127.0.0.1:$PORT).
A worker (no request at all) builds the same links.
"""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app


def base_url() -> str:
    configured = current_app.config.get("PORTAL_BASE_URL")
    if configured:
        return configured.rstrip("/")
    return (current_app.config.get("PORTAL_DEFAULT_BASE_URL") or "http://127.0.0.1:5000").rstrip("/")


def external_url(endpoint: str, **values) -> str:
    parts = urlsplit(base_url())
    adapter = current_app.url_map.bind(
        parts.netloc, script_name=parts.path or "/", url_scheme=parts.scheme or "http"
    )
    return adapter.build(endpoint, values, force_external=True)
