"""The solvers' shared working representation: an instance compiled to integers.

Slots are numbered 0..S-1 in time order; a set of slots is a Python int used as
a bitset (bit t = slot t). Each participant has an availability mask and a busy
mask; idle time of a participant in a session is read from the busy mask with a
lookup table over the session's slots. Tables are a per-slot capacity while
solving; table numbers are given out only when the schedule is rendered.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from typing import Protocol

from services.scheduling.solver.model import Assignment, Instance, Schedule, Unscheduled

NO_CAP = 1 << 30


def idle_bits(x: int) -> int:
    """Free slots between the first and the last set bit of `x`."""
    if not x:
        return 0
    return x.bit_length() - (x & -x).bit_length() + 1 - x.bit_count()


class IdleTable(Protocol):
    def __getitem__(self, x: int, /) -> int: ...


class _IdleByBits:
    """Stands in for a lookup table when a session is too long to tabulate."""

    def __getitem__(self, x: int, /) -> int:
        return idle_bits(x)


_TABLES: dict[int, IdleTable] = {}
MAX_TABULATED = 16


def idle_table(length: int) -> IdleTable:
    """idle_table(L)[x] = idle_bits(x) for the x < 2**L."""
    table = _TABLES.get(length)
    if table is None:
        if length <= MAX_TABULATED:
            table = [idle_bits(x) for x in range(1 << length)]
        else:
            table = _IdleByBits()
        _TABLES[length] = table
    return table


def bits(mask: int) -> Iterator[int]:
    """The set bits of `mask`, lowest first."""
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


class Problem:
    """An `Instance` compiled to lists of ints."""

    def __init__(self, instance: Instance) -> None:
        self.instance = instance
        self.tables = instance.tables
        self.slot_ids: list[str] = []
        self.session_ids: list[str] = []
        self.slot_session: list[int] = []
        self.session_start: list[int] = []
        self.session_len: list[int] = []
        for si, session in enumerate(instance.sessions):
            self.session_ids.append(session.id)
            self.session_start.append(len(self.slot_ids))
            self.session_len.append(len(session.slots))
            for slot in session.slots:
                self.slot_ids.append(slot.id)
                self.slot_session.append(si)
        self.n_slots = len(self.slot_ids)
        self.all_slots = (1 << self.n_slots) - 1
        self.slot_index = {sid: t for t, sid in enumerate(self.slot_ids)}
        # per slot: where its session starts, the session's local window, idle table
        self.shift = [self.session_start[s] for s in self.slot_session]
        self.window = [(1 << self.session_len[s]) - 1 for s in self.slot_session]
        self.session_idle: list[IdleTable] = [idle_table(n) for n in self.session_len]
        self.idle_at: list[IdleTable] = [self.session_idle[s] for s in self.slot_session]
        self.session_mask = [
            ((1 << n) - 1) << a for a, n in zip(self.session_start, self.session_len, strict=True)
        ]

        self.part_ids = [p.id for p in instance.participants]
        self.part_index = {pid: i for i, pid in enumerate(self.part_ids)}
        self.avail: list[int] = []
        self.cap: list[int] = []
        for p in instance.participants:
            if p.available is None:
                self.avail.append(self.all_slots)
            else:
                self.avail.append(self.slot_mask(p.available))
            self.cap.append(NO_CAP if p.max_meetings is None else p.max_meetings)

        self.meeting_ids = [m.id for m in instance.meetings]
        self.meeting_index = {mid: k for k, mid in enumerate(self.meeting_ids)}
        self.parts: list[tuple[int, ...]] = []
        self.onsite: list[bool] = []
        self.prio: list[int] = []
        self.fixed_slot: list[int] = []
        self.fixed_table: list[int] = []  # 0: any table (or online)
        self.allowed: list[int] = []  # the slots a meeting may take (its allowed_slots)
        self.by_part: list[list[int]] = [[] for _ in self.part_ids]
        index = self.part_index
        for k, m in enumerate(instance.meetings):
            ps = tuple([index[pid] for pid in m.participants])
            self.parts.append(ps)
            for i in ps:
                self.by_part[i].append(k)
            self.onsite.append(m.onsite)
            self.prio.append(m.priority)
            if m.allowed_slots is None:
                self.allowed.append(self.all_slots)
            else:
                self.allowed.append(self.slot_mask(m.allowed_slots))
            if m.fixed is None:
                self.fixed_slot.append(-1)
                self.fixed_table.append(0)
            else:
                self.fixed_slot.append(self.slot_index[m.fixed.slot])
                self.fixed_table.append(m.fixed.table or 0)
        self.n_meetings = len(self.meeting_ids)
        self.n_parts = len(self.part_ids)
        self.max_idle_spread = instance.max_idle_spread

    def extend(self, more: Instance) -> list[int]:
        """Add the meetings of `more` (an instance of the same grid and tables), and those
        of its participants not known yet; their indices. `instance` stays the one
        compiled first: incremental placement (`place.Growing`) reads only the lists."""
        index = self.part_index
        for p in more.participants:
            if p.id in index:
                continue
            index[p.id] = len(self.part_ids)
            self.part_ids.append(p.id)
            self.avail.append(
                self.all_slots if p.available is None else self.slot_mask(p.available)
            )
            self.cap.append(NO_CAP if p.max_meetings is None else p.max_meetings)
            self.by_part.append([])
        added = []
        for m in more.meetings:
            if m.id in self.meeting_index:
                raise ValueError(f"meeting {m.id} is in the problem already")
            k = len(self.meeting_ids)
            self.meeting_ids.append(m.id)
            self.meeting_index[m.id] = k
            ps = tuple([index[pid] for pid in m.participants])
            self.parts.append(ps)
            for i in ps:
                self.by_part[i].append(k)
            self.onsite.append(m.onsite)
            self.prio.append(m.priority)
            self.allowed.append(
                self.all_slots if m.allowed_slots is None else self.slot_mask(m.allowed_slots)
            )
            self.fixed_slot.append(-1 if m.fixed is None else self.slot_index[m.fixed.slot])
            self.fixed_table.append(0 if m.fixed is None else m.fixed.table or 0)
            added.append(k)
        self.n_meetings = len(self.meeting_ids)
        self.n_parts = len(self.part_ids)
        return added

    def slot_mask(self, slot_ids: Iterable[str]) -> int:
        mask = 0
        for sid in slot_ids:
            mask |= 1 << self.slot_index[sid]
        return mask

    def common_avail(self, m: int) -> int:
        """The slots meeting m may take: allowed to it, all its participants available."""
        mask = self.allowed[m]
        for i in self.parts[m]:
            mask &= self.avail[i]
        return mask

    def common_avail_any(self, m: int) -> int:
        """The slots all of meeting m's participants are available in (any slot)."""
        mask = self.all_slots
        for i in self.parts[m]:
            mask &= self.avail[i]
        return mask

    def names(self, people: Iterable[int]) -> str:
        ids = [self.part_ids[i] for i in people]
        if len(ids) <= 2:
            return " and ".join(ids)
        return ", ".join(ids[:-1]) + " and " + ids[-1]


