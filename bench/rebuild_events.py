"""The events of one large brokerage event, as the platform would have recorded them.

A timeline in the order things happen at a BIO-Europe-sized event: registrations in
bursts (as at a deadline), each burst approved by the organiser, meeting requests, and
for each answer the accept or decline, then for an accepted meeting its placement and
the e-mails about it (queued at once, sent by the sender in batches a moment later).
Each event carries the time it happened; the own events of a service get it as
`recorded_at`, the published ones as their Kafka timestamp, so a rebuild meets them in
the live order.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from shared.contracts.base import EventPayload
from shared.contracts.matching import (
    MeetingAccepted,
    MeetingDeclined,
    MeetingMode,
    MeetingParty,
    MeetingRequested,
    RequestMessage,
)
from shared.contracts.notification import (
    Channel,
    NotificationQueued,
    NotificationSent,
)
from shared.contracts.registration import (
    Attendance,
    BrokerageEventCreated,
    BusinessRegistered,
    ClusterRegistered,
    MeetingType,
    OrganisationProfile,
    OrganisationType,
    OrganiserRegistered,
    RegisteredBase,
    RegistrationApproved,
    RegistrationRejected,
    ResearchOrganisationRegistered,
    Session,
)
from shared.contracts.scheduling import AgendaPublished, SlotAssigned
from shared.envelope import Envelope

# E-mails the sender sends in one go (it claims the due deliveries in batches).
SENDER_BATCH = 100
PRODUCERS = ("registration", "matching", "scheduling", "notification")
SECTORS = ["biotech", "medtech", "pharma", "diagnostics", "digital health", "agrifood"]
COUNTRIES = ["DE", "FR", "IT", "ES", "NL", "BE", "DK", "SE", "PL", "AT"]
REGISTERED = (BusinessRegistered, ClusterRegistered, ResearchOrganisationRegistered)
KIND_OF = {
    BusinessRegistered: OrganisationType.BUSINESS,
    ClusterRegistered: OrganisationType.CLUSTER,
    ResearchOrganisationRegistered: OrganisationType.RESEARCH,
}


@dataclass(frozen=True)
class Size:
    participants: int = 3500
    accepted: int = 18000
    declined: int = 4000
    slots: int = 32
    tables: int = 600
    burst: int = 250  # registrations per burst, approved together


@dataclass
class Timeline:
    """Each producer's events in order, with the time each happened."""

    events: dict[str, list[tuple[datetime, Envelope]]] = field(
        default_factory=lambda: {p: [] for p in PRODUCERS}
    )
    clock: datetime = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)

    def add(self, payload: EventPayload, key: str, subject: str, step_ms: int = 3) -> Envelope:
        self.clock += timedelta(milliseconds=step_ms)
        envelope = Envelope.wrap(payload, key=key, subject=subject)
        self.events[payload.producer].append((self.clock, envelope))
        return envelope

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.events.values())


def _profile(rng: random.Random, kind: OrganisationType, n: int) -> OrganisationProfile:
    return OrganisationProfile(
        organisation_type=kind,
        name=f"Organisation {n}",
        country=rng.choice(COUNTRIES),
        sectors=rng.sample(SECTORS, 2),
        technologies=[f"tech-{rng.randrange(40)}"],
        value_chain_position=None,
        markets=rng.sample(COUNTRIES, 2),
        offers=[f"offer {n}"],
        requests=[f"request {n}"],
        attendance=Attendance.ON_SITE,
        availability=[],
        representatives_encrypted="sealed",
        representative_count=1,
    )


def _mail(
    line: Timeline, event_id: str, cause: Envelope, recipient: str, kind: str, meeting: str
) -> Iterator[tuple[NotificationQueued, NotificationSent]]:
    delivery = str(uuid.uuid4())
    common: dict[str, Any] = {
        "delivery_id": delivery,
        "event_id": event_id,
        "recipient_id": recipient,
        "channel": Channel.EMAIL,
        "kind": kind,
        "cause_id": f"{cause.source}#{cause.id}",
    }
    message_id = f"<{delivery}@bench.invalid>"
    yield (
        NotificationQueued(**common, meeting_id=meeting, context={}, message_id=message_id),
        NotificationSent(**common, attempts=1, message_id=message_id),
    )


