"""Free space where OncoFlow keeps its state (``ONCOFLOW_HOME``: Orthanc's storage and index, jobs, audit).

A full disk does not corrupt SQLite (it refuses the write), but it stops everything silently: Orthanc
refuses C-STORE ("Cannot write to file"), records no change, so no study is analysed. OncoFlow therefore
watches the free space against ``ONCOFLOW_MIN_FREE_MB``: below it, ``/oncoflow/health`` answers 503 with
the numbers, and the job runner holds jobs back (retried later) instead of failing halfway through a store.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MIB = 1024 * 1024


@dataclass(frozen=True)
class DiskSpace:
    path: Path
    free_bytes: int  # available to this (unprivileged) process: statvfs f_bavail
    total_bytes: int
    min_free_bytes: int

    @property
    def ok(self) -> bool:
        return self.free_bytes >= self.min_free_bytes

    def describe(self) -> str:
        return (f"{self.free_bytes / MIB:.0f} MiB free of {self.total_bytes / MIB:.0f} MiB under {self.path} "
                f"(ONCOFLOW_MIN_FREE_MB={self.min_free_bytes // MIB})")

    def as_json(self) -> dict[str, object]:
        return {"path": str(self.path), "free_mb": round(self.free_bytes / MIB, 1),
                "total_mb": round(self.total_bytes / MIB, 1), "min_free_mb": self.min_free_bytes // MIB,
                "ok": self.ok}


def disk_space(path: Path, min_free_mb: int) -> DiskSpace:
    """The free and total space of the file system holding ``path``."""
    stats = os.statvfs(path)
    return DiskSpace(path, stats.f_bavail * stats.f_frsize, stats.f_blocks * stats.f_frsize, min_free_mb * MIB)
