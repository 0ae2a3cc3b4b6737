"""Full re-optimisation: keep the fixed meetings, place as much priority as possible,
then leave participants as little idle time as possible.

1. Construction. Meetings by priority, and within a priority "participant-major"
   (all the meetings of the tightest participant, then of the next, ...), each into
   the slot adding least idle time (`State.best_slot`). Tables are a per-slot
   capacity; numbers are given out at the end.
2. Repair, for the meetings that found no slot:
   - ejection chains: put the meeting in a slot, lift out what blocks it there (its
     participants' meetings in that slot, or an onsite meeting if no table is free)
     and re-insert those elsewhere, recursively to a small depth; all or nothing;
   - augmenting chains for caps: where a participant is at its `max_meetings`, take
     out one of its meetings and use the capacity that frees at that meeting's other
     participant for another unplaced meeting, and so on, kept only when the summed
     priority rises (the greedy "first come" choice under caps is often not the best).
3. Local search on idle time: move a meeting to another slot, swapping with the
   meetings its participants have there (they go to its old slot); accepted when the
   idle time does not grow, so sideways moves let the search drift across plateaus.
   Most moves are random (meeting, slot) pairs; one in `TARGETED_EVERY` moves an end
   of an idle participant's block into one of its gaps. Idle time is updated from
   the changed participants' busy masks (a table lookup per session), so a move
   costs a few microseconds. Unplaced meetings are retried now and then.
4. Ruin and recreate, once the local search stalls and while time is left: lift out
   the meetings of an idle participant (and some partners) in a session, or those
   around an unplaced meeting, put them back in random order within each priority,
   run the local search again; keep the result if it is no worse, else go back.

The greedy baseline is computed first; if it were better (it practically never is),
it is returned instead, so the result is never worse than the baseline.

Deterministic for a given seed: the same moves in the same order; the time limit
only decides how many are made. The search also stops by itself (nothing left to
gain: no idle time left and the summed priority at the upper bound of `bound`; or
a long run without a gain), often well before the time limit. With `max_moves` the
result is reproducible exactly, on any machine.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from services.scheduling.solver.bound import priority_bound
from services.scheduling.solver.core import Problem, State, bits
from services.scheduling.solver.greedy import greedy_state
from services.scheduling.solver.model import Instance, Schedule


@dataclass(slots=True)
class Stats:
    """What the optimiser did, for benchmarks and logs."""

    constructed_priority: int = 0
    constructed_idle: int = 0
    repaired: int = 0
    moves_tried: int = 0
    moves_made: int = 0
    rounds: int = 0
    perturbations: int = 0
    improvements: int = 0
    used_greedy: bool = False
    seconds: float = 0.0  # in all
    best_at: float = 0.0  # seconds until the returned score was first reached
    priority_bound: int = 0  # no schedule places more (see `bound`)


# One move in this many is aimed at a gap of a participant with idle time; the rest
# are random (meeting, slot) pairs, which let the search drift across plateaus.
TARGETED_EVERY = 16


class _Undoable(State):
    """A state that logs its changes so that a failed ejection chain can be undone."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem)
        self.log: list[tuple[int, int]] = []  # (meeting, slot it was in or -1)
        self.in_slot: list[set[int]] = [set() for _ in range(problem.n_slots)]

    def add(self, m: int, t: int) -> None:
        self.log.append((m, -1))
        super().add(m, t)
        self.in_slot[t].add(m)

    def remove(self, m: int) -> None:
        t = self.slot_of[m]
        self.log.append((m, t))
        self.in_slot[t].discard(m)
        super().remove(m)

    def undo(self, mark: int) -> None:
        log = self.log
        while len(log) > mark:
            m, t = log.pop()
            if t < 0:
                self.in_slot[self.slot_of[m]].discard(m)
                State.remove(self, m)
            else:
                State.add(self, m, t)
                self.in_slot[t].add(m)


