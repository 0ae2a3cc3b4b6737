"""The kinds of refusal a command handler can raise; the HTTP layer maps them to 4xx."""

from __future__ import annotations


class RuleViolation(Exception):
    """The request breaks a rule; `field` names what is at fault."""

    def __init__(self, field: str, reason: str, status: int = 422) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        self.status = status


class NotFound(Exception):
    def __init__(self, what: str, ident: str) -> None:
        super().__init__(f"{what} {ident} not found")
        self.what = what
        self.ident = ident


class Forbidden(Exception):
    """The caller's key may not do this."""
