"""Audit log tables. The log is append-only: rows of audit_entry and audit_node are inserted, never changed.

audit_entry       one row per entry: the canonical entry bytes (the Merkle leaf data) and their leaf hash
audit_node        every completed perfect subtree hash, (level, index); level 0 are the leaf hashes
audit_tree_head   a single row (id 1): size, root and frontier; appends lock it (SELECT ... FOR UPDATE)
audit_sensitive   erasable values committed into entries as salted hashes; erasure clears value and salt
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, ForeignKey, LargeBinary, SmallInteger, String, Text
from sqlmodel import Field, SQLModel

import governance.db.base  # noqa: F401  (naming convention first)
from governance.db.types import UTCDateTime

TREE_HEAD_ID = 1


class AuditEntryRow(SQLModel, table=True):
    __tablename__ = "audit_entry"
    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    actor: str | None = Field(default=None, sa_column=Column(String(200), nullable=True, index=True))
    action: str = Field(sa_column=Column(String(100), nullable=False, index=True))
    subject: str = Field(sa_column=Column(String(200), nullable=False, index=True))
    body: str = Field(sa_column=Column(Text, nullable=False))
    leaf_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class AuditNode(SQLModel, table=True):
    __tablename__ = "audit_node"
    level: int = Field(sa_column=Column(SmallInteger, primary_key=True, autoincrement=False))
    idx: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class AuditTreeHead(SQLModel, table=True):
    __tablename__ = "audit_tree_head"
    id: int = Field(sa_column=Column(SmallInteger, primary_key=True, autoincrement=False))
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    root_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    frontier: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class AuditSensitive(SQLModel, table=True):
    __tablename__ = "audit_sensitive"
    seq: int = Field(
        sa_column=Column(BigInteger, ForeignKey("audit_entry.seq"), primary_key=True, autoincrement=False)
    )
    field: str = Field(sa_column=Column(String(100), primary_key=True))
    salt: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    value: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    erased_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    erased_by: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))
    erased_in_seq: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
