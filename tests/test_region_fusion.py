"""Fusion per BraTS region and the compartments rebuilt from it, against masks drawn here by hand."""

from __future__ import annotations

import numpy as np
import pytest

from oncoflow.core.tumour_compartments import (
    Compartment,
    compartment_of_label,
    format_output_labels,
    parse_output_labels,
    region_of_name,
)
from oncoflow.measure.region_fusion import ExpertOutputRegions, fuse_regions

ALL = frozenset({Compartment.OEDEMA, Compartment.NECROSIS, Compartment.ENHANCING})


def ball(shape: tuple[int, int, int], radius: float, centre: tuple[float, float, float]) -> np.ndarray:
    k, i, j = np.indices(shape)
    return ((k - centre[0]) ** 2 + (i - centre[1]) ** 2 + (j - centre[2]) ** 2) <= radius**2


def glioma(shift: int = 0) -> np.ndarray:
    """Oedema (radius 9) around an enhancing rim (radius 6) around necrosis (radius 3): values 1, 3, 2."""
    shape, centre = (24, 24, 24), (12.0, 12.0, 12.0 + shift)
    labels = np.zeros(shape, np.uint8)
    labels[ball(shape, 9, centre)] = 1
    labels[ball(shape, 6, centre)] = 3
    labels[ball(shape, 3, centre)] = 2
    return labels


def test_names_of_compartments_and_regions() -> None:
    assert compartment_of_label("NCR") == Compartment.NECROSIS
    assert compartment_of_label("peritumoral edema") == Compartment.OEDEMA
    assert compartment_of_label("Enhancing Tumor") == Compartment.ENHANCING
    assert compartment_of_label("tumour") is None
    assert region_of_name("whole tumor") == "WT" and region_of_name("TC") == "TC" and region_of_name("x") is None
    mapping, region, problems = parse_output_labels("1:oedema,2:necrosis,3:enhancing")
    assert mapping == {1: Compartment.OEDEMA, 2: Compartment.NECROSIS, 3: Compartment.ENHANCING}
    assert region is None and problems == []
    assert format_output_labels(mapping) == "1:oedema,2:necrosis,3:enhancing"
    assert parse_output_labels("tumour core")[1] == "TC" and parse_output_labels("")[1] == "TC"
    assert parse_output_labels("1:tumour")[2]


def test_three_compartment_experts_fuse_per_region_and_rebuild_the_compartments() -> None:
    experts = {name: ExpertOutputRegions(glioma(shift), ALL) for name, shift in (("a", 0), ("b", 0), ("c", 2))}
    fusion = fuse_regions(experts, voxel_volume_mm3=8.0)
    truth = glioma(0)
    assert set(fusion.regions) == {"ET", "TC", "WT"} and fusion.driving_region == "ET"
    assert fusion.compartments is not None
    np.testing.assert_array_equal(fusion.compartments, truth)  # two of three agree everywhere
    # volumes: ET = the rim, TC = rim + necrosis, WT = everything; 8 mm³ voxels
    assert fusion.regions["ET"].volume_cm3 == pytest.approx((truth == 3).sum() * 8 / 1000, abs=1e-3)
    assert fusion.regions["TC"].volume_cm3 == pytest.approx(np.isin(truth, (2, 3)).sum() * 8 / 1000, abs=1e-3)
    assert fusion.regions["WT"].volume_cm3 == pytest.approx((truth > 0).sum() * 8 / 1000, abs=1e-3)
    agreement = fusion.compartment_agreement
    assert agreement[Compartment.NECROSIS] is not None and agreement[Compartment.NECROSIS] < 1.0
    assert fusion.driving.volume_cm3 == fusion.regions["ET"].volume_cm3


def test_binary_experts_give_their_region_and_the_driving_region_falls_back_with_a_note() -> None:
    core = np.isin(glioma(0), (2, 3)).astype(np.uint8)
    experts = {name: ExpertOutputRegions(core, frozenset(), "TC") for name in ("sam2", "old")}
    fusion = fuse_regions(experts, voxel_volume_mm3=1.0, driving_region="ET")
    assert set(fusion.regions) == {"TC"} and fusion.compartments is None
    assert fusion.driving_region == "TC" and "enhancing tumour (ET) is given by no expert" in str(fusion.driving_note)


def test_a_binary_tumour_core_joins_the_compartment_experts_on_tc_only() -> None:
    compartment = {n: ExpertOutputRegions(glioma(0), ALL) for n in ("a", "b")}
    binary = {"sam2": ExpertOutputRegions(np.zeros((24, 24, 24), np.uint8), frozenset(), "TC")}
    fusion = fuse_regions({**compartment, **binary}, voxel_volume_mm3=1.0)
    assert set(fusion.regions["TC"].experts) == {"a", "b", "sam2"}
    assert set(fusion.regions["ET"].experts) == {"a", "b"}
    # majority of three on TC: the two compartment experts carry it; nested regions stay nested
    assert fusion.compartments is not None
    assert np.all((fusion.compartments == 3) <= (np.isin(fusion.compartments, (2, 3))))
