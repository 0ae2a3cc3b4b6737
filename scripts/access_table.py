"""Writes the README's access table from the routes themselves: route → who may call it →
what they see. Every route declares its action (`shared.access`); this reads the
declarations, so the table cannot drift from the code (a unit test checks it is current).

    python -m scripts.access_table          # rewrite the table in README.md
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import FastAPI
from starlette.routing import BaseRoute

from shared.access.guard import GuardedRoute
from shared.access.policy import RULES, Action, Grants, Relation

README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN = "<!-- access-table:begin (python -m scripts.access_table) -->"
END = "<!-- access-table:end -->"

_WHO = {
    Relation.ADMIN: "admin",
    Relation.LEAD_ORGANISER: "lead organiser",
    Relation.CO_ORGANISER: "co-organiser",
    Relation.PARTICIPANT: "participant",
    Relation.APPLICANT: "applicant",
    Relation.ORGANISER_ACCOUNT: "any organiser",
    Relation.OUTSIDER: "any key",
    Relation.ANONYMOUS: "anyone",
}
_HOW = {
    Grants.ALWAYS: "",
    Grants.OWN_OFFICE: " (own office's participants)",
    Grants.SELF: " (itself only)",
    Grants.LISTED: " (what participants publish)",
}


def apps() -> dict[str, FastAPI]:
    from services.matching.bootstrap import build_app as matching
    from services.notification.bootstrap import build_app as notification
    from services.registration.bootstrap import build_app as registration
    from services.reporting.bootstrap import build_app as reporting
    from services.scheduling.bootstrap import build_app as scheduling

    return {
        "registration": registration(),
        "matching": matching(),
        "scheduling": scheduling(),
        "notification": notification(),
        "reporting": reporting(),
    }


def routes(app: FastAPI) -> list[BaseRoute]:
    """Every route of the app, those of included routers too."""
    found: list[BaseRoute] = []
    pending = list(app.routes)
    while pending:
        route = pending.pop(0)
        included = getattr(route, "original_router", None)
        if included is not None:
            pending[:0] = list(included.routes)
        else:
            found.append(route)
    return found


def who_may(action: Action) -> str:
    rule = RULES[action]
    if rule.public:
        return "anyone"
    return ", ".join(_WHO[r] + _HOW[g] for r, g in rule.by.items())


def table() -> str:
    lines = [
        "| service | route | action | who may call it | what they see |",
        "|---|---|---|---|---|",
    ]
    for service, app in apps().items():
        for route in routes(app):
            if not isinstance(route, GuardedRoute):
                continue
            requirement = route.requirement
            methods = ",".join(sorted(route.methods or ()))
            who = who_may(requirement.action)
            if requirement.link is not None:
                who += "; or a signed link"
            summary = (route.summary or "").replace("|", "/")
            lines.append(
                f"| {service} | `{methods} {route.path}` | {requirement.action.name} | {who}"
                f" | {summary} |"
            )
    return "\n".join(lines)


def render(readme: str) -> str:
    block = f"{BEGIN}\n{table()}\n{END}"
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    if not pattern.search(readme):
        raise SystemExit(f"README.md has no {BEGIN} … {END} block")
    return pattern.sub(lambda _: block, readme)


def main() -> None:
    README.write_text(render(README.read_text()))


if __name__ == "__main__":
    main()
