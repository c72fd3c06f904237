"""money columns: 8-byte integers on PostgreSQL

A 4-byte column stops at 2,147,483,647 minor units (21.4 million euros; about 85,000 dollars'
worth of dong). SQLite's INTEGER is already 8 bytes, so nothing changes there.

Revision ID: c3a1f0b2d7e4
Revises: ea999c6cfc4d
Create Date: 2026-11-22 04:40:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'c3a1f0b2d7e4'
down_revision = 'ea999c6cfc4d'
branch_labels = None
depends_on = None

MONEY = {
    "invoice": ["discount_fixed", "subtotal", "discount_total", "tax_total", "included_tax_total", "total",
                "amount_paid", "credit_applied", "credit_noted", "amount_due"],
    "invoice_line": ["unit_price", "discount_fixed", "gross", "discount_amount", "net", "tax_amount", "total"],
    "payment": ["amount", "refunded_amount", "credited_amount"],
    "payment_allocation": ["amount"],
    "refund": ["amount", "from_credit"],
    "credit_entry": ["amount"],
    "credit_note": ["amount", "to_due", "to_balance", "to_refund", "to_outside"],
    "service": ["unit_price"],
    "charge": ["unit_price"],
}


def _alter(to_type, from_type) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in MONEY.items():
        for column in columns:
            op.alter_column(table, column, type_=to_type, existing_type=from_type)


def upgrade():
    _alter(sa.BigInteger(), sa.Integer())


def downgrade():
    _alter(sa.Integer(), sa.BigInteger())
