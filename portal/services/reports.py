"""Read-only summaries for the staff dashboard."""
from __future__ import annotations

from sqlalchemy import func, select

from portal.extensions import db
from portal.models import Client, Contact, Event
from portal.services.email_log import counts_by_status


def dashboard_summary() -> dict:
    clients = db.session.scalar(select(func.count()).select_from(Client).where(Client.archived_at.is_(None)))
    portal_users = db.session.scalar(
        select(func.count()).select_from(Contact).where(Contact.portal_access.is_(True))
    )
    emails = counts_by_status()
    recent = db.session.scalars(select(Event).order_by(Event.id.desc()).limit(10)).all()
    return {
        "clients": clients,
        "portal_users": portal_users,
        "emails_waiting": emails.get("pending", 0) + emails.get("retrying", 0) + emails.get("sending", 0),
        "emails_failed": emails.get("failed", 0),
        "emails_total": sum(emails.values()),
        "recent_events": recent,
    }
