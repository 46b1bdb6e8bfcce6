"""The machine-wide cache that several checkouts and stacks share (``$ONCOFLOW_CACHE`` or ``~/.cache/oncoflow``),
and the file lock that keeps two processes from preparing the same entry at once."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


def default_cache_dir() -> Path:
    """``$ONCOFLOW_CACHE`` or ``~/.cache/oncoflow`` (the cache scripts/bootstrap.sh uses)."""
    return Path(os.environ.get("ONCOFLOW_CACHE") or "~/.cache/oncoflow").expanduser()


@contextlib.contextmanager
def cache_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (created if missing) for the ``with`` block."""
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
