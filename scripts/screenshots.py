"""Regenerate the README's phone screenshots (375 x 812) in docs/screenshots/.

    make screenshots            # or: .venv/bin/python scripts/screenshots.py [--out DIR]

Builds a throwaway portal the way ``make run`` does (a temporary SQLite file and the bundled Redis
on a unix socket, migrated, the demo business loaded), gives the demo client a few invoices through
the services (one paid by test card, two open), serves it on a free loopback port in a thread, and
drives Debian's Chromium through Playwright: the guest page of an open invoice, then, signed in as
the demo client through the login form, the portal's home, invoice list, an invoice and "Pay all".
Nothing outside the temporary directory and the output folder is touched.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import threading
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
# The flags tests/conftest.py gives Chromium (CHROMIUM_ARGS).
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]
VIEWPORT = {"width": 375, "height": 812}


def build_portal(instance: Path):
    """The app on a fresh SQLite file and the bundled Redis, migrated, with the demo loaded and the demo
    client's invoices; returns (app, redis process, {name: path to shoot})."""
    for name in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "PORTAL_BASE_URL", "MAIL_SERVER",
                 "STRIPE_SECRET_KEY", "STRIPE_PUBLISHABLE_KEY", "STRIPE_API_BASE"):
        os.environ.pop(name, None)
    os.environ.update(PORTAL_ENV="development", PORTAL_INSTANCE_PATH=str(instance))

    from portal import config as config_module
    from portal.embedded import ensure_redis

    redis = ensure_redis(config_module.embedded_redis_socket(instance), daemonize=False)

    from flask_migrate import upgrade

    from portal import clock, create_app
    from portal.extensions import db
    from portal.models import Client, Contact
    from portal.services import demo, invoices, payments
    from portal.services.events import SYSTEM

    app = create_app()
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        demo.load_demo()
        contact = db.session.query(Contact).filter_by(email=demo.CLIENT[0]).one()
        client = db.session.get(Client, contact.client_id)

        def invoice(lines, due_in_days):
            draft = invoices.create_draft(client, SYSTEM)
            due = (clock.today() + timedelta(days=due_in_days)).isoformat()
            invoices.save_draft(draft, invoices.DraftInput(currency="EUR", due_date=due, lines=lines), SYSTEM)
            return invoices.finalize(draft, SYSTEM)

        paid = invoice([{"description": "Brand workshop (half day)", "quantity": "1", "unit_price": "480.00"}], 7)
        payments.confirm_in_sandbox(payments.start_payment(paid.id, SYSTEM), "card:4242424242424242")
        open_one = invoice([
            {"description": "Design sprint: onboarding flow", "quantity": "2", "unit_price": "650.00"},
            {"description": "Website hosting, monthly", "quantity": "1", "unit_price": "25.00"}], 14)
        invoice([{"description": "Website hosting, monthly", "quantity": "1", "unit_price": "25.00"}], 30)
        token = invoices.issue_guest_token(open_one)
        db.session.commit()
        pages = {
            "guest-pay": f"/pay/{token}",
            "portal-home": "/portal/",
            "portal-invoices": "/portal/invoices",
            "portal-invoice": f"/portal/invoices/{open_one.id}",
            "portal-pay-all": "/portal/pay-all?currency=EUR",
        }
    return app, redis, pages


def shoot(base_url: str, pages: dict[str, str], out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    from portal.services import demo

    saved = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(base_url=base_url, viewport=VIEWPORT, device_scale_factor=1)
            page = context.new_page()
            page.set_default_timeout(15_000)

            def save(name: str, path: str) -> None:
                response = page.goto(path)
                if response is None or not response.ok:
                    raise SystemExit(f"screenshots: {path} answered {response and response.status}")
                page.wait_for_load_state("networkidle")
                target = out / f"{name}.png"
                page.screenshot(path=str(target), full_page=False, animations="disabled", caret="hide")
                saved.append(target)

            save("guest-pay", pages.pop("guest-pay"))

            email, password = demo.CLIENT
            page.goto("/portal/login")
            page.get_by_label("Email").fill(email)
            page.get_by_label("Password").fill(password)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url("**/portal/")
            for name, path in pages.items():
                save(name, path)
        finally:
            browser.close()
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args(argv)
    if not os.path.exists(CHROMIUM):
        print(f"screenshots: needs Chromium at {CHROMIUM} (apt-get install chromium)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)

    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log
    instance = Path(tempfile.mkdtemp(prefix="portal-screenshots-"))
    redis = server = thread = None
    try:
        app, redis, pages = build_portal(instance)
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        for path in shoot(f"http://127.0.0.1:{server.server_port}", pages, args.out):
            print(f"saved {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    finally:
        if server is not None:
            server.shutdown()
            thread.join(timeout=5)
        if redis is not None:
            redis.terminate()
            redis.wait(timeout=10)
        shutil.rmtree(instance, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
