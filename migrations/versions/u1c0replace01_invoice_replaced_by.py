"""U1: invoice.replaced_by_invoice_id (the original links to the replacement that voided it)

Revision ID: u1c0replace01
Revises: x1b7a7e0pay01
Create Date: 2026-12-02 01:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'u1c0replace01'
down_revision = 'x1b7a7e0pay01'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('invoice', schema=None) as batch_op:
        batch_op.add_column(sa.Column('replaced_by_invoice_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_invoice_replaced_by_invoice_id_invoice'), 'invoice',
                                    ['replaced_by_invoice_id'], ['id'], ondelete='SET NULL')
    # Replacements finalized before this column existed: the original points at its latest one.
    op.execute(
        "UPDATE invoice SET replaced_by_invoice_id = ("
        " SELECT MAX(r.id) FROM invoice r WHERE r.replaces_invoice_id = invoice.id AND r.status <> 'draft')"
        " WHERE EXISTS (SELECT 1 FROM invoice r WHERE r.replaces_invoice_id = invoice.id AND r.status <> 'draft')"
    )


def downgrade():
    with op.batch_alter_table('invoice', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_invoice_replaced_by_invoice_id_invoice'), type_='foreignkey')
        batch_op.drop_column('replaced_by_invoice_id')
