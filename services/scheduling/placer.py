"""Placing meetings into an event's agenda without moving the placed ones: the decisions
(pure; `handlers` loads the agenda under the event's lock and records what is decided)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields

from services.scheduling import domain
from services.scheduling.domain import AgendaMeeting, Attendee, MeetingStatus, Mode, Place
from services.scheduling.grid import EventGrid
from services.scheduling.solver import Assignment, Unscheduled
from services.scheduling.solver.place import Growing, place_many
from shared.contracts.base import EventPayload


@dataclass
class Placer:
    """One event's agenda as placing sees it, read under the event's lock: its attendees,
    time windows and placed meetings. It places meetings one after another, each among
    those placed before it (moving none of them). The solver's view of the agenda is
    compiled once and grown by each placement (`solver.place.Growing`), so that a run of
    accepts, and the runs after it while the agenda is unchanged otherwise
    (`handlers.placer_for`), cost what their meetings cost, not the agenda's size."""

    grid: EventGrid
    attendees: dict[str, Attendee]
    windows: dict[str, tuple[str, ...]]
    placed: dict[str, AgendaMeeting]
    # The placed meetings compiled (None until the first placement, and again after a
    # decision that moves a placed meeting or ignores one: those rebuild it).
    growing: Growing | None = field(default=None, repr=False)

    def decide(self, target: AgendaMeeting, ignore: frozenset[str] = frozenset()) -> EventPayload:
        """Where `target` goes (a SlotAssigned, or a MeetingUnschedulable), remembered for
        the next decision. A meeting placed for the first time gets its mode from what
        scheduling knows of its participants (the online/on-site choice). Placed meetings
        in `ignore` (about to move themselves) do not hold their places."""
        return self.decide_all([target], ignore)[0]

    def decide_all(
        self, targets: Sequence[AgendaMeeting], ignore: frozenset[str] = frozenset()
    ) -> list[EventPayload]:
        """`decide` for each of `targets` in turn (distinct meetings, none of them placed
        unless it is the only one), each among the placed meetings and the targets
        decided before it: the same decisions as one `decide` after the other, with the
        solver's instance built and the agenda loaded into it once for all of them
        instead of once per meeting (which made a run cost quadratic in the agenda)."""
        was_placed = {t.meeting_id for t in targets if t.meeting_id in self.placed}
        for target in targets:
            self.placed.pop(target.meeting_id, None)
        chosen: list[AgendaMeeting] = []
        refused: dict[str, str] = {}  # meeting -> why its preference leaves it no slot
        for target in targets:
            mode = target.mode
            if target.status == MeetingStatus.PENDING:
                known = [
                    self.attendees[p].attendance for p in target.participants if p in self.attendees
                ]
                mode = domain.meeting_mode(target.mode, known)
            target = _moved(target, mode, target.status, None)
            why = domain.no_slot_reason(self.grid, target, self.windows)
            if why is not None:  # the requester's preference alone rules every slot out
                refused[target.meeting_id] = why
            chosen.append(target)
        placing = [t for t in chosen if t.meeting_id not in refused]
        # Only new meetings, every placed one holding its place: the compiled agenda grows.
        grows = (
            not ignore
            and not was_placed
            and (
                self.growing is None
                or not any(t.meeting_id in self.growing.problem.meeting_index for t in placing)
            )
        )
        results = iter(self._place(ignore, placing, grows) if placing else [])
        decided: list[EventPayload] = []
        for target in chosen:
            if target.meeting_id in refused:
                decided.append(domain.unschedulable(self.grid, target, refused[target.meeting_id]))
                continue
            result = next(results)
            if not isinstance(result, Assignment):
                decided.append(domain.unschedulable(self.grid, target, result.reason))
                continue
            where = Place(result.slot, result.table)
            self.placed[target.meeting_id] = _moved(
                target, target.mode, MeetingStatus.PLACED, where
            )
            decided.append(domain.slot_assigned(self.grid, target, where))
        return decided

    def _place(
        self, ignore: frozenset[str], placing: list[AgendaMeeting], grows: bool
    ) -> list[Assignment | Unscheduled]:
        # The placed meetings but those deciding now (taken out) and those in `ignore`:
        # only listed where the compiled agenda is (re)built, not for each growth.
        def others() -> list[AgendaMeeting]:
            return [m for m in self.placed.values() if m.meeting_id not in ignore]

        if not grows:  # a placed meeting moves, or some hold no place: a one-off instance
            self.growing = None
            standing = others()
            instance = domain.build_instance(
                self.grid, self.attendees, [*standing, *placing], self.windows
            )
            schedule = domain.current_schedule(standing)
            return place_many(instance, schedule, [t.meeting_id for t in placing])
        if self.growing is None:
            standing = others()
            agenda = domain.build_instance(self.grid, self.attendees, standing, self.windows)
            self.growing = Growing(agenda, domain.current_schedule(standing))
        more = domain.build_instance(self.grid, self.attendees, placing, self.windows)
        return self.growing.place(more)


def _moved(
    meeting: AgendaMeeting, mode: Mode, status: MeetingStatus, place: Place | None
) -> AgendaMeeting:
    """`replace(meeting, mode=mode, status=status, place=place, locked=False)` without
    `dataclasses.replace`'s look at every field (three per placement were a tenth of a
    run of accepts' CPU)."""
    return AgendaMeeting(
        meeting.meeting_id,
        meeting.participants,
        mode,
        status,
        place,
        False,
        meeting.meeting_type,
        meeting.reason,
        meeting.time_preference,
    )


# `_moved` names every field: one added to AgendaMeeting must be added there too.
assert [f.name for f in fields(AgendaMeeting)] == [
    "meeting_id",
    "participants",
    "mode",
    "status",
    "place",
    "locked",
    "meeting_type",
    "reason",
    "time_preference",
]
