"""Scheduling instances and schedules: dataclasses, parsing and rendering.

The JSON formats are described in `shared/design/scheduling-instances.md`.
Parsing checks the structure (types, ids, references) and also that the fixed
meetings alone respect the hard rules; anything else wrong is an `InstanceError`
whose message names the offending place, e.g. ``meetings[3].participants[1]:
unknown participant 'p999'``. Parsing never does I/O: the callers read files.

Conventions beyond the design document:

- ``available``, ``max_meetings`` and ``fixed`` may be left out (same as null);
  ``start``/``end`` of a slot are optional strings, kept as they are.
- A meeting has at least two distinct participants.
- A fixed onsite meeting with ``"table": null`` is locked to its slot only and
  may get any free table; a fixed online meeting must have ``"table": null``.
- ``allowed_slots`` of a meeting (absent or null: any slot) lists the slots it may
  take; a fixed meeting's slot must be one of them.
- ``max_idle_spread`` of the instance (absent or null: no bound) bounds the fairness
  of idle time: the idle slots of any two participants of the instance (summed over
  sessions) differ by at most this many.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Mode = Literal["onsite", "online"]
MODES: tuple[Mode, ...] = ("onsite", "online")


class InstanceError(ValueError):
    """The instance (or schedule) document is malformed or self-contradictory."""


@dataclass(frozen=True, slots=True)
class Slot:
    id: str
    start: str | None = None
    end: str | None = None


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    slots: tuple[Slot, ...]


@dataclass(frozen=True, slots=True)
class Participant:
    id: str
    available: frozenset[str] | None = None  # None: every slot
    max_meetings: int | None = None  # None: no cap


@dataclass(frozen=True, slots=True)
class Fixed:
    slot: str
    table: int | None = None


@dataclass(frozen=True, slots=True)
class Meeting:
    id: str
    participants: tuple[str, ...]
    mode: Mode = "onsite"
    priority: int = 1
    fixed: Fixed | None = None
    allowed_slots: frozenset[str] | None = None  # None: any slot

    @property
    def onsite(self) -> bool:
        return self.mode == "onsite"


@dataclass(frozen=True, slots=True)
class Instance:
    name: str
    tables: int
    sessions: tuple[Session, ...]
    participants: tuple[Participant, ...]
    meetings: tuple[Meeting, ...]
    max_idle_spread: int | None = None  # None: no fairness bound

    @property
    def slots(self) -> tuple[Slot, ...]:
        """All slots in time order."""
        return tuple(slot for session in self.sessions for slot in session.slots)

    def meeting(self, meeting_id: str) -> Meeting:
        for m in self.meetings:
            if m.id == meeting_id:
                return m
        raise KeyError(meeting_id)


@dataclass(frozen=True, slots=True)
class Assignment:
    meeting: str
    slot: str
    table: int | None


@dataclass(frozen=True, slots=True)
class Unscheduled:
    meeting: str
    reason: str


@dataclass(slots=True)
class Schedule:
    assignments: list[Assignment] = field(default_factory=list)
    unscheduled: list[Unscheduled] = field(default_factory=list)


# --------------------------------------------------------------------------- parsing


def _fail(where: str, message: str) -> InstanceError:
    return InstanceError(f"{where}: {message}" if where else message)


def _obj(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(where, f"expected an object, got {_kind(value)}")
    return value


def _list(value: object, where: str) -> Sequence[Any]:
    if not isinstance(value, list):
        raise _fail(where, f"expected a list, got {_kind(value)}")
    return value


def _str(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(where, f"expected a non-empty string, got {_kind(value)}")
    return value


def _int(value: object, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(where, f"expected an integer, got {_kind(value)}")
    if value < minimum:
        raise _fail(where, f"must be at least {minimum}, got {value}")
    return value


def _opt_str(value: object, where: str) -> str | None:
    return None if value is None else _str(value, where)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return "an empty string" if not value else "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _required(obj: Mapping[str, Any], key: str, where: str) -> object:
    if key not in obj:
        raise _fail(where, f"missing key {key!r}")
    return obj[key]


def _unique(ids: Sequence[str], where: str, what: str) -> None:
    seen: set[str] = set()
    for i, x in enumerate(ids):
        if x in seen:
            raise _fail(f"{where}[{i}].id", f"duplicate {what} id {x!r}")
        seen.add(x)


def _slot_set(raw: object, where: str, known: frozenset[str]) -> frozenset[str] | None:
    """A list of slot ids (or null) as a set."""
    if raw is None:
        return None
    out: set[str] = set()
    for k, a in enumerate(_list(raw, where)):
        slot_id = _str(a, f"{where}[{k}]")
        if slot_id not in known:
            raise _fail(f"{where}[{k}]", f"unknown slot {slot_id!r}")
        out.add(slot_id)
    return frozenset(out)


def parse_instance(data: object) -> Instance:
    """Build an `Instance` from a decoded JSON document; raise `InstanceError`."""
    doc = _obj(data, "instance")
    name = _str(doc.get("name", "instance"), "name")
    tables = _int(_required(doc, "tables", ""), "tables", 0)

    sessions: list[Session] = []
    slot_ids: list[str] = []
    for si, raw_session in enumerate(_list(_required(doc, "sessions", ""), "sessions")):
        w = f"sessions[{si}]"
        s = _obj(raw_session, w)
        sid = _str(_required(s, "id", w), f"{w}.id")
        slots: list[Slot] = []
        raw_slots = _list(_required(s, "slots", w), f"{w}.slots")
        if not raw_slots:
            raise _fail(f"{w}.slots", "a session needs at least one slot")
        for ti, raw_slot in enumerate(raw_slots):
            ws = f"{w}.slots[{ti}]"
            t = _obj(raw_slot, ws)
            slot = Slot(
                id=_str(_required(t, "id", ws), f"{ws}.id"),
                start=_opt_str(t.get("start"), f"{ws}.start"),
                end=_opt_str(t.get("end"), f"{ws}.end"),
            )
            if slot.id in slot_ids:
                raise _fail(f"{ws}.id", f"duplicate slot id {slot.id!r}")
            slot_ids.append(slot.id)
            slots.append(slot)
        sessions.append(Session(sid, tuple(slots)))
    _unique([s.id for s in sessions], "sessions", "session")
    known_slots = frozenset(slot_ids)

    participants: list[Participant] = []
    for pi, raw_p in enumerate(_list(_required(doc, "participants", ""), "participants")):
        w = f"participants[{pi}]"
        p = _obj(raw_p, w)
        pid = _str(_required(p, "id", w), f"{w}.id")
        available = _slot_set(p.get("available"), f"{w}.available", known_slots)
        raw_cap = p.get("max_meetings")
        cap = None if raw_cap is None else _int(raw_cap, f"{w}.max_meetings", 0)
        participants.append(Participant(pid, available, cap))
    _unique([p.id for p in participants], "participants", "participant")
    known_participants = {p.id for p in participants}

    meetings: list[Meeting] = []
    for mi, raw_m in enumerate(_list(_required(doc, "meetings", ""), "meetings")):
        w = f"meetings[{mi}]"
        m = _obj(raw_m, w)
        mid = _str(_required(m, "id", w), f"{w}.id")
        raw_parts = _list(_required(m, "participants", w), f"{w}.participants")
        parts: list[str] = []
        for qi, q in enumerate(raw_parts):
            pid = _str(q, f"{w}.participants[{qi}]")
            if pid not in known_participants:
                raise _fail(f"{w}.participants[{qi}]", f"unknown participant {pid!r}")
            if pid in parts:
                raise _fail(f"{w}.participants[{qi}]", f"participant {pid!r} listed twice")
            parts.append(pid)
        if len(parts) < 2:
            raise _fail(f"{w}.participants", "a meeting needs at least two participants")
        mode = _required(m, "mode", w)
        if mode not in MODES:
            raise _fail(f"{w}.mode", f"expected 'onsite' or 'online', got {mode!r}")
        priority = _int(_required(m, "priority", w), f"{w}.priority", 1)
        fixed: Fixed | None = None
        raw_fixed = m.get("fixed")
        if raw_fixed is not None:
            wf = f"{w}.fixed"
            f = _obj(raw_fixed, wf)
            fslot = _str(_required(f, "slot", wf), f"{wf}.slot")
            if fslot not in known_slots:
                raise _fail(f"{wf}.slot", f"unknown slot {fslot!r}")
            raw_table = f.get("table")
            ftable = None if raw_table is None else _int(raw_table, f"{wf}.table", 1)
            if ftable is not None and mode == "online":
                raise _fail(f"{wf}.table", "an online meeting has no table")
            if ftable is not None and ftable > tables:
                raise _fail(f"{wf}.table", f"table {ftable} does not exist (tables: {tables})")
            fixed = Fixed(fslot, ftable)
        allowed = _slot_set(m.get("allowed_slots"), f"{w}.allowed_slots", known_slots)
        if fixed is not None and allowed is not None and fixed.slot not in allowed:
            raise _fail(f"{w}.fixed.slot", f"{fixed.slot!r} is not one of its allowed_slots")
        meetings.append(Meeting(mid, tuple(parts), mode, priority, fixed, allowed))
    _unique([m.id for m in meetings], "meetings", "meeting")
    raw_spread = doc.get("max_idle_spread")
    spread = None if raw_spread is None else _int(raw_spread, "max_idle_spread", 0)

    instance = Instance(name, tables, tuple(sessions), tuple(participants), tuple(meetings), spread)
    _check_fixed(instance)
    return instance


def _check_fixed(instance: Instance) -> None:
    """The fixed meetings must respect the hard rules among themselves."""
    by_id = {p.id: p for p in instance.participants}
    busy: dict[tuple[str, str], str] = {}
    table_at: dict[tuple[str, int], str] = {}
    onsite_at: dict[str, int] = {}
    counts: dict[str, int] = {}
    for mi, m in enumerate(instance.meetings):
        if m.fixed is None:
            continue
        w = f"meetings[{mi}].fixed"
        slot = m.fixed.slot
        for pid in m.participants:
            p = by_id[pid]
            if p.available is not None and slot not in p.available:
                raise _fail(w, f"{m.id} is fixed in {slot} but {pid} is not available then")
            other = busy.get((pid, slot))
            if other is not None:
                raise _fail(w, f"fixed meetings {other} and {m.id} both put {pid} in {slot}")
            busy[(pid, slot)] = m.id
            counts[pid] = counts.get(pid, 0) + 1
            if p.max_meetings is not None and counts[pid] > p.max_meetings:
                raise _fail(w, f"{pid} has more fixed meetings than its max_meetings")
        if m.onsite:
            onsite_at[slot] = onsite_at.get(slot, 0) + 1
            if onsite_at[slot] > instance.tables:
                raise _fail(w, f"more fixed onsite meetings in {slot} than tables")
            if m.fixed.table is not None:
                other = table_at.get((slot, m.fixed.table))
                if other is not None:
                    raise _fail(
                        w,
                        f"fixed meetings {other} and {m.id} share table {m.fixed.table} in {slot}",
                    )
                table_at[(slot, m.fixed.table)] = m.id


def parse_instance_json(text: str | bytes) -> Instance:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InstanceError(f"not valid JSON: {e}") from e
    except UnicodeDecodeError as e:
        raise InstanceError(f"not UTF-8 text: {e}") from e
    return parse_instance(data)


def parse_schedule(data: object) -> Schedule:
    """Build a `Schedule` from a decoded JSON document (structure only, no rules)."""
    doc = _obj(data, "schedule")
    assignments: list[Assignment] = []
    for ai, raw in enumerate(_list(doc.get("assignments", []), "assignments")):
        w = f"assignments[{ai}]"
        a = _obj(raw, w)
        raw_table = a.get("table")
        assignments.append(
            Assignment(
                meeting=_str(_required(a, "meeting", w), f"{w}.meeting"),
                slot=_str(_required(a, "slot", w), f"{w}.slot"),
                table=None if raw_table is None else _int(raw_table, f"{w}.table", 1),
            )
        )
    unscheduled: list[Unscheduled] = []
    for ui, raw in enumerate(_list(doc.get("unscheduled", []), "unscheduled")):
        w = f"unscheduled[{ui}]"
        u = _obj(raw, w)
        reason = u.get("reason", "")
        if not isinstance(reason, str):
            raise _fail(f"{w}.reason", f"expected a string, got {_kind(reason)}")
        unscheduled.append(Unscheduled(_str(_required(u, "meeting", w), f"{w}.meeting"), reason))
    return Schedule(assignments, unscheduled)


def parse_schedule_json(text: str | bytes) -> Schedule:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InstanceError(f"not valid JSON: {e}") from e
    return parse_schedule(data)


# --------------------------------------------------------------------------- rendering


def instance_to_dict(instance: Instance) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": instance.name,
        "tables": instance.tables,
        "sessions": [
            {
                "id": s.id,
                "slots": [{"id": t.id, "start": t.start, "end": t.end} for t in s.slots],
            }
            for s in instance.sessions
        ],
        "participants": [
            {
                "id": p.id,
                "available": None if p.available is None else _ordered(instance, p.available),
                "max_meetings": p.max_meetings,
            }
            for p in instance.participants
        ],
        "meetings": [
            {
                "id": m.id,
                "participants": list(m.participants),
                "mode": m.mode,
                "priority": m.priority,
                "fixed": None
                if m.fixed is None
                else {"slot": m.fixed.slot, "table": m.fixed.table},
                **(
                    {}
                    if m.allowed_slots is None
                    else {"allowed_slots": _ordered(instance, m.allowed_slots)}
                ),
            }
            for m in instance.meetings
        ],
    }
    if instance.max_idle_spread is not None:
        doc["max_idle_spread"] = instance.max_idle_spread
    return doc


def _ordered(instance: Instance, slot_ids: frozenset[str]) -> list[str]:
    return [t.id for t in instance.slots if t.id in slot_ids]


def schedule_to_dict(schedule: Schedule) -> dict[str, Any]:
    return {
        "assignments": [
            {"meeting": a.meeting, "slot": a.slot, "table": a.table} for a in schedule.assignments
        ],
        "unscheduled": [{"meeting": u.meeting, "reason": u.reason} for u in schedule.unscheduled],
    }


def schedule_to_json(schedule: Schedule, indent: int | None = 2) -> str:
    return json.dumps(schedule_to_dict(schedule), indent=indent)
