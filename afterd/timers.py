"""A heap of absolute deadlines: one entry per armed task, O(log n) arm and disarm.

Disarming is lazy: the key's current deadline lives in a dict and stale heap
entries are skipped when they surface, which keeps disarm O(1) and avoids
rebuilding the heap. A rebuild happens only when stale entries outnumber live
ones, so memory stays bounded by about twice the number of armed tasks.

Heap entries are (deadline_s, key) and the dict holds the same float object: a
worker arms up to a million tasks, so each costs one tuple and one dict slot
(docs/benchmarks.md). Keys must be comparable (task ids: str); a stale entry that
equals the live one (disarmed and re-armed at the same deadline) is harmless:
whichever surfaces first pops the key, the other is then stale.
"""

import heapq


class Timers:
    __slots__ = ("_heap", "_deadline")

    def __init__(self):
        self._heap = []          # (deadline_s, key)
        self._deadline = {}      # key -> deadline_s of its live entry

    def __len__(self):
        return len(self._deadline)

    def __contains__(self, key):
        return key in self._deadline

    def arm(self, key, deadline_s: float):
        """Arm (or re-arm) `key` for `deadline_s`; the previous deadline is forgotten."""
        if self._deadline.get(key) == deadline_s:
            return   # already armed for exactly this: its heap entry is live
        self._deadline[key] = deadline_s
        heapq.heappush(self._heap, (deadline_s, key))
        if len(self._heap) > 2 * len(self._deadline) + 1024:
            self._compact()

    def disarm(self, key) -> bool:
        return self._deadline.pop(key, None) is not None

    def deadline(self, key):
        return self._deadline.get(key)

    def next_deadline(self):
        """The earliest live deadline, or None when nothing is armed."""
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, horizon_s: float, limit: int | None = None) -> list:
        """Disarm and return the keys due at or before `horizon_s`, earliest first."""
        due = []
        while self._heap and (limit is None or len(due) < limit):
            self._drop_stale()
            if not self._heap or self._heap[0][0] > horizon_s:
                break
            _, key = heapq.heappop(self._heap)
            del self._deadline[key]
            due.append(key)
        return due

    def _drop_stale(self):
        heap = self._heap
        while heap:
            deadline_s, key = heap[0]
            if self._deadline.get(key) == deadline_s:
                return
            heapq.heappop(heap)

    def _compact(self):
        self._heap = [(d, k) for k, d in self._deadline.items()]
        heapq.heapify(self._heap)
