"""Email attachments, rendered when the email is sent (a registry: kind → renderer).

``queue_email`` keeps a spec such as ``{"type": "invoice_pdf", "invoice_id": 7}``; the delivery job
asks ``render(spec)`` for ``(filename, content type, bytes)``. The modules that own a document
register its renderer (``@renderer("invoice_pdf")``), so sending mail needs no knowledge of invoices
or credit notes. ``portal.create_app`` imports those modules, so a worker has them all.
"""
from __future__ import annotations

from typing import Callable

Renderer = Callable[[dict], tuple[str, str, bytes]]
RENDERERS: dict[str, Renderer] = {}


def renderer(kind: str) -> Callable[[Renderer], Renderer]:
    def register(fn: Renderer) -> Renderer:
        RENDERERS[kind] = fn
        return fn
    return register


def render(spec: dict) -> tuple[str, str, bytes]:
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind not in RENDERERS:
        raise ValueError(f"unknown attachment {spec!r}")
    return RENDERERS[kind](spec)
