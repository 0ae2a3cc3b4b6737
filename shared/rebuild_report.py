"""What a rebuild (`shared.rebuild`) reports: the events it replayed, its seconds and
this process's CPU per step, and every difference from the live tables."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.rebuild_schema import Difference


@dataclass
class Report:
    service: str
    schema: str
    own_events: int = 0
    consumed_events: int = 0
    records_read: int = 0  # from the consumed topics, applied by the live consumer or not
    seconds: float = 0.0
    differences: list[Difference] = field(default_factory=list)
    switched_to: str | None = None
    # Seconds per step: fresh schema, own events replayed, topics read, records applied.
    phases: dict[str, float] = field(default_factory=dict)
    # This process's CPU seconds per step (the Python side; the server's is not in it).
    phases_cpu: dict[str, float] = field(default_factory=dict)
    # Event types whose handler read on its connection, which sent every folded table
    # to the server for the rest of the replay (`shared.rebuild_fold.Fold.release_for_read`).
    released_by_reads: list[str] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return not self.differences

    def lines(self) -> list[str]:
        rate = (self.own_events + self.consumed_events) / self.seconds if self.seconds else 0.0
        out = [
            f"{self.service}: rebuilt {self.own_events} own and {self.consumed_events} consumed"
            f" events into schema {self.schema} in {self.seconds:.2f}s ({rate:,.0f} events/s);"
            f" {self.records_read} records read from the consumed topics"
        ]
        if self.phases:
            out.append(
                "  "
                + ", ".join(
                    f"{k} {v:.2f}s (CPU {self.phases_cpu.get(k, 0.0):.2f}s)"
                    for k, v in self.phases.items()
                )
            )
        if self.released_by_reads:
            out.append(
                "  folded no more after a handler of "
                + ", ".join(self.released_by_reads)
                + " read on its connection: every statement went to the server from then on"
            )
        if self.equal:
            out.append("  every projection table equals the live one")
        for d in self.differences:
            out.append(f"  {d.table}: {d.only_live} rows only live, {d.only_rebuilt} only rebuilt")
            out += [f"    {sample}" for sample in d.samples]
        if self.switched_to:
            out.append(f"  switched: the live tables now hold the rebuild ({self.switched_to})")
        return out
