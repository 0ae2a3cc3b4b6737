"""Grafana dashboards for docker-compose.yml: an overview and one per service, generated.

    .venv/bin/python -m scripts.dashboards   # rewrites deploy/grafana/dashboards/*.json

The overview compares the services side by side; each service's own dashboard shows
its throughput, processing latency, errors, consumer lag, outbox backlog and dead
letters (plus its HTTP traffic, and notification's deliveries). Queries filter by the
Prometheus `job`, which `deploy/prometheus/prometheus.yml` names after the service;
the event metrics' own `service` label is the consumer group (a service with two
subscriptions has two). A test fails when the checked-in files are stale.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.settings import SERVICE_PORTS

OUT = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "dashboards"
SERVICES: tuple[str, ...] = tuple(SERVICE_PORTS)
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
JAEGER_UI = "http://localhost:16686"
OVERVIEW_UID = "matchmaking-overview"
SERVICE_TAG = "matchmaking-service"
RATE = "[$__rate_interval]"
WIDTH = 24  # Grafana's grid columns


def uid_of(service: str) -> str:
    return f"matchmaking-{service}"


def file_of(uid: str) -> str:
    return f"{uid.removeprefix('matchmaking-')}.json"


# -- panels -----------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    queries: Sequence[Query]
    unit: str = "short"
    kind: str = "timeseries"  # or "stat"
    description: str = ""
    width: int = 12
    height: int = 8


@dataclass
class Layout:
    """Places panels left to right, row under row, as Grafana's grid does."""

    panels: list[dict[str, Any]] = field(default_factory=list)
    x: int = 0
    y: int = 0
    row_height: int = 0

    def _next_id(self) -> int:
        return len(self.panels) + 1

    def row(self, title: str) -> None:
        self._wrap()
        self.panels.append(
            {
                "id": self._next_id(),
                "type": "row",
                "title": title,
                "collapsed": False,
                "panels": [],
                "gridPos": {"h": 1, "w": WIDTH, "x": 0, "y": self.y},
            }
        )
        self.y += 1

    def add(self, panel: Panel) -> None:
        if self.x + panel.width > WIDTH:
            self._wrap()
        grid = {"h": panel.height, "w": panel.width, "x": self.x, "y": self.y}
        self.panels.append(_panel_json(self._next_id(), panel, grid))
        self.x += panel.width
        self.row_height = max(self.row_height, panel.height)

    def _wrap(self) -> None:
        if self.x:
            self.y += self.row_height
        self.x, self.row_height = 0, 0


def _panel_json(panel_id: int, panel: Panel, grid: dict[str, int]) -> dict[str, Any]:
    targets = [
        {
            "datasource": DATASOURCE,
            "refId": chr(ord("A") + n),
            "expr": q.expr,
            "legendFormat": q.legend or "__auto",
            "range": True,
            "instant": False,
        }
        for n, q in enumerate(panel.queries)
    ]
    out: dict[str, Any] = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": grid,
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
    }
    if panel.kind == "stat":
        out["options"] = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "textMode": "auto",
        }
    else:
        out["options"] = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    return out


# -- queries ----------------------------------------------------------------------


def _rate(metric: str, selector: str, by: str) -> str:
    return f"sum by ({by}) (rate({metric}{{{selector}}}{RATE}))"


def _quantile(q: float, metric: str, selector: str, by: str) -> str:
    grouping = f"{by}, le" if by else "le"
    return (
        f"histogram_quantile({q}, sum by ({grouping}) (rate({metric}_bucket{{{selector}}}{RATE})))"
    )


def _stats(selector: str) -> list[Panel]:
    """The figures an operator looks at first, each summed over `selector`."""
    return [
        Panel(
            "Events processed / s",
            [Query(f"sum(rate(events_processed_total{{{selector}}}{RATE}))")],
            "ops",
            "stat",
            width=4,
            height=4,
        ),
        Panel(
            "Processing errors / s",
            [Query(f"sum(rate(event_processing_errors_total{{{selector}}}{RATE}))")],
            "ops",
            "stat",
            width=4,
            height=4,
        ),
        Panel(
            "Consumer lag",
            [Query(f"sum(consumer_lag{{{selector}}})")],
            "short",
            "stat",
            "Records behind the end of the partitions read",
            width=4,
            height=4,
        ),
        Panel(
            "Outbox backlog",
            [Query(f"sum(outbox_backlog{{{selector}}})")],
            "short",
            "stat",
            "Events stored but not yet published to Kafka",
            width=4,
            height=4,
        ),
        Panel(
            "Dead letters (time range)",
            [Query(f"sum(increase(dead_letters_total{{{selector}}}[$__range]))")],
            "short",
            "stat",
            "Messages sent to a `.dlq` topic after their last attempt",
            width=4,
            height=4,
        ),
        Panel(
            "HTTP requests / s",
            [Query(f"sum(rate(http_server_duration_milliseconds_count{{{selector}}}{RATE}))")],
            "reqps",
            "stat",
            width=4,
            height=4,
        ),
    ]