def generate(size: Size, seed: int = 7) -> Timeline:
    rng = random.Random(seed)
    # Recent times: a topic's retention (7 days by default, for the bench's own topics)
    # deletes records older than that, and notification announces nothing that old.
    line = Timeline(clock=datetime.now(UTC) - timedelta(hours=1))
    event_id = str(uuid.uuid4())
    organiser = str(uuid.uuid4())
    line.add(
        OrganiserRegistered(organiser_id=organiser, name="Organiser", api_key_digest="o" * 64),
        organiser,
        f"organiser-{organiser}",
    )
    line.add(
        BrokerageEventCreated(
            event_id=event_id,
            organiser_id=organiser,
            name="BIO-Europe (bench)",
            venue="Messe",
            time_zone="Europe/Berlin",
            days=[date(2026, 3, 20), date(2026, 3, 21)],
            sessions=[Session(start=time(9), end=time(17))],
            slot_minutes=30,
            tables=size.tables,
            meeting_types=[MeetingType.BUSINESS2BUSINESS],
            registration_deadline=datetime(2026, 3, 10, tzinfo=UTC),
        ),
        event_id,
        f"event-{event_id}",
    )
    participants: list[RegisteredBase] = []
    for start in range(0, size.participants, size.burst):
        burst = []
        for n in range(start, min(start + size.burst, size.participants)):
            model = REGISTERED[n % len(REGISTERED)]
            reg = model(
                registration_id=str(uuid.uuid4()),
                event_id=event_id,
                profile=_profile(rng, KIND_OF[model], n),
                api_key_digest=uuid.uuid4().hex * 2,
            )
            line.add(reg, event_id, f"registration-{reg.registration_id}", step_ms=20)
            burst.append(reg)
        for reg in burst:
            decision = RegistrationApproved if rng.random() < 0.97 else RegistrationRejected
            line.add(
                decision(registration_id=reg.registration_id, event_id=event_id),
                event_id,
                f"registration-{reg.registration_id}",
            )
            if decision is RegistrationApproved:
                participants.append(reg)
    _meetings(line, rng, size, event_id, participants)
    line.add(
        AgendaPublished(event_id=event_id, published_at=line.clock),
        event_id,
        f"agenda-{event_id}",
    )
    return line


def _meetings(
    line: Timeline,
    rng: random.Random,
    size: Size,
    event_id: str,
    participants: list[RegisteredBase],
) -> None:
    day = datetime(2026, 3, 20, 8, 0, tzinfo=UTC)
    free: dict[int, list[int]] = {s: list(range(1, size.tables + 1)) for s in range(size.slots)}
    total = size.accepted + size.declined
    requests: list[tuple[MeetingRequested, RegisteredBase, RegisteredBase]] = []
    pairs: set[frozenset[str]] = set()  # one open request per pair
    while len(requests) < total:
        a, b = rng.sample(participants, 2)
        pair = frozenset((a.registration_id, b.registration_id))
        if pair in pairs:
            continue
        pairs.add(pair)
        requested = MeetingRequested(
            request_id=str(uuid.uuid4()),
            event_id=event_id,
            requester_id=a.registration_id,
            recipient_id=b.registration_id,
            meeting_type=MeetingType.BUSINESS2BUSINESS,
            message=RequestMessage(text="Shall we meet?"),
            expires_at=line.clock + timedelta(days=2),
        )
        line.add(requested, event_id, f"request-{requested.request_id}", step_ms=10)
        requests.append((requested, a, b))
    unsent: list[NotificationSent] = []
    for n, (req, a, b) in enumerate(requests):
        subject = f"request-{req.request_id}"
        if n >= size.accepted:
            line.add(
                MeetingDeclined(
                    request_id=req.request_id,
                    event_id=event_id,
                    requester_id=req.requester_id,
                    recipient_id=req.recipient_id,
                ),
                event_id,
                subject,
            )
            continue
        accepted = line.add(
            MeetingAccepted(
                request_id=req.request_id,
                event_id=event_id,
                requester_id=req.requester_id,
                recipient_id=req.recipient_id,
                meeting_type=MeetingType.BUSINESS2BUSINESS,
                mode=MeetingMode.ONSITE,
                participants=[
                    MeetingParty(
                        registration_id=p.registration_id,
                        name=p.profile.name,
                        organisation_type=p.profile.organisation_type,
                        attendance=p.profile.attendance,
                    )
                    for p in (a, b)
                ],
                accepted_by=req.recipient_id,
            ),
            event_id,
            subject,
            step_ms=10,
        )
        slot = n % size.slots
        start = day + timedelta(minutes=30 * slot)
        placed = line.add(
            SlotAssigned(
                meeting_id=req.request_id,
                event_id=event_id,
                participants=[req.requester_id, req.recipient_id],
                slot_start=start,
                slot_end=start + timedelta(minutes=30),
                table=free[slot].pop() if free[slot] else None,
                mode=MeetingMode.ONSITE,
                slot_id=f"slot-{slot}",
            ),
            event_id,
            f"agenda-{event_id}",
        )
        for cause, kind in ((accepted, "meeting.accepted"), (placed, "meeting.placed")):
            for recipient in (req.requester_id, req.recipient_id):
                for queued, sent in _mail(line, event_id, cause, recipient, kind, req.request_id):
                    line.add(queued, event_id, f"delivery-{queued.delivery_id}")
                    unsent.append(sent)
        if len(unsent) >= SENDER_BATCH:
            _send(line, event_id, unsent)
    _send(line, event_id, unsent)


def _send(line: Timeline, event_id: str, unsent: list[NotificationSent]) -> None:
    for sent in unsent:
        line.add(sent, event_id, f"delivery-{sent.delivery_id}", step_ms=5)
    unsent.clear()
