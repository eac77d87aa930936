"""How fast this machine runs plain Python at the moment: one fixed loop, timed by every
issue benchmark before and after its work and printed with its figures.

This 2-core machine's speed has moved by up to 2× between sessions and even within minutes.
A figure that moved together with this one moved with the machine, not with the code. The
loop runs inside a function (local variables): a loop at a module's top level is about twice
as slow, so figures of the two kinds do not compare.
"""

from __future__ import annotations

import statistics
import time

loop_additions = 3_000_000
loop_runs = 3


def python_loop_ms() -> float:
    """The median wall time, in ms, of `loop_runs` loops of `loop_additions` additions."""
    times = []
    for _ in range(loop_runs):
        started = time.perf_counter()
        total = 0
        for number in range(loop_additions):
            total += number
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 1)
