"""The demo experts' training data, made from label maps as SynthSeg makes it (Billot et al., MedIA 2023).

A training case is drawn in five steps, every one random (``numpy`` Generator seeded by the case's seed):

1. **Anatomy**: a whole head's tissue labels (:mod:`oncoflow.phantoms.head_anatomy`, 1 mm), deformed by a random
   affine (rotation up to 20°, scaling 0.85-1.15 per axis, shear) and a smooth elastic field (up to 4 mm).
2. **Tumours**: 1-4 lesions (weights 0.55, 0.25, 0.12, 0.08), each a core of lobulated noise-thresholded shape
   (not an ellipsoid: an ellipsoidal envelope plus smoothed noise, its largest component) of 0.3-50 cm³
   (log-uniform), placed anywhere in the brain (cortex, deep white matter, next to the ventricles, cerebellum
   and brain stem); a necrotic centre in 60 % (under an enhancing rim of 1.5-5 mm), a patchy non-enhancing part
   in 20 %, and oedema reaching 0-25 mm into white and grey matter with an irregular front in 85 %.
3. **Scanner grid**: axial, coronal, sagittal or oblique (up to 25°), 1.2-2.4 mm in plane (the demo models run
   at 2 mm), slices 1.5-6 mm thick, the field of view around the head.
4. **Contrast**: for each channel (T1, T1c, T2, FLAIR) each label's mean intensity is drawn, half the cases
   around the sequence's textbook contrast (:data:`CONTRAST_PRIORS`, ±25 %), half uniformly at random
   (contrast-agnostic, as SynthSeg); a Gaussian spread within each label.
5. **Artefacts**: partial volume (the labels are drawn on sub-slices, blurred and averaged over the slice
   thickness), a smooth multiplicative bias field, Rician noise, a gamma and a global gain. Half the cases are
   skull-stripped by the anatomy's brain mask, dilated by 0-3 mm as a brain extraction leaves it.

The labels are BraTS 2021's, as nnU-Net's Dataset137 numbers them: 0 background, 1 oedema, 2 necrosis / non-
enhancing core, 3 enhancing tumour. The evaluation data come from another generator
(:mod:`oncoflow.phantoms.evaluation_generator`), which shares no tumour model and no intensity model with this
one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from oncoflow.core.mr_channels import CHANNELS, Channel
from oncoflow.core.volume import Volume
from oncoflow.phantoms.head_anatomy import Anatomy, HeadAnatomy, Tissue, head_anatomy
from oncoflow.phantoms.scanner_grid import BASE_ORIENTATIONS, random_rotation

# the tumour's labels in the synthetic label map (beyond the tissues) and in the training targets
_OEDEMA, _NECROSIS, _ENHANCING = 20, 21, 22
TARGET_LABELS = {"background": 0, "edema": 1, "necrosis": 2, "enhancing tumor": 3}
_TARGET_OF = {_OEDEMA: 1, _NECROSIS: 2, _ENHANCING: 3}

# Textbook relative intensities (white matter on T1 = 1) of each label, per sequence: the "prior" half of the
# contrasts jitters these by up to ±25 %.
CONTRAST_PRIORS: dict[Channel, dict[int, float]] = {
    "t1": {Tissue.WHITE_MATTER: 1.0, Tissue.GREY_MATTER: 0.65, Tissue.CSF: 0.25, Tissue.SKULL: 0.05,
           Tissue.MARROW: 0.9, Tissue.FAT: 1.15, Tissue.MUSCLE: 0.5, Tissue.SKIN: 0.6, Tissue.EYE: 0.15,
           _OEDEMA: 0.55, _NECROSIS: 0.3, _ENHANCING: 0.6},
    "t1c": {Tissue.WHITE_MATTER: 1.0, Tissue.GREY_MATTER: 0.65, Tissue.CSF: 0.25, Tissue.SKULL: 0.05,
            Tissue.MARROW: 0.9, Tissue.FAT: 1.15, Tissue.MUSCLE: 0.6, Tissue.SKIN: 0.7, Tissue.EYE: 0.15,
            _OEDEMA: 0.55, _NECROSIS: 0.3, _ENHANCING: 1.5},
    "t2": {Tissue.WHITE_MATTER: 0.45, Tissue.GREY_MATTER: 0.7, Tissue.CSF: 1.6, Tissue.SKULL: 0.05,
           Tissue.MARROW: 0.7, Tissue.FAT: 0.9, Tissue.MUSCLE: 0.35, Tissue.SKIN: 0.55, Tissue.EYE: 1.5,
           _OEDEMA: 1.2, _NECROSIS: 1.4, _ENHANCING: 0.9},
    "flair": {Tissue.WHITE_MATTER: 0.55, Tissue.GREY_MATTER: 0.8, Tissue.CSF: 0.12, Tissue.SKULL: 0.05,
              Tissue.MARROW: 0.6, Tissue.FAT: 0.9, Tissue.MUSCLE: 0.35, Tissue.SKIN: 0.5, Tissue.EYE: 0.2,
              _OEDEMA: 1.3, _NECROSIS: 0.8, _ENHANCING: 1.0},
}
_ALL_LABELS = tuple(sorted(CONTRAST_PRIORS["t1"]))


@dataclass(frozen=True)
class TrainingCase:
    """Co-registered channels on one grid, the compartment labels and the brain on that grid."""

    images: dict[Channel, Volume]
    labels: npt.NDArray[np.uint8]  # TARGET_LABELS values
    brain: npt.NDArray[np.bool_]
    seed: int
    anatomy: Anatomy
    skull_stripped: bool


def _noise_blob(rng: np.random.Generator, radius_vox: float, margin: int) -> npt.NDArray[np.bool_]:
    """An irregular blob in a cube: an ellipsoidal envelope plus smoothed noise, thresholded; its largest part."""
    size = int(np.ceil(2 * radius_vox * 1.6)) + 2 * margin
    axes = radius_vox * rng.uniform(0.65, 1.35, size=3)
    rotation = random_rotation(rng, 180.0)
    grid = np.indices((size,) * 3, dtype=np.float32).reshape(3, -1) - (size - 1) / 2.0
    local = (rotation.T.astype(np.float32) @ grid) / axes[:, None].astype(np.float32)
    envelope = 1.0 - (local**2).sum(axis=0).reshape((size,) * 3)
    noise = ndimage.gaussian_filter(rng.normal(size=(size,) * 3), sigma=max(radius_vox / 3.0, 1.0))
    noise /= max(float(noise.std()), 1e-6)
    blob = envelope + rng.uniform(0.15, 0.6) * noise > 0.0
    labelled, count = ndimage.label(blob)
    if count == 0:
        return blob
    sizes = ndimage.sum(blob, labelled, index=range(1, count + 1))
    return labelled == (int(np.argmax(sizes)) + 1)


def _plant_tumours(rng: np.random.Generator, labels: npt.NDArray[np.uint8],
                   brain: npt.NDArray[np.bool_]) -> npt.NDArray[np.uint8]:
    """``labels`` (1 mm) with 1-4 tumours painted in: oedema, necrosis and enhancing tumour labels."""
    out = labels.copy()
    candidates = np.argwhere(ndimage.binary_erosion(brain, iterations=4)[::3, ::3, ::3]) * 3
    parenchyma = np.isin(labels, (Tissue.WHITE_MATTER, Tissue.GREY_MATTER))
    count = int(rng.choice([1, 2, 3, 4], p=[0.55, 0.25, 0.12, 0.08]))
    for _ in range(count):
        volume_cm3 = float(np.exp(rng.uniform(np.log(0.3), np.log(50.0))))
        radius = (3.0 * volume_cm3 * 1000.0 / (4.0 * np.pi)) ** (1 / 3)
        oedema_mm = rng.uniform(0.0, 25.0) if rng.random() < 0.85 else 0.0
        margin = int(np.ceil(oedema_mm * 1.3)) + 3
        core = _noise_blob(rng, radius, margin)
        centre = candidates[rng.integers(len(candidates))]
        half = np.asarray(core.shape) // 2
        low = centre - half
        box = tuple(slice(max(int(a), 0), min(int(a) + n, s)) for a, n, s in zip(low, core.shape, labels.shape,
                                                                              strict=True))
        crop = tuple(slice(b.start - int(a), b.stop - int(a)) for b, a in zip(box, low, strict=True))
        core = core[crop] & brain[box]
        if not core.any():
            continue
        region = out[box]
        inside_brain = brain[box]
        if oedema_mm > 0:
            distance = ndimage.distance_transform_edt(~core)
            front = oedema_mm * (1.0 + 0.5 * ndimage.gaussian_filter(rng.normal(size=core.shape), 3.0) * 3.0)
            oedema = (distance <= front) & ~core & inside_brain & parenchyma[box]
            region[oedema] = _OEDEMA
        region[core] = _ENHANCING
        depth = ndimage.distance_transform_edt(core)
        if rng.random() < 0.6:
            region[core & (depth > rng.uniform(1.5, 5.0))] = _NECROSIS
        if rng.random() < 0.2:  # a patch of the solid tumour does not enhance: the non-enhancing core
            patch = ndimage.gaussian_filter(rng.normal(size=core.shape), 2.0) > 0.15
            region[core & patch & (region == _ENHANCING)] = _NECROSIS
        out[box] = region
    return out


def _deformation(rng: np.random.Generator, shape: tuple[int, ...], max_mm: float) -> npt.NDArray[np.float32]:
    """A smooth displacement field (3, *shape) in mm: random values on a 5 x 5 x 5 grid, linearly upsampled."""
    coarse = rng.normal(scale=max_mm / 2.0, size=(3, 5, 5, 5))
    zoom = [n / 5.0 for n in shape]
    return np.stack([ndimage.zoom(c, zoom, order=1)[: shape[0], : shape[1], : shape[2]] for c in coarse]).astype(
        np.float32)


def _grid(rng: np.random.Generator, head: HeadAnatomy,
          shape: tuple[int, int, int] | None) -> tuple[Volume, tuple[int, int, int], int]:
    """The scanner grid (an empty Volume), its shape and the number of sub-slices per slice."""
    base = str(rng.choice(["axial", "axial", "coronal", "sagittal"]))
    tilt = random_rotation(rng, 25.0 if rng.random() < 0.4 else 3.0)
    row, col = (tilt @ np.asarray(v) for v in BASE_ORIENTATIONS[base])
    normal = np.cross(row, col)
    axes = np.stack([normal, col, row])
    body = np.argwhere(head.labels[::4, ::4, ::4] > 0) * 4.0
    points = (head.voxel_to_lps[:3, :3] @ body.T).T + head.voxel_to_lps[:3, 3]
    centre = points.mean(axis=0) + rng.normal(scale=5.0, size=3)
    fov_mm = 2.0 * np.abs((points - centre) @ axes.T).max(axis=0) * rng.uniform(0.9, 1.05, size=3)
    in_plane = rng.uniform(1.2, 2.4)
    thickness = rng.uniform(1.5, 6.0)
    spacing = np.array([thickness, in_plane, in_plane])
    if shape is None:
        shape = tuple(int(n) for n in np.maximum(np.ceil(fov_mm / spacing), 16))  # type: ignore[assignment]
    else:
        spacing = fov_mm / np.asarray(shape)
    assert shape is not None
    origin = centre - (axes * ((np.asarray(shape) - 1) / 2.0 * spacing)[:, None]).sum(axis=0)
    empty = Volume(np.zeros((1, 1, 1), np.float32), tuple(map(float, spacing)),  # type: ignore[arg-type]
                   tuple(map(float, origin)), tuple(map(float, row)), tuple(map(float, col)),  # type: ignore[arg-type]
                   tuple(map(float, normal)))  # type: ignore[arg-type]
    return empty, shape, max(1, int(round(spacing[0] / 1.0)))


def _contrast(rng: np.random.Generator, channel: Channel, prior: bool) -> dict[int, tuple[float, float]]:
    """(mean, spread) of every label for one channel."""
    means = {label: (CONTRAST_PRIORS[channel][label] * rng.uniform(0.75, 1.25) if prior else rng.uniform(0.0, 1.6))
             for label in _ALL_LABELS}
    means[Tissue.AIR] = rng.uniform(0.0, 0.03)
    return {label: (mean, rng.uniform(0.01, 0.08)) for label, mean in means.items()}


def training_case(seed: int, anatomy: Anatomy = "mni152", channels: tuple[Channel, ...] = CHANNELS,
                  shape: tuple[int, int, int] | None = None, tumour: bool = True) -> TrainingCase:
    """One training case (see the module's description); ``tumour=False`` gives a healthy head."""
    rng = np.random.default_rng([seed, 17])
    head = head_anatomy(anatomy)
    labels = _plant_tumours(rng, head.labels, head.brain) if tumour else head.labels
    geometry, grid_shape, sub = _grid(rng, head, shape)
    # sample positions: each slice's sub-slices across its thickness (partial volume along the slice)
    k = (np.arange(grid_shape[0] * sub, dtype=np.float32) + 0.5) / sub - 0.5
    i, j = (np.arange(n, dtype=np.float32) for n in grid_shape[1:])
    affine = geometry.affine_lps().astype(np.float32)
    points = (affine[:3, 0, None, None, None] * k[None, :, None, None]
              + affine[:3, 1, None, None, None] * i[None, None, :, None]
              + affine[:3, 2, None, None, None] * j[None, None, None, :] + affine[:3, 3, None, None, None])
    # the random spatial deformation, about the head centre, then into anatomy voxels
    centre = points.reshape(3, -1).mean(axis=1)
    deform = np.eye(3) * rng.uniform(0.85, 1.15, size=3) + rng.uniform(-0.04, 0.04, size=(3, 3))
    deform = random_rotation(rng, 20.0) @ deform
    moved = np.tensordot(deform.astype(np.float32), points - centre[:, None, None, None], axes=1) \
        + centre[:, None, None, None]
    moved += _deformation(rng, moved.shape[1:], rng.uniform(0.0, 4.0))
    to_voxel = head.world_to_voxel.astype(np.float32)
    coords = np.tensordot(to_voxel[:3, :3], moved, axes=1) + to_voxel[:3, 3, None, None, None]
    del moved, points
    fine_labels = ndimage.map_coordinates(labels, coords, order=0, mode="constant", cval=0)
    fine_brain = ndimage.map_coordinates(head.brain.astype(np.uint8), coords, order=0, mode="constant", cval=0)
    del coords

    prior = rng.random() < 0.5
    strip = rng.random() < 0.5
    keep = ndimage.binary_dilation(fine_brain > 0, iterations=int(rng.integers(0, 3))) if strip else None
    centred = np.stack(np.meshgrid(*(np.linspace(-1, 1, n) for n in fine_labels.shape), indexing="ij"))
    images: dict[Channel, Volume] = {}
    for channel in channels:
        contrast = _contrast(rng, channel, prior)
        image = np.zeros(fine_labels.shape, np.float32)
        for label, (mean, spread) in contrast.items():
            where = fine_labels == label
            if where.any():
                image[where] = mean + spread * rng.normal(size=int(where.sum()))
        image = np.clip(image, 0.0, None)
        image = ndimage.gaussian_filter(image, sigma=(rng.uniform(0.0, 0.6) * sub, rng.uniform(0.0, 0.7),
                                                      rng.uniform(0.0, 0.7)))
        bias = np.exp(np.tensordot(rng.normal(scale=0.2, size=3), centred, axes=1)
                      + rng.normal(scale=0.15) * (centred**2).sum(axis=0))
        image = image * bias.astype(np.float32)
        if keep is not None:
            image = image * keep
        image = image.reshape(grid_shape[0], sub, *grid_shape[1:]).mean(axis=1)  # the slice profile
        sigma = rng.uniform(0.005, 0.05) * float(np.percentile(image, 99))
        image = np.sqrt((image + rng.normal(scale=sigma, size=image.shape)) ** 2
                        + rng.normal(scale=sigma, size=image.shape) ** 2)
        image = (image / max(float(image.max()), 1e-6)) ** float(np.exp(rng.normal(scale=0.15)))
        images[channel] = Volume((image * rng.uniform(300.0, 3000.0)).astype(np.float32), geometry.spacing_mm,
                                 geometry.origin_mm, geometry.row_direction, geometry.column_direction,
                                 geometry.slice_direction)
    # the truth on the scanner grid: each voxel's majority label over its sub-slices
    centre_labels = fine_labels[sub // 2::sub][: grid_shape[0]]
    targets = np.zeros(grid_shape, np.uint8)
    for label, value in _TARGET_OF.items():
        votes = (fine_labels == label).reshape(grid_shape[0], sub, *grid_shape[1:]).mean(axis=1)
        targets[(votes >= 0.5) | ((votes > 0) & (centre_labels == label))] = value
    brain = (fine_brain.reshape(grid_shape[0], sub, *grid_shape[1:]).mean(axis=1) >= 0.5)
    return TrainingCase(images, targets, brain, seed, anatomy, strip)
