"""Generated events for `bench.scheduling`: sizes from the users' doc (a cluster
matchmaking, Copenhagen 2014, Space Tech Expo, BIO-Europe, BIO), with accepted
meetings, availability, remote participants and time windows drawn from a seed."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any


@dataclass(frozen=True)
class Spec:
    name: str
    participants: int
    meetings: int
    days: int
    sessions_per_day: int
    slots_per_session: int
    tables: int
    remote_share: float  # participants who can only meet online
    limited_share: float  # participants with availability limits
    capped_share: float  # participants whose max_meetings is below their accepted meetings
    fixed: int  # meetings the organiser has locked
    time_limit: float  # seconds for the optimiser and for CP-SAT
    cpsat: bool  # whether CP-SAT runs on it
    windows: float = 0.0  # share of meetings allowed in one half of each day only
    max_idle_spread: int | None = None  # the fairness bound, if any


SPECS = [
    # Hannover 2015: 19-25 clusters, 61 meetings, 2 days, a few remote (online) ones
    Spec("cluster-61", 22, 61, 2, 2, 6, 20, 0.27, 0.25, 0.1, 2, 10.0, True),
    # a cluster event with heavy demand: 15 meetings each, and 10 tables for 24 slots,
    # fewer table-slots than onsite meetings, so which meetings to leave out matters
    Spec("cluster-dense-300", 40, 300, 2, 2, 6, 10, 0.15, 0.4, 0.2, 4, 10.0, True),
    # Copenhagen 2014: 433 meetings among 300 participants
    Spec("copenhagen-433", 300, 433, 2, 2, 8, 40, 0.1, 0.2, 0.05, 4, 10.0, True),
    # the same with a third of the meetings in the afternoon (or morning) only, and
    # breaks that may differ by at most 2 slots between participants
    Spec("copenhagen-433-windows", 300, 433, 2, 2, 8, 40, 0.1, 0.2, 0.05, 4, 10.0, True, 0.33, 2),
    # EEN brokerage at a large fair (Space Tech Expo Bremen 2019)
    Spec("fair-2500", 700, 2500, 2, 2, 8, 100, 0.08, 0.2, 0.05, 10, 10.0, True),
    # BIO-Europe: 32 slots (2 days x 2 sessions x 8), 600 tables
    Spec("bio-europe-18000", 3500, 18000, 2, 2, 8, 600, 0.08, 0.2, 0.05, 30, 10.0, False),
    # the same meetings among fewer, busier participants; tables 95% full; more limits
    Spec("bio-europe-tight", 2600, 18000, 2, 2, 8, 540, 0.06, 0.35, 0.05, 30, 10.0, False),
    # BIO International: 48 slots (3 days x 2 sessions x 8), 1,200 tables
    Spec("bio-48500", 16000, 48500, 3, 2, 8, 1200, 0.08, 0.2, 0.05, 50, 60.0, False),
]
QUICK = [
    Spec("cluster-61", 22, 61, 2, 2, 6, 20, 0.27, 0.25, 0.1, 2, 2.0, True),
    Spec("cluster-61-windows", 22, 61, 2, 2, 6, 20, 0.27, 0.25, 0.1, 2, 2.0, True, 0.33, 2),
    Spec("cluster-dense-300", 40, 300, 2, 2, 6, 10, 0.15, 0.4, 0.2, 4, 3.0, True),
    Spec("fair-2500", 700, 2500, 2, 2, 8, 100, 0.08, 0.2, 0.05, 10, 3.0, True),
]


def generate(spec: Spec, seed: int = 1) -> dict[str, Any]:
    """A random instance in the JSON format, reproducible from (spec, seed)."""
    rng = random.Random(f"{spec.name}/{seed}")
    sessions: list[dict[str, Any]] = []
    day0 = datetime.fromisoformat("2015-04-13T09:00:00+02:00")
    session_slots: list[list[str]] = []
    for d in range(spec.days):
        for s in range(spec.sessions_per_day):
            sid = f"d{d + 1}-s{s + 1}"
            start = day0 + timedelta(days=d, hours=5 * s)
            slots = []
            for k in range(spec.slots_per_session):
                begin = start + timedelta(minutes=30 * k)
                slots.append(
                    {
                        "id": f"{sid}-{k + 1:02d}",
                        "start": begin.isoformat(),
                        "end": (begin + timedelta(minutes=30)).isoformat(),
                    }
                )
            session_slots.append([t["id"] for t in slots])
            sessions.append({"id": sid, "slots": slots})
    all_slots = [t for ts in session_slots for t in ts]

    n = spec.participants
    width = len(str(n))
    pids = [f"p{i + 1:0{width}d}" for i in range(n)]
    remote = {i for i in range(n) if rng.random() < spec.remote_share}
    available: list[list[str] | None] = []
    for _ in range(n):
        if rng.random() >= spec.limited_share:
            available.append(None)
            continue
        kind = rng.random()
        if kind < 0.4 and spec.days > 1:  # misses a day
            day = rng.randrange(spec.days)
            per_day = spec.sessions_per_day * spec.slots_per_session
            av = [t for k, t in enumerate(all_slots) if k // per_day != day]
        elif kind < 0.7:  # misses a session
            gone = set(rng.choice(session_slots))
            av = [t for t in all_slots if t not in gone]
        else:  # arrives late / leaves early in a few sessions
            av = []
            for ts in session_slots:
                if rng.random() < 0.5:
                    cut = rng.randrange(1, max(2, len(ts) // 2))
                    av.extend(ts[cut:] if rng.random() < 0.5 else ts[:-cut])
                else:
                    av.extend(ts)
        available.append(av)
    n_avail = [len(all_slots) if a is None else len(a) for a in available]

    # heavy-tailed appetite; nobody is asked for more than ~85% of their slots
    weight = [rng.paretovariate(2.0) for _ in range(n)]
    limit = [max(1, int(0.85 * k)) for k in n_avail]
    degree = [0] * n
    pairs: set[tuple[int, int]] = set()
    cum: list[float] = []
    total = 0.0
    for w in weight:
        total += w
        cum.append(total)
    attempts = 0
    while len(pairs) < spec.meetings and attempts < 200 * spec.meetings:
        attempts += 1
        a, b = rng.choices(range(n), cum_weights=cum, k=2)
        if a == b or degree[a] >= limit[a] or degree[b] >= limit[b]:
            continue
        key = (min(a, b), max(a, b))
        if key in pairs:
            continue
        pairs.add(key)
        degree[a] += 1
        degree[b] += 1
    pair_list = sorted(pairs)
    rng.shuffle(pair_list)  # acceptance order

    caps: list[int | None] = []
    for i in range(n):
        if degree[i] >= 3 and rng.random() < spec.capped_share:
            caps.append(degree[i] - rng.randint(1, 2))  # oversubscribed
        elif rng.random() < 0.3:
            caps.append(degree[i] + rng.randint(0, 3))
        else:
            caps.append(None)

    meetings: list[dict[str, Any]] = []
    for k, (a, b) in enumerate(pair_list):
        meetings.append(
            {
                "id": f"m{k + 1:0{len(str(spec.meetings))}d}",
                "participants": [pids[a], pids[b]],
                "mode": "online" if a in remote or b in remote else "onsite",
                "priority": rng.choices((1, 2, 3), weights=(6, 3, 1))[0],
                "fixed": None,
            }
        )

    # windows: a share of the meetings in the first or the second half of each day only
    if spec.windows:
        per_day = spec.sessions_per_day * spec.slots_per_session
        for meeting in meetings:
            if rng.random() < spec.windows:
                half = rng.randrange(2)
                meeting["allowed_slots"] = [
                    t for k, t in enumerate(all_slots) if (k % per_day) * 2 // per_day == half
                ]

    # lock a few meetings where they fit (respecting availability, caps, tables, windows)
    busy: set[tuple[int, str]] = set()
    n_fixed = [0] * n
    onsite_in: dict[str, set[int]] = {}
    locked = 0
    for k in rng.sample(range(len(pair_list)), len(pair_list)):
        if locked >= spec.fixed:
            break
        pair = pair_list[k]
        meeting = meetings[k]
        if any(caps[i] is not None and n_fixed[i] >= (caps[i] or 0) for i in pair):
            continue
        options = [
            slot
            for slot in all_slots
            if slot in meeting.get("allowed_slots", all_slots)
            and all(
                (available[i] is None or slot in (available[i] or ())) and (i, slot) not in busy
                for i in pair
            )
        ]
        if not options:
            continue
        slot = rng.choice(options)
        table: int | None = None
        if meeting["mode"] == "onsite":
            taken = onsite_in.setdefault(slot, set())
            if len(taken) >= spec.tables:
                continue
            if rng.random() < 0.5:
                table = rng.choice([x for x in range(1, spec.tables + 1) if x not in taken])
            taken.add(table or -k - 1)  # a fixed meeting without a table still uses one
        for i in pair:
            busy.add((i, slot))
            n_fixed[i] += 1
        meeting["fixed"] = {"slot": slot, "table": table}
        locked += 1

    participants = [
        {"id": pids[i], "available": available[i], "max_meetings": caps[i]} for i in range(n)
    ]
    return {
        "name": spec.name,
        "tables": spec.tables,
        "sessions": sessions,
        "participants": participants,
        "meetings": meetings,
        "max_idle_spread": spec.max_idle_spread,
    }


# --------------------------------------------------------------------------- CP-SAT
