"""RFC 9457 problem details for every error a service's HTTP API returns."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.errors import Forbidden, NotFound, RuleViolation

PROBLEM_JSON = "application/problem+json"


class ProblemError(Exception):
    """Raised by handlers to answer with a problem document; nothing is stored."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        errors: list[dict[str, Any]] | None = None,
        type_: str = "about:blank",
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors or []
        self.type = type_


def invalid(field: str, reason: str, *, status: int = 422) -> ProblemError:
    """A request whose `field` is wrong for `reason`."""
    return ProblemError(
        status, "Invalid request", f"{field}: {reason}", errors=[{"field": field, "reason": reason}]
    )


def problem_response(request: Request, problem: ProblemError) -> JSONResponse:
    body: dict[str, Any] = {
        "type": problem.type,
        "title": problem.title,
        "status": problem.status,
        "instance": request.url.path,
    }
    if problem.detail:
        body["detail"] = problem.detail
    if problem.errors:
        body["errors"] = problem.errors
    return JSONResponse(body, status_code=problem.status, media_type=PROBLEM_JSON)


def _field(loc: tuple[int | str, ...]) -> str:
    # ("body", "representatives", 0, "email") -> "representatives[0].email"
    parts = [p for p in loc if p not in ("body",)]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "body"


def from_domain(exc: RuleViolation | NotFound | Forbidden) -> ProblemError:
    """The problem document for a domain refusal (the domain knows no HTTP)."""
    if isinstance(exc, RuleViolation):
        return ProblemError(
            exc.status,
            "Request breaks a rule",
            f"{exc.field}: {exc.reason}",
            errors=[{"field": exc.field, "reason": exc.reason}],
        )
    if isinstance(exc, NotFound):
        return ProblemError(404, "Not found", str(exc))
    return ProblemError(403, "Forbidden", str(exc))


def install(app: FastAPI) -> None:
    """Every error a route lets through becomes a problem document, in one place."""

    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(request, exc)

    async def _domain(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RuleViolation | NotFound | Forbidden)
        return problem_response(request, from_domain(exc))

    for refusal in (RuleViolation, NotFound, Forbidden):
        app.add_exception_handler(refusal, _domain)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _field(tuple(e["loc"])), "reason": e["msg"]} for e in exc.errors()]
        detail = "; ".join(f"{e['field']}: {e['reason']}" for e in errors)
        return problem_response(
            request, ProblemError(422, "Invalid request", detail, errors=errors)
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(request, ProblemError(exc.status_code, str(exc.detail)))
