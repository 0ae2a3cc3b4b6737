"""The generated Grafana dashboards, checked against the series the code exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.dashboards import OVERVIEW_UID, uid_of
from scripts.dashboards import dashboards as generated_dashboards
from scripts.dashboards import render as render_dashboard
from tests import promql
from tests.unit.deploy_configs.files import (
    EXPORTED_SERIES,
    GRAFANA_DASHBOARDS,
    PROMETHEUS_CONFIG,
    SCRAPE_LABELS,
    SERVICES,
    SIGNALS,
    host_port,
    scrape_targets,
)

# --------------------------------------------------------------------------
# Grafana dashboards
# --------------------------------------------------------------------------


def test_dashboards_are_generated_and_up_to_date(dashboards: dict[str, dict[str, Any]]) -> None:
    wanted = generated_dashboards()
    assert set(dashboards) == set(wanted), "run `python -m scripts.dashboards`"
    for name, dashboard in wanted.items():
        on_disk = (GRAFANA_DASHBOARDS / name).read_text(encoding="utf-8")
        assert on_disk == render_dashboard(dashboard), (
            f"deploy/grafana/dashboards/{name} is stale: run `python -m scripts.dashboards`"
        )


def test_an_overview_and_one_dashboard_per_service(
    dashboards: dict[str, dict[str, Any]], compose_services: dict[str, dict[str, Any]]
) -> None:
    uids = [d.get("uid") for d in dashboards.values()]
    titles = [d.get("title") for d in dashboards.values()]
    assert all(uids) and len(set(uids)) == len(uids), f"uids must be unique: {uids}"
    assert all(titles) and len(set(titles)) == len(titles), f"titles must be unique: {titles}"
    assert all(len(str(uid)) <= 40 for uid in uids), "Grafana allows uids of 40 characters"
    by_uid = {d["uid"]: d for d in dashboards.values()}
    assert OVERVIEW_UID in by_uid
    for service in SERVICES:
        assert service in compose_services
        assert uid_of(service) in by_uid, f"no dashboard for {service}"


def test_dashboard_links_resolve(dashboards: dict[str, dict[str, Any]]) -> None:
    by_uid = {d["uid"]: d for d in dashboards.values()}
    for dashboard in dashboards.values():
        for link in dashboard.get("links", []):
            if link["type"] == "dashboards":
                tagged = [d for d in by_uid.values() if set(link["tags"]) <= set(d["tags"])]
                assert {d["uid"] for d in tagged} == {uid_of(s) for s in SERVICES}, link
            elif link["url"].startswith("/d/"):
                assert link["url"].removeprefix("/d/") in by_uid, link
            else:
                host, port = host_port(link["url"])
                assert (host, port) == ("localhost", 16686), "links to Jaeger's published UI"


def _rectangles_overlap(a: dict[str, int], b: dict[str, int]) -> bool:
    return (
        a["x"] < b["x"] + b["w"]
        and b["x"] < a["x"] + a["w"]
        and a["y"] < b["y"] + b["h"]
        and b["y"] < a["y"] + a["h"]
    )


def test_dashboard_panels_have_datasource_targets_and_room(
    dashboards: dict[str, dict[str, Any]], grafana_datasources: list[dict[str, Any]]
) -> None:
    provisioned = {ds["uid"]: ds["type"] for ds in grafana_datasources}
    for name, dashboard in dashboards.items():
        panels = promql.panels(dashboard)
        assert panels, f"{name} has no panels"
        rows = [p for p in dashboard.get("panels", []) if p.get("type") == "row"]
        ids = [panel.get("id") for panel in rows + panels]
        assert len(ids) == len(set(ids)), f"{name}: panel ids must be unique"
        for panel in panels:
            title = f"{name}: {panel.get('title')!r}"
            datasource = panel.get("datasource")
            assert isinstance(datasource, dict), f"{title} has no datasource"
            assert provisioned.get(datasource.get("uid")) == datasource.get("type"), (
                f"{title} uses datasource {datasource}, which is not provisioned"
            )
            targets = panel.get("targets")
            assert targets, f"{title} has no targets"
            ref_ids = [target.get("refId") for target in targets]
            assert all(ref_ids) and len(set(ref_ids)) == len(ref_ids), f"{title}: refIds"
            for target in targets:
                assert str(target.get("expr", "")).strip(), f"{title} has an empty query"
                if "datasource" in target:
                    assert target["datasource"].get("uid") == datasource.get("uid")
        placed = [p for p in dashboard.get("panels", []) if "gridPos" in p]
        assert len(placed) == len(dashboard.get("panels", [])), f"{name}: a panel has no gridPos"
        for panel in placed:
            grid = panel["gridPos"]
            assert {"h", "w", "x", "y"} <= set(grid), f"{name}: {panel.get('title')!r}"
            assert grid["x"] >= 0 and grid["w"] > 0 and grid["h"] > 0
            assert grid["x"] + grid["w"] <= 24, f"{name}: {panel.get('title')!r} is too wide"
        for n, a in enumerate(placed):
            for b in placed[n + 1 :]:
                assert not _rectangles_overlap(a["gridPos"], b["gridPos"]), (
                    f"{name}: {a.get('title')!r} overlaps {b.get('title')!r}"
                )


def test_promql_parser_sees_metrics_and_labels() -> None:
    use = promql.parse(
        "histogram_quantile(0.99, sum by (service, le) "
        '(rate(event_processing_seconds_bucket{service=~"$service", topic!="x{y}"}'
        "[$__rate_interval])))"
    )
    assert use.series == {"event_processing_seconds_bucket"}
    assert use.selector_labels == {"event_processing_seconds_bucket": {"service", "topic"}}
    assert use.grouping_labels == {"service", "le"}
    assert promql.parse("sum(outbox_backlog) / ignoring(x) up").series == {
        "outbox_backlog",
        "up",
    }
    assert promql.unbalanced('sum(rate(x{a="(("}[5m]))') is None
    assert promql.unbalanced("sum(rate(x[5m])") == "unclosed '('"
    assert promql.unbalanced("sum(x[5m)]") == "unexpected ')'"


def test_instrumented_series_are_what_prometheus_client_prints() -> None:
    # The collection itself: counters end in _total, histograms come as buckets.
    assert EXPORTED_SERIES["events_processed_total"] == {"service", "topic", "event_type"}
    assert "le" in EXPORTED_SERIES["event_processing_seconds_bucket"]
    assert EXPORTED_SERIES["consumer_lag"] == {"service", "topic", "partition"}
    assert "http_server_duration_milliseconds_bucket" in EXPORTED_SERIES


def test_dashboard_queries_parse_and_use_exported_series(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    for name, dashboard in dashboards.items():
        for expr in promql.expressions(dashboard):
            problem = promql.unbalanced(expr)
            assert problem is None, f"{name}: {expr}\n{problem}"
            use = promql.parse(expr)
            unknown = sorted(use.series - set(EXPORTED_SERIES))
            assert not unknown, f"{name}: {expr}\nuses series no service exports: {unknown}"
            allowed_everywhere = set(SCRAPE_LABELS)
            for series, labels in use.selector_labels.items():
                allowed = EXPORTED_SERIES[series] | allowed_everywhere
                assert labels <= allowed, (
                    f"{name}: {expr}\n{series} has no labels {labels - allowed}"
                )
            grouping_allowed = allowed_everywhere.union(
                *(EXPORTED_SERIES[series] for series in use.series)
            )
            assert use.grouping_labels <= grouping_allowed, (
                f"{name}: {expr}\ngroups by unknown labels {use.grouping_labels - grouping_allowed}"
            )


def test_each_service_dashboard_shows_its_signals_for_its_job(
    dashboards: dict[str, dict[str, Any]], prometheus_config: dict[str, Any]
) -> None:
    jobs = scrape_targets(prometheus_config)
    by_uid = {d["uid"]: d for d in dashboards.values()}
    for service in SERVICES:
        assert service in jobs, f"Prometheus has no job {service}"
        dashboard = by_uid[uid_of(service)]
        used = promql.series_used(dashboard)
        missing = {signal for signal, series in SIGNALS.items() if series not in used}
        assert not missing, f"the {service} dashboard does not show {missing}"
        for expr in promql.expressions(dashboard):
            # Only this service's series: the job is the service's name.
            assert f'job="{service}"' in expr, f"{service}: not filtered by job: {expr}"


def test_overview_compares_every_service(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    overview = next(d for d in dashboards.values() if d["uid"] == OVERVIEW_UID)
    used = promql.series_used(overview)
    assert set(SIGNALS.values()) <= used
    for expr in promql.expressions(overview):
        matcher = re.search(r'job=~"([^"]*)"', expr)
        assert matcher is not None, f"overview query not filtered by job: {expr}"
        assert set(matcher.group(1).split("|")) == set(SERVICES), expr


# --------------------------------------------------------------------------
# With Prometheus' own tool, where it is installed
# --------------------------------------------------------------------------


def _promtool() -> str:
    found = shutil.which("promtool") or str(Path.home() / "go" / "bin" / "promtool")
    if not Path(found).is_file():
        pytest.skip(
            "promtool is not installed (`go install "
            "github.com/prometheus/prometheus/cmd/promtool@latest`); the checks above parse "
            "the files in Python instead"
        )
    return found


def test_promtool_accepts_the_prometheus_config() -> None:
    done = subprocess.run(
        [_promtool(), "check", "config", "--syntax-only", str(PROMETHEUS_CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_parses_every_dashboard_query(
    dashboards: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    # Each query as a recording rule: `promtool check rules` parses its PromQL.
    # Grafana's interval variables become plain durations first.
    grafana_variables = {"$__rate_interval": "1m", "$__range": "1h", "$__interval": "15s"}
    rules = []
    for name, dashboard in dashboards.items():
        for n, expr in enumerate(promql.expressions(dashboard)):
            for variable, duration in grafana_variables.items():
                expr = expr.replace(variable, duration)
            assert "$" not in expr, f"{name}: a Grafana variable promtool cannot read: {expr}"
            record = f"dashboard:{name.removesuffix('.json')}:{n}"
            rules.append({"record": record, "expr": expr})
    rules_file = tmp_path / "dashboards.rules.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    done = subprocess.run(
        [_promtool(), "check", "rules", "--lint=none", str(rules_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
