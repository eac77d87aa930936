"""Group commit: the push batches waiting for the writer are written together.

Each push request reads its batch in its own thread, then waits here. One of the waiting
threads at a time leads: it takes up to `push_group_batches_max` batches from the front of
the queue (its own among them or ahead of it), writes them in one transaction
(`_push.push_group`: one commit, each account's kept lots read and written once) and wakes
their threads, which answer only now, after the commit. While a group is being written the
next batches queue up, so under load groups form by themselves and an idle central writes
each batch alone, at once: nobody waits on a timer. A leader whose own batch is written
hands the lead to the next waiter.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

from central._push import Batch, Pushed

push_group_batches_max = 16
"""Batches written in one transaction, at most."""
push_waiting_batches_max = 64
"""Batches queued for the writer, at most; a further request waits for room."""


class GroupCommit:
    """The queue of batches waiting for the writer of one process. `write` applies a group
    and sets each batch's answer (`_push.push_group`)."""

    def __init__(
        self,
        write: Callable[[list[Batch]], None],
        batches_max: int = push_group_batches_max,
        waiting_max: int = push_waiting_batches_max,
    ) -> None:
        if batches_max < 1 or waiting_max < batches_max:
            raise ValueError("a group holds one batch or more, and the queue a group or more")
        self._write = write
        self._batches_max = batches_max
        self._waiting_max = waiting_max
        self._changed = threading.Condition()
        self._waiting: deque[Batch] = deque()
        self._written: set[int] = set()  # id() of the batches written, until their thread saw it
        self._leading = False

    @property
    def waiting(self) -> int:
        """Batches queued for the writer now."""
        with self._changed:
            return len(self._waiting)

    def push(self, batch: Batch) -> Pushed:
        """Queue the batch, wait until a group with it was written; its answer (or raise its
        refusal)."""
        key = id(batch)
        with self._changed:
            while len(self._waiting) >= self._waiting_max:
                self._changed.wait()
            self._waiting.append(batch)
            while key not in self._written and self._leading:
                self._changed.wait()
            lead = key not in self._written
            if lead:
                self._leading = True
        if lead:
            self._lead(key)
        with self._changed:
            self._written.discard(key)
        return batch.answer()

    def _lead(self, mine: int) -> None:
        try:
            while True:
                with self._changed:
                    if mine in self._written:
                        return
                    count = min(self._batches_max, len(self._waiting))
                    group = [self._waiting.popleft() for _ in range(count)]
                    self._changed.notify_all()  # room in the queue
                try:
                    self._write(group)
                finally:
                    with self._changed:
                        self._written.update(id(batch) for batch in group)
                        self._changed.notify_all()
        finally:
            with self._changed:
                self._leading = False
                self._changed.notify_all()
