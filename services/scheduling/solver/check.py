"""An independent checker of schedules: hard-rule violations and the objective.

Written deliberately plainly, on the parsed dataclasses only (dicts and sets of
ids, no bitmasks, nothing from the solver's own state), so that it can vouch for
the solver's output.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from services.scheduling.solver.model import Instance, Schedule


@dataclass(frozen=True, slots=True)
class Violation:
    kind: str
    message: str


# The kinds of violation, for tests and reports.
KINDS = (
    "unknown-meeting",  # a listed meeting the instance does not have
    "duplicate-meeting",  # a meeting listed more than once (in either list)
    "missing-meeting",  # an instance meeting in neither list
    "unknown-slot",  # an assignment to a slot the instance does not have
    "participant-double-booked",  # two meetings of one participant in one slot
    "participant-unavailable",  # a meeting in a slot a participant is not available in
    "max-meetings-exceeded",  # more meetings than a participant's max_meetings
    "table-double-booked",  # two meetings at one table in one slot
    "table-missing",  # an onsite meeting without a table
    "table-on-online",  # an online meeting with a table
    "table-out-of-range",  # a table number outside 1..tables
    "fixed-moved",  # a fixed meeting not at its slot (or table)
    "fixed-unscheduled",  # a fixed meeting left unscheduled
    "slot-not-allowed",  # a meeting in a slot outside its allowed_slots
    "idle-spread-exceeded",  # participants' idle differs by more than max_idle_spread
)


@dataclass(slots=True)
class Report:
    violations: list[Violation] = field(default_factory=list)
    scheduled: int = 0
    priority: int = 0  # summed priority of the scheduled meetings (maximise)
    idle: int = 0  # idle slots, summed over participants and sessions (minimise)
    # every participant of the instance: its idle slots, summed over sessions
    idle_by_participant: dict[str, int] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return not self.violations

    @property
    def score(self) -> tuple[int, int]:
        """Lexicographic objective as a key to maximise: (priority, -idle)."""
        return (self.priority, -self.idle)


def check(instance: Instance, schedule: Schedule) -> Report:
    report = Report()

    def flag(kind: str, message: str) -> None:
        report.violations.append(Violation(kind, message))

    meetings = {m.id: m for m in instance.meetings}
    participants = {p.id: p for p in instance.participants}
    session_of: dict[str, str] = {}
    position: dict[str, int] = {}
    for session in instance.sessions:
        for i, slot in enumerate(session.slots):
            session_of[slot.id] = session.id
            position[slot.id] = i

    listed = Counter(a.meeting for a in schedule.assignments)
    listed.update(u.meeting for u in schedule.unscheduled)
    for mid, n in sorted(listed.items()):
        if mid not in meetings:
            flag("unknown-meeting", f"{mid} is not a meeting of the instance")
        elif n > 1:
            flag("duplicate-meeting", f"{mid} is listed {n} times")
    for mid in meetings:
        if mid not in listed:
            flag("missing-meeting", f"{mid} is neither assigned nor unscheduled")
    for u in schedule.unscheduled:
        m = meetings.get(u.meeting)
        if m is not None and m.fixed is not None:
            flag("fixed-unscheduled", f"{m.id} is fixed in {m.fixed.slot} but unscheduled")

    # who meets where: (participant, slot) -> meetings; (slot, table) -> meetings
    attending: dict[tuple[str, str], list[str]] = defaultdict(list)
    at_table: dict[tuple[str, int], list[str]] = defaultdict(list)
    count: Counter[str] = Counter()
    seen: set[str] = set()
    for a in schedule.assignments:
        m = meetings.get(a.meeting)
        if m is None or a.meeting in seen:
            continue  # reported above; count a duplicate once
        seen.add(a.meeting)
        if a.slot not in session_of:
            flag("unknown-slot", f"{m.id} is in slot {a.slot!r}, which does not exist")
            continue
        report.scheduled += 1
        report.priority += m.priority
        if m.allowed_slots is not None and a.slot not in m.allowed_slots:
            flag("slot-not-allowed", f"{m.id} is in {a.slot}, not one of its allowed_slots")
        for pid in m.participants:
            attending[(pid, a.slot)].append(m.id)
            count[pid] += 1
            p = participants[pid]
            if p.available is not None and a.slot not in p.available:
                flag("participant-unavailable", f"{m.id}: {pid} is not available in {a.slot}")
        if m.mode == "onsite":
            if a.table is None:
                flag("table-missing", f"onsite meeting {m.id} has no table")
            elif not 1 <= a.table <= instance.tables:
                flag("table-out-of-range", f"{m.id} is at table {a.table} of {instance.tables}")
            else:
                at_table[(a.slot, a.table)].append(m.id)
        elif a.table is not None:
            flag("table-on-online", f"online meeting {m.id} has table {a.table}")
        if m.fixed is not None:
            if a.slot != m.fixed.slot:
                flag("fixed-moved", f"{m.id} is fixed in {m.fixed.slot} but is in {a.slot}")
            elif m.fixed.table is not None and a.table != m.fixed.table:
                flag("fixed-moved", f"{m.id} is fixed at table {m.fixed.table}, not {a.table}")

    for (pid, slot_id), mids in sorted(attending.items()):
        if len(mids) > 1:
            flag("participant-double-booked", f"{pid} has {', '.join(mids)} in {slot_id}")
    for (slot_id, table), mids in sorted(at_table.items()):
        if len(mids) > 1:
            flag("table-double-booked", f"table {table} in {slot_id} has {', '.join(mids)}")
    for pid, n in sorted(count.items()):
        cap = participants[pid].max_meetings
        if cap is not None and n > cap:
            flag("max-meetings-exceeded", f"{pid} has {n} meetings, max_meetings is {cap}")

    # idle: per participant and session, free slots between first and last meeting
    positions: dict[tuple[str, str], set[int]] = defaultdict(set)
    for pid, slot_id in attending:
        positions[(pid, session_of[slot_id])].add(position[slot_id])
    idle_of = {p.id: 0 for p in instance.participants}
    for (pid, _), used in positions.items():
        gaps = max(used) - min(used) + 1 - len(used)
        report.idle += gaps
        idle_of[pid] += gaps
    report.idle_by_participant = idle_of
    spread = instance.max_idle_spread
    if spread is not None and idle_of:
        most = max(idle_of, key=lambda pid: (idle_of[pid], pid))
        least = min(idle_of, key=lambda pid: (idle_of[pid], pid))
        if idle_of[most] - idle_of[least] > spread:
            flag(
                "idle-spread-exceeded",
                f"{most} has {idle_of[most]} idle slots and {least} {idle_of[least]},"
                f" more than max_idle_spread {spread} apart",
            )
    return report
