"""The demo business that ``make run`` loads into an empty database."""
from __future__ import annotations

from decimal import Decimal

from sqlalchemy import func, select

from portal.extensions import db
from portal.models import Client, Contact, Service, StaffUser, TaxRate
from portal.services.errors import ServiceError
from portal.services.events import SYSTEM, commit, record_event
from portal.services.passwords import hash_password
from portal.services.settings import get_business

OWNER = ("owner@demo.example", "demo-owner-pass")
STAFF = ("staff@demo.example", "demo-staff-pass")
CLIENT = ("ana@acme.example", "demo-client-pass")

LOGO_SVG = b"""<svg xmlns="http://www.w3.org/2000/svg" width="48" height="48" viewBox="0 0 48 48">
<rect x="0" y="0" width="48" height="48" rx="11" fill="#0f766e"/>
<path d="M8 30 q8 -8 16 0 t16 0 v6 q-8 -8 -16 0 t-16 0 z" fill="#ffffff"/>
<path d="M8 20 q8 -8 16 0 t16 0 v5 q-8 -8 -16 0 t-16 0 z" fill="#99f6e4"/>
</svg>"""

CLIENTS = [
    {
        "client": {"name": "Acme Robotics Ltd", "kind": "company", "email": "accounts@acme.example",
                   "address": "12 Foundry Lane\nManchester M1 2AB\nUnited Kingdom", "tax_id": "GB123456789"},
        "contacts": [
            {"name": "Ana Ribeiro", "email": CLIENT[0], "receives_invoices": True},
            {"name": "Tom Hale", "email": "tom@acme.example", "receives_invoices": False},
        ],
    },
    {
        "client": {"name": "Bluebird Coffee Co.", "kind": "company", "email": "hello@bluebird.example",
                   "address": "88 Harbour Street\nPortland, OR 97204\nUSA"},
        "contacts": [{"name": "Jamie Park", "email": "jamie@bluebird.example", "receives_invoices": True}],
    },
    {
        "client": {"name": "Dr. Mara Okafor", "kind": "person", "email": "mara@okafor.example"},
        "contacts": [{"name": "Mara Okafor", "email": "mara@okafor.example", "receives_invoices": True}],
    },
    {
        "client": {"name": "Northwind Architects", "kind": "company", "email": "finance@northwind.example",
                   "address": "Rua Augusta 100\n1100-053 Lisboa\nPortugal", "tax_id": "PT500100200"},
        "contacts": [
            {"name": "Rui Costa", "email": "rui@northwind.example", "receives_invoices": True},
            {"name": "Inês Lopes", "email": "ines@northwind.example", "receives_invoices": True},
        ],
    },
]


# The catalogue, so "New invoice → add a line" has something to pick (prices in the business's EUR, minor units).
TAX_RATE = {"name": "VAT", "percent": Decimal("23"), "inclusive": False}
SERVICES = [
    {"name": "Design sprint", "description": "One day of product and visual design, with a review call.",
     "unit_price": 65000},
    {"name": "Website hosting", "description": "Managed hosting, backups and updates for one month.",
     "unit_price": 2500},
]


# Recurring billing (R1): plans, and two subscriptions started the day the demo loads. Acme's bills on
# the scheduler's first run (an invoice Ana sees in the portal); Northwind's waits for staff to make its
# first invoice by hand (its page offers "Make the first invoice now"). Prices in EUR major units.
PLANS = [
    {"name": "Managed hosting", "description": "Hosting, backups and updates, billed monthly.", "unit_price": "25.00",
     "unit": "month", "interval": "1", "service": "Website hosting"},
    {"name": "Design retainer", "description": "Two design days a quarter, with a planning call.",
     "unit_price": "1500.00", "unit": "month", "interval": "3", "setup_fee": "250.00"},
    {"name": "Studio membership", "description": "A desk in the studio, coffee included.", "unit_price": "49.00",
     "unit": "month", "interval": "1", "trial_days": "14", "self_serve": "y"},
]
SUBSCRIPTIONS = [
    {"client": "Acme Robotics Ltd", "plan": "Managed hosting", "quantity": "2", "first_invoice": "auto"},
    {"client": "Northwind Architects", "plan": "Design retainer", "quantity": "1", "first_invoice": "manual"},
]


def database_is_empty() -> bool:
    return not db.session.scalar(select(func.count()).select_from(StaffUser))


def load_demo() -> dict[str, tuple[str, str]]:
    """Load the demo business. Refuses if staff users already exist."""
    if not database_is_empty():
        raise ServiceError("The database already has staff users; the demo loads only into an empty one.")
    business = get_business()
    business.name = "Tidewater Studio"
    business.legal_name = "Tidewater Studio Lda."
    business.email = "billing@tidewater.example"
    business.phone = "+351 21 000 0000"
    business.website = "https://tidewater.example"
    business.address = "Rua do Ouro 24\n1100-063 Lisboa\nPortugal"
    business.brand_color = "#0f766e"
    business.logo, business.logo_content_type = LOGO_SVG, "image/svg+xml"
    business.currency = "EUR"
    business.timezone = "Europe/Lisbon"
    business.locale = "en_IE"
    business.payment_terms_days = 14
    business.invoice_footer = "Thank you for your business. Bank transfer: IBAN PT50 0000 0000 0000 0000 0000 0."

    db.session.add(StaffUser(email=OWNER[0], name="Olivia Owner", role="owner",
                             password_hash=hash_password(OWNER[1])))
    db.session.add(StaffUser(email=STAFF[0], name="Sam Staff", role="staff",
                             password_hash=hash_password(STAFF[1])))
    for spec in CLIENTS:
        client = Client(**spec["client"])
        for contact_spec in spec["contacts"]:
            contact = Contact(**contact_spec)
            if contact.email == CLIENT[0]:
                contact.portal_access = True
                contact.password_hash = hash_password(CLIENT[1])
            client.contacts.append(contact)
        db.session.add(client)
    vat = TaxRate(**TAX_RATE)
    db.session.add(vat)
    db.session.flush()
    for spec in SERVICES:
        db.session.add(Service(**spec, currency=business.currency, tax_rate=vat))
    db.session.flush()
    record_event("demo.loaded", "business", business.id, SYSTEM)
    commit()
    _load_subscriptions(vat)
    return {"owner": OWNER, "staff": STAFF, "client": CLIENT}


def _load_subscriptions(vat: TaxRate) -> None:
    """The demo's plans and subscriptions, through the services that staff use (each commits)."""
    from portal.services import subscriptions

    services = {s.name: s.id for s in db.session.scalars(select(Service))}
    plans = {}
    for spec in PLANS:
        values = {k: v for k, v in spec.items() if k != "service"}
        values.update(currency=get_business().currency, tax_rate_id=str(vat.id),
                      service_id=str(services.get(spec.get("service"), "")))
        plans[spec["name"]] = subscriptions.create_plan(values, SYSTEM)
    clients = {c.name: c for c in db.session.scalars(select(Client))}
    for spec in SUBSCRIPTIONS:
        subscriptions.create_subscription(clients[spec["client"]], {
            "items": [{"plan_id": str(plans[spec["plan"]].id), "quantity": spec["quantity"]}],
            "first_invoice": spec["first_invoice"]}, SYSTEM)
