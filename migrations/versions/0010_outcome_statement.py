"""outcome statement written when a decision closes (reserved; filled by the work that needs it)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 10:40:00.000000

"""
from typing import Sequence, Union

from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401
import sqlmodel  # noqa: F401  (autogenerate writes sqlmodel.sql.sqltypes.AutoString)

import governance.db.types  # noqa: F401


# revision identifiers, used by Alembic.
revision: str = '0010'
down_revision: Union[str, Sequence[str], None] = '0009'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema: outcome statements of closed decisions; every write is a row (version 1, 2, ...), the
    newest one is shown, the earlier ones are its history."""
    op.create_table('outcome_statement',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('proposal_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('author_id', sa.Integer(), nullable=False),
    sa.Column('decision', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('decided', sqlmodel.sql.sqltypes.AutoString(length=4000), nullable=False),
    sa.Column('reasons', sqlmodel.sql.sqltypes.AutoString(length=4000), nullable=False),
    sa.Column('next_steps', sqlmodel.sql.sqltypes.AutoString(length=4000), nullable=False),
    sa.Column('written_at', governance.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['author_id'], ['member.id'], name=op.f('fk_outcome_statement_author_id_member')),
    sa.ForeignKeyConstraint(['proposal_id'], ['proposal.id'], name=op.f('fk_outcome_statement_proposal_id_proposal')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outcome_statement')),
    sa.UniqueConstraint('proposal_id', 'version', name=op.f('uq_outcome_statement_proposal_id_version'))
    )
    with op.batch_alter_table('outcome_statement', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outcome_statement_proposal_id'), ['proposal_id'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('outcome_statement', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outcome_statement_proposal_id'))

    op.drop_table('outcome_statement')
