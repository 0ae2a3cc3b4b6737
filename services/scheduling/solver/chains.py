"""Repair of the heuristic: ejection chains and priority-raising (augmenting) chains."""

from __future__ import annotations

import time

from services.scheduling.solver.construct import Construction
from services.scheduling.solver.core import bits


class Chains(Construction):
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
