"""X1: late payments: payment.excess_state, business.refund_late_payments

Revision ID: x1b7a7e0pay01
Revises: x1a5e55107b1
Create Date: 2026-12-01 01:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'x1b7a7e0pay01'
down_revision = 'x1a5e55107b1'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('payment', schema=None) as batch_op:
        batch_op.add_column(sa.Column('excess_state', sa.String(length=16), nullable=True))
        batch_op.create_index('ix_payment_excess_state', ['excess_state'], unique=False)
    with op.batch_alter_table('business', schema=None) as batch_op:
        batch_op.add_column(sa.Column('refund_late_payments', sa.Boolean(), server_default=sa.true(),
                                      nullable=False))


def downgrade():
    with op.batch_alter_table('business', schema=None) as batch_op:
        batch_op.drop_column('refund_late_payments')
    with op.batch_alter_table('payment', schema=None) as batch_op:
        batch_op.drop_index('ix_payment_excess_state')
        batch_op.drop_column('excess_state')
