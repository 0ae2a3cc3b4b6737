"""Local search of the heuristic: move and swap meetings to shed idle time."""

from __future__ import annotations

import time

from services.scheduling.solver.chains import Chains
from services.scheduling.solver.construct import TARGETED_EVERY
from services.scheduling.solver.core import bits


class LocalSearch(Chains):
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
                if cands is None:
                    cands = avail_slots[m] = list(bits(common[m]))
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
                    if not (common[c] >> t0) & 1:
                        ok = False  # t0 is not allowed to c
                        break
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
