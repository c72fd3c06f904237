"""The business row (one per deployment): the lowest service, read by nearly every other."""
from __future__ import annotations

from sqlalchemy import select

from portal.extensions import db
from portal.models import Business


def get_business() -> Business:
    """The business row; a placeholder is created on first use of an empty database."""
    business = db.session.scalar(select(Business).order_by(Business.id).limit(1))
    if business is None:
        business = Business(name="My Business")
        db.session.add(business)
        db.session.flush()
    return business
