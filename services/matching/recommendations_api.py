"""Recommendations over HTTP: whom an approved participant should meet, and why."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request

from services.matching import recommendations as recs
from shared.access.guard import AccessRouter, own_registration, requires
from shared.access.policy import Action
from shared.api import Caller
from shared.problems import ProblemError
from shared.runtime import runtime_of

router = AccessRouter(prefix="/api")

Limit = Annotated[int, Query(ge=1, le=recs.MAX_LIMIT, description="How many partners")]


def _not_approved(subject: recs.Subject) -> ProblemError:
    return ProblemError(
        409,
        "Not approved",
        f"recommendations are for approved participants; registration"
        f" {subject.registration_id} is {subject.status}",
    )


async def _answer(request: Request, subject: recs.Subject, limit: int) -> dict[str, Any]:
    if subject.status != "approved":
        raise _not_approved(subject)
    async with runtime_of(request).pool.acquire() as conn:
        items = await recs.recommendations(conn, subject, limit)
        pending = not items and await recs.pending(conn, subject.registration_id)
    return {
        "registration_id": subject.registration_id,
        "event_id": subject.event_id,
        "recommendations": items,
        # The profile's requests and offers are still being embedded: no list yet.
        "pending": pending,
    }


@router.get(
    "/me/recommendations",
    summary="Partners the calling organisation should meet, best first, with reasons",
    description="Only approved participants get recommendations. Partners already requested"
    " (pending) or met (accepted), withdrawn or rejected ones, and meeting types the event does"
    " not allow are left out. Right after a registration or a change of requests or offers the"
    " texts are still being embedded (usually well under a second): the list is empty and"
    " `pending` is true until they are, and the participant is not recommended to others yet.",
    openapi_extra=requires(Action.ACT_AS_PARTICIPANT, target=own_registration),
)
async def my_recommendations(request: Request, who: Caller, limit: Limit = 10) -> dict[str, Any]:
    async with runtime_of(request).pool.acquire() as conn:
        subject = await recs.subject_of(conn, who.id)
    if subject is None:
        raise ProblemError(404, "Not found", f"registration {who.id} is not known here yet")
    return await _answer(request, subject, limit)


@router.get(
    "/events/{event_id}/participants/{registration_id}/recommendations",
    summary="A participant's recommended partners (itself, its organisers)",
    openapi_extra=requires(Action.VIEW_REGISTRATION),
)
async def participant_recommendations(
    request: Request, event_id: str, registration_id: str, limit: Limit = 10
) -> dict[str, Any]:
    async with runtime_of(request).pool.acquire() as conn:
        subject = await recs.subject_of(conn, registration_id)
    if subject is None or subject.event_id != event_id:
        raise ProblemError(
            404, "Not found", f"registration {registration_id} is not part of event {event_id}"
        )
    return await _answer(request, subject, limit)
