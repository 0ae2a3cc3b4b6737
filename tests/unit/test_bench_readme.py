"""bench/README.md's tables name only steps, load clients and what-ifs the bench has."""

from __future__ import annotations

import re
from pathlib import Path

from bench.backbone.report import CLIENTS, STEPS, WHATIFS

README = Path(__file__).resolve().parents[2] / "bench" / "README.md"


def tables(text: str) -> list[list[list[str]]]:
    """Every Markdown table: its rows (header first, the |---| line left out) as cells."""
    found: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                current.append(cells)
        elif current:
            found.append(current)
            current = []
    return found


def step_rows(text: str) -> list[str]:
    """The first cells of tables headed `step`."""
    return [row[0] for t in tables(text) if t[0][0] == "step" for row in t[1:]]


def phase_rows(text: str) -> list[str]:
    """The first cells of tables headed `phase` (step 5's)."""
    return [row[0] for t in tables(text) if t[0][0] == "phase" for row in t[1:]]


def unknown_steps(text: str) -> list[str]:
    wrong = []
    for cell in step_rows(text):
        plain = cell.replace("→", "->").replace("`", "")
        if plain.startswith("(setup)"):
            continue
        step = plain.split()[0]
        if step not in STEPS or STEPS[step] not in plain:
            wrong.append(cell)
    return wrong


def unknown_phases(text: str) -> list[str]:
    wrong = []
    for cell in phase_rows(text):
        rate, client, *rest = [p.strip() for p in cell.replace("`", "").split(",")]
        whatifs = [r.removeprefix("what-if ").strip() for r in rest]
        if (
            not re.fullmatch(r"\d+/s", rate)
            or client not in CLIENTS
            or any(w not in WHATIFS for w in whatifs)
        ):
            wrong.append(cell)
    return wrong


def test_the_readme_names_only_steps_the_bench_has() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(step_rows(text)) >= 2 * len(STEPS) - 1  # the step table and the results
    assert unknown_steps(text) == []


def test_the_readme_names_only_clients_and_what_ifs_the_bench_has() -> None:
    text = README.read_text(encoding="utf-8")
    assert phase_rows(text)
    assert unknown_phases(text) == []


def test_a_step_or_what_if_the_bench_no_longer_has_is_caught() -> None:
    text = (
        "| step | events/s |\n|---|---:|\n| 1 raw aiokafka produce | 5 |\n"
        "| 4b same with the prototype | 9 |\n| 6 Kafka Streams | 1 |\n\n"
        "| phase | E2E p50 |\n|---|---:|\n| 150/s, raw | 1 |\n"
        "| 150/s, raw, what-if linger0 | 1 |\n| 150/s, curl | 1 |\n"
    )
    assert unknown_steps(text) == ["4b same with the prototype", "6 Kafka Streams"]
    assert unknown_phases(text) == ["150/s, raw, what-if linger0", "150/s, curl"]
