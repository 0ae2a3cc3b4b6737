"""Registration's HTTP API: thin routes over the handlers and the projection."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import Query, Request
from fastapi.responses import JSONResponse
from pydantic import EmailStr, Field

from services.registration import contacts, handlers, views
from services.registration.bodies import NewRegistration, Profile
from services.registration.domain import slot_grid
from shared import json_codec
from shared.access.guard import CONTROL, AccessRouter, anonymous_grant, requires
from shared.access.policy import Action, Grant, RegistrationStatus
from shared.api import (
    CORRELATION_HEADER,
    Caller,
    Command,
    Granted,
    IdempotencyKey,
    correlation_id_for,
    execute_command,
    run_command,
)
from shared.bodies import RequestBody
from shared.contracts.registration import (
    Attendance,
    MeetingType,
    OrganisationType,
    RegistrationApproved,
    RegistrationRejected,
    RegistrationWaitlisted,
    RegistrationWithdrawn,
    Session,
    SupportOffice,
)
from shared.direct_routes import Answer, DirectRequest, DirectRoute
from shared.errors import RuleViolation
from shared.runtime import runtime_of

router = AccessRouter(prefix="/api")


# -- request bodies -----------------------------------------------------------


_Body = RequestBody


class NewOrganiser(_Body):
    name: str = Field(min_length=1, max_length=200)


class NewBrokerageEvent(_Body):
    name: str = Field(min_length=1, max_length=300)
    venue: str = Field(min_length=1, max_length=300)
    time_zone: str = Field(examples=["Europe/Berlin"])
    days: list[date] = Field(min_length=1, max_length=14)
    sessions: list[Session] = Field(min_length=1, max_length=8)
    slot_minutes: int = Field(ge=5, le=240)
    tables: int = Field(ge=0, le=10_000)
    meeting_types: list[MeetingType] = Field(min_length=1)
    registration_deadline: datetime
    max_meetings_per_participant: int | None = Field(default=None, ge=1)
    request_expiry_hours: int = Field(default=48, ge=1)
    support_offices: list[SupportOffice] = Field(
        default_factory=list,
        max_length=100,
        description="EEN support offices co-organising the event, each with the countries"
        " whose participants it looks after unless they choose another",
    )


class EventSettings(_Body):
    """Settings to change, each optional (those left out stay as they are); the time zone
    and the support offices stay as created."""

    name: str | None = Field(default=None, min_length=1, max_length=300)
    venue: str | None = Field(default=None, min_length=1, max_length=300)
    days: list[date] | None = Field(default=None, min_length=1, max_length=14)
    sessions: list[Session] | None = Field(default=None, min_length=1, max_length=8)
    slot_minutes: int | None = Field(default=None, ge=5, le=240)
    tables: int | None = Field(default=None, ge=0, le=10_000)
    meeting_types: list[MeetingType] | None = Field(default=None, min_length=1)
    registration_deadline: datetime | None = None
    max_meetings_per_participant: int | None = Field(
        default=None, ge=1, description="send null to lift the cap"
    )
    request_expiry_hours: int | None = Field(default=None, ge=1)


class NewSideProgrammeItem(_Body):
    title: str = Field(min_length=1, max_length=300)
    kind: str = Field(default="guided_tour", min_length=1, max_length=50)
    start: datetime
    end: datetime
    capacity: int | None = Field(default=None, ge=1)


class JoinBody(_Body):
    registration_id: str = Field(min_length=1, max_length=100)


class DecisionBody(_Body):
    reason: str | None = Field(default=None, max_length=2000)


class NewCoOrganiser(_Body):
    office_id: str = Field(min_length=1, max_length=100)
    name: str = Field(min_length=1, max_length=200)
    email: EmailStr | None = None


class OfficeBody(_Body):
    office_id: str = Field(min_length=1, max_length=100)


# -- organisers and events ----------------------------------------------------


@router.post(
    "/organisers",
    status_code=201,
    summary="Register an organiser (platform admin)",
    openapi_extra=requires(Action.CREATE_ORGANISER),
)
async def create_organiser(
    request: Request, body: NewOrganiser, who: Caller, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    return await run_command(
        request,
        who,
        idempotency_key,
        body.model_dump(),
        lambda conn, cid: handlers.register_organiser(conn, body.name, cid),
        201,
    )


@router.post(
    "/events",
    status_code=201,
    summary="Create a brokerage event (organiser)",
    openapi_extra=requires(Action.CREATE_EVENT),
)
async def create_event(
    request: Request, body: NewBrokerageEvent, who: Caller, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    definition = body.model_dump()
    return await run_command(
        request,
        who,
        idempotency_key,
        body.model_dump(mode="json"),
        lambda conn, cid: handlers.create_event(conn, who, definition, cid),
        201,
    )


@router.get("/events", summary="List brokerage events", openapi_extra=requires(Action.VIEW_PUBLIC))
async def list_events(request: Request) -> list[dict[str, Any]]:
    async with runtime_of(request).pool.acquire() as conn:
        return await views.events(conn)


@router.get(
    "/events/{event_id}",
    summary="A brokerage event with its slot grid and support offices",
    openapi_extra=requires(Action.VIEW_PUBLIC),
)
async def get_event(request: Request, event_id: str) -> dict[str, Any]:
    async with runtime_of(request).pool.acquire() as conn:
        event = await handlers.load_event(conn, event_id)
    slots = [{"start": s.start.isoformat(), "end": s.end.isoformat()} for s in slot_grid(event)]
    return {**event.model_dump(mode="json"), "slots": slots}


@router.patch(
    "/events/{event_id}",
    summary="Change an event's settings (its organiser): days, sessions, slot length, tables,"
    " meeting types, caps, deadlines; scheduling moves meetings whose slot or table is gone",
    openapi_extra=requires(Action.MANAGE_EVENT),
)
async def change_event(
    request: Request,
    event_id: str,
    body: EventSettings,
    who: Caller,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    # Only the settings the caller sent (an explicit null lifts the meeting cap).
    changes = body.model_dump(exclude_unset=True)
    for name, value in changes.items():
        if value is None and name != "max_meetings_per_participant":
            raise RuleViolation(name, "must not be null")
    return await run_command(
        request,
        who,
        idempotency_key,
        body.model_dump(mode="json", exclude_unset=True),
        lambda conn, cid: handlers.change_event_settings(conn, event_id, changes, cid),
    )


# -- registrations ------------------------------------------------------------


def _registering(event_id: str, body: NewRegistration, grant: Grant) -> Command:
    """The command both `register` and `register_plainly` run."""
    profile, representatives = body.split()
    return lambda conn, cid: handlers.register_organisation(
        conn,
        event_id,
        profile,
        representatives,
        cid,
        grant=grant,
        support_office=body.support_office,
    )


@router.post(
    "/events/{event_id}/registrations",
    status_code=201,
    summary="Register an organisation for an event; returns its API key once",
    description="Open to anyone until the registration deadline; afterwards only the event's"
    " organisers (or the platform admin) may still register an organisation. A co-organiser"
    " registers organisations for its own support office.",
    openapi_extra=requires(Action.REGISTER),
)
async def register(
    request: Request,
    event_id: str,
    body: NewRegistration,
    grant: Granted,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    return await run_command(
        request,
        grant.principal,
        idempotency_key,
        lambda: body.model_dump(mode="json"),
        _registering(event_id, body, grant),
        201,
        # Its writes are one statement (two with a support office, then in a transaction
        # of their own: `handlers.record_registrations`); its one read, the event's
        # settings, sees what is committed either way.
        atomic=True,
    )


# Headers whose requests the direct path leaves to the route: a key (the guard's lookup),
# an Idempotency-Key (claimed in a transaction with the command).
_NOT_PLAIN = (b"x-api-key", b"authorization", b"idempotency-key")


async def register_plainly(request: DirectRequest) -> Answer | None:
    """`register` for an anonymous request without an Idempotency-Key whose JSON body
    validates, without FastAPI in between (`shared.direct_routes`); None for any other,
    which `register` answers. The same checks, command and answer."""
    headers = request.headers
    if request.scope.get("query_string") or any(name in headers for name in _NOT_PLAIN):
        return None
    content_type = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
    event_id = request.path_params["event_id"]
    if content_type != b"application/json" or not request.body or CONTROL.search(event_id):
        return None
    grant = anonymous_grant(request.scope["route"].requirement)
    if grant is None:
        return None
    try:
        body = NewRegistration.model_validate(json_codec.loads(request.body))
    except ValueError:  # not JSON, or not a valid registration (ValidationError)
        return None
    given = headers.get(CORRELATION_HEADER.lower().encode("latin-1"))
    correlation_id = correlation_id_for(given.decode("latin-1") if given is not None else None)
    status, payload = await execute_command(
        request.app.state.runtime,
        None,
        None,
        lambda: "",  # no key: not compared
        _registering(event_id, body, grant),
        201,
        correlation_id,
        atomic=True,
    )
    return status, payload, {CORRELATION_HEADER: correlation_id}


DIRECT_ROUTES = (DirectRoute(register, "POST", register_plainly),)


@router.get(
    "/events/{event_id}/registrations",
    summary="Registrations of an event, filtered (its organisers; a co-organiser sees its"
    " support office's)",
    openapi_extra=requires(Action.VIEW_ACTIVITY),
)
async def list_registrations(
    request: Request,
    event_id: str,
    grant: Granted,
    status: RegistrationStatus | None = None,
    support_office: str | None = None,
    organisation_type: OrganisationType | None = None,
    country: str | None = None,
    sector: str | None = None,
    attendance: Attendance | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[dict[str, Any]]:
    wanted = views.RegistrationFilter(
        status, support_office, organisation_type, country, sector, attendance
    )
    async with runtime_of(request).pool.acquire() as conn:
        return await views.registrations(conn, event_id, grant, wanted, limit, offset)


@router.get(
    "/registrations/{registration_id}",
    summary="One registration, with contact details",
    openapi_extra=requires(Action.VIEW_REGISTRATION),
)
async def get_registration(request: Request, registration_id: str) -> dict[str, Any]:
    async with runtime_of(request).pool.acquire() as conn:
        return await views.registration(conn, registration_id)


@router.get(
    "/registrations/{registration_id}/contacts",
    summary="An organisation's contact details (itself, the event's organisers, its support"
    " office, the admin, or an organisation with an accepted meeting with it)",
    openapi_extra=requires(Action.VIEW_REGISTRATION, target=contacts.with_partners),
)
async def get_contacts(request: Request, registration_id: str) -> dict[str, Any]:
    async with runtime_of(request).pool.acquire() as conn:
        return await views.contacts(conn, registration_id)


# Ids per bulk contacts request: a sender's batch (16 by default) and then some.
MAX_CONTACTS = 200


@router.get(
    "/contacts",
    summary="Many organisations' contact details at once, to e-mail them (the notification"
    " service's batches)",
    openapi_extra=requires(Action.READ_CONTACTS_TO_SEND),
)
async def get_many_contacts(
    request: Request,
    registration_id: Annotated[list[str], Query(min_length=1, max_length=MAX_CONTACTS)],
) -> dict[str, Any]:
    async with runtime_of(request).pool.acquire() as conn:
        return await views.contacts_of(conn, registration_id)


@router.patch(
    "/registrations/{registration_id}",
    summary="Update the profile (the organisation, or its organisers)",
    openapi_extra=requires(Action.EDIT_PROFILE),
)
async def update(
    request: Request,
    registration_id: str,
    body: Profile,
    who: Caller,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    profile, representatives = body.split()
    return await run_command(
        request,
        who,
        idempotency_key,
        body.model_dump(mode="json"),
        lambda conn, cid: handlers.update_profile(
            conn, registration_id, profile, representatives, cid
        ),
    )


def _decision_route(
    path: str, decision: handlers.Decision, summary: str, action: Action = Action.VALIDATE
) -> None:
    async def decide(
        request: Request,
        registration_id: str,
        who: Caller,
        body: DecisionBody | None = None,
        idempotency_key: IdempotencyKey = None,
    ) -> JSONResponse:
        reason = body.reason if body else None
        return await run_command(
            request,
            who,
            idempotency_key,
            {"reason": reason},
            lambda conn, cid: handlers.decide(conn, registration_id, decision, reason, cid),
        )

    router.add_api_route(
        f"/registrations/{{registration_id}}/{path}",
        decide,
        methods=["POST"],
        summary=summary,
        name=path,
        openapi_extra=requires(action),
    )


_decision_route("approve", RegistrationApproved, "Approve a registration (organisers)")
_decision_route("reject", RegistrationRejected, "Reject a registration (organisers)")
_decision_route("waitlist", RegistrationWaitlisted, "Waitlist a registration (organisers)")
_decision_route(
    "withdraw",
    RegistrationWithdrawn,
    "Withdraw (the organisation or its organisers)",
    Action.EDIT_PROFILE,
)


@router.delete(
    "/registrations/{registration_id}/personal-data",
    summary="Erase the representatives' contact details everywhere",
    openapi_extra=requires(Action.ERASE),
)
async def erase(request: Request, registration_id: str, who: Caller) -> JSONResponse:
    return await run_command(
        request,
        who,
        None,
        None,
        lambda conn, cid: handlers.erase_personal_data(conn, registration_id, cid),
    )


# -- side programme -----------------------------------------------------------


@router.post(
    "/events/{event_id}/side-programme",
    status_code=201,
    summary="Add a side programme item, e.g. a guided tour (organiser)",
    openapi_extra=requires(Action.MANAGE_EVENT),
)
async def add_side_programme_item(
    request: Request,
    event_id: str,
    body: NewSideProgrammeItem,
    who: Caller,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    definition = body.model_dump()
    return await run_command(
        request,
        who,
        idempotency_key,
        body.model_dump(mode="json"),
        lambda conn, cid: handlers.add_side_programme_item(conn, event_id, definition, cid),
        201,
    )


@router.post(
    "/events/{event_id}/side-programme/{item_id}/participants",
    summary="Join a side programme item (the organisation, or the organiser for it);"
    " its time is then blocked for meetings",
    openapi_extra=requires(Action.EDIT_PROFILE),
)
async def join_side_programme(
    request: Request,
    event_id: str,
    item_id: str,
    body: JoinBody,
    grant: Granted,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    return await run_command(
        request,
        grant.principal,
        idempotency_key,
        body.model_dump(),
        lambda conn, cid: handlers.join_side_programme(
            conn, grant, event_id, item_id, body.registration_id, cid
        ),
    )


@router.get(
    "/events/{event_id}/side-programme",
    summary="An event's side programme",
    openapi_extra=requires(Action.VIEW_PUBLIC),
)
async def side_programme(request: Request, event_id: str) -> list[dict[str, Any]]:
    async with runtime_of(request).pool.acquire() as conn:
        return await views.side_programme(conn, event_id)


# -- co-organisers and support offices (EEN) --------------------------------------------


@router.post(
    "/events/{event_id}/co-organisers",
    status_code=201,
    summary="Add a co-organiser for one of the event's support offices; returns its key once",
    openapi_extra=requires(Action.MANAGE_CO_ORGANISERS),
)
async def add_co_organiser(
    request: Request,
    event_id: str,
    body: NewCoOrganiser,
    who: Caller,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    return await run_command(
        request,
        who,
        idempotency_key,
        body.model_dump(),
        lambda conn, cid: handlers.add_co_organiser(
            conn, event_id, body.office_id, body.name, body.email, cid
        ),
        201,
    )


@router.get(
    "/events/{event_id}/co-organisers",
    summary="The event's co-organisers (lead organiser)",
    openapi_extra=requires(Action.MANAGE_CO_ORGANISERS),
)
async def list_co_organisers(request: Request, event_id: str) -> list[dict[str, Any]]:
    async with runtime_of(request).pool.acquire() as conn:
        return await views.co_organisers(conn, event_id)


@router.delete(
    "/events/{event_id}/co-organisers/{co_organiser_id}",
    summary="Remove a co-organiser: its key stops working",
    openapi_extra=requires(Action.MANAGE_CO_ORGANISERS),
)
async def remove_co_organiser(
    request: Request, event_id: str, co_organiser_id: str, who: Caller
) -> JSONResponse:
    return await run_command(
        request,
        who,
        None,
        None,
        lambda conn, cid: handlers.remove_co_organiser(conn, event_id, co_organiser_id, cid),
    )


@router.post(
    "/registrations/{registration_id}/support-office",
    summary="Reassign a participant to another support office (lead organiser)",
    openapi_extra=requires(Action.MANAGE_CO_ORGANISERS),
)
async def reassign_office(
    request: Request,
    registration_id: str,
    body: OfficeBody,
    who: Caller,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    return await run_command(
        request,
        who,
        idempotency_key,
        body.model_dump(),
        lambda conn, cid: handlers.reassign_office(conn, registration_id, body.office_id, cid),
    )


# -- who a key belongs to (the web portal signs in with it) ------------------------------


@router.get(
    "/me",
    summary="Who the calling key belongs to: its role, id, name and event",
    openapi_extra=requires(Action.WHO_AM_I),
)
async def who_am_i(request: Request, who: Caller) -> dict[str, Any]:
    async with runtime_of(request).pool.acquire() as conn:
        return await views.who_am_i(conn, who)
