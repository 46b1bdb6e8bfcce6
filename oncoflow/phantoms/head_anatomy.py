"""Whole heads from real anatomy: a tissue label map and a T1 image for Colin27 and for MNI152.

Scanners send heads, not brains: scalp, fat, temporal muscles, skull with its marrow, the eyes. Both anatomies
are given here as a :class:`HeadAnatomy` on their own 1 mm grid (RAS NIfTI voxel order):

* **Colin27** (Debian ``mricron-data``): ``ch2.nii.gz`` is a real full-head T1 (27 averaged scans of one man)
  and ``ch2bet.nii.gz`` its brain. The T1 is used as it is; the tissue labels come from its intensities: inside
  the brain white matter, grey matter and CSF; outside it dark tissue (skull, air, vitreous), intermediate tissue
  (muscle, skin) and bright tissue (scalp fat, marrow), and the eyes (vitreous inside two orbit spheres).
* **MNI152** (``nilearn``'s 2009a symmetric template): nilearn ships the brain only, with its grey- and
  white-matter probability maps, so the head is **built around it**: CSF, the skull's inner table, marrow, the
  outer table, scalp fat and skin as shells at set distances from the brain; temporal muscles at the sides; eyes
  with orbital fat in front of the frontal lobes; a neck below the cerebellum. Its T1 is drawn from the labels with
  textbook T1 contrasts (white matter 1), the brain's own T1 inside the brain.

Label values are :class:`Tissue`. Everything is deterministic and cached per process.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import ndimage

Anatomy = Literal["colin27", "mni152"]
COLIN27_HEAD_PATH = Path("/usr/share/mricron/templates/ch2.nii.gz")
COLIN27_BRAIN_PATH = Path("/usr/share/mricron/templates/ch2bet.nii.gz")
MNI152_T1_FILE = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
MNI152_GM_FILE = "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz"
MNI152_WM_FILE = "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz"


class Tissue(enum.IntEnum):
    """Tissue labels of a head (0 is air)."""

    AIR = 0
    WHITE_MATTER = 1
    GREY_MATTER = 2
    CSF = 3
    SKULL = 4  # cortical bone (and, in Colin27, whatever else is dark outside the brain: sinuses, tendons)
    MARROW = 5  # diploë
    FAT = 6  # scalp and orbital fat
    MUSCLE = 7  # temporal muscles, neck
    SKIN = 8
    EYE = 9  # vitreous humour


BRAIN_TISSUES = (Tissue.WHITE_MATTER, Tissue.GREY_MATTER, Tissue.CSF)

# T1 (spin-echo / MPRAGE-like) contrast of each tissue, white matter 1: the MNI152 head's rendering
T1_CONTRAST: dict[Tissue, float] = {
    Tissue.AIR: 0.0, Tissue.WHITE_MATTER: 1.0, Tissue.GREY_MATTER: 0.66, Tissue.CSF: 0.22, Tissue.SKULL: 0.06,
    Tissue.MARROW: 0.85, Tissue.FAT: 1.15, Tissue.MUSCLE: 0.5, Tissue.SKIN: 0.62, Tissue.EYE: 0.14,
}

# Eye centres in MNI / Talairach-like RAS millimetres (both templates live in that space), radius in mm
_EYE_CENTRES_RAS = ((-33.0, 52.0, -38.0), (33.0, 52.0, -38.0))
_EYE_RADIUS_MM = 11.5


@dataclass(frozen=True)
class HeadAnatomy:
    """One head on its 1 mm grid: ``t1`` (white matter ~1), ``labels`` (:class:`Tissue`), ``brain`` (bool)."""

    name: Anatomy
    t1: npt.NDArray[np.float32]
    labels: npt.NDArray[np.uint8]
    brain: npt.NDArray[np.bool_]
    voxel_to_lps: npt.NDArray[np.float64]  # 4 x 4: NIfTI voxel index -> LPS mm

    @property
    def world_to_voxel(self) -> npt.NDArray[np.float64]:
        return np.linalg.inv(self.voxel_to_lps)


def _nifti(path: Path) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float64]]:
    import nibabel

    image = nibabel.load(str(path))
    return np.asarray(image.dataobj, dtype=np.float32), np.diag([-1.0, -1.0, 1.0, 1.0]) @ image.affine


def _mni152_dir() -> Path:
    import nilearn

    return Path(nilearn.__file__).parent / "datasets" / "data"


def _ras_mm(shape: tuple[int, ...], voxel_to_lps: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    """RAS millimetres of every voxel centre, shape ``(3, *shape)``."""
    grid = np.indices(shape, dtype=np.float32).reshape(3, -1)
    lps = voxel_to_lps[:3, :3].astype(np.float32) @ grid + voxel_to_lps[:3, 3, None].astype(np.float32)
    lps[:2] *= -1.0
    return lps.reshape(3, *shape)


def _eyes(shape: tuple[int, ...], voxel_to_lps: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    ras = _ras_mm(shape, voxel_to_lps)
    eyes = np.zeros(shape, bool)
    for centre in _EYE_CENTRES_RAS:
        eyes |= ((ras - np.asarray(centre, np.float32)[:, None, None, None]) ** 2).sum(axis=0) <= _EYE_RADIUS_MM**2
    return eyes


def _brain_tissues(t1: npt.NDArray[np.float32], brain: npt.NDArray[np.bool_]) -> npt.NDArray[np.uint8]:
    """White matter, grey matter and CSF inside ``brain`` by the T1 (white matter ~1)."""
    labels = np.zeros(t1.shape, np.uint8)
    labels[brain] = Tissue.GREY_MATTER
    labels[brain & (t1 >= 0.82)] = Tissue.WHITE_MATTER
    labels[brain & (t1 < 0.42)] = Tissue.CSF
    return labels


@lru_cache(maxsize=2)
def head_anatomy(name: Anatomy) -> HeadAnatomy:
    """The whole head of ``name`` (computed once per process: a few seconds)."""
    return _colin27() if name == "colin27" else _mni152()


def _colin27() -> HeadAnatomy:
    head, voxel_to_lps = _nifti(COLIN27_HEAD_PATH)
    brain_t1, _ = _nifti(COLIN27_BRAIN_PATH)
    brain = ndimage.binary_fill_holes(brain_t1 > 0)
    scale = float(np.percentile(head[brain], 99.0))
    t1 = np.clip(head / scale, 0.0, 1.8).astype(np.float32)
    body = ndimage.binary_fill_holes(ndimage.binary_closing(t1 > 0.12, iterations=3))
    labels = _brain_tissues(t1, brain)
    outside = body & ~brain
    labels[outside] = Tissue.MUSCLE
    labels[outside & (t1 < 0.3)] = Tissue.SKULL
    labels[outside & (t1 >= 0.8)] = Tissue.FAT
    skin = body & ~ndimage.binary_erosion(body, iterations=2)
    labels[skin & (labels == Tissue.MUSCLE)] = Tissue.SKIN
    labels[_eyes(t1.shape, voxel_to_lps) & outside & (t1 < 0.45)] = Tissue.EYE
    return HeadAnatomy("colin27", t1, labels, brain, voxel_to_lps)


def _shell(distance_mm: npt.NDArray[np.float32], low: float, high: float) -> npt.NDArray[np.bool_]:
    return (distance_mm > low) & (distance_mm <= high)


def _mni152() -> HeadAnatomy:
    folder = _mni152_dir()
    template, voxel_to_lps = _nifti(folder / MNI152_T1_FILE)
    grey, _ = _nifti(folder / MNI152_GM_FILE)
    white, _ = _nifti(folder / MNI152_WM_FILE)
    brain = ndimage.binary_fill_holes(ndimage.binary_closing(template > 0, iterations=2))
    brain_t1 = np.clip(template / float(np.percentile(template[brain], 99.0)), 0.0, 1.6)
    labels = _brain_tissues(brain_t1, brain)
    tissue_probability = (grey + white) / max(float(np.max(grey + white)), 1e-6)
    labels[brain & (tissue_probability < 0.25)] = Tissue.CSF

    ras = _ras_mm(template.shape, voxel_to_lps)
    # the skull base and neck: an ellipsoid under the brain, so the head does not end at the cerebellum
    neck = (((ras[0] / 58.0) ** 2 + ((ras[1] + 12.0) / 62.0) ** 2 + ((ras[2] + 75.0) / 45.0) ** 2 <= 1.0)
            & (ras[2] < -30.0))
    core = brain | neck
    distance_mm = ndimage.distance_transform_edt(~core).astype(np.float32)  # 1 mm voxels
    out = ~core
    labels[out & _shell(distance_mm, 0.0, 2.0) & ~neck] = Tissue.CSF
    labels[out & _shell(distance_mm, 2.0, 3.5)] = Tissue.SKULL
    labels[out & _shell(distance_mm, 3.5, 6.0)] = Tissue.MARROW
    labels[out & _shell(distance_mm, 6.0, 7.5)] = Tissue.SKULL
    labels[out & _shell(distance_mm, 7.5, 11.0)] = Tissue.FAT
    labels[out & _shell(distance_mm, 11.0, 13.0)] = Tissue.SKIN
    labels[neck & ~brain] = Tissue.MUSCLE
    # temporal muscles: over the skull at the sides, between the orbits' level and 40 mm up
    # (a lens on each side: thickest, 9 mm, above the ear, thinning to nothing at its edge)
    lens = 1.0 - (((ras[1] + 8.0) / 48.0) ** 2 + ((ras[2] - 2.0) / 34.0) ** 2)
    thickness_mm = np.where(np.abs(ras[0]) > 40.0, 9.0 * np.clip(lens, 0.0, 1.0), 0.0)
    temporal = out & (distance_mm > 7.5) & (distance_mm <= 7.5 + thickness_mm)
    labels[temporal] = Tissue.MUSCLE
    labels[out & ~temporal & (thickness_mm > 0) & _shell(distance_mm - thickness_mm, 7.5, 11.0)] = Tissue.FAT
    labels[out & (thickness_mm > 0) & _shell(distance_mm - thickness_mm, 11.0, 13.0)] = Tissue.SKIN
    # the eyes, in orbital fat, in front of the frontal lobes
    eyes = _eyes(template.shape, voxel_to_lps)
    orbit = ndimage.binary_dilation(eyes, iterations=5) & out
    labels[orbit & ~eyes] = Tissue.FAT
    labels[eyes & out] = Tissue.EYE

    t1 = np.zeros(template.shape, np.float32)
    for tissue, value in T1_CONTRAST.items():
        t1[labels == tissue] = value
    t1[brain] = brain_t1[brain]
    return HeadAnatomy("mni152", t1, labels, brain, voxel_to_lps)
