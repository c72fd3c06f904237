"""Helpers for driving pages over HTTP the way a browser would."""
from __future__ import annotations

import re
from email.message import Message

from flask.testing import FlaskClient

_TOKEN = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|"X-CSRFToken": "([^"]+)"')
_LINK = re.compile(r"https?://[^\s\"'<>]+")


def csrf_token(client: FlaskClient, page: str = "/") -> str:
    """The CSRF token of the client's current session, read from a rendered page."""
    html = client.get(page).get_data(as_text=True)
    match = _TOKEN.search(html)
    assert match, f"no CSRF token on {page}"
    return match.group(1) or match.group(2)


def post_form(client: FlaskClient, url: str, data: dict | None = None, htmx: bool = False, **kwargs):
    """POST a form with the session's CSRF token, as the page's form would."""
    payload = dict(data or {})
    payload["csrf_token"] = csrf_token(client)
    headers = kwargs.pop("headers", {})
    if htmx:
        headers["HX-Request"] = "true"
    return client.post(url, data=payload, headers=headers, **kwargs)


def email_text(message: Message) -> str:
    """The plain-text part of an email."""
    if message.is_multipart():
        for part in message.walk():
            if part.get_content_type() == "text/plain":
                return part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")
        raise AssertionError("no text/plain part")
    return message.get_payload(decode=True).decode(message.get_content_charset() or "utf-8")


def links(text: str) -> list[str]:
    return _LINK.findall(text)


def text_of(response) -> str:
    """The page's visible text: scripts, styles and tags removed, ``&amp;`` and ``&#39;`` decoded,
    whitespace collapsed."""
    html = response.get_data(as_text=True)
    html = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", html, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", html).replace("&amp;", "&").replace("&#39;", "'").split())
