"""Evaluation studies, kept apart from training: another anatomy, another tumour model, fixed protocol contrasts.

The demo experts learn from :mod:`oncoflow.phantoms.training_generator` (MNI152 heads, noise-thresholded blobs,
random contrasts). Nothing of that is reused here:

* **Anatomy**: Colin27's own full-head scan (``ch2.nii.gz``), held out of training. Its T1 is the real scan.
* **Tumours grow**: a glioma is simulated by the Fisher-Kolmogorov reaction-diffusion model (Swanson et al.
  2000), ``du/dt = div(D grad u) + rho u (1 - u)``, tumour cells migrating five times faster in white matter than
  in grey matter and not at all into CSF or outside the brain, on a 2 mm grid from one seed point. What MR shows
  is read from the cell density ``u`` by thresholds (Swanson's visibility model): ``u >= 0.6`` is the tumour core
  (it enhances), its centre deeper than a rim of 2-6 mm is necrosis (in 70 % of tumours), ``0.02 <= u < 0.6`` is
  oedema (T2/FLAIR bright). Longer growth gives a larger tumour: snapshots of one simulation make follow-ups.
* **Contrast**: fixed values of a clinical 3 T protocol (:data:`PROTOCOL`); the T1 and T1c of normal tissue are
  Colin27's measured T1, the T2 and FLAIR of normal tissue are drawn from its tissue labels with a fixed texture.
* **Acquisition**: each sequence on its own grid, as a scanner sends a study: T1c 3-D (1.2 mm isotropic in the
  full protocol), T1, T2 and FLAIR axial 2-D with thick slices, all in one frame of reference; bias field and
  Rician noise at fixed levels. Full heads only.

Truth: compartment labels (1 oedema, 2 necrosis, 3 enhancing) and region volumes measured on the 1 mm anatomy
grid, so the truth does not depend on any sequence's voxel size.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from oncoflow.core.mr_channels import CHANNELS, Channel
from oncoflow.core.volume import Volume
from oncoflow.phantoms.head_anatomy import Anatomy, HeadAnatomy, Tissue, head_anatomy

GRID_MM = 2.0  # the growth simulation's grid
D_WHITE_MM2 = 0.5  # per step (dimensionless time): white-matter diffusion; grey matter a fifth of it
RHO = 0.06  # proliferation per step
CORE_LEVEL, OEDEMA_LEVEL = 0.6, 0.02

# A clinical 3 T protocol's relative signal (white matter = 1 on T1) of what is not measured from Colin27.
PROTOCOL: dict[str, dict[str, float]] = {
    "t2": {"white": 0.5, "grey": 0.78, "csf": 2.1, "skull": 0.04, "marrow": 0.55, "fat": 1.05, "muscle": 0.3,
           "skin": 0.5, "eye": 1.9, "oedema": 1.45, "necrosis": 1.7, "enhancing": 1.0},
    "flair": {"white": 0.62, "grey": 0.88, "csf": 0.08, "skull": 0.04, "marrow": 0.5, "fat": 1.1, "muscle": 0.3,
              "skin": 0.45, "eye": 0.1, "oedema": 1.4, "necrosis": 0.6, "enhancing": 1.1},
    "t1": {"oedema": 0.62, "necrosis": 0.32, "enhancing": 0.66},
    "t1c": {"oedema": 0.62, "necrosis": 0.32, "enhancing": 1.55},
}
_TISSUE_NAMES = {Tissue.WHITE_MATTER: "white", Tissue.GREY_MATTER: "grey", Tissue.CSF: "csf", Tissue.SKULL: "skull",
                 Tissue.MARROW: "marrow", Tissue.FAT: "fat", Tissue.MUSCLE: "muscle", Tissue.SKIN: "skin",
                 Tissue.EYE: "eye"}
# noise (sigma over white matter signal) and each sequence's grid: (slice, row, column) spacing mm, plane
FULL_PROTOCOL: dict[Channel, tuple[tuple[float, float, float], str]] = {
    "t1c": ((1.2, 1.2, 1.2), "axial"),
    "t1": ((5.0, 0.9, 0.9), "axial"),
    "t2": ((5.0, 0.9, 0.9), "axial"),
    "flair": ((5.0, 0.9, 0.9), "axial"),
}
NOISE: dict[Channel, float] = {"t1": 0.03, "t1c": 0.025, "t2": 0.035, "flair": 0.04}


@dataclass(frozen=True)
class GrownTumour:
    """One simulated glioma: cell density snapshots on the 2 mm growth grid of the anatomy."""

    densities: tuple[npt.NDArray[np.float32], ...]  # one per snapshot, the anatomy's shape // 2
    steps: tuple[int, ...]
    rim_mm: float | None  # the enhancing rim's thickness over a necrotic centre; None: no necrosis


@dataclass(frozen=True)
class EvaluationStudy:
    """One visit: each sequence on its own grid, the truth on the T1c grid and on the anatomy."""

    images: dict[Channel, Volume]
    truth: npt.NDArray[np.uint8]  # compartments (1 oedema, 2 necrosis, 3 enhancing) on the T1c grid
    brain: npt.NDArray[np.bool_]  # the anatomy's brain on the T1c grid
    volumes_cm3: dict[str, float]  # ET, TC, WT measured on the 1 mm anatomy grid
    seed: int
    snapshot: int


def _growth_field(head: HeadAnatomy) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """Diffusion coefficient per 2 mm cell (mm² per step) and where cells may live."""
    labels = head.labels[::2, ::2, ::2]
    brain = head.brain[::2, ::2, ::2]
    diffusion = np.zeros(labels.shape, np.float32)
    diffusion[brain & (labels == Tissue.WHITE_MATTER)] = D_WHITE_MM2
    diffusion[brain & (labels == Tissue.GREY_MATTER)] = D_WHITE_MM2 / 5.0
    return diffusion, diffusion > 0


@lru_cache(maxsize=1)
def _field(anatomy: Anatomy) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    return _growth_field(head_anatomy(anatomy))


def grow_tumour(seed: int, snapshots_cm3: tuple[float, ...], anatomy: Anatomy = "colin27",
                max_steps: int = 4000) -> GrownTumour:
    """Grow a glioma from a random white-matter seed until its core passes each volume in ``snapshots_cm3``
    (increasing), keeping the density at each; raises ``ValueError`` if it never gets there."""
    rng = np.random.default_rng([seed, 29])
    diffusion, alive = _field(anatomy)
    deep = ndimage.binary_erosion(alive, iterations=4) & (diffusion >= D_WHITE_MM2)
    candidates = np.argwhere(deep)
    start = candidates[rng.integers(len(candidates))]
    box = tuple(slice(max(int(c) - 40, 0), int(c) + 40) for c in start)
    d = diffusion[box]
    live = alive[box]
    u = np.zeros(d.shape, np.float32)
    u[tuple(int(c) - b.start for c, b in zip(start, box, strict=True))] = 1.0
    u = ndimage.gaussian_filter(u, 1.0) * 30.0
    cell_cm3 = GRID_MM**3 / 1000.0
    snaps: list[npt.NDArray[np.float32]] = []
    steps: list[int] = []
    targets = list(snapshots_cm3)
    rate = RHO * rng.uniform(0.8, 1.2)
    anisotropy = rng.uniform(0.7, 1.3)
    rim = float(rng.uniform(2.0, 6.0)) if rng.random() < 0.7 else None
    for step in range(max_steps):
        laplacian = ndimage.laplace(u) / GRID_MM**2
        grad = np.gradient(u, GRID_MM)
        grad_d = np.gradient(d * anisotropy, GRID_MM)
        u = u + d * anisotropy * laplacian + sum(a * b for a, b in zip(grad_d, grad, strict=True)) \
            + rate * u * (1.0 - u)
        u = np.clip(np.where(live, u, 0.0), 0.0, 1.0).astype(np.float32)
        core_cm3 = float((u >= CORE_LEVEL).sum()) * cell_cm3
        while targets and core_cm3 >= targets[0]:
            full = np.zeros(diffusion.shape, np.float32)
            full[box] = u
            snaps.append(full)
            steps.append(step)
            targets.pop(0)
        if not targets:
            return GrownTumour(tuple(snaps), tuple(steps), rim)
    raise ValueError(f"tumour seed {seed} reached {core_cm3:.1f} cm³ in {max_steps} steps, short of {targets}")


def compartments_on_anatomy(density: npt.NDArray[np.float32], head: HeadAnatomy,
                            rim_mm: float | None) -> npt.NDArray[np.uint8]:
    """The compartments on the 1 mm anatomy grid from a 2 mm density (linear interpolation)."""
    zoom = [n / m for n, m in zip(head.labels.shape, density.shape, strict=True)]
    u = ndimage.zoom(density, zoom, order=1)[: head.labels.shape[0], : head.labels.shape[1], : head.labels.shape[2]]
    u = np.pad(u, [(0, n - m) for n, m in zip(head.labels.shape, u.shape, strict=True)])
    labels = np.zeros(head.labels.shape, np.uint8)
    core = (u >= CORE_LEVEL) & head.brain
    labels[(u >= OEDEMA_LEVEL) & head.brain & ~core] = 1
    labels[core] = 3
    if rim_mm is not None:
        labels[core & (ndimage.distance_transform_edt(core) > rim_mm)] = 2
    return labels


def _axes(plane: str) -> npt.NDArray[np.float64]:
    rows = {"axial": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)), "sagittal": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),
            "coronal": ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0))}[plane]
    row, col = (np.asarray(v) for v in rows)
    return np.stack([np.cross(row, col), col, row])  # (slice, row, column) directions


def _grid_for(head: HeadAnatomy, spacing_mm: tuple[float, float, float], plane: str,
              tilt: npt.NDArray[np.float64]) -> tuple[Volume, tuple[int, int, int]]:
    """A grid over the whole head (every non-air voxel), in ``plane`` tilted by ``tilt``."""
    axes = _axes(plane) @ tilt.T
    body = np.argwhere(head.labels[::3, ::3, ::3] > 0) * 3.0
    points = (head.voxel_to_lps[:3, :3] @ body.T).T + head.voxel_to_lps[:3, 3]
    low, high = (points @ axes.T).min(axis=0) - 4.0, (points @ axes.T).max(axis=0) + 4.0
    spacing = np.asarray(spacing_mm)
    shape = tuple(int(n) for n in np.ceil((high - low) / spacing) + 1)
    origin = axes.T @ low
    row, col, normal = axes[2], axes[1], axes[0]
    volume = Volume(np.zeros((1, 1, 1), np.float32), tuple(map(float, spacing)),  # type: ignore[arg-type]
                    tuple(map(float, origin)), tuple(map(float, row)), tuple(map(float, col)),  # type: ignore[arg-type]
                    tuple(map(float, normal)))  # type: ignore[arg-type]
    return volume, shape  # type: ignore[return-value]


def _sample(field: npt.NDArray, head: HeadAnatomy, grid: Volume, shape: tuple[int, int, int], order: int,
            thickness_samples: int = 1) -> npt.NDArray[np.float32]:
    """``field`` (anatomy grid) at the voxel centres of ``grid``, averaged over the slice thickness."""
    affine = head.world_to_voxel @ grid.affine_lps()
    out = np.zeros(shape, np.float32)
    for offset in (np.arange(thickness_samples) + 0.5) / thickness_samples - 0.5:
        k, i, j = np.meshgrid(np.arange(shape[0]) + offset, np.arange(shape[1]), np.arange(shape[2]), indexing="ij")
        index = np.stack([k, i, j, np.ones_like(k)]).reshape(4, -1).astype(np.float32)
        coords = (affine.astype(np.float32) @ index)[:3]
        out += ndimage.map_coordinates(field, coords, order=order, mode="constant", cval=0.0).reshape(shape)
    return out / thickness_samples


def _render(channel: Channel, head: HeadAnatomy, labels: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """The sequence's signal on the 1 mm anatomy grid (white matter on T1 ~ 1)."""
    table = PROTOCOL[channel]
    if channel in ("t1", "t1c"):
        image = head.t1.copy()
    else:
        image = np.zeros(head.labels.shape, np.float32)
        for tissue, name in _TISSUE_NAMES.items():
            image[head.labels == tissue] = table[name]
        texture = ndimage.gaussian_filter(np.random.default_rng(404).normal(size=image.shape).astype(np.float32), 1.0)
        image *= 1.0 + 0.6 * texture * (head.labels > 0)
    for value, name in ((1, "oedema"), (2, "necrosis"), (3, "enhancing")):
        image[labels == value] = table[name]
    return image