class State:
    """A partial schedule: where each meeting is, and the masks and counts it implies."""

    def __init__(self, problem: Problem) -> None:
        self.p = problem
        s = problem.n_slots
        self.slot_of = [-1] * problem.n_meetings
        self.busy = [0] * problem.n_parts
        self.count = [0] * problem.n_parts
        self.at = [-1] * (problem.n_parts * s)  # participant*S + slot -> meeting
        self.onsite_used = [0] * s
        self.table_full = problem.all_slots if problem.tables == 0 else 0
        # tables taken by number (only when placing into an existing, numbered schedule),
        # set with `give_table`; by slot, how many meetings hold each number, and a number
        # below which all are taken: the lowest free table is found from there, not by
        # going through the slot's meetings (600 of them at a BIO-Europe's busiest slot)
        self.table_of: dict[int, int] = {}
        self.numbers_at: list[dict[int, int]] = [{} for _ in range(s)]
        self.lowest_free: list[int] = [1] * s

    def grow(self) -> None:
        """Make room for the meetings and participants added to the problem since
        (`Problem.extend`): none of them placed, nobody new busy."""
        p = self.p
        self.slot_of += [-1] * (p.n_meetings - len(self.slot_of))
        new = p.n_parts - len(self.busy)
        self.busy += [0] * new
        self.count += [0] * new
        self.at += [-1] * (new * p.n_slots)

    @classmethod
    def of_slots(cls, problem: Problem, slot_of: list[int]) -> State:
        """The state with meeting m in slot slot_of[m] (none where it is -1)."""
        state = cls(problem)
        for m, t in enumerate(slot_of):
            if t >= 0:
                state.add(m, t)
        return state

    def copy_from(self, other: State) -> None:
        self.slot_of[:] = other.slot_of
        self.busy[:] = other.busy
        self.count[:] = other.count
        self.at[:] = other.at
        self.onsite_used[:] = other.onsite_used
        self.table_full = other.table_full
        if self.table_of or other.table_of:  # a solver's states have none: copy nothing
            self.numbers_at = [dict(numbers) for numbers in other.numbers_at]
            self.lowest_free[:] = other.lowest_free
        self.table_of = dict(other.table_of)

    def give_table(self, m: int, table: int) -> None:
        """Meeting m (placed) sits at table number `table` of its slot."""
        if m in self.table_of:
            self._drop_table(m)
        self.table_of[m] = table
        numbers = self.numbers_at[self.slot_of[m]]
        numbers[table] = numbers.get(table, 0) + 1

    def _drop_table(self, m: int) -> None:
        """Meeting m no longer holds a table number (before it leaves its slot)."""
        table = self.table_of.pop(m, None)
        if table is None:
            return
        t = self.slot_of[m]
        numbers = self.numbers_at[t]
        if numbers[table] > 1:
            numbers[table] -= 1
            return
        del numbers[table]
        if table < self.lowest_free[t]:
            self.lowest_free[t] = table

    def free_table(self, t: int) -> int:
        """The lowest table number not in use in slot t, 0 if all the tables are."""
        numbers = self.numbers_at[t]
        n = self.lowest_free[t]
        while n in numbers:
            n += 1
        self.lowest_free[t] = n  # every number below n is taken
        return n if n <= self.p.tables else 0

    def table_taken(self, t: int, table: int) -> bool:
        return table in self.numbers_at[t]

    def free_slots(self, m: int) -> int:
        """Slots where meeting m could go now without moving anything."""
        p = self.p
        mask = p.allowed[m]
        for i in p.parts[m]:
            if self.count[i] >= p.cap[i]:
                return 0
            mask &= p.avail[i] & ~self.busy[i]
        if p.onsite[m]:
            mask &= ~self.table_full
        return mask

    def add(self, m: int, t: int) -> None:
        p = self.p
        bit = 1 << t
        s = p.n_slots
        for i in p.parts[m]:
            self.busy[i] |= bit
            self.count[i] += 1
            self.at[i * s + t] = m
        if p.onsite[m]:
            self.onsite_used[t] += 1
            if self.onsite_used[t] >= p.tables:
                self.table_full |= bit
        self.slot_of[m] = t

    def swap_slots(self, meetings: list[int], a: int, b: int) -> None:
        """Move each of `meetings` from slot a to b or from b to a: a closed Kempe chain
        (every meeting its participants have in a or b is among them), so each of them
        keeps one meeting per slot. In one pass over the chain, without `remove`/`add`."""
        p = self.p
        s = p.n_slots
        at, busy, slot_of, onsite_used = self.at, self.busy, self.slot_of, self.onsite_used
        for m in meetings:  # out of the old slot first: a participant may have both
            t = slot_of[m]
            bit = 1 << t
            for i in p.parts[m]:
                busy[i] &= ~bit
                at[i * s + t] = -1
            if p.onsite[m]:
                onsite_used[t] -= 1
            self._drop_table(m)
        for m in meetings:
            u = b if slot_of[m] == a else a
            slot_of[m] = u
            bit = 1 << u
            for i in p.parts[m]:
                busy[i] |= bit
                at[i * s + u] = m
            if p.onsite[m]:
                onsite_used[u] += 1
        for t in (a, b):
            if onsite_used[t] >= p.tables:
                self.table_full |= 1 << t
            else:
                self.table_full &= ~(1 << t)

    def remove(self, m: int) -> None:
        self._drop_table(m)
        p = self.p
        t = self.slot_of[m]
        bit = 1 << t
        s = p.n_slots
        for i in p.parts[m]:
            self.busy[i] &= ~bit
            self.count[i] -= 1
            self.at[i * s + t] = -1
        if p.onsite[m]:
            self.onsite_used[t] -= 1
            if self.onsite_used[t] < p.tables:
                self.table_full &= ~bit
        self.slot_of[m] = -1

    def move_to(self, slots: list[int]) -> None:
        """The schedule `slots` (a slot per meeting, -1 for none), moving only the meetings
        whose slot differs."""
        for m, t in enumerate(self.slot_of):
            if t >= 0 and slots[m] != t:
                self.remove(m)
        for m, t in enumerate(slots):
            if t >= 0 and self.slot_of[m] != t:
                self.add(m, t)

    def added_idle(self, m: int, t: int) -> int:
        """How much idle time placing meeting m in slot t would add (may be negative)."""
        p = self.p
        sh = p.shift[t]
        w = p.window[t]
        table = p.idle_at[t]
        bit = 1 << t
        delta = 0
        for i in p.parts[m]:
            b = self.busy[i]
            delta += table[((b | bit) >> sh) & w] - table[(b >> sh) & w]
        return delta

    def idle(self) -> int:
        p = self.p
        total = 0
        for b in self.busy:
            if b:
                for a, tab, mask in zip(
                    p.session_start, p.session_idle, p.session_mask, strict=True
                ):
                    total += tab[(b & mask) >> a]
        return total

    def idle_of(self, i: int) -> int:
        """Participant i's idle slots, summed over the sessions."""
        p = self.p
        b = self.busy[i]
        if not b:
            return 0
        return sum(
            tab[(b & mask) >> a]
            for a, tab, mask in zip(p.session_start, p.session_idle, p.session_mask, strict=True)
        )

    def idle_spread(self) -> int:
        """Most idle of a participant minus least idle of a participant."""
        if not self.busy:
            return 0
        idle = [self.idle_of(i) for i in range(self.p.n_parts)]
        return max(idle) - min(idle)

    def priority(self) -> int:
        return sum(pr for pr, t in zip(self.p.prio, self.slot_of, strict=True) if t >= 0)

    def score(self) -> tuple[int, int]:
        return (self.priority(), -self.idle())

    def best_slot(self, m: int, candidates: int, rng: random.Random | None = None) -> int:
        """Among `candidates`, the slot adding least idle time; ties go to a slot next to
        the participants' other meetings, then to the earliest (or, given `rng`, to a
        random one of the tied). -1 if there is none."""
        p = self.p
        best = -1
        busy = [self.busy[i] for i in p.parts[m]]
        # (delta, lonely) compared as one int: 0 <= lonely <= len(busy) < scale.
        scale = len(busy) + 1
        best_key = (1 << 30) * scale
        ties = 1
        shift, window, idle_at = p.shift, p.window, p.idle_at
        while candidates:  # each set bit, lowest first (`bits`, inlined: a hot loop)
            low = candidates & -candidates
            candidates ^= low
            t = low.bit_length() - 1
            sh = shift[t]
            w = window[t]
            table = idle_at[t]
            near = ((low << 1) | (low >> 1)) & (w << sh)
            key = 0
            for b in busy:
                key += (table[((b | low) >> sh) & w] - table[(b >> sh) & w]) * scale
                if not b & near:
                    key += 1  # a participant with no meeting next to t
            if key < best_key:
                best_key = key
                best = t
                ties = 1
            elif rng is not None and key == best_key:
                ties += 1
                if rng.randrange(ties) == 0:
                    best = t
        return best

    def place_fixed(self) -> None:
        """Put the fixed meetings where they are locked. A parsed instance's fixed
        meetings always fit together; one built in code might not, and a fixed meeting
        that clashes with those before it stays out (with its reason)."""
        p = self.p
        for m in range(p.n_meetings):
            t = p.fixed_slot[m]
            if t >= 0 and self.slot_of[m] < 0 and self.free_slots(m) >> t & 1:
                self.add(m, t)

    # ------------------------------------------------------------------ explaining

    def reason(self, m: int) -> str:
        """Why meeting m cannot be placed without moving other meetings."""
        p = self.p
        parts = p.parts[m]
        if p.fixed_slot[m] >= 0:
            t = p.fixed_slot[m]
            for i in parts:
                other = self.at[i * p.n_slots + t]
                if other >= 0:
                    return (
                        f"fixed in {p.slot_ids[t]}, where {p.part_ids[i]} already has"
                        f" {p.meeting_ids[other]}"
                    )
            if p.onsite[m] and self.table_full >> t & 1:
                return f"fixed in {p.slot_ids[t]}, where no table is free"
            if p.fixed_table[m] and self.table_taken(t, p.fixed_table[m]):
                return f"fixed at table {p.fixed_table[m]} in {p.slot_ids[t]}, which is taken"
        for i in parts:
            if p.cap[i] == 0:
                return f"{p.part_ids[i]} takes no meetings (max_meetings is 0)"
            if self.count[i] >= p.cap[i]:
                return f"{p.part_ids[i]} already has its maximum of {p.cap[i]} meetings"
        for i in parts:
            if not p.avail[i]:
                return f"{p.part_ids[i]} is not available in any slot"
        if not p.allowed[m]:
            return "its allowed_slots are empty"
        if not p.common_avail(m):
            if p.allowed[m] != p.all_slots and p.common_avail_any(m):
                return f"{p.names(parts)} are not available together in its allowed_slots"
            return f"{p.names(parts)} have no available slot in common"
        for i in parts:
            if not p.avail[i] & ~self.busy[i]:
                return f"{p.part_ids[i]} has no free slot left"
        free = p.allowed[m]
        for i in parts:
            free &= p.avail[i] & ~self.busy[i]
        if not free:
            within = "" if p.allowed[m] == p.all_slots else " in its allowed_slots"
            if len(parts) == 2:
                a, b = parts
                return f"{p.part_ids[a]} has no free slot in common with {p.part_ids[b]}{within}"
            return f"{p.names(parts)} have no free slot in common{within}"
        if p.onsite[m] and not free & ~self.table_full:
            n = free.bit_count()
            where = "the slot" if n == 1 else f"any of the {n} slots"
            return f"no table is free in {where} where {p.names(parts)} are free"
        return "not placed by the optimiser"  # a placement exists; callers avoid this

    # ------------------------------------------------------------------ rendering

    def number_tables(self) -> dict[int, int]:
        """Table numbers for every placed onsite meeting: fixed tables and those already
        in `table_of` are kept, the others get the lowest free numbers of their slot."""
        p = self.p
        taken: list[set[int]] = [set() for _ in range(p.n_slots)]
        numbers: dict[int, int] = {}
        for k, n in self.table_of.items():
            t = self.slot_of[k]
            if t >= 0 and p.onsite[k]:
                numbers[k] = n
                taken[t].add(n)
        for k in range(p.n_meetings):
            t = self.slot_of[k]
            if t >= 0 and p.onsite[k] and p.fixed_table[k] and k not in numbers:
                numbers[k] = p.fixed_table[k]
                taken[t].add(p.fixed_table[k])
        nxt = [1] * p.n_slots
        for k in range(p.n_meetings):
            t = self.slot_of[k]
            if t >= 0 and p.onsite[k] and k not in numbers:
                n = nxt[t]
                while n in taken[t]:
                    n += 1
                numbers[k] = n
                taken[t].add(n)
                nxt[t] = n + 1
        return numbers

    def schedule(self) -> Schedule:
        p = self.p
        numbers = self.number_tables()
        assignments: list[Assignment] = []
        unscheduled: list[Unscheduled] = []
        for k, mid in enumerate(p.meeting_ids):
            t = self.slot_of[k]
            if t >= 0:
                assignments.append(Assignment(mid, p.slot_ids[t], numbers.get(k)))
            else:
                unscheduled.append(Unscheduled(mid, self.reason(k)))
        return Schedule(assignments, unscheduled)
