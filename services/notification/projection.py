"""Notification's projections of the other services' events.

- recipients: whom it may write to (contact details stay sealed; erasure is recorded);
- brokerage events: names, venues and time zones, and who organises them;
- API keys of organisers and organisations, so their keys work on this API;
- co-organisers: each support office's, with the address its notices go to;
- meetings: each meeting's calendar state (see `domain.Meeting`), saved by the
  handlers in the same transaction as the messages it leads to.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from services.notification import domain
from services.notification.domain import Meeting, Placement
from shared.contracts.base import EventPayload
from shared.contracts.matching import MeetingCancelled
from shared.contracts.registration import (
    DECISIONS,
    REGISTERED_BY_TYPE,
    BrokerageEventCreated,
    CoOrganiserAdded,
    CoOrganiserRemoved,
    DecisionBase,
    EventSettingsChanged,
    OrganiserRegistered,
    PersonalDataErased,
    ProfileUpdated,
    RegisteredBase,
)
from shared.contracts.scheduling import SlotAssigned, SlotReleased
from shared.envelope import Envelope
from shared.inbox import Handler


async def on_organiser(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, OrganiserRegistered)


async def on_event_created(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, BrokerageEventCreated)
    await conn.execute(
        "INSERT INTO brokerage_events (event_id, organiser_id, name, venue, time_zone)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING",
        e.event_id,
        e.organiser_id,
        e.name,
        e.venue,
        e.time_zone,
    )


async def on_settings_changed(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    """The name and venue the e-mails give from now on."""
    assert isinstance(e, EventSettingsChanged)
    await conn.execute(
        "UPDATE brokerage_events SET name = $2, venue = $3 WHERE event_id = $1",
        e.event_id,
        e.name,
        e.venue,
    )


async def on_registered(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, RegisteredBase)
    await conn.execute(
        "INSERT INTO recipients (registration_id, event_id, name, status,"
        " representatives_encrypted) VALUES ($1, $2, $3, 'pending', $4)"
        " ON CONFLICT (registration_id) DO NOTHING",
        e.registration_id,
        e.event_id,
        e.profile.name,
        e.profile.representatives_encrypted,
    )


async def on_profile_updated(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, ProfileUpdated)
    await conn.execute(
        "UPDATE recipients SET name = $2, representatives_encrypted = $3"
        " WHERE registration_id = $1",
        e.registration_id,
        e.profile.name,
        e.profile.representatives_encrypted,
    )


async def on_decision(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, DecisionBase)
    await conn.execute(
        "UPDATE recipients SET status = $2 WHERE registration_id = $1",
        e.registration_id,
        e.status_after,
    )


async def on_erased(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, PersonalDataErased)
    await conn.execute(
        "UPDATE recipients SET erased = true, representatives_encrypted = ''"
        " WHERE registration_id = $1",
        e.registration_id,
    )


async def on_co_organiser_added(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, CoOrganiserAdded)
    await conn.execute(
        "INSERT INTO co_organisers (co_organiser_id, event_id, office_id, name, email)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (co_organiser_id) DO NOTHING",
        e.co_organiser_id,
        e.event_id,
        e.office_id,
        e.name,
        e.email,
    )


async def on_co_organiser_removed(conn: asyncpg.Connection, _: Envelope, e: EventPayload) -> None:
    assert isinstance(e, CoOrganiserRemoved)
    await conn.execute(
        "UPDATE co_organisers SET removed = true WHERE co_organiser_id = $1", e.co_organiser_id
    )


async def office_co_organisers(
    conn: asyncpg.Connection, event_id: str, office_id: str
) -> tuple[str, ...]:
    """The office's active co-organisers that gave an address, in a stable order."""
    rows = await conn.fetch(
        "SELECT co_organiser_id FROM co_organisers WHERE event_id = $1 AND office_id = $2"
        " AND NOT removed AND email IS NOT NULL ORDER BY co_organiser_id",
        event_id,
        office_id,
    )
    return tuple(r["co_organiser_id"] for r in rows)


HANDLERS: dict[str, Handler] = {
    CoOrganiserAdded.ce_type(): on_co_organiser_added,
    CoOrganiserRemoved.ce_type(): on_co_organiser_removed,
    OrganiserRegistered.ce_type(): on_organiser,
    BrokerageEventCreated.ce_type(): on_event_created,
    EventSettingsChanged.ce_type(): on_settings_changed,
    ProfileUpdated.ce_type(): on_profile_updated,
    PersonalDataErased.ce_type(): on_erased,
    **{t.ce_type(): on_registered for t in REGISTERED_BY_TYPE.values()},
    **{t.ce_type(): on_decision for t in DECISIONS},
}


# -- meetings --------------------------------------------------------------------


async def load_meeting(conn: asyncpg.Connection, meeting_id: str) -> Meeting | None:
    row = await conn.fetchrow("SELECT * FROM meetings WHERE meeting_id = $1 FOR UPDATE", meeting_id)
    return None if row is None else _meeting_of(row)


async def load_meetings(conn: asyncpg.Connection, meeting_ids: list[str]) -> dict[str, Meeting]:
    """`load_meeting` for several (those that exist), locked in one statement."""
    rows = await conn.fetch(
        "SELECT * FROM meetings WHERE meeting_id = ANY($1::text[]) ORDER BY meeting_id FOR UPDATE",
        meeting_ids,
    )
    return {r["meeting_id"]: _meeting_of(r) for r in rows}


