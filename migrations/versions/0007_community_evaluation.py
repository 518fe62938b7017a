"""community evaluation: members' evaluation probes and their triage

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 10:40:00.000000

"""
from typing import Sequence, Union

from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401
import sqlmodel  # noqa: F401  (autogenerate writes sqlmodel.sql.sqltypes.AutoString)

import governance.db.types  # noqa: F401


# revision identifiers, used by Alembic.
revision: str = '0007'
down_revision: Union[str, Sequence[str], None] = '0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema: evaluation probes (submitted -> accepted | rejected by a reviewer); a candidate's
    evaluation itself lives in its signed verification report."""
    op.create_table('evaluation_probe',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('title', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('description', sqlmodel.sql.sqltypes.AutoString(length=4000), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('spec_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('submitted_by', sa.Integer(), nullable=False),
    sa.Column('reviewed_by', sa.Integer(), nullable=True),
    sa.Column('review_reason', sqlmodel.sql.sqltypes.AutoString(length=4000), nullable=False),
    sa.Column('created_at', governance.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('decided_at', governance.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['reviewed_by'], ['member.id'], name=op.f('fk_evaluation_probe_reviewed_by_member')),
    sa.ForeignKeyConstraint(['submitted_by'], ['member.id'], name=op.f('fk_evaluation_probe_submitted_by_member')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_evaluation_probe'))
    )
    with op.batch_alter_table('evaluation_probe', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_evaluation_probe_state'), ['state'], unique=False)
        batch_op.create_index(batch_op.f('ix_evaluation_probe_submitted_by'), ['submitted_by'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('evaluation_probe', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_evaluation_probe_submitted_by'))
        batch_op.drop_index(batch_op.f('ix_evaluation_probe_state'))

    op.drop_table('evaluation_probe')
