"""SQLAlchemy tables, grouped by domain. No Stripe, no mail here."""
from portal.models.events import Delivery, Event
from portal.models.people import AuthToken, Client, Contact, StaffUser
from portal.models.settings import Business

__all__ = ["AuthToken", "Business", "Client", "Contact", "Delivery", "Event", "StaffUser"]
