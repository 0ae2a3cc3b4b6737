"""`make demo`: replay the European Cluster Matchmaking Event at HANNOVER MESSE, 13-14 April 2015.

Everything goes through the services' public HTTP APIs (no database writes): the
admin registers the organiser; the organiser creates the event with its real 2015
dates and registers the organisations (the registration deadline lies in the past,
and only the event's organiser may register after it); the organiser approves them;
participants request meetings and accept them (matching), scheduling places them;
the organiser records who came and which meetings did not take place, both sides
rate their meetings and report outcomes (reporting). Then the report is printed.

The event has two support offices (EEN): the Lower Saxony office (DE-NDS) looks
after the German participants and a second office after the others (the country
rule); each gets a co-organiser, and the report shows the figures by office.

The organisations are fictional. The figures are the seed's: 25 clusters from nine
countries applied, 19 clusters from eight countries took part, six could not come
in person, and they held 44 Cluster2Cluster and 17 Business2Cluster meetings. Two
more meetings were placed but did not take place (one marked by the organiser, one
rated so by a participant), so they do not count.

    .venv/bin/python scripts/replay_hannover.py   # against the platform `make up` started
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

# -- the seed's cast (fictional names) ------------------------------------------------

SECTORS = [
    "ICT",
    "automotive",
    "aerospace",
    "nanotechnology",
    "photonics",
    "furniture and habitat",
    "environment",
    "new materials",
    "mechanical engineering",
]

# (name, country, sectors): 19 clusters that came, from eight countries.
ON_SITE_CLUSTERS: list[tuple[str, str, list[str]]] = [
    ("Leine Valley Mechatronics Cluster", "DE", ["mechanical engineering", "automotive"]),
    ("Weser Aero Network", "DE", ["aerospace", "new materials"]),
    ("Harz Photonics Hub", "DE", ["photonics", "nanotechnology"]),
    ("Elbe Environmental Technologies", "DE", ["environment"]),
    ("Garonne Aerospace Alliance", "FR", ["aerospace"]),
    ("Rhône Smart Materials Cluster", "FR", ["new materials", "nanotechnology"]),
    ("Vosges Habitat & Wood Cluster", "FR", ["furniture and habitat"]),
    ("Brianza Furniture District", "IT", ["furniture and habitat"]),
    ("Po Valley Automotive Cluster", "IT", ["automotive", "mechanical engineering"]),
    ("Etna Digital Cluster", "IT", ["ICT"]),
    ("Meseta ICT Cluster", "ES", ["ICT"]),
    ("Ebro Clean-Tech Association", "ES", ["environment", "new materials"]),
    ("Vistula Automotive Valley", "PL", ["automotive"]),
    ("Warta Nanotech Cluster", "PL", ["nanotechnology", "photonics"]),
    ("Alpine Mechatronics Cluster", "AT", ["mechanical engineering"]),
    ("Danube Photonics Cluster", "AT", ["photonics"]),
    ("Scheldt Materials Cluster", "BE", ["new materials"]),
    ("Meuse ICT Network", "BE", ["ICT", "environment"]),
    ("Nemunas Laser Cluster", "LT", ["photonics", "ICT"]),
]
# Six clusters that applied but could not come in person (attending remotely).
REMOTE_CLUSTERS: list[tuple[str, str, list[str]]] = [
    ("Carpathian ICT Cluster", "RO", ["ICT"]),
    ("Banat Automotive Cluster", "RO", ["automotive", "mechanical engineering"]),
    ("Cantabrian Environment Cluster", "ES", ["environment"]),
    ("Oder Aerospace Cluster", "PL", ["aerospace"]),
    ("Adriatic Nanomaterials Cluster", "IT", ["nanotechnology", "new materials"]),
    ("Loire Aero Materials", "FR", ["aerospace", "new materials"]),
]
# Companies from the Technology Cooperation Days meeting clusters.
BUSINESSES: list[tuple[str, str, list[str]]] = [
    ("Calenberg Robotics GmbH", "DE", ["mechanical engineering"]),
    ("Hildesheim Optics GmbH", "DE", ["photonics"]),
    ("Steinhuder Composites GmbH", "DE", ["new materials", "aerospace"]),
    ("Tyrol Sensor Systems GmbH", "AT", ["ICT"]),
    ("Torino Drive Components S.r.l.", "IT", ["automotive"]),
    ("Gdańsk Green Energy Sp. z o.o.", "PL", ["environment"]),
]

# Guided tours to key European technology providers: the first joined before the
# meetings are requested, the second after they are placed (scheduling moves them).
TOURS: list[dict[str, Any]] = [
    {
        "title": "Guided tour: key European technology providers, hall 2",
        "start": "2015-04-13T14:00:00+02:00",
        "end": "2015-04-13T15:30:00+02:00",
        "capacity": 12,
    },
    {
        "title": "Guided tour: Industrie 4.0 showcase",
        "start": "2015-04-13T10:00:00+02:00",
        "end": "2015-04-13T11:30:00+02:00",
        "capacity": 12,
    },
]
TOUR_GROUPS = [range(0, 8), range(8, 14)]  # indices into the on-site clusters

C2C_HELD = 44
B2C_HELD = 17
RATINGS = [
    "cooperation_possible",
    "informative_no_cooperation",
    "cooperation_possible",
    "no_interest",
]

# The host region's office looks after the German participants; a second EEN office
# (fictional) after everyone else's, by the country rule.
SUPPORT_OFFICES: list[dict[str, Any]] = [
    {"office_id": "DE-NDS", "name": "EEN Lower Saxony", "countries": ["DE"]},
    {
        "office_id": "EEN-EU",
        "name": "EEN partner offices abroad",
        "countries": ["AT", "BE", "ES", "FR", "IT", "LT", "PL", "RO"],
    },
]

EVENT = {
    "name": "European Cluster Matchmaking Event at HANNOVER MESSE 2015 (replay)",
    "venue": "HANNOVER MESSE, Technology Cooperation Days, Hannover, Germany",
    "time_zone": "Europe/Berlin",
    "days": ["2015-04-13", "2015-04-14"],
    "sessions": [{"start": "09:30", "end": "12:30"}, {"start": "13:30", "end": "17:30"}],
    "slot_minutes": 30,
    "tables": 25,
    "meeting_types": ["Cluster2Cluster", "Business2Cluster"],
    "registration_deadline": "2015-03-27T23:59:00+01:00",
    "support_offices": SUPPORT_OFFICES,
}


def c2c_pairs(n: int, count: int) -> list[tuple[int, int]]:
    """`count` distinct cluster pairs spread evenly: i with i+1, then i with i+2, ..."""
    pairs: list[tuple[int, int]] = []
    step = 1
    while len(pairs) < count:
        for i in range(n):
            if len(pairs) == count:
                break
            pairs.append((i, (i + step) % n))
        step += 1
    return pairs


def b2c_pairs(businesses: int, clusters: int, count: int) -> list[tuple[int, int]]:
    """(business, cluster) pairs: each business meets clusters 3b, 3b+1, 3b+2 (mod n)."""
    return [(b, (3 * b + k) % clusters) for b in range(businesses) for k in range(3)][:count]


# -- the replay -----------------------------------------------------------------------


@dataclass(frozen=True)
class Urls:
    registration: str = "http://127.0.0.1:8001"
    matching: str = "http://127.0.0.1:8002"
    scheduling: str = "http://127.0.0.1:8003"
    reporting: str = "http://127.0.0.1:8000"

    @classmethod
    def from_env(cls) -> Urls:
        return cls(
            os.environ.get("REGISTRATION_URL", cls.registration),
            os.environ.get("MATCHING_URL", cls.matching),
            os.environ.get("SCHEDULING_URL", cls.scheduling),
            os.environ.get("REPORTING_URL", cls.reporting),
        )


@dataclass
class Replay:
    event_id: str = ""
    organiser_key: str = ""
    keys: dict[str, str] = field(default_factory=dict)  # registration id -> API key
    clusters: list[str] = field(default_factory=list)  # on-site cluster registration ids
    remote: list[str] = field(default_factory=list)
    businesses: list[str] = field(default_factory=list)
    meetings: list[tuple[str, str, str]] = field(default_factory=list)  # (id, a, b)
    tours: dict[str, list[str]] = field(default_factory=dict)  # item id -> participants
    report: dict[str, Any] = field(default_factory=dict)  # as the lead organiser sees it
    co_organisers: dict[str, str] = field(default_factory=dict)  # office id -> its key


class ReplayError(RuntimeError):
    pass


def _ok(response: httpx.Response) -> Any:
    if response.is_error:
        raise ReplayError(
            f"{response.request.method} {response.request.url}: {response.status_code} "
            f"{response.text}"
        )
    return response.json()


async def poll(
    what: str,
    check: Callable[[], Awaitable[bool]],
    *,
    limit: float,
    interval: float = 0.2,
) -> None:
    """Wait until `check()` holds; fail after `limit` seconds."""
    deadline = time.monotonic() + limit
    while not await check():
        if time.monotonic() > deadline:
            raise ReplayError(f"timed out after {limit:.0f}s waiting for {what}")
        await asyncio.sleep(interval)


def _profile(
    kind: str, name: str, country: str, sectors: list[str], remote: bool
) -> dict[str, Any]:
    slug = "".join(c for c in name.lower() if c.isalnum())[:24]
    return {
        "organisation_type": kind,
        "name": name,
        "country": country,
        "sectors": sectors,
        "technologies": sectors,
        "offers": [f"access to {name}'s members in {', '.join(sectors)}"],
        "requests": ["European partners for joint projects and events"],
        "markets": ["EU"],
        "attendance": "remote" if remote else "on_site",
        "representatives": [{"name": f"Contact of {name}", "email": f"contact@{slug}.example"}],
    }


async def replay(
    urls: Urls, admin_key: str, *, wait_limit: float = 45.0, log: Callable[[str], None] = print
) -> Replay:
    state = Replay()
    async with httpx.AsyncClient(timeout=30) as http:
        admin = {"X-API-Key": admin_key}
        organiser = _ok(
            await http.post(
                f"{urls.registration}/api/organisers",
                headers=admin,
                json={"name": "Enterprise Europe Network, Lower Saxony (replay)"},
            )
        )
        state.organiser_key = organiser["api_key"]
        as_organiser = {"X-API-Key": state.organiser_key}
        event = _ok(
            await http.post(f"{urls.registration}/api/events", headers=as_organiser, json=EVENT)
        )
        state.event_id = event_id = event["event_id"]
        log(f"event {event['name']} ({event_id})")
        for office in SUPPORT_OFFICES:
            added = _ok(
                await http.post(
                    f"{urls.registration}/api/events/{event_id}/co-organisers",
                    headers=as_organiser,
                    json={"office_id": office["office_id"], "name": office["name"]},
                )
            )
            state.co_organisers[office["office_id"]] = added["api_key"]
        log(f"{len(state.co_organisers)} co-organisers added, one per support office")

        async def register(
            kind: str, cast: list[tuple[str, str, list[str]]], remote: bool
        ) -> list[str]:
            ids = []
            for name, country, sectors in cast:
                # After the (2015) deadline: the organiser registers them with its key.
                made = _ok(
                    await http.post(
                        f"{urls.registration}/api/events/{event_id}/registrations",
                        headers=as_organiser,
                        json=_profile(kind, name, country, sectors, remote),
                    )
                )
                state.keys[made["registration_id"]] = made["api_key"]
                ids.append(made["registration_id"])
            return ids

        state.clusters = await register("cluster", ON_SITE_CLUSTERS, False)
        state.remote = await register("cluster", REMOTE_CLUSTERS, True)
        state.businesses = await register("business", BUSINESSES, False)
        everyone = [*state.clusters, *state.remote, *state.businesses]
        for rid in everyone:
            _ok(
                await http.post(
                    f"{urls.registration}/api/registrations/{rid}/approve", headers=as_organiser
                )
            )
        log(f"{len(everyone)} organisations registered and approved")

        async def matching_knows_all() -> bool:
            rows = _ok(
                await http.get(
                    f"{urls.matching}/api/events/{event_id}/participants",
                    headers=as_organiser,
                    params={"status": "approved"},
                )
            )
            return len(rows) == len(everyone)

        await poll("matching to learn the approvals", matching_knows_all, limit=wait_limit)

        tour_ids = []
        for tour in TOURS:
            added = _ok(
                await http.post(
                    f"{urls.registration}/api/events/{event_id}/side-programme",
                    headers=as_organiser,
                    json={**tour, "kind": "guided_tour"},
                )
            )
            tour_ids.append(added["item_id"])

        async def join(tour: int) -> None:
            for index in TOUR_GROUPS[tour]:
                rid = state.clusters[index]
                _ok(
                    await http.post(
                        f"{urls.registration}/api/events/{event_id}/side-programme/"
                        f"{tour_ids[tour]}/participants",
                        headers={"X-API-Key": state.keys[rid]},
                        json={"registration_id": rid},
                    )
                )
                state.tours.setdefault(tour_ids[tour], []).append(rid)

        await join(0)

        async def meet(a: str, b: str) -> str:
            asked = _ok(
                await http.post(
                    f"{urls.matching}/api/events/{event_id}/meeting-requests",
                    headers={"X-API-Key": state.keys[a]},
                    json={"recipient_id": b, "message": "Shall we explore a cooperation?"},
                )
            )
            request_id: str = asked["request_id"]
            _ok(
                await http.post(
                    f"{urls.matching}/api/meeting-requests/{request_id}/accept",
                    headers={"X-API-Key": state.keys[b]},
                )
            )
            state.meetings.append((request_id, a, b))
            return request_id

        c2c = c2c_pairs(len(state.clusters), C2C_HELD + 1)
        for i, j in c2c:
            await meet(state.clusters[i], state.clusters[j])
        for bi, ci in b2c_pairs(len(state.businesses), len(state.clusters), B2C_HELD + 1):
            await meet(state.businesses[bi], state.clusters[ci])
        log(f"{len(state.meetings)} meetings requested and accepted")

        async def all_placed() -> bool:
            rows = _ok(
                await http.get(
                    f"{urls.reporting}/api/events/{event_id}/meetings", headers=as_organiser
                )
            )
            placed: int = sum(r["placed"] for r in rows)
            return placed == len(state.meetings)

        await poll("scheduling to place every meeting", all_placed, limit=wait_limit)
        await join(1)
        busy = {
            rid: (TOURS[t]["start"], TOURS[t]["end"])
            for t, item in enumerate(tour_ids)
            for rid in state.tours[item]
        }

        seen: list[dict[str, Any]] = []

        async def tours_respected() -> bool:
            seen[:] = _ok(
                await http.get(
                    f"{urls.reporting}/api/events/{event_id}/meetings", headers=as_organiser
                )
            )
            return all(r["placed"] for r in seen) and not clashes(seen, busy)

        try:
            await poll("meetings to keep out of the tours", tours_respected, limit=wait_limit)
        except ReplayError as exc:
            raise ReplayError(f"{exc}; clashing: {clashes(seen, busy)}") from exc
        log(f"{sum(len(v) for v in state.tours.values())} participants joined guided tours")
        unscheduled = _ok(
            await http.get(
                f"{urls.scheduling}/api/events/{event_id}/unscheduled", headers=as_organiser
            )
        )
        if unscheduled:
            raise ReplayError(f"meetings left unscheduled: {unscheduled}")
        log("every meeting is on the agenda")

        async def reporting_knows_all() -> bool:
            got = _ok(await http.get(f"{urls.reporting}/api/events/{event_id}/report"))
            known: int = got["applied"]["organisations"]
            return known == len(everyone)

        await poll("reporting to learn the registrations", reporting_knows_all, limit=wait_limit)
        came = [*state.clusters, *state.businesses]
        for rid in everyone:
            _ok(
                await http.post(
                    f"{urls.reporting}/api/events/{event_id}/attendance",
                    headers=as_organiser,
                    json={"registration_id": rid, "attended": rid in came},
                )
            )
        # Two placed meetings did not take place: the last Cluster2Cluster one (the
        # organiser marks it) and the last Business2Cluster one (a participant says so).
        skipped_c2c = state.meetings[C2C_HELD]
        skipped_b2c = state.meetings[-1]
        _ok(
            await http.post(
                f"{urls.reporting}/api/events/{event_id}/meetings/{skipped_c2c[0]}/not-held",
                headers=as_organiser,
                json={"reason": "one delegation's train was cancelled"},
            )
        )
        _ok(
            await http.post(
                f"{urls.reporting}/api/events/{event_id}/meetings/{skipped_b2c[0]}/feedback",
                headers={"X-API-Key": state.keys[skipped_b2c[1]]},
                json={"rating": "did_not_take_place"},
            )
        )
        # The organiser asks the read side to invite everyone to rate their meetings
        # (notification emails each participant the list of its meetings).
        invited = _ok(
            await http.post(
                f"{urls.reporting}/api/events/{event_id}/feedback-invitations",
                headers=as_organiser,
            )
        )
        log(f"feedback invitations: {invited['participants']} participants asked to rate")
        held = [m for m in state.meetings if m not in (skipped_c2c, skipped_b2c)]
        for index, (meeting_id, first, second) in enumerate(held):
            for side_index, side in enumerate((first, second)):
                _ok(
                    await http.post(
                        f"{urls.reporting}/api/events/{event_id}/meetings/{meeting_id}/feedback",
                        headers={"X-API-Key": state.keys[side]},
                        json={"rating": RATINGS[(index + side_index) % len(RATINGS)]},
                    )
                )
            outcome: dict[str, Any] | None = None
            if index % 7 == 0:
                outcome = {
                    "outcome": "agreement_reached",
                    "kind": "joint_funding_proposal",
                    "note": "joint Horizon 2020 proposal",
                }
            elif index % 7 == 3:
                outcome = {"outcome": "agreement_reached", "kind": "joint_event"}
            elif index % 7 == 5:
                outcome = {"outcome": "negotiation_started"}
            if outcome:
                _ok(
                    await http.post(
                        f"{urls.reporting}/api/events/{event_id}/meetings/{meeting_id}/outcome",
                        headers={"X-API-Key": state.keys[first]},
                        json=outcome,
                    )
                )
        log("attendance, feedback and outcomes recorded")
        state.report = _ok(
            await http.get(f"{urls.reporting}/api/events/{event_id}/report", headers=as_organiser)
        )
    return state


def clashes(meetings: list[dict[str, Any]], busy: dict[str, tuple[str, str]]) -> list[str]:
    """Ids of placed meetings held while one of their participants is on a tour."""
    found = []
    for m in meetings:
        if not m["placed"]:
            continue
        start, end = datetime.fromisoformat(m["slot_start"]), datetime.fromisoformat(m["slot_end"])
        for rid in m["participants"]:
            if rid in busy:
                a, b = (datetime.fromisoformat(t) for t in busy[rid])
                if start < b and a < end:
                    found.append(m["meeting_id"])
    return found


def seed_figures(report: dict[str, Any]) -> dict[str, int]:
    """The figures the seed states, read from a report."""
    return {
        "applied clusters": report["applied"]["clusters"],
        "applied countries": report["applied"]["countries"],
        "participated clusters": report["participated"]["clusters"],
        "participated countries": report["participated"]["countries"],
        "remote clusters": report["remote"]["clusters"],
        "Cluster2Cluster": report["meetings"]["by_type"]["cluster2cluster"],
        "Business2Cluster": report["meetings"]["by_type"]["business2cluster"],
        "meetings held": report["meetings"]["held"],
    }


def office_lines(report: dict[str, Any]) -> list[str]:
    """The lead organiser's report figures by support office, one printed line each."""
    return [
        f"{o['name']} ({o['office_id']}): {o['registrations']} registrations,"
        f" {o['approved']} approved, {o['meetings_requested']} meetings requested,"
        f" {o['meetings_held']} held, {o['feedback_responses']} feedback responses,"
        f" {o['agreements']} agreements"
        for o in report.get("by_office", [])
    ]


