"""bring your own model: a data source's commitment to its owner's protected strings

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 10:40:00.000000

"""
from typing import Sequence, Union

from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401
import sqlmodel  # noqa: F401  (autogenerate writes sqlmodel.sql.sqltypes.AutoString)

import governance.db.types  # noqa: F401


# revision identifiers, used by Alembic.
revision: str = '0009'
down_revision: Union[str, Sequence[str], None] = '0008'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema: a data source's commitment to its owner's protected strings (count, salted sha256)."""
    with op.batch_alter_table('data_source', schema=None) as batch_op:
        batch_op.add_column(sa.Column('protected_count', sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column('protected_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('data_source', schema=None) as batch_op:
        batch_op.drop_column('protected_sha256')
        batch_op.drop_column('protected_count')
