"""An event's slot grid, pure: slot ids, times in the event's zone, availability.

Slot ids are stable for an event's definition (which never changes): `d<day>-s<session>-<nn>`,
all 1-based, e.g. `d1-s2-03` is the third slot of the second session of the first day.
Days and sessions are taken in time order. A slot belongs to a participant's availability
when it lies wholly inside one of the participant's intervals (naive interval ends are read
in the event's zone); no intervals at all means available throughout.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cached_property
from zoneinfo import ZoneInfo


@dataclass(frozen=True, slots=True)
class GridSlot:
    id: str
    session: str
    start: datetime  # aware, in the event's zone
    end: datetime


@dataclass(frozen=True)
class EventGrid:
    event_id: str
    organiser_id: str | None
    time_zone: str
    days: tuple[date, ...]
    sessions: tuple[tuple[time, time], ...]
    slot_minutes: int
    tables: int
    max_meetings: int | None = None
    published: bool = False

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    @cached_property
    def slots(self) -> tuple[GridSlot, ...]:
        """Every slot of the event, in time order."""
        zone = self.zone
        step = timedelta(minutes=self.slot_minutes)
        out: list[GridSlot] = []
        for di, day in enumerate(sorted(self.days), start=1):
            for si, (first, last) in enumerate(sorted(self.sessions), start=1):
                start = datetime.combine(day, first, zone)
                end = datetime.combine(day, last, zone)
                n = 0
                while start + step <= end:
                    n += 1
                    out.append(
                        GridSlot(f"d{di}-s{si}-{n:02d}", f"d{di}-s{si}", start, start + step)
                    )
                    start += step
        return tuple(out)

    @cached_property
    def by_id(self) -> dict[str, GridSlot]:
        return {s.id: s for s in self.slots}

    def sessions_of_slots(self) -> list[tuple[str, list[GridSlot]]]:
        """The slots grouped by session, in order (empty sessions left out)."""
        groups: dict[str, list[GridSlot]] = {}
        for s in self.slots:
            groups.setdefault(s.session, []).append(s)
        return list(groups.items())


Interval = tuple[datetime, datetime]


def _aware(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


def available_slots(grid: EventGrid, intervals: Sequence[Interval]) -> frozenset[str] | None:
    """The ids of the slots wholly inside one of `intervals`; None (every slot) if none given."""
    if not intervals:
        return None
    zone = grid.zone
    spans = [(_aware(a, zone), _aware(b, zone)) for a, b in intervals]
    return frozenset(s.id for s in grid.slots if any(a <= s.start and s.end <= b for a, b in spans))


def usable_slots(
    grid: EventGrid, available: Sequence[Interval], blocked: Sequence[Interval]
) -> frozenset[str] | None:
    """`available_slots` without the slots overlapping one of `blocked` (side programme)."""
    slots = available_slots(grid, available)
    if not blocked:
        return slots
    zone = grid.zone
    spans = [(_aware(a, zone), _aware(b, zone)) for a, b in blocked]
    busy = {s.id for s in grid.slots if any(s.start < b and a < s.end for a, b in spans)}
    every = slots if slots is not None else frozenset(s.id for s in grid.slots)
    return every - busy


def parse_intervals(raw: Iterable[dict[str, str]]) -> tuple[Interval, ...]:
    """Intervals as stored (JSON objects with ISO `start` and `end`)."""
    return tuple(
        (datetime.fromisoformat(i["start"]), datetime.fromisoformat(i["end"])) for i in raw
    )
