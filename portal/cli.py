"""``flask --app wsgi portal …``: demo, create-staff, tick, reset-link."""
from __future__ import annotations

from datetime import datetime

import click
from flask.cli import AppGroup

from portal.services.errors import ServiceError

portal_cli = AppGroup("portal", help="Portal administration.")


@portal_cli.command("demo")
@click.option("--if-empty", is_flag=True, help="Do nothing (and say so) when the database already has users.")
def demo(if_empty: bool) -> None:
    """Load the demo business, its staff and clients."""
    from portal.services import demo as demo_service

    if if_empty and not demo_service.database_is_empty():
        click.echo("Database already has data; demo not loaded.")
        return
    try:
        logins = demo_service.load_demo()
    except ServiceError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo("Demo business loaded.")
    for role, (email, password) in logins.items():
        click.echo(f"  {role:<7} {email} / {password}")


@portal_cli.command("create-staff")
@click.argument("email")
@click.option("--role", type=click.Choice(["owner", "staff"]), default="staff", show_default=True)
@click.option("--name", default="", help="Display name.")
@click.password_option("--password", prompt="Password", help="Prompted for when not given.")
def create_staff(email: str, role: str, name: str, password: str) -> None:
    """Create a staff user who signs in at /staff/login."""
    from portal.services.auth import create_staff as create

    try:
        user = create(email, password, role=role, name=name)
    except ServiceError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"Created {user.role} {user.email}.")


@portal_cli.command("tick")
@click.option("--at", "at", default=None, help="Run as of this ISO 8601 time (default: now). Naive = UTC.")
def tick(at: str | None) -> None:
    """Find due work (as of --at) and enqueue it."""
    from portal.services.scheduler import run_tick

    moment = None
    if at:
        try:
            moment = datetime.fromisoformat(at)
        except ValueError as exc:
            raise click.BadParameter(f"not an ISO 8601 time: {at!r}", param_hint="--at") from exc
    result = run_tick(moment)
    click.echo("tick: " + ", ".join(f"{name}={count}" for name, count in result.items()))


@portal_cli.command("bill")
@click.option("--at", "at", default=None, help="Bill as of this ISO 8601 time (default: now). Naive = UTC.")
@click.option("--queue", "use_queue", is_flag=True,
              help="Hand the batches to the RQ workers and follow their progress (default: bill here).")
def bill(at: str | None, use_queue: bool) -> None:
    """Run recurring billing now: every subscription with a period due (as of --at), each period once."""
    import time

    from portal import clock
    from portal.services import subscriptions

    moment = clock.now()
    if at:
        try:
            moment = clock.as_utc(datetime.fromisoformat(at))
        except ValueError as exc:
            raise click.BadParameter(f"not an ISO 8601 time: {at!r}", param_hint="--at") from exc
    started = time.monotonic()
    with clock.not_before(moment):
        if use_queue:
            handed = subscriptions.enqueue_run(moment, "cli")
            run = subscriptions.running()
            if not handed or run is None:
                click.echo("bill: nothing due")
                return
            with click.progressbar(length=run.total, label=f"Billing run {run.id}") as bar:
                done = 0
                while True:
                    from portal.extensions import db

                    db.session.expire_all()
                    run = subscriptions.get_run(run.id)
                    bar.update(run.processed - done)
                    done = run.processed
                    if run.status != "running":
                        break
                    db.session.rollback()
                    time.sleep(0.5)
            totals = {"processed": run.processed, "invoices": run.invoices, "caught_up": run.caught_up,
                      "errors": run.errors}
        else:
            run, due = subscriptions.start_run(moment, "cli")
            if run is None:
                click.echo("bill: nothing due")
                return
            totals = {"processed": 0, "invoices": 0, "caught_up": 0, "errors": 0}
            with click.progressbar(subscriptions.batches(due), label=f"Billing run {run.id}",
                                   item_show_func=lambda b: f"{totals['invoices']} invoices" if b else None) as bar:
                for batch in bar:
                    done = subscriptions.bill_batch(run.id, [s for s, _ in batch], moment)
                    for key in totals:
                        totals[key] += done[key]
    seconds = time.monotonic() - started
    click.echo(f"bill: run {run.id}: {totals['processed']} subscriptions, {totals['invoices']} invoices "
               f"({totals['caught_up']} caught up), {totals['errors']} errors in {seconds:.1f} s")


@portal_cli.command("reset-link")
@click.argument("email")
def reset_link(email: str) -> None:
    """Print a fresh single-use password-reset link for a staff user (or a portal contact).

    The way for the owner to get their own link: secret links in the Emails page are shown only
    to the owner. The link is built from PORTAL_BASE_URL and expires like an emailed one.
    """
    from flask import current_app

    from portal.services.auth import issue_reset_link

    try:
        kind, link = issue_reset_link(email)
    except ServiceError as exc:
        raise click.ClickException(exc.message) from exc
    minutes = int(current_app.config["PASSWORD_RESET_TTL"].total_seconds() // 60)
    who = "staff user" if kind == "staff" else "portal contact"
    click.echo(f"Password-reset link for {who} {email.strip().lower()} (single use, expires in {minutes} minutes):")
    click.echo(link)
