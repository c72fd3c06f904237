"""Absolute links for emails, built from PORTAL_BASE_URL when it is set.

Building them from PORTAL_BASE_URL (not the request's Host header) keeps a
forged Host header from planting its own domain in a password-reset email.
"""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app, has_request_context, request


def base_url() -> str:
    configured = current_app.config.get("PORTAL_BASE_URL")
    if configured:
        return configured
    if has_request_context():
        return request.host_url.rstrip("/")
    return "http://127.0.0.1:5000"


def external_url(endpoint: str, **values) -> str:
    parts = urlsplit(base_url())
    adapter = current_app.url_map.bind(
        parts.netloc, script_name=parts.path or "/", url_scheme=parts.scheme or "http"
    )
    return adapter.build(endpoint, values, force_external=True)
