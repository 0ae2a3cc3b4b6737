"""Instances for the scheduling tests: a hand-written one and a hypothesis strategy."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

Doc = dict[str, Any]


def small_doc() -> Doc:
    """Two sessions of three slots, four participants, two tables, five meetings."""
    return {
        "name": "small",
        "tables": 2,
        "sessions": [
            {"id": "am", "slots": [{"id": "am1"}, {"id": "am2"}, {"id": "am3"}]},
            {"id": "pm", "slots": [{"id": "pm1"}, {"id": "pm2"}, {"id": "pm3"}]},
        ],
        "participants": [
            {"id": "a", "available": None, "max_meetings": None},
            {"id": "b", "available": ["am1", "am2", "am3"], "max_meetings": None},
            {"id": "c", "available": None, "max_meetings": 2},
            {"id": "d", "available": None, "max_meetings": None},
        ],
        "meetings": [
            {
                "id": "m1",
                "participants": ["a", "b"],
                "mode": "onsite",
                "priority": 1,
                "fixed": None,
            },
            {
                "id": "m2",
                "participants": ["a", "c"],
                "mode": "online",
                "priority": 2,
                "fixed": None,
            },
            {
                "id": "m3",
                "participants": ["b", "c"],
                "mode": "onsite",
                "priority": 1,
                "fixed": {"slot": "am2", "table": 2},
            },
            {
                "id": "m4",
                "participants": ["c", "d"],
                "mode": "onsite",
                "priority": 3,
                "fixed": None,
            },
            {
                "id": "m5",
                "participants": ["a", "d"],
                "mode": "onsite",
                "priority": 1,
                "fixed": None,
            },
        ],
    }


@st.composite
def instances(draw: st.DrawFn, max_participants: int = 7, max_meetings: int = 14) -> Doc:
    """Small random instances: sessions, availability, caps, tables (possibly none),
    onsite/online mix, priorities, a few fixed meetings consistent with the rules."""
    n_sessions = draw(st.integers(1, 3))
    sessions = []
    slot_ids: list[str] = []
    for s in range(n_sessions):
        n = draw(st.integers(1, 5))
        ids = [f"s{s}t{k}" for k in range(n)]
        slot_ids.extend(ids)
        sessions.append({"id": f"s{s}", "slots": [{"id": t} for t in ids]})
    tables = draw(st.integers(0, 3))
    n_people = draw(st.integers(2, max_participants))
    people: list[Doc] = []
    for i in range(n_people):
        available = draw(st.one_of(st.none(), st.lists(st.sampled_from(slot_ids), unique=True)))
        cap = draw(st.one_of(st.none(), st.integers(0, 4)))
        people.append({"id": f"p{i}", "available": available, "max_meetings": cap})
    pairs = draw(
        st.lists(
            st.tuples(st.integers(0, n_people - 1), st.integers(0, n_people - 1)).filter(
                lambda ab: ab[0] != ab[1]
            ),
            max_size=max_meetings,
        )
    )
    meetings: list[Doc] = []
    for k, (a, b) in enumerate(pairs):
        extra = draw(st.integers(0, n_people - 1)) if draw(st.integers(0, 9)) == 0 else None
        parts = [f"p{a}", f"p{b}"]
        if extra is not None and extra not in (a, b):
            parts.append(f"p{extra}")  # now and then a three-party meeting
        meetings.append(
            {
                "id": f"m{k}",
                "participants": parts,
                "mode": draw(st.sampled_from(["onsite", "onsite", "online"])),
                "priority": draw(st.integers(1, 3)),
                "fixed": None,
            }
        )
    # lock some meetings where the rules allow it
    busy: set[tuple[str, str]] = set()
    count: dict[str, int] = {}
    tables_used: dict[str, set[int]] = {}
    by_id = {p["id"]: p for p in people}
    for m in meetings:
        if not draw(st.integers(0, 4)) == 0:
            continue
        slot = draw(st.sampled_from(slot_ids))
        ok = all(
            (by_id[q]["available"] is None or slot in by_id[q]["available"])
            and (q, slot) not in busy
            and (by_id[q]["max_meetings"] is None or count.get(q, 0) < by_id[q]["max_meetings"])
            for q in m["participants"]
        )
        table = None
        if ok and m["mode"] == "onsite":
            used = tables_used.setdefault(slot, set())
            free = [x for x in range(1, tables + 1) if x not in used]
            if not free:
                ok = False
            elif draw(st.booleans()):
                table = draw(st.sampled_from(free))
                used.add(table)
            else:  # locked to the slot only: takes some table
                used.add(free[-1])
        if ok:
            m["fixed"] = {"slot": slot, "table": table}
            for q in m["participants"]:
                busy.add((q, slot))
                count[q] = count.get(q, 0) + 1
    return {
        "name": "random",
        "tables": tables,
        "sessions": sessions,
        "participants": people,
        "meetings": meetings,
    }
