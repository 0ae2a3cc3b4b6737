"""Enough PromQL to check dashboard queries without a Prometheus: names, labels, brackets.

Used by the static checks of the Grafana dashboards (tests/unit/deploy_configs/)
and by the integration test that compares them with the services' live /metrics.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

_STRING = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|`[^`]*`")
_SELECTOR = re.compile(r"([A-Za-z_:][\w:]*)?\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_IDENT = re.compile(r"(?<![\w:$.])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()")
_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or"}
    | {"unless", "offset", "inf", "nan", "atan2"}
)


class PromQLUse(NamedTuple):
    series: set[str]  # metric (series) names
    selector_labels: dict[str, set[str]]  # series name -> labels in its {...} matchers
    grouping_labels: set[str]  # labels in by/without/on/ignoring/group_* clauses


def parse(expr: str) -> PromQLUse:
    """Metric names and labels an expression uses (enough for dashboard queries)."""
    text = _STRING.sub('""', expr)
    # Grafana's label_values(metric, label) / label_values(label).
    text = re.sub(r"\blabel_values\(([^,)]*),[^)]*\)", r"\1", text)
    selector_labels: dict[str, set[str]] = {}
    for match in _SELECTOR.finditer(text):
        labels = set(_MATCHER.findall(match.group(2)))
        if match.group(1):
            selector_labels.setdefault(match.group(1), set()).update(labels)
        elif "__name__" in labels:
            raise AssertionError(f"select metrics by name, not by __name__: {expr}")
    text = _SELECTOR.sub(lambda m: f" {m.group(1) or ''} ", text)
    text = _RANGE.sub(" ", text)
    grouping: set[str] = set()
    for match in _GROUPING.finditer(text):
        grouping.update(label.strip() for label in match.group(1).split(",") if label.strip())
    text = _GROUPING.sub(" ", text)
    series = {name for name in _IDENT.findall(text) if name.lower() not in _KEYWORDS}
    return PromQLUse(series | set(selector_labels), selector_labels, grouping)


_BRACKETS = {")": "(", "]": "[", "}": "{"}


def unbalanced(expr: str) -> str | None:
    """Why the brackets of `expr` do not match (outside string literals), or None."""
    stack: list[str] = []
    for char in _STRING.sub('""', expr):
        if char in "([{":
            stack.append(char)
        elif char in _BRACKETS:
            if not stack or stack.pop() != _BRACKETS[char]:
                return f"unexpected {char!r}"
    return f"unclosed {stack[-1]!r}" if stack else None


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """All non-row panels, including those nested in collapsed rows."""
    result: list[dict[str, Any]] = []
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            result.extend(panel.get("panels", []))
        else:
            result.append(panel)
    return result


def expressions(dashboard: dict[str, Any]) -> list[str]:
    exprs = [str(t["expr"]) for panel in panels(dashboard) for t in panel.get("targets", [])]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable.get("query")
            exprs.append(str(query.get("query", "")) if isinstance(query, dict) else str(query))
    return exprs


def series_used(dashboard: dict[str, Any]) -> set[str]:
    return {name for expr in expressions(dashboard) for name in parse(expr).series}
