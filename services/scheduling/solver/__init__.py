"""Meeting scheduling for matchmaking events: a pure library, no I/O.

- `model`: the instance and schedule formats (parse, render).
- `check`: an independent checker of the hard rules and the objective.
- `greedy`: the first-accepted-first-placed baseline.
- `place`: put one newly accepted meeting into an existing schedule.
- `optimise`: the full re-optimisation (most priority placed, then least idle).
"""

from services.scheduling.solver.check import Report, Violation, check
from services.scheduling.solver.greedy import greedy
from services.scheduling.solver.model import (
    Assignment,
    Fixed,
    Instance,
    InstanceError,
    Meeting,
    Participant,
    Schedule,
    Session,
    Slot,
    Unscheduled,
    parse_instance,
    parse_instance_json,
    parse_schedule,
    parse_schedule_json,
    schedule_to_dict,
    schedule_to_json,
)
from services.scheduling.solver.optimise import optimise
from services.scheduling.solver.place import place

__all__ = [
    "Assignment",
    "Fixed",
    "Instance",
    "InstanceError",
    "Meeting",
    "Participant",
    "Report",
    "Schedule",
    "Session",
    "Slot",
    "Unscheduled",
    "Violation",
    "check",
    "greedy",
    "optimise",
    "parse_instance",
    "parse_instance_json",
    "parse_schedule",
    "parse_schedule_json",
    "place",
    "schedule_to_dict",
    "schedule_to_json",
]
