"""The staff portal (/staff/…)."""
from flask import Blueprint

from portal.web.guards import require_staff

bp = Blueprint("staff", __name__)
bp.before_request(require_staff)

from portal.web.staff import catalogue, charges, clients, dashboard, email_templates, emails, invoices, settings  # noqa: E402,F401
from portal.web.staff import cards, client_billing, credit_notes, credits  # noqa: E402,F401  (F4)
from portal.web.staff import profile, users  # noqa: E402,F401  (X1: sessions, staff users)
from portal.web.staff import billing_runs, plans, subscriptions  # noqa: E402,F401  (R1: recurring billing)
