"""contribution ledger: what each trained model version was trained on, and each node's contribution

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 10:40:00.000000

"""
from typing import Sequence, Union

from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401
import sqlmodel  # noqa: F401  (autogenerate writes sqlmodel.sql.sqltypes.AutoString)

import governance.db.types  # noqa: F401


# revision identifiers, used by Alembic.
revision: str = '0006'
down_revision: Union[str, Sequence[str], None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema: training_record (one row per trained model version)."""
    op.create_table('training_record',
    sa.Column('model_version', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('job_id', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('sources', sa.JSON(), nullable=True),
    sa.Column('contribution', sa.JSON(), nullable=True),
    sa.Column('audit_seq', sa.Integer(), nullable=False),
    sa.Column('created_at', governance.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['model_version'], ['model_version.version'], name=op.f('fk_training_record_model_version_model_version')),
    sa.PrimaryKeyConstraint('model_version', name=op.f('pk_training_record'))
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table('training_record')
