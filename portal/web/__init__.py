"""The only code that reads ``request``: blueprints, security headers, errors."""
from __future__ import annotations

from datetime import datetime, timedelta

from babel.dates import format_date, format_datetime
from flask import Flask, current_app, g, jsonify, render_template, request, session
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from werkzeug.datastructures import ImmutableMultiDict

from portal.billing.money import format_money
from portal.extensions import login_manager
from portal.services import sessions as session_service
from portal.services.auth import load_principal
from portal.services.settings import get_business, readable_text_color

# Stripe's documented CSP for Stripe.js and the Payment Element, and nothing else.
STRIPE_SCRIPT = "https://js.stripe.com https://*.js.stripe.com"
STRIPE_FRAMES = "https://js.stripe.com https://*.js.stripe.com https://hooks.stripe.com"
STRIPE_API = "https://api.stripe.com"


class _TextWithoutNul(ImmutableMultiDict):
    """Query and form values with NUL characters removed: no text a person types holds one, and
    PostgreSQL refuses them in text columns (a 500 instead of the form's answer)."""

    def __init__(self, mapping=None):
        if mapping is not None and not isinstance(mapping, dict):
            mapping = [(key.replace("\x00", ""), value.replace("\x00", "") if isinstance(value, str) else value)
                       for key, value in (mapping.items(multi=True) if hasattr(mapping, "items") else mapping)]
        elif isinstance(mapping, dict):
            mapping = {key.replace("\x00", ""): (value.replace("\x00", "") if isinstance(value, str) else value)
                       for key, value in mapping.items()}
        super().__init__(mapping)


def init_app(app: Flask) -> None:
    # On top of whatever request class the extensions set (htmx-flask's adds ``request.htmx``).
    app.request_class = type("PortalRequest", (app.request_class,), {"parameter_storage_class": _TextWithoutNul})
    from portal.web.auth import bp as auth_bp
    from portal.web.client import bp as client_bp
    from portal.web.pay import bp as pay_bp
    from portal.web.public import bp as public_bp
    from portal.web.staff import bp as staff_bp
    from portal.web.webhooks import bp as webhooks_bp

    app.register_blueprint(public_bp)
    app.register_blueprint(auth_bp)
    app.register_blueprint(staff_bp, url_prefix="/staff")
    app.register_blueprint(client_bp, url_prefix="/portal")
    app.register_blueprint(pay_bp)
    app.register_blueprint(webhooks_bp)

    # A session lasts at most this long however busy it is (the idle limit is IDLE_TIMEOUT).
    app.config.setdefault("SESSION_ABSOLUTE_LIFETIME", timedelta(hours=12))
    login_manager.user_loader(_load_user)
    login_manager.session_protection = "basic"
    login_manager.login_view = "auth.staff_login"
    login_manager.login_message = None

    app.before_request(_resume_session)
    app.after_request(_security_headers)
    app.register_error_handler(CSRFError, _csrf_error)
    for code in (403, 404, 405, 413, 429, 500):
        app.register_error_handler(code, _error_page)
    # Redis or the database down (or not answering): 503 "try again in a minute", not a 500.
    for outage in OUTAGES:
        app.register_error_handler(outage, _unavailable)

    app.jinja_env.filters["datetime"] = _format_datetime
    app.jinja_env.filters["event_label"] = _event_label
    app.jinja_env.filters["money"] = _format_money
    app.jinja_env.filters["date"] = _format_date
    app.jinja_env.filters["percent"] = _plain_decimal
    app.jinja_env.filters["quantity"] = _plain_decimal
    app.jinja_env.globals["business"] = _business_for_templates
    app.jinja_env.globals["readable_text_color"] = readable_text_color


