"""DICOM ingress: only the store peers of ONCOFLOW_STORE_PEERS may store, and only to OncoFlow's own AE title.

storescu from an unknown calling AE title, or to a wrong called AE title, is refused (Orthanc logs
"DICOM authorization rejected ... not listed in DicomModalities"): nothing is stored, no job is
made, and Orthanc keeps serving. The allowed one stores as usual.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from oncoflow.services.stack import http_get

from .conftest import TEST_AET, Stack, axial_volume, unique_study, write_series

pytestmark = pytest.mark.e2e


def storescu(stack: Stack, directory: Path, calling: str, called: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["storescu", "-aet", calling, "-aec", called, "+sd", "+r", "-nh", "127.0.0.1",
                           str(stack.settings.dicom_port), str(directory)], capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize(("calling", "called"), [("INTRUDER", None), (TEST_AET, "NOT_ONCOFLOW")])
def test_unknown_peers_are_refused_and_nothing_is_stored(stack: Stack, tmp_path: Path, calling: str,
                                                         called: str | None) -> None:
    study = unique_study(f"ingress-{calling}")
    voxels = np.random.default_rng(7).uniform(50, 900, (6, 16, 16)).astype(np.float32)
    write_series(tmp_path, axial_volume(voxels), study)
    result = storescu(stack, tmp_path, calling, called or stack.settings.aet)
    assert result.returncode != 0, result.stdout + result.stderr
    # Orthanc 1.10 rejects at association (wrong called AET) or aborts the first C-STORE (unknown peer)
    assert "Association Rejected" in result.stderr or "Store Failed" in result.stderr, result.stderr
    assert not stack.studies_with_uid(study.study_instance_uid)
    assert stack.job(study.study_instance_uid) is None
    assert http_get(f"{stack.settings.orthanc_url}/oncoflow/health")[0] == 200
    # the allowed peer, to the right AE title, still stores
    accepted = storescu(stack, tmp_path, TEST_AET, stack.settings.aet)
    assert accepted.returncode == 0, accepted.stderr
    assert stack.studies_with_uid(study.study_instance_uid)