def _meeting_of(row: asyncpg.Record) -> Meeting:
    placement = None
    if row["slot_start"] is not None:
        placement = Placement(row["slot_start"], row["slot_end"], row["table_no"], row["mode"])
    return Meeting(
        meeting_id=row["meeting_id"],
        event_id=row["event_id"],
        participants=tuple(row["participants"]),
        placement=placement,
        placed=row["placed"],
        sequence=row["sequence"],
        live=row["live"],
        cancelled=row["cancelled"],
    )


async def save_meeting(conn: asyncpg.Connection, m: Meeting) -> None:
    await save_meetings(conn, [m])


SAVE_MEETING = (
    "INSERT INTO meetings (meeting_id, event_id, participants, slot_start, slot_end,"
    " table_no, mode, placed, sequence, live, cancelled)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
    " ON CONFLICT (meeting_id) DO UPDATE SET participants = EXCLUDED.participants,"
    " slot_start = EXCLUDED.slot_start, slot_end = EXCLUDED.slot_end,"
    " table_no = EXCLUDED.table_no, mode = EXCLUDED.mode, placed = EXCLUDED.placed,"
    " sequence = EXCLUDED.sequence, live = EXCLUDED.live, cancelled = EXCLUDED.cancelled,"
    " updated_at = now()"
)


def meeting_row(m: Meeting) -> tuple[object, ...]:
    """`SAVE_MEETING`'s arguments for `m`."""
    return (
        m.meeting_id,
        m.event_id,
        list(m.participants),
        m.placement.start if m.placement else None,
        m.placement.end if m.placement else None,
        m.placement.table if m.placement else None,
        m.placement.mode if m.placement else None,
        m.placed,
        m.sequence,
        m.live,
        m.cancelled,
    )


async def save_meetings(conn: asyncpg.Connection, meetings: Sequence[Meeting]) -> None:
    await conn.executemany(SAVE_MEETING, [meeting_row(m) for m in meetings])


# The meetings table alone, as the rebuild replays it: the live consumer's handlers
# (`handlers.build`) make the same change and the messages it leads to, in one step.


async def on_slot_assigned(conn: asyncpg.Connection, envelope: Envelope, e: EventPayload) -> None:
    assert isinstance(e, SlotAssigned)
    current = await load_meeting(conn, e.meeting_id)
    await save_meeting(conn, domain.slot_assigned(current, e, envelope.time)[0])


async def on_slot_released(conn: asyncpg.Connection, envelope: Envelope, e: EventPayload) -> None:
    assert isinstance(e, SlotReleased)
    current = await load_meeting(conn, e.meeting_id)
    await save_meeting(conn, domain.slot_released(current, e, envelope.time)[0])


async def on_cancelled(conn: asyncpg.Connection, envelope: Envelope, e: EventPayload) -> None:
    assert isinstance(e, MeetingCancelled)
    current = await load_meeting(conn, e.request_id)
    await save_meeting(conn, domain.meeting_cancelled(current, e, envelope.time)[0])


MEETING_HANDLERS: dict[str, Handler] = {
    SlotAssigned.ce_type(): on_slot_assigned,
    SlotReleased.ce_type(): on_slot_released,
    MeetingCancelled.ce_type(): on_cancelled,
}


class MeetingFold:
    """`MEETING_HANDLERS` for a rebuild into a fresh schema: each meeting's state kept in
    memory as the handlers save it, so that they write without reading first (a read
    cannot be recorded: each event would go to the server on its own,
    `shared.batching`). Right while these handlers are the only writers of `meetings`
    and it starts empty (`forget` as the rebuild starts), and they see the events in
    order. An event handled twice in a row (recorded, then on the connection when the
    recording stopped at it) folds from the state before it both times."""

    def __init__(self) -> None:
        # meeting id -> (last event folded, the state before it, the state after it)
        self._kept: dict[str, tuple[str, Meeting | None, Meeting]] = {}
        self.handlers: dict[str, Handler] = {
            SlotAssigned.ce_type(): self._slot_assigned,
            SlotReleased.ce_type(): self._slot_released,
            MeetingCancelled.ce_type(): self._cancelled,
        }

    def forget(self) -> None:
        self._kept = {}

    def _before(self, meeting_id: str, envelope: Envelope) -> Meeting | None:
        kept = self._kept.get(meeting_id)
        if kept is None:
            return None
        event, before, after = kept
        return before if event == envelope.id else after

    async def _save(
        self, conn: asyncpg.Connection, envelope: Envelope, before: Meeting | None, m: Meeting
    ) -> None:
        self._kept[m.meeting_id] = (envelope.id, before, m)
        await conn.execute(SAVE_MEETING, *meeting_row(m))

    async def _slot_assigned(
        self, conn: asyncpg.Connection, envelope: Envelope, e: EventPayload
    ) -> None:
        assert isinstance(e, SlotAssigned)
        before = self._before(e.meeting_id, envelope)
        after = domain.slot_assigned(before, e, envelope.time)[0]
        await self._save(conn, envelope, before, after)

    async def _slot_released(
        self, conn: asyncpg.Connection, envelope: Envelope, e: EventPayload
    ) -> None:
        assert isinstance(e, SlotReleased)
        before = self._before(e.meeting_id, envelope)
        after = domain.slot_released(before, e, envelope.time)[0]
        await self._save(conn, envelope, before, after)

    async def _cancelled(
        self, conn: asyncpg.Connection, envelope: Envelope, e: EventPayload
    ) -> None:
        assert isinstance(e, MeetingCancelled)
        before = self._before(e.request_id, envelope)
        after = domain.meeting_cancelled(before, e, envelope.time)[0]
        await self._save(conn, envelope, before, after)