def _business_for_templates():
    # g lives as long as the app context; in a long-lived one (a SimpleWorker's,
    # a test's) the session may have been removed since, detaching the cached row.
    from sqlalchemy import inspect as sa_inspect

    if g.get("without_database"):  # an error page: defaults, never a query
        from portal.models import Business

        return Business(name=g.get("brand_name") or "", brand_color="#3355cc", currency="USD", timezone="UTC",
                        locale="en_US")
    if "business" not in g or sa_inspect(g.business).detached:
        g.business = get_business()
    return g.business


def _format_datetime(value: datetime | None, fmt: str = "medium") -> str:
    if value is None:
        return ""
    business = _business_for_templates()
    return format_datetime(value, fmt, tzinfo=business.timezone, locale=business.locale)


def _format_money(minor: int | None, currency: str) -> str:
    """Minor units → "€1,234.50" in the business's locale."""
    if minor is None:
        return ""
    return format_money(int(minor), currency, _business_for_templates().locale)


def _plain_decimal(value) -> str:
    """Decimal("23.0000") → "23"; "2.500" → "2.5"."""
    if value is None or value == "":
        return ""
    from decimal import Decimal

    text = format(Decimal(str(value)).normalize(), "f")
    return text


def _format_date(value, fmt: str = "medium") -> str:
    if value is None:
        return ""
    return format_date(value, fmt, locale=_business_for_templates().locale)


def _event_label(event_type: str) -> str:
    """``contact.portal_link_created`` → ``Contact portal link created``."""
    return event_type.replace(".", " ").replace("_", " ").capitalize()


SESSION_TOKEN = "sid"  # the session cookie's key for the raw server-side session token


def _load_user(user_id: str):
    """Flask-Login's loader: the principal named by ``_user_id`` AND a live ``user_session`` row for the
    cookie's token (services/sessions.py). Anything else is a signed-out visitor: the stale keys leave
    the cookie (its CSRF secret stays, so a public form in another tab still posts)."""
    principal = load_principal(user_id)
    resumed = session_service.resume(session.get(SESSION_TOKEN), principal.kind, principal.id) \
        if principal is not None else None
    if resumed is None or resumed.id is None:
        if resumed is not None and resumed.just_ended in ("idle", "expired"):
            g.session_expired = True
        for key in (SESSION_TOKEN, "_user_id", "_fresh", "_id"):
            session.pop(key, None)
        return None
    g.user_session_id = resumed.id
    return principal


def current_session_id() -> int | None:
    """The signed-in browser's ``user_session.id`` (None when signed out)."""
    return g.get("user_session_id") if current_user.is_authenticated else None


def _resume_session():
    """Load the session first thing (so its idle/lifetime check and throttled last-seen write happen
    before any view's work), and keep the cookie rolling."""
    if request.endpoint == "static" or not current_user.is_authenticated:
        return None
    session.permanent = True
    return None


def _security_headers(response):
    response.vary.add("HX-Request")
    headers = response.headers
    frame_ancestors = "'self'" if getattr(g, "allow_same_origin_frame", False) else "'none'"
    headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; "
        f"script-src 'self' {STRIPE_SCRIPT}; "
        f"frame-src 'self' {STRIPE_FRAMES}; "
        f"connect-src 'self' {STRIPE_API}; "
        "img-src 'self' data:; style-src 'self'; font-src 'self'; object-src 'none'; "
        f"base-uri 'self'; form-action 'self'; frame-ancestors {frame_ancestors}",
    )
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "SAMEORIGIN" if frame_ancestors == "'self'" else "DENY")
    headers.setdefault(
        "Referrer-Policy", "no-referrer" if getattr(g, "token_page", False) else "strict-origin-when-cross-origin"
    )
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(self)")
    if current_app.config.get("PRODUCTION"):
        headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    if getattr(g, "without_database", False) or getattr(g, "token_page", False) or _signed_in():
        headers.setdefault("Cache-Control", "no-store")
    return response


def _signed_in() -> bool:
    """Whether a user is signed in, without failing the response when the database is down."""
    try:
        return current_user.is_authenticated
    except OUTAGES:
        return False


