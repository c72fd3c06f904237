"""SQLAlchemy tables, grouped by domain. No Stripe, no mail here."""
from portal.models.catalogue import Charge, Service, TaxRate
from portal.models.credits import CreditEntry, CreditNote
from portal.models.events import Delivery, Event
from portal.models.invoices import Invoice, InvoiceLine, InvoiceToken
from portal.models.payments import Payment, PaymentAllocation, PaymentMethod, Refund, WebhookEvent
from portal.models.people import AuthToken, Client, Contact, StaffUser
from portal.models.sessions import UserSession
from portal.models.settings import Business, EmailTemplate
from portal.models.subscriptions import (
    BillingRun,
    ClientCycle,
    Plan,
    Subscription,
    SubscriptionCharge,
    SubscriptionItem,
    SubscriptionPeriod,
)

__all__ = [
    "AuthToken", "BillingRun", "Business", "ClientCycle", "Plan", "Subscription", "SubscriptionCharge",
    "SubscriptionItem", "SubscriptionPeriod", "Charge", "Client", "Contact", "CreditEntry", "CreditNote", "Delivery", "EmailTemplate", "Event", "Invoice",
    "InvoiceLine", "InvoiceToken", "Payment", "PaymentAllocation", "PaymentMethod", "Refund", "Service", "StaffUser", "TaxRate", "UserSession",
    "WebhookEvent",
]
