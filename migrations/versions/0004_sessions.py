"""server-side sessions and sign-in limits

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 08:00:00.000000

"""
from typing import Sequence, Union

from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401
import sqlmodel  # noqa: F401  (autogenerate writes sqlmodel.sql.sqltypes.AutoString)

import governance.db.types  # noqa: F401


# revision identifiers, used by Alembic.
revision: str = '0004'
down_revision: Union[str, Sequence[str], None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema: server-side UI sessions (a signed-out cookie is dead) and failed sign-ins (the limits
    survive a restart)."""
    op.create_table('login_attempt',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('handle', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('address', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('at', governance.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_login_attempt'))
    )
    with op.batch_alter_table('login_attempt', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_login_attempt_address'), ['address'], unique=False)
        batch_op.create_index('ix_login_attempt_at', ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_login_attempt_handle'), ['handle'], unique=False)

    op.create_table('ui_session',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('password_fp', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('created_at', governance.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', governance.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['member.id'], name=op.f('fk_ui_session_member_id_member')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ui_session'))
    )
    with op.batch_alter_table('ui_session', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ui_session_member_id'), ['member_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ui_session_token_hash'), ['token_hash'], unique=True)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('ui_session', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ui_session_token_hash'))
        batch_op.drop_index(batch_op.f('ix_ui_session_member_id'))

    op.drop_table('ui_session')
    with op.batch_alter_table('login_attempt', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_login_attempt_handle'))
        batch_op.drop_index('ix_login_attempt_at')
        batch_op.drop_index(batch_op.f('ix_login_attempt_address'))

    op.drop_table('login_attempt')
