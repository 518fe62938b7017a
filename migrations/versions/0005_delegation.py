"""delegation: standing delegations, the delegations each poll froze, proposal tags

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 10:40:00.000000

"""
from typing import Sequence, Union

from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401
import sqlmodel  # noqa: F401  (autogenerate writes sqlmodel.sql.sqltypes.AutoString)

import governance.db.types  # noqa: F401


# revision identifiers, used by Alembic.
revision: str = '0005'
down_revision: Union[str, Sequence[str], None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema: members' delegations (revoked, never deleted), each poll's frozen delegations with the
    depth limit in force when its vote opened, and the tags a proposal carries."""
    op.create_table('delegation',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('delegator_id', sa.Integer(), nullable=False),
    sa.Column('delegate_id', sa.Integer(), nullable=False),
    sa.Column('scope', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('scope_value', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('created_at', governance.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', governance.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['delegate_id'], ['member.id'], name=op.f('fk_delegation_delegate_id_member')),
    sa.ForeignKeyConstraint(['delegator_id'], ['member.id'], name=op.f('fk_delegation_delegator_id_member')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_delegation'))
    )
    with op.batch_alter_table('delegation', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_delegation_delegate_id'), ['delegate_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_delegation_delegator_id'), ['delegator_id'], unique=False)

    op.create_table('poll_delegation',
    sa.Column('proposal_id', sa.Integer(), nullable=False),
    sa.Column('delegator_id', sa.Integer(), nullable=False),
    sa.Column('delegate_id', sa.Integer(), nullable=False),
    sa.Column('delegation_id', sa.Integer(), nullable=False),
    sa.Column('max_depth', sa.Integer(), nullable=False),
    sa.Column('withdrawn_at', governance.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['delegate_id'], ['member.id'], name=op.f('fk_poll_delegation_delegate_id_member')),
    sa.ForeignKeyConstraint(['delegation_id'], ['delegation.id'], name=op.f('fk_poll_delegation_delegation_id_delegation')),
    sa.ForeignKeyConstraint(['delegator_id'], ['member.id'], name=op.f('fk_poll_delegation_delegator_id_member')),
    sa.ForeignKeyConstraint(['proposal_id'], ['proposal.id'], name=op.f('fk_poll_delegation_proposal_id_proposal')),
    sa.PrimaryKeyConstraint('proposal_id', 'delegator_id', name=op.f('pk_poll_delegation'))
    )
    op.create_table('proposal_tag',
    sa.Column('proposal_id', sa.Integer(), nullable=False),
    sa.Column('tag', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.ForeignKeyConstraint(['proposal_id'], ['proposal.id'], name=op.f('fk_proposal_tag_proposal_id_proposal')),
    sa.PrimaryKeyConstraint('proposal_id', 'tag', name=op.f('pk_proposal_tag'))
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table('proposal_tag')
    op.drop_table('poll_delegation')
    with op.batch_alter_table('delegation', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_delegation_delegator_id'))
        batch_op.drop_index(batch_op.f('ix_delegation_delegate_id'))

    op.drop_table('delegation')
