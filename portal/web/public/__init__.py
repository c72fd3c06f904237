"""Pages anyone may reach: the front door, health, the brand stylesheet and logo."""
from __future__ import annotations

from flask import Blueprint, Response, abort, jsonify, redirect, render_template, url_for

from portal.services import health
from portal.services.settings import get_business, readable_ink_color, readable_text_color

bp = Blueprint("public", __name__)


@bp.get("/")
def index():
    return render_template("public/index.html")


@bp.get("/healthz")
def healthz():
    status = health.check()
    down = [name for name, state in status.items() if state != "ok"]
    body = {"status": "ok" if not down else "unavailable", "checks": status}
    if down:
        body["unreachable"] = down
    return jsonify(body), (503 if down else 200)


@bp.get("/branding.css")
def branding_css():
    business = get_business()
    colour = business.brand_color
    text = readable_text_color(colour)
    # The brand as text (links, outline buttons, the current page in the menu) is its readable ink:
    # a pale brand colour is darkened until it reads on white (WCAG AA); as a background it is itself.
    ink = readable_ink_color(colour)
    # Pico sets its colours on this selector; repeating it (later) overrides them.
    css = (
        ":root:not([data-theme=dark]),[data-theme=light]{"
        f"--brand:{colour};--brand-text:{text};--brand-ink:{ink};"
        f"--pico-primary:{ink};--pico-primary-underline:color-mix(in srgb,{ink} 50%,transparent);"
        f"--pico-primary-background:{colour};--pico-primary-border:{colour};"
        f"--pico-primary-hover:color-mix(in srgb,{ink} 85%,black);"
        f"--pico-primary-hover-background:color-mix(in srgb,{colour} 85%,black);"
        f"--pico-primary-inverse:{text};"
        f"--pico-primary-focus:color-mix(in srgb,{colour} 35%,transparent);"
        "}"
    )
    response = Response(css, mimetype="text/css")
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/branding/logo")
def logo():
    business = get_business()
    if not business.has_logo:
        abort(404)
    response = Response(business.logo, mimetype=business.logo_content_type)
    # An uploaded SVG is an image, never a document that runs scripts.
    response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/favicon.ico")
def favicon():
    return redirect(url_for("static", filename="favicon.svg"), code=301)


from portal.web.public import subscribe  # noqa: F401  (R1: the public checkout link)
