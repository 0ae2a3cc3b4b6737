"""Lookup from CloudEvents type to payload model, with upcasting of old versions."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from shared import json_codec
from shared.contracts.base import EventPayload

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class UnknownEventType(LookupError):
    pass


class PayloadRegistry:
    def __init__(self, models: Iterable[type[EventPayload]] = ()) -> None:
        self._models: dict[str, type[EventPayload]] = {}
        # old type -> (new type, function turning an old payload into the new one)
        self._upcasters: dict[str, tuple[str, Upcaster]] = {}
        for model in models:
            self.register(model)

    def register(self, model: type[EventPayload]) -> None:
        self._models[model.ce_type()] = model

    def register_upcaster(self, old_type: str, new_type: str, upcast: Upcaster) -> None:
        self._upcasters[old_type] = (new_type, upcast)

    def knows(self, ce_type: str) -> bool:
        return ce_type in self._models or ce_type in self._upcasters

    def current_type(self, ce_type: str) -> str:
        """The type an event of `ce_type` is read as: the newest version it upcasts to."""
        while ce_type in self._upcasters:
            ce_type = self._upcasters[ce_type][0]
        return ce_type

    def models(self) -> list[type[EventPayload]]:
        return list(self._models.values())

    def parse(self, ce_type: str, data: dict[str, Any]) -> EventPayload:
        """Validate `data` as the newest version of `ce_type`'s payload."""
        while ce_type in self._upcasters:
            ce_type, upcast = self._upcasters[ce_type]
            data = upcast(data)
        model = self._models.get(ce_type)
        if model is None:
            raise UnknownEventType(ce_type)
        return model.model_validate(data)

    def parse_json(self, ce_type: str, raw: bytes | str) -> EventPayload:
        """`parse` of the JSON text `raw`: validated by pydantic as it is read (one pass in
        its Rust core, no dictionary built first) where no upcaster applies; an old
        version is decoded, upcast and validated as `parse` does."""
        if ce_type in self._upcasters:
            return self.parse(ce_type, json_codec.loads(raw))
        model = self._models.get(ce_type)
        if model is None:
            raise UnknownEventType(ce_type)
        return model.model_validate_json(raw)
