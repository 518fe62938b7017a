"""comment moderation: replies, edits kept as revisions, soft deletion, reports and hiding

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 10:40:00.000000

"""
from typing import Sequence, Union

from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401
import sqlmodel  # noqa: F401  (autogenerate writes sqlmodel.sql.sqltypes.AutoString)

import governance.db.types  # noqa: F401


# revision identifiers, used by Alembic.
revision: str = '0008'
down_revision: Union[str, Sequence[str], None] = '0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema: a comment may answer another (parent_id), is edited (its earlier bodies in
    proposal_comment_revision), deleted by its author or hidden by a reviewer; members report comments
    (proposal_comment_report) until a reviewer hides the comment or dismisses the reports."""
    with op.batch_alter_table('proposal_comment', schema=None) as batch_op:
        batch_op.add_column(sa.Column('parent_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('edited_at', governance.db.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('deleted_at', governance.db.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('hidden_at', governance.db.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('hidden_by', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('hidden_reason', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f('fk_proposal_comment_parent_id_proposal_comment'), 'proposal_comment', ['parent_id'], ['id']
        )
        batch_op.create_foreign_key(
            batch_op.f('fk_proposal_comment_hidden_by_member'), 'member', ['hidden_by'], ['id']
        )

    op.create_table('proposal_comment_revision',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('comment_id', sa.Integer(), nullable=False),
    sa.Column('body', sqlmodel.sql.sqltypes.AutoString(length=4000), nullable=False),
    sa.Column('written_at', governance.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('replaced_at', governance.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['comment_id'], ['proposal_comment.id'], name=op.f('fk_proposal_comment_revision_comment_id_proposal_comment')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_proposal_comment_revision'))
    )
    with op.batch_alter_table('proposal_comment_revision', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_proposal_comment_revision_comment_id'), ['comment_id'], unique=False)

    op.create_table('proposal_comment_report',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('comment_id', sa.Integer(), nullable=False),
    sa.Column('reporter_id', sa.Integer(), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('created_at', governance.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', governance.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('resolved_by', sa.Integer(), nullable=True),
    sa.Column('resolution', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.ForeignKeyConstraint(['comment_id'], ['proposal_comment.id'], name=op.f('fk_proposal_comment_report_comment_id_proposal_comment')),
    sa.ForeignKeyConstraint(['reporter_id'], ['member.id'], name=op.f('fk_proposal_comment_report_reporter_id_member')),
    sa.ForeignKeyConstraint(['resolved_by'], ['member.id'], name=op.f('fk_proposal_comment_report_resolved_by_member')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_proposal_comment_report'))
    )
    with op.batch_alter_table('proposal_comment_report', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_proposal_comment_report_comment_id'), ['comment_id'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('proposal_comment_report', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_proposal_comment_report_comment_id'))

    op.drop_table('proposal_comment_report')
    with op.batch_alter_table('proposal_comment_revision', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_proposal_comment_revision_comment_id'))

    op.drop_table('proposal_comment_revision')
    with op.batch_alter_table('proposal_comment', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_proposal_comment_hidden_by_member'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_proposal_comment_parent_id_proposal_comment'), type_='foreignkey')
        batch_op.drop_column('hidden_reason')
        batch_op.drop_column('hidden_by')
        batch_op.drop_column('hidden_at')
        batch_op.drop_column('deleted_at')
        batch_op.drop_column('edited_at')
        batch_op.drop_column('parent_id')