def overview() -> dict[str, Any]:
    every = 'job=~"' + "|".join(SERVICES) + '"'
    layout = Layout()
    layout.row("Now (all services)")
    for panel in _stats(every):
        layout.add(panel)
    layout.row("By service")
    by_job = [
        Panel(
            "Throughput: events processed / s",
            [Query(_rate("events_processed_total", every, "job"), "{{job}}")],
            "ops",
        ),
        Panel(
            "Processing latency p99 (fetch to commit)",
            [Query(_quantile(0.99, "event_processing_seconds", every, "job"), "{{job}}")],
            "s",
        ),
        Panel(
            "Processing errors / s",
            [Query(_rate("event_processing_errors_total", every, "job"), "{{job}}")],
            "ops",
        ),
        Panel(
            "Consumer lag",
            [Query(f"sum by (job) (consumer_lag{{{every}}})", "{{job}}")],
        ),
        Panel(
            "Outbox backlog",
            [Query(f"sum by (job) (outbox_backlog{{{every}}})", "{{job}}")],
        ),
        Panel(
            "Dead letters",
            [
                Query(
                    f"sum by (job) (increase(dead_letters_total{{{every}}}{RATE}))",
                    "{{job}}",
                )
            ],
        ),
        Panel(
            "HTTP requests / s",
            [Query(_rate("http_server_duration_milliseconds_count", every, "job"), "{{job}}")],
            "reqps",
        ),
        Panel(
            "HTTP latency p99",
            [
                Query(
                    _quantile(0.99, "http_server_duration_milliseconds", every, "job"),
                    "{{job}}",
                )
            ],
            "ms",
        ),
    ]
    for panel in by_job:
        layout.add(panel)
    return _dashboard(
        OVERVIEW_UID,
        "Matchmaking platform: overview",
        "Every service side by side: throughput, processing latency, errors, consumer lag, "
        "outbox backlog, dead letters and HTTP traffic. Each service has its own dashboard "
        "(links above).",
        layout,
        links=[
            {
                "title": "Services",
                "type": "dashboards",
                "tags": [SERVICE_TAG],
                "asDropdown": True,
                "includeVars": False,
                "keepTime": True,
                "targetBlank": False,
                "icon": "external link",
                "tooltip": "",
                "url": "",
            },
            _jaeger_link(None),
        ],
        tags=["matchmaking"],
    )


