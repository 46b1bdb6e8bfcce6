"""Brain-tumour MR phantoms: tumours planted into real anatomy, resampled onto a scanner-like grid.

No tumour images with labels can be downloaded here, so the training and test data
are built from two real brains: Colin27 (Debian ``mricron-data``,
``ch2bet.nii.gz``) and the MNI152 2009a template shipped by ``nilearn``. By default the
phantom is the whole head, as a scanner sends it (:mod:`oncoflow.phantoms.head_anatomy`:
Colin27's own full-head scan ``ch2.nii.gz``, a head built around MNI152's brain);
``head=False`` gives the skull-stripped brain alone. Into each, a lesion is planted
in world coordinates: a lobulated ellipsoid whose
outer shell enhances, whose centre may be necrotic, surrounded by oedema. The
image then gets a smooth bias field, Rician noise and a global gain, and is sampled
on a grid of random orientation (axial, coronal, sagittal, oblique) and resolution.

The truth mask is the tumour (enhancing rim + necrotic core); oedema is not tumour.
Everything is drawn from a ``numpy`` Generator seeded with ``seed``: same seed, same phantom.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from scipy.special import expit

from oncoflow.core.volume import Volume
from oncoflow.phantoms.scanner_grid import BASE_ORIENTATIONS, random_rotation, scanner_grid, world_points

Anatomy = Literal["colin27", "mni152"]
COLIN27_PATH = Path("/usr/share/mricron/templates/ch2bet.nii.gz")
MNI152_FILE = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"



@dataclass(frozen=True)
class Phantom:
    """A post-contrast T1 phantom and its truth."""

    volume: Volume  # voxels float32 >= 0, MR-like intensities (~0..1500)
    tumour_mask: npt.NDArray[np.uint8]  # same shape; 1 = enhancing rim + necrotic core
    seed: int
    anatomy: str
    brain_mask: npt.NDArray[np.uint8] | None = None  # same shape; 1 = brain (the anatomy's own), for a head


@dataclass(frozen=True)
class _Brain:
    t1: npt.NDArray[np.float32]  # normalised, white matter ~ 1
    world_to_voxel: npt.NDArray[np.float64]  # 4x4, LPS mm -> anatomy voxel indices
    brain_points_mm: npt.NDArray[np.float64]  # (n, 3) LPS centres of deep brain voxels


def _mni152_path() -> Path:
    import nilearn

    return Path(nilearn.__file__).parent / "datasets" / "data" / MNI152_FILE


@lru_cache(maxsize=2)
def load_anatomy(name: Anatomy) -> tuple[npt.NDArray[np.float32], tuple[float, float, float]]:
    """The brain-extracted T1 as stored (NIfTI voxel order) and its voxel size in mm."""
    brain = _load_brain(name)
    spacing = np.linalg.norm(np.linalg.inv(brain.world_to_voxel)[:3, :3], axis=0)
    return brain.t1, (float(spacing[0]), float(spacing[1]), float(spacing[2]))


@lru_cache(maxsize=2)
def _load_brain(name: Anatomy) -> _Brain:
    import nibabel

    path = COLIN27_PATH if name == "colin27" else _mni152_path()
    image = nibabel.load(str(path))
    data = np.asarray(image.dataobj, dtype=np.float32)
    data = np.clip(data / np.percentile(data[data > 0], 99.0), 0.0, 1.6)
    ras_to_lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    voxel_to_lps = ras_to_lps @ image.affine
    inside = ndimage.binary_erosion(data > 0.15, iterations=12)  # keep lesions away from the surface
    indices = np.argwhere(inside)[::97].astype(np.float64)
    points = (voxel_to_lps[:3, :3] @ indices.T).T + voxel_to_lps[:3, 3]
    return _Brain(data, np.linalg.inv(voxel_to_lps), points)


def sample_anatomy(name: Anatomy, points_mm: npt.NDArray[np.float64],
                   head: bool) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """The anatomy's T1 (white matter ~1) and brain mask at LPS points ``(3, ...)`` (linear interpolation): the
    whole head (:mod:`oncoflow.phantoms.head_anatomy`) or the skull-stripped brain."""
    if head:
        from oncoflow.phantoms.head_anatomy import head_anatomy

        whole = head_anatomy(name)
        t1, brain, to_voxel = whole.t1, whole.brain.astype(np.float32), whole.world_to_voxel
    else:
        stripped = _load_brain(name)
        t1, brain, to_voxel = stripped.t1, None, stripped.world_to_voxel
    voxel_coords = np.tensordot(to_voxel[:3, :3], points_mm, axes=1) + to_voxel[:3, 3].reshape(
        3, *([1] * (points_mm.ndim - 1)))
    image = ndimage.map_coordinates(t1, voxel_coords, order=1, mode="constant", cval=0.0).astype(np.float32)
    if brain is None:
        return image, image > 0.1
    inside = ndimage.map_coordinates(brain, voxel_coords, order=1, mode="constant", cval=0.0) > 0.5
    return image, inside


def _grid(
    rng: np.random.Generator,
    brain: _Brain,
    shape: tuple[int, int, int] | None,
    spacing_mm: tuple[float, float, float] | None,
    oblique_deg: float | None,
    margin_mm: float = 50.0,
) -> tuple[tuple[int, int, int], Volume]:
    """Choose orientation, spacing and field of view; returns the shape and an empty Volume."""
    base = str(rng.choice(["axial", "axial", "axial", "coronal", "sagittal"]))
    tilt = random_rotation(rng, 15.0 if oblique_deg is None else 0.0)
    if oblique_deg:
        tilt = random_rotation(np.random.default_rng(rng.integers(1 << 31)), 0.0)
        axis = np.array([1.0, 0.0, 0.0])
        angle = np.deg2rad(oblique_deg)
        k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        tilt = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)
    row, col = (tilt @ np.asarray(v) for v in BASE_ORIENTATIONS[base])
    return scanner_grid(rng, brain.brain_points_mm, row, col, shape, spacing_mm, (1.8, 3.2), (2.0, 4.0),
                         margin_mm=margin_mm)


def _lesion_distance(rng: np.random.Generator, points: np.ndarray, brain: _Brain) -> np.ndarray:
    """Normalised distance to a lobulated ellipsoid: < 1 inside the tumour."""
    centre = brain.brain_points_mm[rng.integers(len(brain.brain_points_mm))]
    radius_mm = rng.uniform(6.0, 24.0)
    axes_mm = radius_mm * rng.uniform(0.7, 1.3, size=3)
    rotation = random_rotation(rng, 180.0)
    offset = np.tensordot(rotation.T, points - centre[:, None, None, None], axes=1)
    scaled = offset / axes_mm[:, None, None, None]
    distance = np.sqrt((scaled**2).sum(axis=0))
    direction = scaled / np.maximum(distance, 1e-6)
    lobes = np.zeros_like(distance)
    for _ in range(4):  # low-order bumps on the surface
        w = rng.normal(size=3) * rng.uniform(1.0, 3.0)
        lobes += rng.uniform(0.05, 0.15) * np.cos(np.tensordot(w, direction, axes=1) + rng.uniform(0, 2 * np.pi))
    return distance / (1.0 + lobes)


def make_phantom(
    seed: int,
    *,
    anatomy: Anatomy | None = None,
    shape: tuple[int, int, int] | None = None,
    spacing_mm: tuple[float, float, float] | None = None,
    oblique_deg: float | None = None,
    tumour: bool = True,
    head: bool = True,
) -> Phantom:
    """A post-contrast T1 phantom of a whole head (or, ``head=False``, of the skull-stripped brain);
    unspecified properties are drawn from ``seed``.

    Args:
        shape: ``(slices, rows, columns)``; with no ``spacing_mm`` the spacing covers the brain.
        spacing_mm: ``(slice, row, column)`` voxel size.
        oblique_deg: a fixed tilt about the left-right axis instead of a random one.
        tumour: ``False`` for a healthy brain with an empty mask.
        head: the whole head (scalp, skull, eyes, neck) with the anatomy's brain mask in ``brain_mask``.
    """
    rng = np.random.default_rng(seed)
    name: Anatomy = anatomy or ("colin27" if rng.random() < 0.5 else "mni152")
    brain = _load_brain(name)
    shape, geometry = _grid(rng, brain, shape, spacing_mm, oblique_deg, margin_mm=110.0 if head else 50.0)
    points = world_points(geometry, shape)
    image, brain_mask = sample_anatomy(name, points, head)

    mask = np.zeros(shape, np.uint8)
    if tumour:
        distance = _lesion_distance(rng, points, brain)
        core_fraction = rng.uniform(0.3, 0.65) if rng.random() < 0.7 else 0.0
        oedema_extent = rng.uniform(1.2, 2.0)
        soft = 0.08  # boundary softness in normalised units: partial-volume-like edges
        inside = expit((1.0 - distance) / soft)
        core = expit((core_fraction - distance) / soft) if core_fraction else 0.0
        oedema = (expit((oedema_extent - distance) / (2 * soft)) - inside) * brain_mask
        rim_level = rng.uniform(1.3, 1.9)
        image = image * (1.0 - rng.uniform(0.15, 0.35) * oedema)
        image = image * (1.0 - inside) + inside * (rim_level * (1.0 + 0.08 * rng.normal(size=shape)))
        image = image * (1.0 - core) + core * rng.uniform(0.1, 0.35)
        mask = ((distance < 1.0) & (ndimage.binary_dilation(brain_mask, iterations=2))).astype(np.uint8)

    centred = (points - points.mean(axis=(1, 2, 3), keepdims=True)) / 100.0
    linear = np.tensordot(rng.normal(scale=0.15, size=3), centred, axes=1)
    bias = np.exp(linear + rng.normal(scale=0.08) * (centred**2).sum(axis=0))  # smooth multiplicative field
    image = image * bias
    sigma = rng.uniform(0.01, 0.04)
    image = np.sqrt((image + rng.normal(scale=sigma, size=shape)) ** 2 + rng.normal(scale=sigma, size=shape) ** 2)
    image = (image * rng.uniform(350.0, 900.0)).astype(np.float32)

    volume = Volume(
        image, geometry.spacing_mm, geometry.origin_mm, geometry.row_direction, geometry.column_direction,
        geometry.slice_direction,
    )
    return Phantom(volume=volume, tumour_mask=mask, seed=seed, anatomy=name,
                   brain_mask=brain_mask.astype(np.uint8) if head else None)
