"""Stage timings of a job: seconds per stage, as the status route, the SR and the benches report them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    """Record the seconds spent in the ``with`` block as ``timings[stage]`` (rounded to 0.1 ms), even on error."""
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = round(time.perf_counter() - started, 4)
