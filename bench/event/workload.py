"""What `make bench-event` sends: an event of one size, its participants and meetings.

hannover  the seed's HANNOVER MESSE 2015 cluster matchmaking (scripts/replay_hannover.py):
          31 organisations, the meetings the replay arranges, 25 tables over 28 slots
bremen    EEN brokerage at a large fair (Space Tech Expo Bremen): 700 participants,
          2,500 accepted meetings, 100 tables, 32 slots (bench/scheduling_instances.py)
bioeurope BIO-Europe: 3,500 participants, 18,000 accepted meetings, 600 tables, 32 slots

The generated sizes take their pairs and remote participants from
`bench.scheduling_instances.generate` (the scheduling bench's instances of the same
names); a request is also declined for every `DECLINE_EVERY`-th accepted meeting,
between participants who do not otherwise meet. Registrations arrive in bursts: a
trickle, then most of them just before the deadline (`BURSTS`).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from bench.scheduling_instances import SPECS, generate
from scripts import replay_hannover as hannover

SIZES = ("hannover", "bremen", "bioeurope")
GENERATED = {"bremen": "fair-2500", "bioeurope": "bio-europe-18000"}
DECLINE_EVERY = 8  # one declined request per 8 accepted meetings
BURSTS = (0.1, 0.2, 0.7)  # shares of the registrations, the last at the deadline


@dataclass(frozen=True)
class Participant:
    name: str
    country: str
    organisation_type: str  # business | cluster
    sectors: tuple[str, ...]
    remote: bool


@dataclass
class Workload:
    size: str
    event: dict[str, Any]
    participants: list[Participant]
    accepted: list[tuple[int, int]]  # (requester, recipient) indices into participants
    declined: list[tuple[int, int]]
    bursts: list[range] = field(default_factory=list)  # registration order, in bursts

    @property
    def commands(self) -> dict[str, int]:
        """How many commands each phase sends (the organiser's few included)."""
        n = len(self.participants)
        requests = len(self.accepted) + len(self.declined)
        return {
            "create": 2,  # the organiser, the event
            "register": n,
            "approve": n,
            "request": requests,
            "answer": requests,
            "reoptimise": 1,
            "publish": 1,
        }


def split_bursts(n: int, shares: tuple[float, ...] = BURSTS) -> list[range]:
    """Consecutive ranges covering 0..n-1, sized by `shares` (the last takes the rest)."""
    bursts: list[range] = []
    start = 0
    for k, share in enumerate(shares):
        end = n if k == len(shares) - 1 else min(n, start + round(n * share))
        bursts.append(range(start, end))
        start = end
    return [b for b in bursts if len(b)]


def event_body(
    name: str, days: int, sessions: list[dict[str, str]], tables: int, types: list[str]
) -> dict[str, Any]:
    """A future event (registration open for a month) with `days` days of `sessions`."""
    first = date.today() + timedelta(days=60)
    return {
        "name": name,
        "venue": "Benchmark hall",
        "time_zone": "Europe/Berlin",
        "days": [(first + timedelta(days=d)).isoformat() for d in range(days)],
        "sessions": sessions,
        "slot_minutes": 30,
        "tables": tables,
        "meeting_types": types,
        "registration_deadline": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
    }


def declined_pairs(
    n: int,
    accepted: list[tuple[int, int]],
    count: int,
    seed: str,
    offered: Callable[[int, int], bool] = lambda a, b: True,
) -> list[tuple[int, int]]:
    """`count` pairs that are not accepted meetings (either way round), reproducibly;
    only pairs whose meeting the event `offered` (a request for any other is refused)."""
    rng = random.Random(seed)
    taken = {frozenset(p) for p in accepted}
    found: list[tuple[int, int]] = []
    while len(found) < count and n > 1:
        a, b = rng.randrange(n), rng.randrange(n)
        if a != b and frozenset((a, b)) not in taken and offered(a, b):
            taken.add(frozenset((a, b)))
            found.append((a, b))
    return found


def hannover_workload(tag: str) -> Workload:
    cast = [
        *((c, False, "cluster") for c in hannover.ON_SITE_CLUSTERS),
        *((c, True, "cluster") for c in hannover.REMOTE_CLUSTERS),
        *((c, False, "business") for c in hannover.BUSINESSES),
    ]
    people = [
        Participant(f"{name} ({tag})", country, kind, tuple(sectors), remote)
        for (name, country, sectors), remote, kind in cast
    ]
    clusters = len(hannover.ON_SITE_CLUSTERS)
    first_business = clusters + len(hannover.REMOTE_CLUSTERS)
    accepted = hannover.c2c_pairs(clusters, hannover.C2C_HELD + 1)
    accepted += [
        (first_business + b, c)
        for b, c in hannover.b2c_pairs(len(hannover.BUSINESSES), clusters, hannover.B2C_HELD + 1)
    ]

    def with_a_cluster(a: int, b: int) -> bool:
        # The seed's event offers Cluster2Cluster and Business2Cluster, not Business2Business.
        return "cluster" in {people[a].organisation_type, people[b].organisation_type}

    declined = declined_pairs(
        len(people),
        accepted,
        max(1, len(accepted) // DECLINE_EVERY),
        f"hannover/{tag}",
        # The seed's event offers Cluster2Cluster and Business2Cluster, not Business2Business.
        offered=lambda a, b: (
            "cluster" in {people[a].organisation_type, people[b].organisation_type}
        ),
    )
    # The seed's event and support offices, moved into the future so that the
    # participants register themselves before the deadline.
    future = event_body("", 2, [], 0, [])  # the seed's two days
    event = {
        **hannover.EVENT,
        "name": f"{hannover.EVENT['name']} [bench-event {tag}]",
        "days": future["days"],
        "registration_deadline": future["registration_deadline"],
    }
    return Workload("hannover", event, people, accepted, declined, split_bursts(len(people)))


def generated_workload(size: str, tag: str) -> Workload:
    spec = next(s for s in SPECS if s.name == GENERATED[size])
    instance = generate(spec)
    ids = [p["id"] for p in instance["participants"]]
    index = {pid: i for i, pid in enumerate(ids)}
    accepted: list[tuple[int, int]] = []
    online: set[int] = set()
    on_site: set[int] = set()
    for meeting in instance["meetings"]:
        a, b = (index[p] for p in meeting["participants"])
        accepted.append((a, b))
        (online if meeting["mode"] == "online" else on_site).update((a, b))
    # The instance makes a meeting online when a side is remote, so its remote
    # participants are those with online meetings only (one without meetings stays on site).
    remote = online - on_site
    sectors = hannover.SECTORS
    people = [
        Participant(
            f"Bench {size} organisation {tag}-{i:05d}",
            ("DE", "FR", "IT", "ES", "PL", "AT", "BE", "NL")[i % 8],
            "business",
            (sectors[i % len(sectors)], sectors[(i * 7 + 3) % len(sectors)]),
            i in remote,
        )
        for i in range(len(ids))
    ]
    declined = declined_pairs(
        len(people), accepted, len(accepted) // DECLINE_EVERY, f"{size}/{tag}"
    )
    per_session = spec.slots_per_session * 30 // 60  # hours
    sessions = [
        {"start": "09:00", "end": f"{9 + per_session:02d}:00"},
        {"start": "14:00", "end": f"{14 + per_session:02d}:00"},
    ][: spec.sessions_per_day]
    event = event_body(
        f"Bench event {size} {tag}", spec.days, sessions, spec.tables, ["Business2Business"]
    )
    return Workload(size, event, people, accepted, declined, split_bursts(len(people)))


def workload(size: str, tag: str) -> Workload:
    if size == "hannover":
        return hannover_workload(tag)
    if size in GENERATED:
        return generated_workload(size, tag)
    raise ValueError(f"unknown size {size!r}; one of {', '.join(SIZES)}")


def registration_body(p: Participant, index: int) -> dict[str, Any]:
    """The participant's own registration (open until the deadline, no key needed)."""
    slug = "".join(c for c in p.name.lower() if c.isalnum())[-30:]
    return {
        "organisation_type": p.organisation_type,
        "name": p.name,
        "country": p.country,
        "sectors": list(p.sectors),
        "technologies": list(p.sectors),
        "offers": [f"know-how in {p.sectors[0]}"],
        "requests": [f"partners in {p.sectors[-1]}"],
        "markets": ["EU"],
        "attendance": "remote" if p.remote else "on_site",
        "representatives": [{"name": f"Contact {index}", "email": f"contact@{slug}.example"}],
    }
