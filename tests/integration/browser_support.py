"""What the browser tests share: Debian's Chromium for Playwright, the portal as a process
over running services, axe-core's check and screenshots kept as artefacts."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.integration.support import REPO_ROOT, wait_until

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
ARTEFACTS = REPO_ROOT / "var" / "artefacts"
AXE = REPO_ROOT / "var" / "axe" / "node_modules" / "axe-core" / "axe.min.js"


@asynccontextmanager
async def running_portal(
    services: Mapping[str, str], port: int, log_dir: Path
) -> AsyncIterator[str]:
    """The portal (`python -m services.portal`) on `port`, calling `services` (name ->
    URL); its address while the block runs."""
    env = {
        **os.environ,
        **{f"{svc.upper()}_URL": url for svc, url in services.items()},
        "PORTAL_PORT": str(port),
        "PORTAL_SESSION_SECRET": "portal-browser-test-secret",
    }
    log_path = log_dir / "portal.log"
    with log_path.open("wb") as log:
        portal = subprocess.Popen(
            [sys.executable, "-m", "services.portal"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as http:

            async def ready() -> bool:
                assert portal.poll() is None, log_path.read_text()
                try:
                    return (await http.get(f"{url}/ready")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_until(ready, limit=30, interval=0.2, what="the portal")
        yield url
    finally:
        portal.terminate()
        portal.wait(timeout=15)


async def axe(page: Any, name: str, found: dict[str, list[str]]) -> None:
    """Run axe-core on the page; keep its serious and critical violations."""
    if not AXE.exists():
        return
    await page.add_script_tag(path=str(AXE))
    result = await page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".filter(v => ['serious', 'critical'].includes(v.impact))"
        ".map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', '))"
    )
    found[name] = list(result)


async def shot(page: Any, name: str) -> None:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTEFACTS / f"portal-{name}.png"), full_page=True)