def service_dashboard(service: str) -> dict[str, Any]:
    job = f'job="{service}"'
    layout = Layout()
    layout.row("Now")
    for panel in _stats(job):
        layout.add(panel)
    layout.row("Event processing")
    for panel in [
        Panel(
            "Throughput by event type",
            [
                Query(
                    _rate("events_processed_total", job, "service, event_type"),
                    "{{service}} {{event_type}}",
                )
            ],
            "ops",
            description="Consumed events applied, per consumer group and CloudEvents type",
        ),
        Panel(
            "Processing latency (fetch to commit)",
            [
                Query(
                    _quantile(q, "event_processing_seconds", job, "service, topic"),
                    f"p{round(q * 100)} {{{{service}}}} {{{{topic}}}}",
                )
                for q in (0.5, 0.95, 0.99)
            ],
            "s",
        ),
        Panel(
            "Processing errors / s",
            [
                Query(
                    _rate("event_processing_errors_total", job, "service, topic"),
                    "{{service}} {{topic}}",
                )
            ],
            "ops",
            description="Failed handler attempts; retried, then dead-lettered",
        ),
        Panel(
            "Dead letters",
            [
                Query(
                    f"sum by (service, topic) (increase(dead_letters_total{{{job}}}{RATE}))",
                    "{{service}} {{topic}}.dlq",
                )
            ],
            description="Messages sent to `<topic>.dlq` after their last attempt",
        ),
    ]:
        layout.add(panel)
    layout.row("Kafka and outbox")
    for panel in [
        Panel(
            "Consumer lag by partition",
            [
                Query(
                    f"sum by (service, topic, partition) (consumer_lag{{{job}}})",
                    "{{service}} {{topic}}/{{partition}}",
                )
            ],
            width=8,
        ),
        Panel(
            "Outbox backlog",
            [Query(f"sum(outbox_backlog{{{job}}})", "unpublished")],
            width=8,
        ),
        Panel(
            "Outbox published / s",
            [Query(f"sum(rate(outbox_published_total{{{job}}}{RATE}))", "published")],
            "ops",
            width=8,
        ),
    ]:
        layout.add(panel)
    layout.row("HTTP")
    for panel in [
        Panel(
            "HTTP requests / s",
            [Query(f"sum(rate(http_server_duration_milliseconds_count{{{job}}}{RATE}))", "all")],
            "reqps",
        ),
        Panel(
            "HTTP latency",
            [
                Query(_quantile(q, "http_server_duration_milliseconds", job, ""), f"p{q * 100:g}")
                for q in (0.5, 0.99)
            ],
            "ms",
        ),
    ]:
        layout.add(panel)
    for title, panels in EXTRA.get(service, []):
        layout.row(title)
        for panel in panels:
            layout.add(panel)
    return _dashboard(
        uid_of(service),
        f"Matchmaking platform: {service}",
        f"The {service} service: throughput, processing latency, errors, consumer lag, "
        "outbox backlog, dead letters and HTTP traffic.",
        layout,
        links=[
            {
                "title": "Overview",
                "type": "link",
                "url": f"/d/{OVERVIEW_UID}",
                "icon": "dashboard",
                "includeVars": False,
                "keepTime": True,
                "targetBlank": False,
                "asDropdown": False,
                "tooltip": "",
                "tags": [],
            },
            _jaeger_link(service),
        ],
        tags=["matchmaking", SERVICE_TAG],
    )


# Rows only one service has, over metrics only it exports.
_NOTIFICATION = 'job="notification"'
EXTRA: dict[str, list[tuple[str, list[Panel]]]] = {
    "notification": [
        (
            "Deliveries",
            [
                Panel(
                    "Delivery attempts by outcome",
                    [
                        Query(
                            _rate("notification_deliveries_total", _NOTIFICATION, "outcome"),
                            "{{outcome}}",
                        )
                    ],
                    "ops",
                    description="sent, retry (backing off), failed (for good), skipped",
                ),
                Panel(
                    "Delivery attempts by channel and kind",
                    [
                        Query(
                            _rate("notification_deliveries_total", _NOTIFICATION, "channel, kind"),
                            "{{channel}} {{kind}}",
                        )
                    ],
                    "ops",
                ),
            ],
        )
    ]
}


def _jaeger_link(service: str | None) -> dict[str, Any]:
    query = f"?service={service}" if service else ""
    return {
        "title": "Traces (Jaeger)",
        "type": "link",
        "url": f"{JAEGER_UI}/search{query}",
        "icon": "external link",
        "targetBlank": True,
        "includeVars": False,
        "keepTime": False,
        "asDropdown": False,
        "tooltip": "",
        "tags": [],
    }


def _dashboard(
    uid: str,
    title: str,
    description: str,
    layout: Layout,
    *,
    links: list[dict[str, Any]],
    tags: list[str],
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": tags,
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,
        "refresh": "10s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "annotations": {"list": []},
        "templating": {"list": []},
        "links": links,
        "panels": layout.panels,
    }


def dashboards() -> dict[str, dict[str, Any]]:
    """File name -> dashboard."""
    built = [overview(), *(service_dashboard(s) for s in SERVICES)]
    return {file_of(d["uid"]): d for d in built}


def render(dashboard: dict[str, Any]) -> str:
    return json.dumps(dashboard, indent=2) + "\n"


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    wanted = dashboards()
    for stale in OUT.glob("*.json"):
        if stale.name not in wanted:
            stale.unlink()
            print(f"removed {stale}")
    for name, dashboard in wanted.items():
        (OUT / name).write_text(render(dashboard))
        print(f"wrote {OUT / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
