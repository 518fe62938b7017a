"""Persistence: SQLModel rows, the engine, repositories."""
