"""Ruin and recreate: lift out a neighbourhood of meetings and put it back."""

from __future__ import annotations

from services.scheduling.solver.construct import Undoable
from services.scheduling.solver.localsearch import LocalSearch


class RuinRecreate(LocalSearch):
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
        fresh = Undoable(self.p)
        for m, t in enumerate(slots):
            if t >= 0:
                fresh.add(m, t)
        fresh.log.clear()
        st.copy_from(fresh)
        st.in_slot = fresh.in_slot
        self.idle = st.idle()
