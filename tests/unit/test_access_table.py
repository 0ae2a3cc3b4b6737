"""The README's access table is generated from the routes' declarations and kept current."""

from __future__ import annotations

from scripts.access_table import README, apps, render, routes
from shared.access.guard import GuardedRoute


def test_the_readme_access_table_is_current() -> None:
    text = README.read_text()
    assert render(text) == text, "run `python -m scripts.access_table`"


def test_every_api_route_of_every_service_is_guarded() -> None:
    operations = {"/health", "/ready", "/metrics", "/openapi.json", "/docs", "/redoc"}
    for service, app in apps().items():
        for route in routes(app):
            path = getattr(route, "path", "")
            if path in operations or path.startswith(("/docs", "/static")):
                continue
            assert isinstance(route, GuardedRoute), f"{service} {path} declares no access rule"
