"""Parsing and rendering of instances and schedules; clear errors for malformed ones."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from scheduling_cases import Doc, small_doc

from services.scheduling.solver.model import (
    Assignment,
    InstanceError,
    Schedule,
    Unscheduled,
    instance_to_dict,
    parse_instance,
    parse_instance_json,
    parse_schedule,
    parse_schedule_json,
    schedule_to_dict,
)


def test_parses_the_documented_example() -> None:
    inst = parse_instance(small_doc())
    assert inst.tables == 2
    assert [t.id for t in inst.slots] == ["am1", "am2", "am3", "pm1", "pm2", "pm3"]
    assert inst.participants[1].available == frozenset({"am1", "am2", "am3"})
    assert inst.participants[0].available is None
    assert inst.participants[2].max_meetings == 2
    m3 = inst.meeting("m3")
    assert m3.fixed is not None and m3.fixed.slot == "am2" and m3.fixed.table == 2
    assert inst.meeting("m2").mode == "online" and not inst.meeting("m2").onsite


def test_round_trips_through_dicts() -> None:
    inst = parse_instance(small_doc())
    assert parse_instance(json.loads(json.dumps(instance_to_dict(inst)))) == inst


def test_optional_keys_default_to_null() -> None:
    doc = small_doc()
    del doc["participants"][0]["available"]
    del doc["participants"][0]["max_meetings"]
    del doc["meetings"][0]["fixed"]
    inst = parse_instance(doc)
    assert inst.participants[0].available is None and inst.meetings[0].fixed is None


def _set(path: str, value: object) -> Callable[[Doc], object]:
    def change(doc: Doc) -> object:
        *head, last = path.split(".")
        node: Any = doc
        for key in head:
            node = node[int(key)] if key.isdigit() else node[key]
        if value is _DELETE:
            del node[last]
        else:
            node[int(last) if last.isdigit() else last] = value
        return doc

    return change


_DELETE = object()

MALFORMED: list[tuple[Callable[[Doc], object], str]] = [
    (lambda d: [], "instance: expected an object, got a list"),
    (_set("tables", _DELETE), "missing key 'tables'"),
    (_set("tables", -1), "tables: must be at least 0, got -1"),
    (_set("tables", "2"), "tables: expected an integer, got a string"),
    (_set("tables", 2.5), "tables: expected an integer"),
    (_set("sessions", {}), "sessions: expected a list, got an object"),
    (_set("sessions.1.slots", []), "sessions[1].slots: a session needs at least one slot"),
    (_set("sessions.1.slots.0.id", "am1"), "sessions[1].slots[0].id: duplicate slot id 'am1'"),
    (_set("sessions.1.id", "am"), "sessions[1].id: duplicate session id 'am'"),
    (_set("sessions.0.slots.0.id", ""), "sessions[0].slots[0].id: expected a non-empty string"),
    (
        _set("participants.1.available", ["am1", "zz"]),
        "participants[1].available[1]: unknown slot 'zz'",
    ),
    (_set("participants.1.available", "am1"), "participants[1].available: expected a list"),
    (_set("participants.2.max_meetings", -1), "participants[2].max_meetings: must be at least 0"),
    (_set("participants.3.id", "a"), "participants[3].id: duplicate participant id 'a'"),
    (
        _set("meetings.0.participants", ["a", "zz"]),
        "meetings[0].participants[1]: unknown participant 'zz'",
    ),
    (
        _set("meetings.0.participants", ["a", "a"]),
        "meetings[0].participants[1]: participant 'a' listed twice",
    ),
    (_set("meetings.0.participants", ["a"]), "meetings[0].participants: a meeting needs at least"),
    (_set("meetings.0.mode", "hybrid"), "meetings[0].mode: expected 'onsite' or 'online'"),
    (_set("meetings.0.mode", _DELETE), "meetings[0]: missing key 'mode'"),
    (_set("meetings.0.priority", 0), "meetings[0].priority: must be at least 1, got 0"),
    (_set("meetings.0.priority", True), "meetings[0].priority: expected an integer, got a boolean"),
    (_set("meetings.4.id", "m1"), "meetings[4].id: duplicate meeting id 'm1'"),
    (_set("meetings.0.fixed", {"slot": "zz", "table": None}), "meetings[0].fixed.slot: unknown"),
    (
        _set("meetings.1.fixed", {"slot": "am1", "table": 1}),
        "meetings[1].fixed.table: an online meeting has no table",
    ),
    (
        _set("meetings.0.fixed", {"slot": "am1", "table": 3}),
        "meetings[0].fixed.table: table 3 does not exist (tables: 2)",
    ),
    (
        _set("meetings.0.fixed", {"slot": "pm1", "table": None}),
        "meetings[0].fixed: m1 is fixed in pm1 but b is not available then",
    ),
    (
        _set("meetings.0.fixed", {"slot": "am2", "table": None}),
        "meetings[2].fixed: fixed meetings m1 and m3 both put b in am2",
    ),
    (
        _set("meetings.4.fixed", {"slot": "am2", "table": 2}),
        "meetings[4].fixed: fixed meetings m3 and m5 share table 2 in am2",
    ),
    (_set("tables", 0), "meetings[2].fixed.table: table 2 does not exist (tables: 0)"),
]


@pytest.mark.parametrize(("change", "message"), MALFORMED)
def test_malformed_instances_are_rejected_with_the_place(
    change: Callable[[Doc], object], message: str
) -> None:
    doc = change(copy.deepcopy(small_doc()))
    with pytest.raises(InstanceError) as err:
        parse_instance(doc)
    assert message in str(err.value)


def test_fixed_meetings_beyond_a_cap_or_the_tables_are_rejected() -> None:
    doc = small_doc()
    doc["participants"][2]["max_meetings"] = 1
    doc["meetings"][3]["fixed"] = {"slot": "pm1", "table": None}
    with pytest.raises(InstanceError, match="c has more fixed meetings than its max_meetings"):
        parse_instance(doc)
    doc = small_doc()
    doc["tables"] = 1
    doc["meetings"][2]["fixed"] = {"slot": "am2", "table": None}
    doc["meetings"][0]["fixed"] = {"slot": "am1", "table": None}
    doc["meetings"][3]["fixed"] = {"slot": "am1", "table": None}
    with pytest.raises(InstanceError, match="more fixed onsite meetings in am1 than tables"):
        parse_instance(doc)


def test_bad_json_text() -> None:
    with pytest.raises(InstanceError, match="not valid JSON"):
        parse_instance_json("{")
    with pytest.raises(InstanceError, match="not UTF-8"):
        parse_instance_json(b"\xff\xfe{")


def test_schedules_parse_and_render() -> None:
    schedule = Schedule(
        [Assignment("m1", "am1", 1), Assignment("m2", "am2", None)],
        [Unscheduled("m4", "c already has its maximum of 2 meetings")],
    )
    text = json.dumps(schedule_to_dict(schedule))
    assert parse_schedule_json(text) == schedule
    with pytest.raises(InstanceError, match=r"assignments\[0\]: missing key 'slot'"):
        parse_schedule({"assignments": [{"meeting": "m1"}]})
    with pytest.raises(InstanceError, match=r"assignments\[0\].table: must be at least 1"):
        parse_schedule({"assignments": [{"meeting": "m1", "slot": "am1", "table": 0}]})
