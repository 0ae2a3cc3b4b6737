"""Meeting scheduling for matchmaking events: a pure library.

- `model`: the instance and schedule formats (parse, render).
- `check`: an independent checker of the hard rules and the objective.
- `greedy`: the first-accepted-first-placed baseline.
- `place`: put one newly accepted meeting into an existing schedule.
- `optimise`: the heuristic re-optimisation (most priority placed, then least idle),
  in steps: `construct`, `chains` (repair), `localsearch`, `ruin` (ruin and recreate).
- `exact`: the CP-SAT model; `kempe`: Kempe-chain swaps (simulated annealing), its
  inner loop compiled by numba for long runs on small events (`kempe_kernel`,
  `kempe_compiled`); `fairness`: bringing a schedule within `max_idle_spread`.
- `portfolio`: `solve`, all of them under one deadline; the best schedule, whether it
  is proven optimal, and the bound.

No I/O, with one exception: `solve` (only it; `place` never) may start one child
process for a second annealing run (`second_run`), on instances small enough for the
exact model, and ends it before it returns.
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
from services.scheduling.solver.portfolio import Result, solve

__all__ = [
    "Assignment",
    "Fixed",
    "Instance",
    "InstanceError",
    "Meeting",
    "Participant",
    "Report",
    "Result",
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
    "solve",
]
