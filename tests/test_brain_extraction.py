"""Brain extraction with the real deepbet networks (from its wheel) on full heads, and the check that refuses
what is not a brain.

The truth is the anatomy's own brain (Colin27's ``ch2bet``, MNI152's template mask) carried onto the phantom's
grid by the phantom generator; the non-brains are made here, in the test, by a generator of their own (a
knee-like limb, a water bottle, noise), so the check is not judged by the code it checks.
"""

from __future__ import annotations

import numpy as np
import pytest
from oncoflow_inference.experts.brain_extraction_expert import BrainExtractionExpert, deepbet_models_dir
from oncoflow_inference.segmentation_tensors import AFFINE_LPS, BRAIN_MASK, IMAGE, SPACING_MM

from oncoflow.core.volume import Volume
from oncoflow.measure.brain_mask_check import check_brain_mask
from oncoflow.phantoms.tumour_phantom import make_phantom

from .non_brain_phantoms import knee_voxels


@pytest.fixture(scope="module")
def deepbet() -> BrainExtractionExpert:
    if deepbet_models_dir() is None:
        pytest.fail("deepbet is not installed (requirements-nodeps.lock; make test installs it)")
    expert = BrainExtractionExpert("deepbet", None, torch_threads=2)
    expert.load()
    assert expert.ready, expert.not_ready_reason
    return expert


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return 2.0 * float((a & b).sum()) / max(float(a.sum() + b.sum()), 1.0)


def extract(expert: BrainExtractionExpert, volume: Volume) -> np.ndarray:
    result = expert.infer({IMAGE: volume.voxels, SPACING_MM: np.asarray(volume.spacing_mm, np.float32),
                           AFFINE_LPS: volume.affine_lps().astype(np.float32)}, {BRAIN_MASK})
    mask = result.outputs[BRAIN_MASK]
    assert mask.shape == volume.shape and mask.dtype == np.uint8
    return mask


@pytest.mark.parametrize(("seed", "anatomy", "shape"), [
    (9201, "colin27", (40, 64, 64)),  # the end-to-end tests' thick-slice grid (about 4 x 4 x 6.7 mm)
    (31, "mni152", (90, 110, 110)),  # about 2.3 mm, oblique
    (32, "colin27", (90, 110, 110)),
])
def test_full_head_brain_matches_the_anatomy(deepbet: BrainExtractionExpert, seed: int, anatomy: str,
                                            shape: tuple[int, int, int]) -> None:
    phantom = make_phantom(seed, anatomy=anatomy, shape=shape)  # type: ignore[arg-type]
    assert phantom.brain_mask is not None
    mask = extract(deepbet, phantom.volume)
    score = dice(mask, phantom.brain_mask)
    assert score >= 0.85, f"{anatomy} {shape}: brain Dice {score:.3f}"
    assert not (phantom.tumour_mask.astype(bool) & (mask == 0)).sum() > 0.05 * phantom.tumour_mask.sum(), \
        "the brain mask cut into the tumour"
    check = check_brain_mask(mask, phantom.volume)
    assert check.refusal is None, check.as_json()


def limb(seed: int) -> Volume:
    """A knee-like limb (1.6 mm in plane, 3 mm slices)."""
    voxels = knee_voxels((60, 96, 96), (3.0, 1.6, 1.6), seed)
    return Volume(voxels, (3.0, 1.6, 1.6), (-76.0, -76.0, -90.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))


def bottle() -> Volume:
    """A QA phantom: a water cylinder, 180 mm across, in air (2 mm)."""
    k, i, j = np.meshgrid(np.arange(80), np.arange(110), np.arange(110), indexing="ij")
    water = (np.hypot(i - 55, j - 55) * 2.0 < 90) & (k > 5) & (k < 75)
    image = np.where(water, 800.0, 0.0) + np.random.default_rng(5).normal(scale=10.0, size=water.shape)
    return Volume(np.abs(image).astype(np.float32), (2.0, 2.0, 2.0), (-110.0, -110.0, -80.0), (1.0, 0.0, 0.0),
                  (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))


def noise() -> Volume:
    image = np.abs(np.random.default_rng(6).normal(300.0, 100.0, size=(50, 80, 80))).astype(np.float32)
    return Volume(image, (3.0, 3.0, 3.0), (-120.0, -120.0, -75.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0),
                  (0.0, 0.0, 1.0))


@pytest.mark.parametrize("make", [lambda: limb(3), bottle, noise], ids=["knee-like limb", "water bottle", "noise"])
def test_what_is_no_brain_is_refused(deepbet: BrainExtractionExpert, make) -> None:
    volume = make()
    try:
        mask = extract(deepbet, volume)
    except Exception as exc:  # deepbet itself may find nothing to mask: the job fails all the same
        assert "no head" in str(exc), exc
        return
    check = check_brain_mask(mask, volume)
    assert check.refusal is not None and check.refusal.startswith("not a human brain MR"), check.as_json()


def test_check_measures_in_patient_space() -> None:
    """A 150 x 180 x 120 mm ellipsoid of brain-like contrast: accepted as axial and, resampled, as sagittal."""
    k, i, j = np.meshgrid(np.arange(70), np.arange(100), np.arange(90), indexing="ij")
    # axial: slice = superior (2 mm), row = posterior (2 mm), column = left (2 mm)
    inside = ((j - 45) / 37.5) ** 2 + ((i - 50) / 45.0) ** 2 + ((k - 35) / 30.0) ** 2 <= 1.0
    texture = np.random.default_rng(7).normal(scale=60.0, size=inside.shape)
    image = (np.where(inside, 900.0, 100.0) + texture).astype(np.float32)
    axial = Volume(image, (2.0, 2.0, 2.0), (-90.0, -100.0, -70.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    check = check_brain_mask(inside.astype(np.uint8), axial)
    assert check.refusal is None, check.as_json()
    assert check.extent_mm["left-right"] == pytest.approx(150, abs=4)
    assert check.extent_mm["anterior-posterior"] == pytest.approx(180, abs=4)
    assert check.volume_cm3 == pytest.approx(4 / 3 * np.pi * 75 * 90 * 60 / 1000, rel=0.03)
    # the same object with left-right and anterior-posterior swapped is no brain: wider than long
    swapped = Volume(image, (2.0, 2.0, 2.0), (-90.0, -100.0, -70.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0),
                     (0.0, 0.0, 1.0))
    refused = check_brain_mask(inside.astype(np.uint8), swapped)
    assert refused.refusal is not None and "front-back / side-side" in refused.refusal