def _wants_json() -> bool:
    return request.path.startswith(("/api/", "/webhooks/")) or (
        request.accept_mimetypes.best == "application/json" and not request.htmx
    )


def _csrf_error(error: CSRFError):
    message = "Your form expired or was sent from somewhere else. Reload the page and try again."
    if _wants_json():
        return jsonify(error="csrf_failed", message=message), 400
    return render_template("errors/error.html", code=400, title="Form expired", message=message), 400


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):g} MB" if size >= 1024 * 1024 else f"{size // 1024} KB"


def _messages(code: int) -> tuple[str, str]:
    from portal.services.settings import LOGO_MAX_BYTES

    if code == 413:
        limit = current_app.config.get("MAX_CONTENT_LENGTH") or 0
        return ("Too large", f"That is more than the portal takes at once: at most {_megabytes(limit)} per "
                f"request, and a logo at most {_megabytes(LOGO_MAX_BYTES)}. Nothing was changed.")
    return MESSAGES.get(code, ("Error", "Something went wrong."))


MESSAGES = {
    403: ("Not allowed", "You don't have access to this page."),
    404: ("Not found", "There's nothing here. Check the link, or go back."),
    405: ("Not allowed", "This page can't be used that way."),
    429: ("Too many attempts", "Too many attempts. Wait a minute, then try again."),
    500: ("Something went wrong", "Something went wrong on our side. Nothing was changed; try again."),
    503: ("Try again in a minute", "We can't take this right now. Try again in a minute."),
}
RETRY_AFTER_SECONDS = 60


def _without_database() -> None:
    """Error pages never query: keep the business's name if it was already loaded, roll back
    whatever the failed request left (a flush the database refused leaves the session unusable
    until then), and let templates fall back to defaults."""
    from sqlalchemy import inspect as sa_inspect

    from portal.extensions import db

    if "brand_name" not in g and "business" in g:
        try:
            g.brand_name = sa_inspect(g.business).dict.get("name")  # loaded already: no query
        except Exception:  # noqa: BLE001 - a name on an error page is not worth failing it
            g.brand_name = None
    g.without_database = True
    try:
        db.session.rollback()
    except Exception:  # noqa: BLE001 - the database may be gone altogether
        current_app.logger.warning("rollback failed while rendering an error page", exc_info=True)


def _error_response(code: int, title: str, message: str):
    if _wants_json():
        error = "unavailable" if code == 503 else title.lower().replace(" ", "_")
        return jsonify(error=error, message=message), code
    return render_template("errors/error.html", code=code, title=title, message=message,
                           brand=g.get("brand_name")), code


def _error_page(error):
    code = getattr(error, "code", 500) or 500
    _without_database()
    title, message = _messages(code)
    return _error_response(code, title, message)


def _is_outage(error: Exception) -> bool:
    """A database or Redis that is down or not answering (not a bug: a missing table is a 500)."""
    import sqlite3

    from sqlalchemy.exc import DBAPIError

    if isinstance(error, DBAPIError) and isinstance(error.orig, sqlite3.Error):
        text = str(error.orig).lower()
        return error.connection_invalidated or any(
            sign in text for sign in ("unable to open", "locked", "disk i/o", "busy", "readonly database"))
    return True


def _unavailable(error):
    if not _is_outage(error):
        raise error
    current_app.logger.warning("503 for %s %s: %s: %s", request.method, request.path, type(error).__name__,
                               str(error).splitlines()[0] if str(error) else "")
    _without_database()
    response, code = _error_response(503, *MESSAGES[503])
    response = current_app.make_response((response, code))
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response.headers["Cache-Control"] = "no-store"
    return response


def _outages() -> tuple[type[Exception], ...]:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from sqlalchemy.exc import InterfaceError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    return (OperationalError, InterfaceError, PoolTimeout, RedisConnectionError, RedisTimeoutError)


OUTAGES = _outages()