class Optimiser:
    def __init__(self, problem: Problem, seed: int = 0, max_moves: int | None = None) -> None:
        self.p = problem
        self.rng = random.Random(seed)
        self.state = _Undoable(problem)
        self.stats = Stats()
        self.common = [problem.common_avail(m) for m in range(problem.n_meetings)]
        self.avail_slots = [list(bits(c)) for c in self.common]
        self.movable = [
            m for m in range(problem.n_meetings) if problem.fixed_slot[m] < 0 and self.common[m]
        ]
        self.budget = 0  # nodes left for the current ejection / augmenting search
        self.moves_left = max_moves
        self.idle = 0  # the state's idle time, kept up to date by the search
        self.started = time.monotonic()
        self.tracking = True  # whether a gain of the search is a new best (not in rounds)
        self.bound = 0  # an upper bound on the summed priority (see `bound`)

    # ------------------------------------------------------------------ construction

    def order(self) -> list[int]:
        """Priority first; within a priority, participant-major, busiest first."""
        p = self.p
        deg = [len(ms) for ms in p.by_part]
        # tightness: meetings wanted per slot available
        tight = [
            deg[i] / max(1, min(p.avail[i].bit_count(), p.cap[i] + 1)) for i in range(p.n_parts)
        ]
        people = sorted(range(p.n_parts), key=lambda i: (-tight[i], -deg[i], i))
        seen = [False] * p.n_meetings
        order: list[int] = []
        for i in people:
            mine = sorted(
                (m for m in p.by_part[i] if not seen[m] and p.fixed_slot[m] < 0),
                key=lambda m: (self.common[m].bit_count(), m),
            )
            for m in mine:
                seen[m] = True
            order.extend(mine)
        order.sort(key=lambda m: -p.prio[m])  # stable: keeps participant-major order
        return order

    def construct(self) -> None:
        st = self.state
        st.place_fixed()
        for m in self.order():
            free = st.free_slots(m)
            if free:
                st.add(m, st.best_slot(m, free))
        st.log.clear()

    # ------------------------------------------------------------------ ejection chains

    def insert(self, m: int, depth: int, banned: set[int]) -> bool:
        """Place unplaced meeting m, moving others (recursively) if needed; on failure
        the state is as before."""
        st = self.state
        p = self.p
        free = st.free_slots(m)
        if free:
            st.add(m, st.best_slot(m, free))
            return True
        if depth == 0 or self.budget <= 0:
            return False
        parts = p.parts[m]
        for i in parts:
            if st.count[i] >= p.cap[i]:
                return False
        s = p.n_slots
        at = st.at
        options: list[tuple[int, float, int]] = []
        for t in bits(self.common[m]):
            blockers = {at[i * s + t] for i in parts} - {-1}
            if any(p.fixed_slot[c] >= 0 or c in banned for c in blockers):
                continue
            need_table = p.onsite[m] and st.onsite_used[t] >= p.tables
            if need_table and not any(p.onsite[c] for c in blockers):
                cost = len(blockers) + 1
            else:
                cost = len(blockers)
            options.append((cost, self.rng.random(), t))
        options.sort()
        banned = banned | {m}
        for _, _, t in options:
            if self.budget <= 0:
                return False
            self.budget -= 1
            mark = len(st.log)
            lifted = sorted({at[i * s + t] for i in parts} - {-1})
            for c in lifted:
                st.remove(c)
            if p.onsite[m] and st.onsite_used[t] >= p.tables:
                c = self._table_blocker(t, banned)
                if c < 0:
                    st.undo(mark)
                    continue
                st.remove(c)
                lifted.append(c)
            st.add(m, t)
            if all(self.insert(c, depth - 1, banned) for c in lifted):
                return True
            st.undo(mark)
        return False

    def _table_blocker(self, t: int, banned: set[int]) -> int:
        """An onsite meeting in slot t that can move elsewhere right away, or -1."""
        st = self.state
        p = self.p
        fallback = -1
        for n, c in enumerate(st.in_slot[t]):
            if n > 64:
                break
            if p.onsite[c] and p.fixed_slot[c] < 0 and c not in banned:
                if st.free_slots(c) & ~(1 << t):
                    return c
                if fallback < 0:
                    fallback = c
        return fallback

    def augment(self, m: int, gain: int, depth: int, banned: set[int]) -> bool:
        """Place unplaced meeting m along an alternating chain that raises the summed
        priority: where a participant of m is at its cap, unplace one of its meetings
        (c), and use the capacity this frees at c's other participants for another
        unplaced meeting, and so on. `gain` is the priority won so far on the chain.
        True: the state is changed and better; False: the state is as before."""
        st = self.state
        p = self.p
        if self.budget <= 0:
            return False
        self.budget -= 1
        mark = len(st.log)
        gain += p.prio[m]
        parts = p.parts[m]
        blocked = [i for i in parts if st.count[i] >= p.cap[i]]
        if not blocked:
            if self.insert(m, 2, banned):
                if gain > 0:
                    return True
                st.undo(mark)
            return False
        if depth == 0 or len(blocked) > 2:
            return False
        banned = banned | {m}
        choices: list[list[int]] = []
        for i in blocked:
            mine = sorted(
                (
                    c
                    for c in p.by_part[i]
                    if st.slot_of[c] >= 0 and p.fixed_slot[c] < 0 and c not in banned
                ),
                key=lambda c: (p.prio[c] - self._waiting(c, parts, banned), p.prio[c], c),
            )
            if not mine:
                return False
            choices.append(mine[:4])
        combos = (
            [[c] for c in choices[0]]
            if len(choices) == 1
            else [[a, b] if a != b else [a] for a in choices[0] for b in choices[1]]
        )
        for out in combos:
            lost = sum(p.prio[c] for c in out)
            for c in out:
                st.remove(c)
            if self.insert(m, 2, banned | set(out)):
                if gain - lost > 0:
                    return True
                # extend the chain through the capacity freed at the others of `out`
                for c in out:
                    for j in p.parts[c]:
                        if j in parts or st.count[j] >= p.cap[j]:
                            continue
                        nxt = sorted(
                            (
                                k
                                for k in p.by_part[j]
                                if st.slot_of[k] < 0
                                and self.common[k]
                                and k not in banned
                                and k not in out
                            ),
                            key=lambda k: (-p.prio[k], k),
                        )
                        for k in nxt[:3]:
                            if self.augment(k, gain - lost, depth - 1, banned | set(out)):
                                return True
            st.undo(mark)
        return False

    def _waiting(self, c: int, keep: tuple[int, ...], banned: set[int]) -> int:
        """The most priority that unplacing c could let in at its participants outside
        `keep` (an unplaced meeting of theirs, blocked by nothing but their cap)."""
        st = self.state
        p = self.p
        best = 0
        for j in p.parts[c]:
            if j in keep:
                continue
            for k in p.by_part[j]:
                if (
                    k != c
                    and st.slot_of[k] < 0
                    and p.prio[k] > best
                    and self.common[k]
                    and k not in banned
                    and all(st.count[x] < p.cap[x] for x in p.parts[k] if x != j)
                ):
                    best = p.prio[k]
        return best

    def _augment_now(self, m: int) -> bool:
        self.budget = 200
        return self.augment(m, 0, 3, set())

    def repair(self, deadline: float) -> None:
        """Insert unplaced meetings by ejection chains, then by priority-raising chains;
        rounds until one changes nothing."""
        p = self.p
        st = self.state
        for _ in range(20):
            changed = False
            queue = sorted(
                (m for m in range(p.n_meetings) if st.slot_of[m] < 0),
                key=lambda m: (-p.prio[m], m),
            )
            for m in queue:
                if st.slot_of[m] >= 0 or p.fixed_slot[m] >= 0 or not self.common[m]:
                    continue
                if time.monotonic() > deadline:
                    break
                self.budget = 200
                if self.insert(m, 3, set()) or self._augment_now(m):
                    changed = True
                    self.stats.repaired += 1
                    self.stats.best_at = time.monotonic() - self.started
                st.log.clear()
            self.stats.rounds += 1
            if not changed or time.monotonic() > deadline:
                break

    # ------------------------------------------------------------------ local search

    def search(self, deadline: float, stall_limit: int) -> bool:
        """Move/swap local search on idle time; never unplaces a meeting. Stops at the
        deadline, when the move budget is spent, or after `stall_limit` moves without
        a gain. Returns False when it stopped for time or budget."""
        p = self.p
        st = self.state
        S = p.n_slots
        T = p.tables
        parts = p.parts
        avail = p.avail
        onsite = p.onsite
        fixed = p.fixed_slot
        shift = p.shift
        window = p.window
        idle_at = p.idle_at
        busy = st.busy
        at = st.at
        slot_of = st.slot_of
        used = st.onsite_used
        in_slot = st.in_slot
        movable = self.movable
        n_mov = len(movable)
        if not n_mov:
            return True
        avail_slots = self.avail_slots
        common = self.common
        session_mask = p.session_mask
        idle_people: list[int] = []
        check_every = 1024
        tried = 0
        made = 0
        since_gain = 0
        gained = 0
        limit = self.moves_left
        rand = self.rng.random  # int(rand() * n): much cheaper than randrange(n)
        finished = True
        seen = 0
        while True:
            if tried % check_every == 0:
                if time.monotonic() > deadline or (limit is not None and tried >= limit):
                    finished = False
                    break
                if gained != seen and self.tracking:
                    seen = gained
                    self.stats.best_at = time.monotonic() - self.started
                if since_gain > stall_limit or self.idle - gained <= 0:
                    break
                if tried % (check_every * 32) == 0 and tried:
                    self.idle -= gained
                    gained = 0
                    self.retry_unplaced()
                if tried % (check_every * 8) == 0:
                    idle_people = self.idle_people()
            tried += 1
            since_gain += 1
            if tried % TARGETED_EVERY == 0 and idle_people:
                # targeted: move a meeting of an idle participant into one of its gaps
                i = idle_people[int(rand() * len(idle_people))]
                b = busy[i]
                x = 0
                for mask in session_mask:
                    x = b & mask
                    if x and x.bit_length() - (x & -x).bit_length() + 1 != x.bit_count():
                        if rand() < 0.5:
                            break
                if not x:
                    continue
                low = x & -x
                gaps = ((1 << x.bit_length()) - low) & ~x
                if not gaps:
                    continue
                g = list(bits(gaps))
                t1 = g[int(rand() * len(g))]
                t0 = x.bit_length() - 1 if rand() < 0.5 else low.bit_length() - 1  # an end
                m = at[i * S + t0]
                if fixed[m] >= 0 or not (common[m] >> t1) & 1:
                    continue
            else:
                m = movable[int(rand() * n_mov)]
                t0 = slot_of[m]
                if t0 < 0:
                    continue
                cands = avail_slots[m]
                t1 = cands[int(rand() * len(cands))]
                if t1 == t0:
                    continue
            pm = parts[m]
            # the meetings of m's participants in t1 swap into t0
            c1 = -1
            c2 = -1
            ok = True
            for i in pm:
                c = at[i * S + t1]
                if c >= 0 and c != c1:
                    if fixed[c] >= 0:
                        ok = False
                        break
                    if c1 < 0:
                        c1 = c
                    elif c2 < 0:
                        c2 = c
                    else:
                        ok = False  # three or more: leave it
                        break
            if not ok:
                continue
            bit0 = 1 << t0
            bit1 = 1 << t1
            both = bit0 | bit1
            dn = 1 if onsite[m] else 0
            movers = list(pm)
            if c1 >= 0:
                for c in (c1, c2) if c2 >= 0 else (c1,):
                    if onsite[c]:
                        dn -= 1
                    for j in parts[c]:
                        if j in pm:
                            movers.remove(j)  # busy in both slots before and after
                        elif (avail[j] & bit0) and not (busy[j] & bit0):
                            movers.append(j)
                        else:
                            ok = False
                            break
                    if not ok:
                        break
                if not ok:
                    continue
            if dn > 0 and used[t1] + dn > T:
                continue
            if dn < 0 and used[t0] - dn > T:
                continue
            # idle delta over the participants whose busy mask changes
            sh0 = shift[t0]
            w0 = window[t0]
            tab0 = idle_at[t0]
            delta = 0
            if sh0 == shift[t1]:
                for i in movers:
                    b = busy[i]
                    delta += tab0[((b ^ both) >> sh0) & w0] - tab0[(b >> sh0) & w0]
            else:
                sh1 = shift[t1]
                w1 = window[t1]
                tab1 = idle_at[t1]
                for i in movers:
                    b = busy[i]
                    nb = b ^ both
                    delta += (
                        tab0[(nb >> sh0) & w0]
                        - tab0[(b >> sh0) & w0]
                        + tab1[(nb >> sh1) & w1]
                        - tab1[(b >> sh1) & w1]
                    )
            if delta > 0:
                continue
            if delta < 0:
                since_gain = 0
                gained -= delta
            made += 1
            # apply: m -> t1, c1/c2 -> t0
            swap: tuple[int, ...] = () if c1 < 0 else (c1,) if c2 < 0 else (c1, c2)
            for c in (m, *swap):
                for i in parts[c]:
                    at[i * S + slot_of[c]] = -1
                in_slot[slot_of[c]].discard(c)
            for i in movers:
                busy[i] ^= both
            for c, t in ((m, t1), *((c, t0) for c in swap)):
                slot_of[c] = t
                in_slot[t].add(c)
                for i in parts[c]:
                    at[i * S + t] = c
            if dn:
                used[t1] += dn
                used[t0] -= dn
                for t in (t0, t1):
                    if used[t] >= T:
                        st.table_full |= 1 << t
                    else:
                        st.table_full &= ~(1 << t)
        if gained != seen and self.tracking:
            self.stats.best_at = time.monotonic() - self.started
        self.idle -= gained
        self.stats.moves_tried += tried
        self.stats.moves_made += made
        if limit is not None:
            self.moves_left = limit - tried
        return finished

    def idle_people(self) -> list[int]:
        """The participants with idle time."""
        p = self.p
        sessions = list(zip(p.session_start, p.session_idle, p.session_mask, strict=True))
        out: list[int] = []
        for i, b in enumerate(self.state.busy):
            if b:
                for a, tab, mask in sessions:
                    if tab[(b & mask) >> a]:
                        out.append(i)
                        break
        return out

    def retry_unplaced(self) -> None:
        """Put in any unplaced meeting that now fits (moving others if need be)."""
        st = self.state
        for m in self.unplaced():
            if st.slot_of[m] >= 0:
                continue
            self.budget = 100
            if self.insert(m, 2, set()):
                self.stats.repaired += 1
                if self.tracking:
                    self.stats.best_at = time.monotonic() - self.started
                self.idle = st.idle()
            st.log.clear()

    def unplaced(self) -> list[int]:
        """Unplaced meetings that could be placed in principle, highest priority first."""
        p = self.p
        st = self.state
        return sorted(
            (
                m
                for m in range(p.n_meetings)
                if st.slot_of[m] < 0 and self.common[m] and p.fixed_slot[m] < 0
            ),
            key=lambda m: (-p.prio[m], m),
        )

    # ------------------------------------------------------------------ ruin and recreate

    def perturb(self) -> None:
        """Lift out the meetings of a participant (and some of its partners) in one
        session, or those around an unplaced meeting, and put them back in a random
        order of equal priority, by the same rules as the construction."""
        p = self.p
        st = self.state
        rng = self.rng
        S = p.n_slots
        waiting = self.unplaced()
        people: list[int]
        if waiting and (self.idle == 0 or rng.random() < 0.5):
            m = waiting[rng.randrange(len(waiting))] if rng.random() < 0.5 else waiting[0]
            people = list(p.parts[m])
            sessions = list(range(len(p.session_ids)))
            queue = [m]
        else:
            i = self._idle_participant()
            people = [i]
            sessions = [self._idle_session(i)]
            queue = []
        lifted: set[int] = set()
        for s in sessions:
            a = p.session_start[s]
            for t in range(a, a + p.session_len[s]):
                for i in list(people):
                    c = st.at[i * S + t]
                    if c >= 0 and p.fixed_slot[c] < 0 and c not in lifted:
                        lifted.add(c)
                        if len(sessions) == 1 and rng.random() < 0.3:
                            people.extend(j for j in p.parts[c] if j not in people)
        for c in sorted(lifted):
            st.remove(c)
        queue.extend(lifted)
        keys = {c: (-p.prio[c], rng.random()) for c in queue}
        queue.sort(key=keys.__getitem__)
        for c in queue:
            if st.slot_of[c] >= 0:
                continue  # an augmenting chain of an earlier one placed it
            free = st.free_slots(c)
            if free:
                st.add(c, st.best_slot(c, free, rng))
            else:
                self.budget = 50
                if not self.insert(c, 2, set()):
                    self.budget = 50
                    self.augment(c, 0, 2, set())
        st.log.clear()
        self.idle = st.idle()

    def _idle_participant(self) -> int:
        """A participant with idle time, if a few random draws find one."""
        p = self.p
        st = self.state
        rng = self.rng
        i = rng.randrange(p.n_parts)
        for _ in range(64):
            j = rng.randrange(p.n_parts)
            if st.busy[j] and self._idle_of(j):
                return j
        return i

    def _idle_of(self, i: int) -> int:
        p = self.p
        b = self.state.busy[i]
        return sum(
            tab[(b & mask) >> a]
            for a, tab, mask in zip(p.session_start, p.session_idle, p.session_mask, strict=True)
        )

    def _idle_session(self, i: int) -> int:
        p = self.p
        b = self.state.busy[i]
        best = self.rng.randrange(len(p.session_ids))
        for s, (a, tab, mask) in enumerate(
            zip(p.session_start, p.session_idle, p.session_mask, strict=True)
        ):
            if tab[(b & mask) >> a]:
                best = s
                if self.rng.random() < 0.5:
                    break
        return best

    def snapshot(self) -> list[int]:
        return self.state.slot_of[:]

    def restore(self, slots: list[int]) -> None:
        st = self.state
        fresh = _Undoable(self.p)
        for m, t in enumerate(slots):
            if t >= 0:
                fresh.add(m, t)
        fresh.log.clear()
        st.copy_from(fresh)
        st.in_slot = fresh.in_slot
        self.idle = st.idle()

    def run(self, deadline: float) -> None:
        """Construction, repair, local search, then ruin-and-recreate rounds until the
        deadline, the move budget, or a long run of rounds without a gain."""
        st = self.state
        self.started = time.monotonic()
        self.bound = self.stats.priority_bound = priority_bound(self.p)
        self.construct()
        self.stats.best_at = time.monotonic() - self.started
        self.stats.constructed_priority = st.priority()
        self.stats.constructed_idle = st.idle()
        self.repair(deadline)
        self.idle = st.idle()
        n = max(1, len(self.movable))
        if not self.search(deadline, 30 * n + 20000):
            return
        best = self.snapshot()
        best_score = (st.priority(), -self.idle)
        self.tracking = False
        without_gain = 0
        while without_gain < 300 + n // 10:
            if time.monotonic() > deadline:
                break
            if self.moves_left is not None and self.moves_left <= 0:
                break
            if best_score[1] == 0 and (best_score[0] >= self.bound or not self.unplaced()):
                break  # nothing left to gain
            self.stats.perturbations += 1
            self.perturb()
            finished = self.search(deadline, 3 * n + 2000)
            score = (st.priority(), -self.idle)
            if score > best_score:
                without_gain = 0
                self.stats.improvements += 1
                self.stats.best_at = time.monotonic() - self.started
            else:
                without_gain += 1
            if score >= best_score:
                best, best_score = self.snapshot(), score
            else:
                self.restore(best)
            if not finished:
                break


