"""The kinds of refusal the domain and the handlers raise; `shared.problems` maps each to
its problem document (422, 409, 403, 404) in one place, so the domain knows no HTTP."""

from __future__ import annotations


class RuleViolation(Exception):
    """The request breaks a rule; `field` names what is at fault."""

    status = 422

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class Conflict(RuleViolation):
    """The request is sound but the state does not allow it now (e.g. already decided)."""

    status = 409


class TooManyRequests(RuleViolation):
    """Too many requests of this kind lately (a rate limit): try again later."""

    status = 429


class NotAllowed(RuleViolation):
    """A rule of the domain refuses this party (e.g. only the recipient accepts)."""

    status = 403


class NotFound(Exception):
    def __init__(self, what: str, ident: str) -> None:
        super().__init__(f"{what} {ident} not found")
        self.what = what
        self.ident = ident


class Forbidden(Exception):
    """The caller's key may not do this."""
