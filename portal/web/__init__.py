"""The only code that reads ``request``: blueprints, security headers, errors."""
from __future__ import annotations

from datetime import datetime, timedelta

from babel.dates import format_date, format_datetime
from flask import Flask, current_app, g, jsonify, render_template, request, session
from flask_login import current_user
from flask_wtf.csrf import CSRFError

from portal.billing.money import format_money
from portal.extensions import login_manager
from portal.services import sessions as session_service
from portal.services.auth import load_principal
from portal.services.settings import get_business, readable_text_color

# Stripe's documented CSP for Stripe.js and the Payment Element, and nothing else.
STRIPE_SCRIPT = "https://js.stripe.com https://*.js.stripe.com"
STRIPE_FRAMES = "https://js.stripe.com https://*.js.stripe.com https://hooks.stripe.com"
STRIPE_API = "https://api.stripe.com"


def init_app(app: Flask) -> None:
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
    for code in (403, 404, 405, 429, 500):
        app.register_error_handler(code, _error_page)

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
    if current_user.is_authenticated or getattr(g, "token_page", False):
        headers.setdefault("Cache-Control", "no-store")
    return response


def _wants_json() -> bool:
    return request.path.startswith("/api/") or (
        request.accept_mimetypes.best == "application/json" and not request.htmx
    )


def _csrf_error(error: CSRFError):
    message = "Your form expired or was sent from somewhere else. Reload the page and try again."
    if _wants_json():
        return jsonify(error="csrf_failed", message=message), 400
    return render_template("errors/error.html", code=400, title="Form expired", message=message), 400


MESSAGES = {
    403: ("Not allowed", "You don't have access to this page."),
    404: ("Not found", "There's nothing here. Check the link, or go back."),
    405: ("Not allowed", "This page can't be used that way."),
    429: ("Too many attempts", "Too many attempts. Wait a minute, then try again."),
    500: ("Something went wrong", "Something went wrong on our side. Nothing was changed; try again."),
}


def _error_page(error):
    code = getattr(error, "code", 500) or 500
    title, message = MESSAGES.get(code, ("Error", str(error)))
    if _wants_json():
        return jsonify(error=title.lower().replace(" ", "_"), message=message), code
    return render_template("errors/error.html", code=code, title=title, message=message), code
