"""release trust: signed reports, overrides, signed releases

Revision ID: 0003
Revises: registry_0001
Create Date: 2026-12-05 08:00:00.000000

"""
from typing import Sequence, Union

from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401
import sqlmodel  # noqa: F401  (autogenerate writes sqlmodel.sql.sqltypes.AutoString)

import governance.db.types  # noqa: F401


# revision identifiers, used by Alembic.
revision: str = '0003'
down_revision: Union[str, Sequence[str], None] = 'registry_0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema: council overrides of the release gate (signed reports and model signatures live in
    the existing JSON columns: verification_report.report and model_version.details)."""
    op.create_table('release_override',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model_version', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('content_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=4000), nullable=False),
    sa.Column('requested_by', sa.Integer(), nullable=False),
    sa.Column('approvals', sa.JSON(), nullable=False),
    sa.Column('council_size', sa.Integer(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('created_at', governance.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('granted_at', governance.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['model_version'], ['model_version.version'], name=op.f('fk_release_override_model_version_model_version')),
    sa.ForeignKeyConstraint(['requested_by'], ['member.id'], name=op.f('fk_release_override_requested_by_member')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_release_override'))
    )
    with op.batch_alter_table('release_override', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_release_override_model_version'), ['model_version'], unique=False)
        batch_op.create_index(batch_op.f('ix_release_override_state'), ['state'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('release_override', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_release_override_state'))
        batch_op.drop_index(batch_op.f('ix_release_override_model_version'))

    op.drop_table('release_override')
