"""The local mail catcher's handler: aiosmtpd's `Debugging` plus an index of arrivals.

deploy/local/services.sh runs

    python -m aiosmtpd -n -l 127.0.0.1:1025 \
        -c scripts.mail_catcher.StampingDebugging var/log/mail.jsonl

Every message is printed as `Debugging` prints it (var/log/mail.log), in one write
instead of one `print` per line (at bench-event's tens of thousands of messages the
printing was most of the catcher's CPU), and one JSON line per message goes to the
index: when it arrived (unix time, taken before it is printed), its Message-ID, its
`X-Matchmaking-Kind` and its recipients. `make bench-event` reads the index for the
latency from an accepted meeting to the "meeting placed" e-mail and to check that
every e-mail arrived exactly once.
"""

from __future__ import annotations

import json
import os
import time
from argparse import ArgumentParser
from email.parser import BytesHeaderParser
from typing import Any

from aiosmtpd.handlers import Debugging


def index_line(received: float, content: bytes, rcpt_tos: list[str]) -> str:
    """The index's line for one message: arrival time and the headers that identify it."""
    headers = BytesHeaderParser().parsebytes(content)
    return (
        json.dumps(
            {
                "received": round(received, 6),
                "message_id": (headers.get("Message-ID") or "").strip(),
                "kind": (headers.get("X-Matchmaking-Kind") or "").strip(),
                "to": rcpt_tos,
            }
        )
        + "\n"
    )


class StampingDebugging(Debugging):
    """Prints each message like `Debugging` and appends its arrival to an index file."""

    def __init__(self, index_path: str) -> None:
        super().__init__()
        self.index_path = index_path

    @classmethod
    def from_cli(cls, parser: ArgumentParser, *args: Any) -> StampingDebugging:
        if len(args) != 1:
            parser.error("StampingDebugging usage: INDEX_FILE")
        return cls(str(args[0]))

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        received = time.time()
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode()
        line = index_line(received, content, list(envelope.rcpt_tos))
        # One O_APPEND write per message: a line is never split between writers.
        fd = os.open(self.index_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
        self.stream.write(printed(session.peer, envelope.mail_options, content))
        return "250 OK"


def printed(peer: Any, mail_options: list[str], content: bytes) -> str:
    """What aiosmtpd's `Debugging` prints for a message, as one string: the headers, the
    peer, the body, between its two separator lines."""
    lines = content.decode("utf-8", "replace").splitlines()
    if "" in lines:  # the peer goes after the headers, as `Debugging` puts it
        lines.insert(lines.index(""), f"X-Peer: {peer!r}")
    head = ["---------- MESSAGE FOLLOWS ----------"]
    if mail_options:
        head += [f"mail options: {mail_options}", ""]
    return "\n".join([*head, *lines, "------------ END MESSAGE ------------", ""])
