"""Who the portal's emails come from, and the domain of their Message-IDs.

Read when an email is queued (``events.queue_email`` freezes both into the delivery) and when it is
sent (``deliveries``), so a retry after Settings changed is still the same message.
"""
from __future__ import annotations

from email.utils import parseaddr
from urllib.parse import urlsplit

from flask import current_app

from portal.services.business import get_business

FALLBACK_SENDER = "billing@localhost"


def sender() -> str | tuple[str, str]:
    """Who the portal's emails come from: ``MAIL_DEFAULT_SENDER`` when it is set, else the business's
    name and email address (Settings → Business), else ``billing@localhost``."""
    configured = current_app.config.get("MAIL_DEFAULT_SENDER")
    if configured:
        return configured
    business = get_business()
    if business.email:
        return (business.name or "", business.email)
    return FALLBACK_SENDER


def sender_text() -> str:
    """``sender()`` as a person reads it: ``Tidewater Studio <billing@tidewater.example>``."""
    value = sender()
    if isinstance(value, (tuple, list)):
        return f"{value[0]} <{value[1]}>" if value[0] else value[1]
    return value


def mail_domain() -> str:
    """The domain of the sender's address (the Message-ID's right-hand side)."""
    config = current_app.config
    sender_ = sender()
    address = sender_[1] if isinstance(sender_, (tuple, list)) else parseaddr(sender_)[1]
    domain = address.rpartition("@")[2].strip().strip(">")
    if not domain and config.get("PORTAL_BASE_URL"):
        domain = urlsplit(config["PORTAL_BASE_URL"]).hostname or ""
    return domain or "localhost"


def frozen_sender(value) -> str | tuple[str, str] | None:
    """The sender kept in the payload at queue time (JSON turns a (name, address) pair into a list)."""
    if isinstance(value, list) and len(value) == 2:
        return (str(value[0]), str(value[1]))
    return value if isinstance(value, str) and value else None
