"""End to end: ONCOFLOW_HOME on a small tmpfs filled by a C-STORE. A clear failure, nothing corrupted, recovery.

A 24 MiB tmpfs holds the whole home (Orthanc's storage and index, jobs, audit, notes, logs). A small study is
processed; then a 160 x 256 x 256 study (21 MB) is pushed and fills the disk: Orthanc refuses the instances
it cannot write. Then: ``/oncoflow/health`` answers 503 naming the free space and ``ONCOFLOW_MIN_FREE_MB``;
Orthanc and the worker still answer; the first study and its SEG are intact; the job and audit databases pass
SQLite's integrity check and the audit chain verifies. After the partial study is deleted, health is 200 again
and a new study is processed: the stack recovers without a restart.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from oncoflow.phantoms.tumour_phantom import make_phantom

from .conftest import Stack, running_stack, unique_study, write_series

pytestmark = pytest.mark.e2e

TMPFS_MB = 24


@pytest.fixture(scope="module")
def small_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mount_point = tmp_path_factory.mktemp("tmpfs-home")
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MB}m,mode=0700", "tmpfs", str(mount_point)],
                   check=True)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def push_phantom(stack: Stack, name: str, seed: int, shape: tuple[int, int, int], directory: Path) -> str:
    study = unique_study(name)
    write_series(directory, make_phantom(seed, shape=shape).volume, study)
    subprocess.run(["storescu", "-aet", "TESTSCU", "-aec", stack.settings.aet, "+sd", "+r", "-nh", "127.0.0.1",
                    str(stack.settings.dicom_port), str(directory)], capture_output=True, timeout=300)
    return study.study_instance_uid


def test_a_full_disk_is_reported_corrupts_nothing_and_the_stack_recovers(small_home: Path,
                                                                          tmp_path: Path) -> None:
    with running_stack(small_home / "home", ONCOFLOW_PANEL="nnunet_demo", ONCOFLOW_MIN_FREE_MB="2",
                       ONCOFLOW_MAX_VOXELS=str(256 * 256 * 200)) as stack:
        home = stack.settings.home
        first = push_phantom(stack, "disk-a", 501, (40, 64, 64), tmp_path / "a")
        first_job = stack.wait_job(first)
        assert first_job["state"] == "done", first_job["error"]
        (seg_series,) = [s for s in stack.seg_series(first) if "ensemble" in s["MainDicomTags"].get(
            "SeriesDescription", "").lower()]

        big = push_phantom(stack, "disk-b", 502, (160, 256, 256), tmp_path / "b")
        status, health = stack.get("/oncoflow/health")
        assert status == 503, health
        assert health["storage"]["ok"] is False and "not enough free disk space" in health["error"]
        assert "ONCOFLOW_MIN_FREE_MB=2" in health["error"]
        assert stack.get("/system")[0] == 200  # Orthanc answers
        assert stack.get(f"/oncoflow/studies/{first}")[1]["state"] == "done"
        assert stack.get_bytes(f"/instances/{seg_series['Instances'][0]}/file")[128:132] == b"DICM"
        for database in ("oncoflow-jobs.sqlite3", "oncoflow-audit.sqlite3"):
            with sqlite3.connect(home / database) as db:
                assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)], database
        verified = subprocess.run([sys.executable, "-m", "oncoflow.security.audit_log", "verify",
                                   str(home / "oncoflow-audit.sqlite3")], capture_output=True, text=True)
        assert verified.returncode == 0, verified.stdout + verified.stderr

        for study_id in stack.studies_with_uid(big):  # what Orthanc kept of the study that did not fit
            status, body = stack.request("DELETE", f"/studies/{study_id}")
            assert status == 200, (status, body[:500], stack.settings.orthanc_log_path.read_text()[-3000:])
        status, health = stack.get("/oncoflow/health")
        assert status == 200, health
        again = push_phantom(stack, "disk-c", 503, (40, 64, 64), tmp_path / "c")
        assert stack.wait_job(again)["state"] == "done"
        print(json.dumps({"health_when_full": "503", "storage_after": health["storage"]}))
