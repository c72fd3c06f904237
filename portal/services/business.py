"""The business row (one per deployment): the lowest service, read by nearly every other."""
from __future__ import annotations

from sqlalchemy import inspect, select

from portal.extensions import db
from portal.models import Business

_KEY = "portal_business"


def get_business() -> Business:
    """The business row; a placeholder is created on first use of an empty database.

    Read once per session: the row is kept in the session's ``info``, so later calls are an
    identity-map lookup (one refresh per transaction once a commit has expired it), not a query and
    an autoflush each time (a billing run asks for it dozens of times per invoice)."""
    held = db.session.info.get(_KEY)
    if held is not None:
        # The identity map holds rows weakly: ``info`` keeps this one alive, so ``get`` finds it
        # without a query (after a commit expired it, one refresh).
        key = inspect(held).identity
        business = db.session.get(Business, key[0]) if key and held in db.session else None
        if business is not None:
            return business
    business = db.session.scalar(select(Business).order_by(Business.id).limit(1))
    if business is None:
        business = Business(name="My Business")
        db.session.add(business)
        db.session.flush()
    db.session.info[_KEY] = business
    return business