SEED = {
    "applied clusters": 25,
    "applied countries": 9,
    "participated clusters": 19,
    "participated countries": 8,
    "remote clusters": 6,
    "Cluster2Cluster": 44,
    "Business2Cluster": 17,
    "meetings held": 61,
}


def main() -> int:
    urls = Urls.from_env()
    done = asyncio.run(replay(urls, os.environ.get("PLATFORM_ADMIN_KEY", "local-admin-key")))
    markdown = httpx.get(
        f"{urls.reporting}/api/events/{done.event_id}/report.md",
        headers={"X-API-Key": done.organiser_key},  # the lead's: with the figures by office
        timeout=10,
    )
    print()
    print(markdown.text)
    print("Figures by support office:")
    for line in office_lines(done.report):
        print(f"  {line}")
    print()
    figures = seed_figures(done.report)
    differ = {k: (v, SEED[k]) for k, v in figures.items() if v != SEED[k]}
    link = httpx.get(
        f"{urls.reporting}/api/events/{done.event_id}/dashboard-link",
        headers={"X-API-Key": done.organiser_key},
        timeout=10,
    )
    print(f"Dashboard:   {urls.reporting}{_ok(link)['url']}")
    for office, key in done.co_organisers.items():
        mine = httpx.get(
            f"{urls.reporting}/api/events/{done.event_id}/dashboard-link",
            headers={"X-API-Key": key},
            timeout=10,
        )
        print(f"  {office}:  {urls.reporting}{_ok(mine)['url']}")
    from scripts.hannover_exports import EXPORTS_DIR, fetch_exports, write_exports

    files = asyncio.run(fetch_exports(urls, done.event_id, done.organiser_key, done.co_organisers))
    saved = write_exports(EXPORTS_DIR, files)
    print(f"Exports:     {len(saved)} files (CSV, XLSX, PDF) in {EXPORTS_DIR.resolve()}/")
    print(f"Report page: {urls.reporting}/events/{done.event_id}/report")
    print(f"Report JSON: {urls.reporting}/api/events/{done.event_id}/report")
    if differ:
        print(f"figures differ from the seed (got, seed): {differ}", file=sys.stderr)
        return 1
    print("The figures match the seed. The platform keeps running; `make down` stops it.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
