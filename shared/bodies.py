"""The base of every HTTP request body: unknown fields refused, text that cannot hurt.

Every string anywhere in a body (nested models and lists included) is refused
when it holds a control character (NUL, which PostgreSQL cannot store, among them)
or is longer than `MAX_TEXT`; the 422 problem names the field. Fields set tighter
limits of their own.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from shared.access.guard import CONTROL

MAX_TEXT = 10_000


def _check_text(value: Any) -> None:
    if isinstance(value, str):
        if CONTROL.search(value):
            raise ValueError("control characters are not allowed")
        if len(value) > MAX_TEXT:
            raise ValueError(f"longer than {MAX_TEXT} characters")
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            _check_text(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key)
            _check_text(item)


class RequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _safe_text(cls, value: Any) -> Any:
        _check_text(value)
        return value
