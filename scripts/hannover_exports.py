"""Download every spreadsheet and printable export of a replayed event into a folder
(`make demo` leaves HANNOVER's in var/exports/): the lead organiser's, and each
co-organiser's participants and report (its own office's rows only).

    .venv/bin/python -m scripts.hannover_exports EVENT_ID ORGANISER_KEY [DIRECTORY]
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx

from scripts.replay_hannover import Urls

EXPORTS_DIR = Path("var/exports")


def export_paths(urls: Urls, event_id: str) -> dict[str, str]:
    """File name -> URL of each export."""
    e = f"/api/events/{event_id}"
    files = {
        f"participants.{x}": f"{urls.registration}{e}/registrations/export.{x}"
        for x in ("csv", "xlsx")
    }
    files |= {
        f"meeting-requests.{x}": f"{urls.matching}{e}/meeting-requests/export.{x}"
        for x in ("csv", "xlsx")
    }
    for x in ("csv", "xlsx", "pdf"):
        files[f"agendas.{x}"] = f"{urls.scheduling}{e}/agendas.{x}"
        files[f"table-plan.{x}"] = f"{urls.scheduling}{e}/table-plan.{x}"
    for x in ("csv", "xlsx"):
        files[f"unscheduled.{x}"] = f"{urls.scheduling}{e}/unscheduled.{x}"
        files[f"report.{x}"] = f"{urls.reporting}{e}/report.{x}"
    files["registrations-template.xlsx"] = (
        f"{urls.registration}{e}/registrations/import-template.xlsx"
    )
    return files


async def fetch_exports(
    urls: Urls,
    event_id: str,
    organiser_key: str,
    co_organisers: dict[str, str] | None = None,
) -> dict[str, bytes]:
    """Each export (file name -> content) with the organiser's key and, per office, the
    participants and the report with its co-organiser's key (`<name>-<office>.<ext>`)."""
    wanted = [(name, url, organiser_key) for name, url in export_paths(urls, event_id).items()]
    for office, key in (co_organisers or {}).items():
        for name, url in export_paths(urls, event_id).items():
            if name.startswith(("participants.", "report.")):
                stem, ext = name.split(".")
                wanted.append((f"{stem}-{office}.{ext}", url, key))
    files = {}
    async with httpx.AsyncClient(timeout=60) as http:
        for name, url, key in wanted:
            response = await http.get(url, headers={"X-API-Key": key})
            if response.is_error:
                raise RuntimeError(f"GET {url}: {response.status_code} {response.text[:300]}")
            files[name] = response.content
    return files


def write_exports(directory: Path, files: dict[str, bytes]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, content in files.items():
        path = directory / name
        path.write_bytes(content)
        paths.append(path)
    return paths


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    directory = Path(sys.argv[3]) if len(sys.argv) > 3 else EXPORTS_DIR
    files = asyncio.run(fetch_exports(Urls.from_env(), sys.argv[1], sys.argv[2]))
    paths = write_exports(directory, files)
    print(f"{len(paths)} exports in {directory.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
