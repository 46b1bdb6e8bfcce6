"""The scoring helpers of ``bench/longitudinal_lesions.py``: the independent RANO 2.0 volumetric oracle, its
measurability, confirmation, and the lesion-identity check (pure functions, no phantom, no registration)."""

from __future__ import annotations

import importlib.util
import sys
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[1] / "bench" / "longitudinal_lesions.py"
_SPEC = importlib.util.spec_from_file_location("bench_longitudinal_lesions", _PATH)
assert _SPEC is not None and _SPEC.loader is not None
scoring = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = scoring
_SPEC.loader.exec_module(scoring)

M = True


def test_partial_response_then_progression_from_the_nadir() -> None:
    volumes = [[10.0, 5.0], [3.0, 1.5], [2.0, 1.0], [3.0, 1.5]]  # -70 %, -80 %, then +50 % from the nadir
    measurable = [[M, M]] * 4
    assert scoring.oracle_categories(volumes, measurable) == ["PR", "PR", "PD"]


def test_stable_and_thresholds_are_inclusive() -> None:
    assert scoring.oracle_categories([[10.0], [3.5]], [[M]] * 2) == ["PR"]  # -65 %
    assert scoring.oracle_categories([[10.0], [2.5], [3.5]], [[M]] * 3) == ["PR", "PD"]  # +40 % from the nadir
    assert scoring.oracle_categories([[10.0], [3.6], [5.0]], [[M]] * 3) == ["SD", "SD"]  # -64 %, +38.9 %
    assert scoring.oracle_categories([[10.0], [10.1], [9.9]], [[M]] * 3) == ["SD", "SD"]


def test_complete_response_and_a_lesion_left() -> None:
    assert scoring.oracle_categories([[10.0, 4.0], [0.0, 0.0]], [[M, M], [False, False]]) == ["CR"]
    # targets gone, a non-measurable non-target left: PR, not CR
    assert scoring.oracle_categories([[10.0, 0.2], [0.0, 0.2]], [[M, False], [False, False]]) == ["PR"]
    # disease back after the sum reached 0
    assert scoring.oracle_categories([[10.0], [0.0], [0.5]], [[M], [False], [False]]) == ["CR", "PD"]


def test_new_lesion_is_progression_only_when_measurable_at_its_first_visit() -> None:
    volumes = [[10.0, 0.0], [10.0, 0.3], [10.0, 2.0]]
    assert scoring.oracle_categories(volumes, [[M, False], [M, False], [M, M]]) == ["SD", "SD"]
    assert scoring.oracle_categories(volumes, [[M, False], [M, M], [M, M]]) == ["PD", "SD"]


def test_targets_are_the_three_largest_measurable() -> None:
    # the smallest lesion grows x3 while the three targets shrink: the target sum decides, not the total
    volumes = [[10.0, 9.0, 8.0, 1.0], [3.0, 3.0, 2.0, 3.0]]
    assert scoring.oracle_categories(volumes, [[M] * 4] * 2) == ["PR"]
    # no measurable lesion at baseline: no response can be measured
    assert scoring.oracle_categories([[0.4], [0.1]], [[False], [False]]) == ["SD"]


def test_confirmation() -> None:
    dates = [date(2025, 1, 1) + timedelta(days=60 * t) for t in range(4)]
    assert scoring.oracle_confirmations(["PR", "PR", "CR"], dates) == ["preliminary", "confirmed", "preliminary"]
    assert scoring.oracle_confirmations(["CR", "PR", "PD"], dates) == ["preliminary", "confirmed", "not needed"]
    assert scoring.oracle_confirmations(["PR", "SD", "PR"], dates) == ["preliminary", "not needed", "preliminary"]


def _cylinder(shape: tuple[int, int, int], slices: int, radius: float) -> np.ndarray:
    """A disc of ``radius`` voxels (centre to centre) on ``slices`` slices."""
    _, rows, cols = np.indices(shape)
    centre = (shape[1] - 1) / 2.0
    mask = (rows - centre) ** 2 + (cols - centre) ** 2 <= radius**2
    mask[slices:] = False
    return mask


@pytest.mark.parametrize(("slices", "radius", "expected"), [(3, 6.0, True), (3, 4.5, False), (1, 8.0, False)])
def test_measurable_on_an_axial_grid(slices: int, radius: float, expected: bool) -> None:
    # 1 mm grid, axis 0 along z: a disc 12 mm across (centre to centre) is measurable, 9 mm is not, one slab is not
    affine = np.diag([1.0, 1.0, 1.0, 1.0])[[2, 1, 0, 3]]  # index (slice, row, column) -> (x, y, z) = (col, row, slice)
    assert scoring.oracle_measurable(_cylinder((10, 31, 31), slices, radius), affine, 1.0) is expected


def test_measurable_follows_twice_the_slice_thickness() -> None:
    affine = np.array([[0, 0, 1.0, 0], [0, 1.0, 0, 0], [6.0, 0, 0, 0], [0, 0, 0, 1]])  # 6 mm slices
    assert not scoring.oracle_measurable(_cylinder((6, 31, 31), 2, 5.5), affine, 6.0)  # 11 mm < 12 mm
    assert scoring.oracle_measurable(_cylinder((6, 31, 31), 2, 6.5), affine, 6.0)


def test_matching_checks() -> None:
    present = [(1, 2), (1, 2, 3), (1, 3)]
    good = [{1: ("Lesion 1", "baseline"), 2: ("Lesion 2", "baseline")},
            {1: ("Lesion 1", "continued"), 2: ("Lesion 2", "continued"), 3: ("Lesion 3", "new")},
            {1: ("Lesion 1", "continued"), 3: ("Lesion 3", "continued")}]
    assert all(c["correct"] for c in scoring.matching_checks(good, present))
    swapped = [good[0], {1: ("Lesion 2", "continued"), 2: ("Lesion 1", "continued"), 3: ("Lesion 3", "new")},
               good[2]]
    wrong = [(c["visit"], c["lesion"]) for c in scoring.matching_checks(swapped, present) if not c["correct"]]
    assert wrong == [(1, 1), (1, 2)]
    # the new lesion taken for an old one, and two true lesions under one identifier
    reused = [good[0], {1: ("Lesion 1", "continued"), 2: ("Lesion 2", "continued"), 3: ("Lesion 2", "continued")},
              {1: ("Lesion 1", "continued"), 3: None}]
    wrong = [(c["visit"], c["lesion"]) for c in scoring.matching_checks(reused, present) if not c["correct"]]
    assert wrong == [(1, 2), (1, 3), (2, 3)]


def test_majority_label_and_coverage() -> None:
    labels = np.array([0, 1, 1, 2, 2, 2], dtype=np.uint8)
    assert scoring.majority_true_label(labels, np.array([1, 1, 1, 1, 1, 1], bool)) == 2
    assert scoring.majority_true_label(labels, np.array([1, 0, 0, 0, 0, 0], bool)) == 0
    assert scoring.covered((-5.0, 5.0), 5.0) is True and scoring.covered(None, 0.0) is None
    assert scoring.rate([True, False, None]) == 0.5