def optimise_state(
    problem: Problem,
    time_limit: float = 10.0,
    seed: int = 0,
    max_moves: int | None = None,
    stats: Stats | None = None,
) -> State:
    started = time.monotonic()
    base = greedy_state(problem)
    greedy_s = time.monotonic() - started
    # keep back a few times what the greedy took, for the final pass and the rendering
    deadline = started + time_limit - 3 * greedy_s - 0.01
    opt = Optimiser(problem, seed, max_moves)
    opt.run(deadline)
    opt.stats.best_at += opt.started - started
    st = opt.state
    # anything that fits now without moving others goes in
    for m in range(problem.n_meetings):
        if st.slot_of[m] < 0 and problem.fixed_slot[m] < 0:
            free = st.free_slots(m)
            if free:
                st.add(m, st.best_slot(m, free))
                opt.stats.best_at = time.monotonic() - started
    result: State = st
    if base.score() > st.score():
        result = base
        opt.stats.used_greedy = True
        opt.stats.best_at = greedy_s
    opt.stats.seconds = time.monotonic() - started
    if stats is not None:
        for name in Stats.__slots__:
            setattr(stats, name, getattr(opt.stats, name))
    return result


def optimise(
    instance: Instance,
    time_limit: float = 10.0,
    seed: int = 0,
    max_moves: int | None = None,
    stats: Stats | None = None,
) -> Schedule:
    """The best schedule found within `time_limit` seconds (see the module docstring)."""
    return optimise_state(Problem(instance), time_limit, seed, max_moves, stats).schedule()
