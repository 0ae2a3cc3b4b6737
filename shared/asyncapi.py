"""AsyncAPI documents generated from the payload models, one per producing service.

`python -m shared.asyncapi` rewrites `docs/asyncapi/<service>.json`; a test
fails when a checked-in document no longer matches the models.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from shared.contracts import ALL_EVENTS, SUPERSEDED
from shared.contracts.base import EventPayload

OUT = Path(__file__).resolve().parent.parent / "docs" / "asyncapi"


def document(producer: str, models: list[type[EventPayload]]) -> dict[str, Any]:
    broker = KafkaBroker("localhost:9092")
    for model in models:
        broker.publisher(
            model.topic(),
            # Versions after the first are named apart: both may be on the topic at once.
            title=f"{model.topic()}:{model.event_name}"
            + (f".v{model.event_version}" if model.event_version > 1 else ""),
            description=(
                ""
                if model.published
                else "Not published any more (kept in its producer's event store); records"
                " of it from before are still on the topic. "
            )
            + f"CloudEvents type `{model.ce_type()}`, record key: brokerage event id. "
            + (model.__doc__ or "").strip(),
            schema=model,
        )
    spec = AsyncAPI(
        broker,
        title=f"{producer} events",
        version="1.0.0",
        description=f"Events published by the {producer} service on Kafka, as "
        "CloudEvents 1.0 in binary mode (ce_* headers, JSON value).",
    )
    generated: dict[str, Any] = spec.to_specification().to_jsonable()
    return generated


def documents() -> dict[str, dict[str, Any]]:
    by_producer: dict[str, list[type[EventPayload]]] = defaultdict(list)
    # Superseded versions stay documented, as do types no longer published: consumers
    # still meet them on the topics.
    for model in [*ALL_EVENTS, *SUPERSEDED]:
        by_producer[model.producer].append(model)
    return {producer: document(producer, models) for producer, models in by_producer.items()}


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for producer, doc in documents().items():
        (OUT / f"{producer}.json").write_text(render(doc))
        print(f"wrote {OUT / f'{producer}.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
