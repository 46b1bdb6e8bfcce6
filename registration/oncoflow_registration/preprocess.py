"""Preparation of a brain MR volume for affine registration (never for display or measurement).

:func:`prepare_for_registration` runs, in order:

1. **Orientation**: ``sitk.DICOMOrient(image, "LPS")`` permutes and flips the voxel axes so that the
   index axes point as closely as possible to +x (patient Left), +y (Posterior) and +z (Superior);
   an axis-aligned series (axial, coronal, sagittal, or a left-handed stack) ends up with the identity
   direction matrix, an oblique one with the nearest right-handed permutation. The physical position
   of every voxel is unchanged: this only makes the grid (and the shrink factors of the registration
   pyramid) axis-aligned and reproducible.
2. **Resampling** to ``spacing_mm`` isotropic (default 1 mm) with linear interpolation, on a grid with
   the oriented direction that covers the oriented image's extent. Registration only: the returned
   image is not meant to be measured.
3. **N4 bias-field correction** (Tustison et al. 2010, ``sitk.N4BiasFieldCorrectionImageFilter``) fitted
   on the resampled image shrunk to about 4 mm voxels (shrink factor ``round(4 mm / spacing_mm)``, at
   least 1) inside the head mask, 3 fitting levels of at most 50 iterations each; the fitted log bias
   field is then evaluated on the full registration grid and divided out
   (``corrected = image / exp(log_bias)``). About 1.4 s for Colin27 at 1 mm on 2 cores.
4. **Intensity normalisation**: z-score, ``(I - mean) / std`` with mean and standard deviation taken
   inside the head mask (or the brain mask when given) and applied to every voxel.

The head mask (:func:`head_mask`) is Otsu's threshold on the image, its largest connected component,
holes filled. An optional ``brain_mask`` (any grid in the same patient space; non-zero = brain) is the
brain-extraction hook: it is resampled onto the registration grid with nearest neighbour, replaces the
head mask for N4 and normalisation, and voxels outside it are set to intensity 0 before normalisation
(as a skull-stripped image).

All images are float32, positions LPS millimetres.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from oncoflow.core.volume import Volume

from .sitk_volume import to_sitk

ORIENTATION = "LPS"
N4_FIT_SPACING_MM = 4.0
N4_ITERATIONS: tuple[int, ...] = (50, 50, 50)
OTSU_BINS = 128


def head_mask(image: sitk.Image) -> sitk.Image:
    """Foreground (head, or brain for a skull-stripped image) of an MR image as a uint8 0/1 image.

    Otsu threshold, largest 26-connected component, 3-D holes filled.
    """
    foreground = sitk.OtsuThreshold(sitk.Cast(image, sitk.sitkFloat32), 0, 1, OTSU_BINS)
    components = sitk.RelabelComponent(sitk.ConnectedComponent(foreground, True), sortByObjectSize=True)
    largest = sitk.Equal(components, 1)
    return sitk.Cast(sitk.BinaryFillhole(largest, fullyConnected=False, foregroundValue=1), sitk.sitkUInt8)


def resample_isotropic(image: sitk.Image, spacing_mm: float, interpolator: int = sitk.sitkLinear) -> sitk.Image:
    """``image`` on an isotropic ``spacing_mm`` grid with the same direction and the same physical extent.

    The first voxel centre stays where it was; the new size covers the old field of view
    (``ceil(size * spacing / spacing_mm)`` voxels per axis).
    """
    old_size = np.array(image.GetSize())
    old_spacing = np.array(image.GetSpacing())
    new_size = np.maximum(1, np.ceil(old_size * old_spacing / spacing_mm - 1e-6)).astype(int)
    return sitk.Resample(
        image,
        [int(s) for s in new_size],
        sitk.Transform(),
        interpolator,
        image.GetOrigin(),
        (float(spacing_mm),) * 3,
        image.GetDirection(),
        0.0,
        image.GetPixelID(),
    )


def n4_correct(image: sitk.Image, mask: sitk.Image) -> sitk.Image:
    """N4 bias correction fitted at ~4 mm inside ``mask``, applied on ``image``'s own grid (float32)."""
    image = sitk.Cast(image, sitk.sitkFloat32)
    shrink = max(1, round(N4_FIT_SPACING_MM / min(image.GetSpacing())))
    small = sitk.Shrink(image, [shrink] * 3)
    small_mask = sitk.Shrink(sitk.Cast(mask, sitk.sitkUInt8), [shrink] * 3)
    if not np.any(sitk.GetArrayViewFromImage(small_mask)):
        return image
    # N4 works on log intensities: keep them positive.
    floor = float(np.max(sitk.GetArrayViewFromImage(image))) * 1e-6 + 1e-6
    corrector = sitk.N4BiasFieldCorrectionImageFilter()
    corrector.SetMaximumNumberOfIterations(list(N4_ITERATIONS))
    corrector.Execute(sitk.Maximum(small, floor), small_mask)
    log_bias = corrector.GetLogBiasFieldAsImage(image)
    return sitk.Cast(image / sitk.Exp(log_bias), sitk.sitkFloat32)


def zscore(image: sitk.Image, mask: sitk.Image) -> sitk.Image:
    """``(image - mean) / std`` with the statistics taken inside ``mask`` (non-zero), as float32."""
    values = sitk.GetArrayViewFromImage(image)[sitk.GetArrayViewFromImage(mask) > 0]
    if values.size < 2:
        raise ValueError("the mask selects fewer than two voxels")
    mean, std = float(values.mean()), float(values.std())
    return sitk.Cast((sitk.Cast(image, sitk.sitkFloat32) - mean) / (std if std > 0 else 1.0), sitk.sitkFloat32)


def prepare_for_registration(
    volume: Volume | sitk.Image,
    *,
    brain_mask: sitk.Image | None = None,
    spacing_mm: float = 1.0,
    bias_correction: bool = True,
) -> sitk.Image:
    """Orient, resample, bias-correct and normalise ``volume`` for :func:`register_affine`.

    Args:
        volume: the series, as a :class:`Volume` or a 3-D SimpleITK image (LPS geometry).
        brain_mask: optional brain-extraction mask in the same patient space (non-zero = brain).
        spacing_mm: isotropic voxel size of the registration grid.
        bias_correction: run N4 (turn off only for synthetic images without bias).

    Returns:
        A float32 image on an isotropic grid, oriented "LPS", z-scored inside the head / brain mask.
    """
    image = to_sitk(volume) if isinstance(volume, Volume) else volume
    image = sitk.DICOMOrient(sitk.Cast(image, sitk.sitkFloat32), ORIENTATION)
    image = resample_isotropic(image, spacing_mm)
    if brain_mask is not None:
        mask = sitk.Resample(
            sitk.Cast(sitk.NotEqual(brain_mask, 0), sitk.sitkUInt8), image, sitk.Transform(), sitk.sitkNearestNeighbor
        )
        image = sitk.Mask(image, mask, 0.0)
    else:
        mask = head_mask(image)
    if bias_correction:
        image = n4_correct(image, mask)
    return zscore(image, mask)
