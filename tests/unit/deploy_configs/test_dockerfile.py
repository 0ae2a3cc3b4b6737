"""The Dockerfile and .dockerignore."""

from __future__ import annotations

import json
import re

from shared.settings import SERVICE_PORTS
from tests.unit.deploy_configs.files import (
    DOCKERFILE,
    DOCKERIGNORE,
    SERVICES,
)

# --------------------------------------------------------------------------
# Dockerfile
# --------------------------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined, comments dropped."""
    assert DOCKERFILE.is_file(), "Dockerfile is missing"
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    return instructions


def _index(instructions: list[tuple[str, str]], keyword: str, pattern: str) -> int:
    for i, (kw, args) in enumerate(instructions):
        if kw == keyword and re.search(pattern, args):
            return i
    raise AssertionError(f"Dockerfile has no {keyword} matching {pattern!r}")


def test_dockerfile_base_image_and_dependency_layer() -> None:
    instructions = _dockerfile_instructions()
    froms = [args for kw, args in instructions if kw == "FROM"]
    assert froms and re.match(r"python:3\.11([.-]|$)", froms[-1]), froms

    install_uv = _index(instructions, "RUN", r"pip install .*\buv==\d")
    copy_lock = _index(instructions, "COPY", r"\buv\.lock\b")
    assert "pyproject.toml" in instructions[copy_lock][1], "copy pyproject.toml with uv.lock"
    sync = _index(instructions, "RUN", r"\buv sync\b")
    assert "--frozen" in instructions[sync][1] and "--no-dev" in instructions[sync][1]
    copy_shared = _index(instructions, "COPY", r"(^|\s)\.?/?shared/?(\s|$)")
    copy_services = _index(instructions, "COPY", r"(^|\s)\.?/?services/?(\s|$)")
    # Dependencies are installed before the code is copied (layer cache).
    assert install_uv < copy_lock < sync < min(copy_shared, copy_services)


def test_dockerfile_runtime() -> None:
    instructions = _dockerfile_instructions()
    users = [args for kw, args in instructions if kw == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "run as a non-root user"
    env = " ".join(args for kw, args in instructions if kw == "ENV")
    assert re.search(r"PATH=/app/\.venv/bin:\$\{?PATH\}?", env), "put /app/.venv/bin on PATH"
    cmd = [args for kw, args in instructions if kw == "CMD"]
    assert cmd, "Dockerfile has no CMD"
    argv = json.loads(cmd[-1])
    assert argv[:2] == ["python", "-m"] and argv[2].removeprefix("services.") in SERVICES


def test_dockerfile_exposes_every_service_port() -> None:
    exposed = {
        int(port.split("/")[0])
        for kw, args in _dockerfile_instructions()
        if kw == "EXPOSE"
        for port in args.split()
    }
    assert set(SERVICE_PORTS.values()) <= exposed, sorted(exposed)


def test_dockerignore_keeps_build_inputs() -> None:
    assert DOCKERIGNORE.is_file(), ".dockerignore is missing"
    patterns = {
        line.strip().removeprefix("/").removeprefix("**/").rstrip("/")
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith(("#", "!"))
    }
    assert {".venv", ".git"} <= patterns
    needed = {"pyproject.toml", "uv.lock", "shared", "services", "Dockerfile", "*", "**"}
    assert not patterns & needed, f".dockerignore excludes build inputs: {patterns & needed}"
