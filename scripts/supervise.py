"""A minimal local supervisor: runs one command and starts it again when it exits.

    python -m scripts.supervise --name registration-1 --child-pidfile var/run/x.child.pid \\
        -- .venv/bin/python -m services.registration

`deploy/local/services.sh` runs every service replica under one. The child is this
process's own, so its exit is seen at once (waitpid: no zombie is left, and no
polling of a pid that may be reused). After an exit other than the one SIGTERM asked
for, it waits and restarts: 1 s, doubling to 30 s while the child keeps dying
within a minute of its start. SIGTERM or SIGINT stops the child (SIGTERM, then
SIGKILL after `--stop-timeout`) and then the supervisor. The child's pid is kept in
`--child-pidfile` (fault tests kill it there).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

FIRST_DELAY = 1.0
MAX_DELAY = 30.0
STABLE_AFTER = 60.0  # seconds up after which a crash counts as a first one again


def say(name: str, message: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"{stamp} [supervise {name}] {message}", file=sys.stderr, flush=True)


class Supervisor:
    def __init__(
        self, name: str, command: Sequence[str], pidfile: Path | None, stop_timeout: float
    ):
        self.name = name
        self.command = list(command)
        self.pidfile = pidfile
        self.stop_timeout = stop_timeout
        self.stopping = False
        self.child: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)

    def run(self) -> int:
        delay = FIRST_DELAY
        while not self.stopping:
            started = time.monotonic()
            self.child = subprocess.Popen(self.command)
            if self.pidfile is not None:
                self.pidfile.write_text(f"{self.child.pid}\n")
            say(self.name, f"started pid {self.child.pid} (restarts so far: {self.restarts})")
            code = self._wait()
            if self.stopping:
                break
            up = time.monotonic() - started
            delay = FIRST_DELAY if up > STABLE_AFTER else delay
            say(self.name, f"pid {self.child.pid} exited ({describe(code)}) after {up:.1f}s;"
                f" restarting in {delay:.0f}s")  # fmt: skip
            self._sleep(delay)
            delay = min(delay * 2, MAX_DELAY)
            self.restarts += 1
        if self.pidfile is not None:
            self.pidfile.unlink(missing_ok=True)
        say(self.name, "stopped")
        return 0

    def _wait(self) -> int:
        assert self.child is not None
        deadline: float | None = None
        while True:
            try:
                return self.child.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                pass
            if self.stopping:
                deadline = deadline or time.monotonic() + self.stop_timeout
                if time.monotonic() > deadline:
                    say(self.name, f"pid {self.child.pid} ignored SIGTERM; SIGKILL")
                    self.child.kill()

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < end:
            time.sleep(0.1)


def describe(code: int) -> str:
    if code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"code {code}"


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.supervise")
    parser.add_argument("--name", required=True)
    parser.add_argument("--child-pidfile", type=Path)
    parser.add_argument("--stop-timeout", type=float, default=10.0)
    parser.add_argument("command", nargs="+")
    args = parser.parse_args(argv)
    supervisor = Supervisor(args.name, args.command, args.child_pidfile, args.stop_timeout)
    signal.signal(signal.SIGTERM, supervisor.on_signal)
    signal.signal(signal.SIGINT, supervisor.on_signal)
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