def evaluation_study(seed: int, tumour: GrownTumour | None, snapshot: int = 0, anatomy: Anatomy = "colin27",
                     protocol: dict[Channel, tuple[tuple[float, float, float], str]] | None = None,
                     channels: tuple[Channel, ...] = CHANNELS, head_motion_deg: float = 4.0) -> EvaluationStudy:
    """One visit of ``tumour`` (``None``: a tumour-free head) at ``snapshot``, every sequence on its own grid.

    ``protocol`` gives each sequence's ``(slice, row, column)`` spacing and plane (default :data:`FULL_PROTOCOL`);
    the head is tilted by up to ``head_motion_deg`` in the scanner (the same for every sequence of the visit).
    """
    rng = np.random.default_rng([seed, snapshot, 31])
    head = head_anatomy(anatomy)
    labels = compartments_on_anatomy(tumour.densities[snapshot], head, tumour.rim_mm) if tumour is not None else \
        np.zeros(head.labels.shape, np.uint8)
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.deg2rad(rng.uniform(-head_motion_deg, head_motion_deg))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    tilt = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)
    protocol = protocol or FULL_PROTOCOL
    reference_signal = float(np.median(head.t1[head.labels == Tissue.WHITE_MATTER]))
    images: dict[Channel, Volume] = {}
    truth = brain = None
    for channel in channels:
        spacing, plane = protocol[channel]
        grid, shape = _grid_for(head, spacing, plane, tilt)
        signal = _render(channel, head, labels)
        samples = max(1, int(round(spacing[0] / 1.0)))
        image = _sample(signal, head, grid, shape, order=1, thickness_samples=samples)
        centred = np.stack(np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij"))
        image *= np.exp(0.12 * centred[2] - 0.08 * (centred**2).sum(axis=0)).astype(np.float32)
        sigma = NOISE[channel] * reference_signal
        image = np.sqrt((image + rng.normal(scale=sigma, size=shape)) ** 2 + rng.normal(scale=sigma, size=shape) ** 2)
        images[channel] = Volume((image * 800.0).astype(np.float32), grid.spacing_mm, grid.origin_mm,
                                 grid.row_direction, grid.column_direction, grid.slice_direction)
        if channel == "t1c" or (truth is None and channel == channels[-1]):
            truth = _sample(labels.astype(np.float32), head, grid, shape, order=0).astype(np.uint8)
            brain = _sample(head.brain.astype(np.float32), head, grid, shape, order=1) >= 0.5
    assert truth is not None and brain is not None
    mm3 = float(abs(np.linalg.det(head.voxel_to_lps[:3, :3]))) / 1000.0
    volumes = {"ET": float((labels == 3).sum()) * mm3, "TC": float(np.isin(labels, (2, 3)).sum()) * mm3,
               "WT": float((labels > 0).sum()) * mm3}
    return EvaluationStudy(images, truth, brain, volumes, seed, snapshot)
