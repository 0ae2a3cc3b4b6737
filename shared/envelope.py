"""CloudEvents 1.0 envelope in Kafka binary mode.

The record value is the JSON payload; the context attributes travel as `ce_*`
headers, plus `content-type`, the W3C `traceparent`/`tracestate` and our
correlation/causation extensions. The record key is the brokerage event's id so
that everything about one matchmaking event stays in order within a topic.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

from shared import json_codec
from shared.contracts.base import EventPayload

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"

Headers = list[tuple[str, bytes]]


class MalformedEnvelope(ValueError):
    """A Kafka record that is not a CloudEvent we can read."""


# The actor of the command or reaction being handled: set by the HTTP layer
# (`shared.api.run_command`) and the inbox, read when an event is wrapped.
ACTOR: ContextVar[str | None] = ContextVar("actor", default=None)


@dataclass(frozen=True)
class Envelope:
    id: str
    source: str
    type: str
    key: str
    data: dict[str, Any]
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    subject: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    traceparent: str | None = None
    tracestate: str | None = None
    # Who caused it: the principal of the command (e.g. "organiser:<id>"), or the service
    # whose reaction to another event it is (a CloudEvents extension, `ce_actor`).
    actor: str | None = None
    # `data` as the record's own JSON (UTF-8), when it was read from one as strict JSON
    # (`json_codec.loads_keeping_strict`): what reporting's history stores, not encoded
    # again (kept as bytes: only the history decodes it). Not a constructor argument, so
    # `replace(envelope, data=...)` drops it.
    data_json: bytes | None = field(default=None, init=False, compare=False, repr=False)

    @classmethod
    def wrap(
        cls,
        payload: EventPayload,
        *,
        key: str,
        subject: str | None = None,
        event_id: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        actor: str | None = None,
    ) -> Envelope:
        # Made as `_of` makes them (every field named): a run of accepts wraps thousands.
        return cls._of(
            {
                "id": event_id or str(uuid.uuid4()),
                "source": f"/services/{payload.producer}",
                "type": payload.ce_type(),
                "key": key,
                "data": payload.model_dump(mode="json"),
                "time": datetime.now(UTC),
                "subject": subject,
                "correlation_id": correlation_id,
                "causation_id": causation_id,
                "traceparent": None,
                "tracestate": None,
                "actor": actor or ACTOR.get(),
            }
        )

    def with_trace(self, traceparent: str | None, tracestate: str | None = None) -> Envelope:
        return replace(self, traceparent=traceparent, tracestate=tracestate)

    # -- Kafka binary mode -------------------------------------------------

    def kafka_headers(self) -> Headers:
        headers: Headers = [
            ("ce_specversion", SPEC_VERSION.encode()),
            ("ce_id", self.id.encode()),
            ("ce_source", self.source.encode()),
            ("ce_type", self.type.encode()),
            ("ce_time", self.time.isoformat().encode()),
            ("content-type", CONTENT_TYPE.encode()),
        ]
        optional = {
            "ce_subject": self.subject,
            "ce_correlationid": self.correlation_id,
            "ce_causationid": self.causation_id,
            "ce_actor": self.actor,
            "traceparent": self.traceparent,
            "tracestate": self.tracestate,
            "actor": self.actor,
        }
        headers += [(name, value.encode()) for name, value in optional.items() if value]
        return headers

    def kafka_value(self) -> bytes:
        return json_codec.dumps_bytes(self.data)

    @classmethod
    def from_kafka(
        cls,
        key: bytes | None,
        value: bytes | None,
        headers: Iterable[tuple[str, bytes | None]],
    ) -> Envelope:
        return cls.from_header_texts(key, value, header_texts(headers))

    @classmethod
    def from_kafka_headers(
        cls, key: bytes | None, value: bytes | None, headers: Mapping[str, bytes | None]
    ) -> Envelope:
        """`from_kafka` with the headers as a mapping (the last of a repeated name)."""
        return cls.from_header_texts(key, value, header_texts(headers.items()))

    @classmethod
    def from_header_texts(
        cls, key: bytes | None, value: bytes | None, texts: Mapping[str, str | None]
    ) -> Envelope:
        """`from_kafka` from the headers `header_texts` decoded (a caller that looked at
        them first, as the rebuild does, to skip records before decoding their value)."""
        get = texts.get
        ce_id, source, ce_type = get("ce_id"), get("ce_source"), get("ce_type")
        if not ce_id or not source or not ce_type:
            missing = [n for n in ("ce_id", "ce_source", "ce_type") if not get(n)]
            raise MalformedEnvelope(f"missing CloudEvents headers: {', '.join(missing)}")
        if (spec := get("ce_specversion")) != SPEC_VERSION:
            raise MalformedEnvelope(f"unsupported specversion {spec!r}")
        try:
            data, strict = json_codec.loads_keeping_strict(value or b"null")
        except ValueError as exc:
            raise MalformedEnvelope(f"value is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise MalformedEnvelope("value is not a JSON object")
        stamp = get("ce_time")
        try:
            time = datetime.fromisoformat(stamp) if stamp is not None else None
        except ValueError as exc:
            raise MalformedEnvelope(f"bad ce_time: {exc}") from exc
        return cls._of(
            {
                "id": ce_id,
                "source": source,
                "type": ce_type,
                "key": (key or b"").decode(),
                "data": data,
                "time": time or datetime.now(UTC),
                "subject": get("ce_subject"),
                "correlation_id": get("ce_correlationid"),
                "causation_id": get("ce_causationid"),
                "traceparent": get("traceparent"),
                "tracestate": get("tracestate"),
                "actor": get("ce_actor"),
                "data_json": strict,
            }
        )

    @classmethod
    def _of(cls, fields: dict[str, Any]) -> Envelope:
        """An envelope of `fields` (every field, each named once), made without the frozen
        dataclass's `__init__`, whose twelve `object.__setattr__` calls cost more than the
        rest of decoding a record (a rebuild decodes hundreds of thousands)."""
        envelope = object.__new__(cls)
        envelope.__dict__.update(fields)
        return envelope

    # -- storage (outbox rows, event metadata) -----------------------------

    def to_record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "key": self.key,
            "data": self.data,
            "time": self.time.isoformat(),
            "subject": self.subject,
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
            "traceparent": self.traceparent,
            "tracestate": self.tracestate,
            "actor": self.actor,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Envelope:
        keys = record.keys()
        if not (keys <= _FIELD_SET and _REQUIRED <= keys):
            return cls(**{**record, "time": datetime.fromisoformat(record["time"])})  # raises
        # Every field, None where the record leaves it out, with dictionary copies rather
        # than a comprehension over the names (a rebuild reads hundreds of thousands).
        fields = _ABSENT.copy()
        fields.update(record)
        fields["time"] = datetime.fromisoformat(record["time"])
        return cls._of(fields)


# The headers an envelope is read from (`header_texts`).
_READ_HEADERS = frozenset(
    {
        "ce_specversion",
        "ce_id",
        "ce_source",
        "ce_type",
        "ce_time",
        "ce_subject",
        "ce_correlationid",
        "ce_causationid",
        "ce_actor",
        "traceparent",
        "tracestate",
    }
)


def header_texts(headers: Iterable[tuple[str, bytes | None]]) -> dict[str, str | None]:
    """The headers an envelope is read from, decoded (invalid UTF-8 replaced), in one pass
    over a record's list: the last of a repeated name, None for a header without a
    value (as if it were absent). Others (`content-type`, ...) are left out."""
    texts: dict[str, str | None] = {}
    for name, raw in headers:
        if name in _READ_HEADERS:
            texts[name] = None if raw is None else raw.decode("utf-8", "replace")
    return texts


_FIELDS = tuple(f.name for f in fields(Envelope) if f.init)  # (not `data_json`)
_FIELD_SET = frozenset(_FIELDS)
_REQUIRED = frozenset({"id", "source", "type", "key", "data"})
_ABSENT: dict[str, Any] = dict.fromkeys(_FIELDS)
