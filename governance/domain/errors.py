"""Domain errors. They know nothing of HTTP; governance/web/errors.py maps them to status codes.

DomainError
├── NotFound            the thing named does not exist            -> 404
├── PermissionDenied    the actor may not do this                 -> 403
├── InvalidInput        the request is malformed or out of range  -> 422
└── Conflict            the request clashes with current state    -> 409
    └── InvalidTransition   the lifecycle does not allow it now
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error the domain raises on purpose. ``message`` is shown to the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotAuthenticated(DomainError):
    pass


class NotFound(DomainError):
    pass


class PermissionDenied(DomainError):
    pass


class InvalidInput(DomainError):
    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class Conflict(DomainError):
    pass


class InvalidTransition(Conflict):
    pass
