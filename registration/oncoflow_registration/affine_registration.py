"""Affine (12 degrees of freedom) registration of a follow-up MR onto its baseline.

Transform direction (the ITK / elastix convention): the transform maps a point of the **fixed**
image (the baseline) to the corresponding point of the **moving** image (the follow-up), both in
LPS millimetres. That is what :func:`SimpleITK.Resample` needs to bring the moving image (or its
mask) onto the fixed grid, see :mod:`oncoflow_registration.warp`. To carry a point found on the
follow-up back to the baseline, use ``transform.GetInverse()``.

Both methods run a rigid stage (6 DOF) and then an affine stage (12 DOF) started from it, with
Mattes mutual information. Inputs are expected to come from
:func:`~oncoflow_registration.preprocess.prepare_for_registration`.

* ``"sitk"``: ``CenteredTransformInitializer`` (``MOMENTS`` of the two head masks, i.e. centres of
  mass aligned); ``Euler3DTransform`` with Mattes MI (32 bins), about :data:`SITK_SAMPLES` random
  samples per pyramid level inside the fixed head mask dilated by 3 voxels (fixed seed, reproducible),
  gradients by central differences (no gradient images), regular-step gradient descent with scales
  from physical shift, pyramid shrink (4, 2, 1) and smoothing sigmas (2, 1, 0) voxels; then an
  ``AffineTransform`` initialised from the rigid result, pyramid (2, 1) / (1, 0).
* ``"elastix"`` (itk-elastix, imported lazily): elastix's default "rigid" (``EulerTransform``) and
  "affine" (``AffineTransform``) parameter maps, 3 resolutions each, adaptive stochastic gradient
  descent, fixed random seed, the rigid stage initialised on the centres of gravity. The resulting
  two-map TransformParameterObject is converted to one :class:`SimpleITK.AffineTransform`
  (:func:`elastix_maps_to_affine`). When ``itk`` cannot be imported the SimpleITK path runs instead
  and ``RegistrationResult.method`` reads ``"sitk (elastix not installed: <reason>)"``.

Quality: :func:`normalized_cross_correlation` is the Pearson correlation between the fixed image
and the moving image resampled onto the fixed grid (linear), over the voxels inside the fixed image's
head mask (:func:`~oncoflow_registration.preprocess.head_mask`) whose mapped point falls inside the
moving image. ``ncc_before`` uses the identity transform (scanner positions), ``ncc_after`` the result.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from .preprocess import head_mask

Method = Literal["elastix", "sitk"]
SITK_SAMPLES = 20000
SITK_SEED = 20241125
SITK_HISTOGRAM_BINS = 32
ELASTIX_SEED = 121212


@dataclass(frozen=True)
class RegistrationResult:
    """An affine registration: ``transform`` maps fixed (baseline) LPS mm to moving (follow-up) LPS mm."""

    transform: sitk.AffineTransform
    method: str
    ncc_before: float
    ncc_after: float
    seconds: float
    parameters: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------- quality


def normalized_cross_correlation(
    fixed: sitk.Image,
    moving: sitk.Image,
    transform: sitk.Transform | None = None,
    fixed_mask: sitk.Image | None = None,
) -> float:
    """Pearson correlation of ``fixed`` and ``moving`` resampled on ``fixed`` through ``transform``.

    Computed over the voxels of ``fixed_mask`` (default: :func:`head_mask` of ``fixed``) whose mapped
    point lies inside ``moving``. Returns 0.0 when fewer than two voxels qualify or one side is constant.
    """
    transform = transform if transform is not None else sitk.Transform()
    mask = fixed_mask if fixed_mask is not None else head_mask(fixed)
    warped = sitk.Resample(moving, fixed, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    inside = _inside_moving(moving, fixed, transform)
    select = (sitk.GetArrayViewFromImage(mask) > 0) & (sitk.GetArrayViewFromImage(inside) > 0)
    a = sitk.GetArrayViewFromImage(fixed)[select].astype(np.float64)
    b = sitk.GetArrayViewFromImage(warped)[select].astype(np.float64)
    if a.size < 2:
        return 0.0
    a -= a.mean()
    b -= b.mean()
    denominator = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denominator) if denominator > 0 else 0.0


def _inside_moving(moving: sitk.Image, fixed: sitk.Image, transform: sitk.Transform) -> sitk.Image:
    ones = sitk.Image(moving.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(moving)
    return sitk.Resample(ones, fixed, transform, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)


# --------------------------------------------------------------------------------------------------- transforms


def _affine_parts(transform: sitk.Transform) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """``(A, b)`` with ``transform(x) = A @ x + b`` for a matrix-offset transform."""
    matrix = np.array(transform.GetMatrix(), dtype=np.float64).reshape(3, 3)  # type: ignore[attr-defined]
    center = np.array(transform.GetCenter(), dtype=np.float64)  # type: ignore[attr-defined]
    translation = np.array(transform.GetTranslation(), dtype=np.float64)  # type: ignore[attr-defined]
    return matrix, center + translation - matrix @ center


def affine_from_matrix(
    matrix: npt.ArrayLike, offset: npt.ArrayLike, center_mm: Sequence[float] = (0.0, 0.0, 0.0)
) -> sitk.AffineTransform:
    """``x -> matrix @ x + offset`` as an :class:`sitk.AffineTransform` with the given centre."""
    a = np.asarray(matrix, dtype=np.float64).reshape(3, 3)
    b = np.asarray(offset, dtype=np.float64).reshape(3)
    c = np.asarray(center_mm, dtype=np.float64).reshape(3)
    translation = a @ c + b - c  # so that A(x - c) + c + t == A x + b
    return sitk.AffineTransform(tuple(a.ravel()), tuple(translation), tuple(c))


def as_affine(transform: sitk.Transform) -> sitk.AffineTransform:
    """A matrix-offset SimpleITK transform (Euler, Similarity, Versor, Affine) as an AffineTransform."""
    matrix, offset = _affine_parts(transform)
    return affine_from_matrix(matrix, offset, transform.GetCenter())  # type: ignore[attr-defined]


def _floats(parameter_map: Mapping[str, Sequence[str]], key: str) -> list[float]:
    return [float(v) for v in parameter_map[key]]


def elastix_map_to_affine(parameter_map: Mapping[str, Sequence[str]]) -> sitk.AffineTransform:
    """One elastix transform parameter map (EulerTransform, AffineTransform, SimilarityTransform
    or TranslationTransform, 3-D) as an :class:`sitk.AffineTransform` mapping the same points."""
    kind = parameter_map["Transform"][0]
    p = _floats(parameter_map, "TransformParameters")
    center = _floats(parameter_map, "CenterOfRotationPoint") if "CenterOfRotationPoint" in parameter_map else [0.0] * 3
    if kind == "EulerTransform":
        euler = sitk.Euler3DTransform()
        euler.SetCenter(center)
        euler.SetComputeZYX(parameter_map.get("ComputeZYX", ("false",))[0] == "true")
        euler.SetRotation(p[0], p[1], p[2])
        euler.SetTranslation(p[3:6])
        return as_affine(euler)
    if kind == "AffineTransform":
        return sitk.AffineTransform(tuple(p[:9]), tuple(p[9:12]), tuple(center))
    if kind == "SimilarityTransform":
        similarity = sitk.Similarity3DTransform()
        similarity.SetCenter(center)
        similarity.SetParameters(p)  # versor (3), translation (3), scale: same order as elastix
        return as_affine(similarity)
    if kind == "TranslationTransform":
        return sitk.AffineTransform(tuple(np.eye(3).ravel()), tuple(p[:3]), (0.0, 0.0, 0.0))
    raise ValueError(f"cannot convert an elastix {kind} to an affine transform")


def elastix_maps_to_affine(parameter_maps: Sequence[Mapping[str, Sequence[str]]]) -> sitk.AffineTransform:
    """The chain of transform parameter maps elastix returns (first stage first) as one affine.

    elastix links map ``k`` to map ``k-1`` through ``InitialTransformParameterFileName`` and, with
    ``HowToCombineTransforms "Compose"`` (the default), applies the initial (earlier) transform first:
    ``T(x) = T_k(T_{k-1}(... T_0(x)))``, a fixed point going to the moving image. "Add" would sum the
    displacements instead and is not supported here.
    """
    matrix, offset = np.eye(3), np.zeros(3)
    center: list[float] = [0.0, 0.0, 0.0]
    for k, parameter_map in enumerate(parameter_maps):
        if k > 0 and parameter_map.get("HowToCombineTransforms", ("Compose",))[0] != "Compose":
            raise ValueError("only elastix transforms combined by composition are supported")
        stage = elastix_map_to_affine(parameter_map)
        a, b = _affine_parts(stage)
        matrix, offset = a @ matrix, a @ offset + b
        if k == 0:
            center = list(stage.GetCenter())
    return affine_from_matrix(matrix, offset, center)


# --------------------------------------------------------------------------------------------------- SimpleITK


def _sitk_stage(
    fixed: sitk.Image,
    moving: sitk.Image,
    fixed_mask: sitk.Image,
    initial: sitk.Transform,
    *,
    shrink: Sequence[int],
    sigmas: Sequence[float],
    iterations: int,
    learning_rate: float,
) -> tuple[sitk.Transform, dict[str, Any]]:
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=SITK_HISTOGRAM_BINS)
    method.SetMetricSamplingStrategy(method.RANDOM)
    voxels = np.prod(fixed.GetSize())
    method.SetMetricSamplingPercentagePerLevel(
        [min(1.0, SITK_SAMPLES * factor**3 / voxels) for factor in shrink], SITK_SEED
    )
    method.SetMetricFixedMask(fixed_mask)
    # Central differences on demand instead of full-resolution gradient images at every level (10x faster).
    method.MetricUseFixedImageGradientFilterOff()
    method.MetricUseMovingImageGradientFilterOff()
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=learning_rate,
        minStep=1e-4,
        numberOfIterations=iterations,
        relaxationFactor=0.5,
        gradientMagnitudeTolerance=1e-8,
    )
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(list(shrink))
    method.SetSmoothingSigmasPerLevel(list(sigmas))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    method.SetInitialTransform(initial, inPlace=False)
    result = method.Execute(fixed, moving)
    if isinstance(result, sitk.CompositeTransform) and result.GetNumberOfTransforms() == 1:
        result = result.GetNthTransform(0).Downcast()
    info = {
        "shrink_factors": list(shrink),
        "smoothing_sigmas_voxels": list(sigmas),
        "iterations": method.GetOptimizerIteration(),
        "metric": float(method.GetMetricValue()),
        "stop": method.GetOptimizerStopConditionDescription(),
    }
    return result, info


def _register_sitk(fixed: sitk.Image, moving: sitk.Image, fixed_mask: sitk.Image, rigid_only: bool = False,
                   centre_initialisation: bool = True) -> tuple[sitk.AffineTransform, dict]:
    metric_mask = sitk.BinaryDilate(fixed_mask, [3, 3, 3])
    if centre_initialisation:
        initial = sitk.CenteredTransformInitializer(
            sitk.Cast(fixed_mask, sitk.sitkFloat32),
            sitk.Cast(head_mask(moving), sitk.sitkFloat32),
            sitk.Euler3DTransform(),
            sitk.CenteredTransformInitializerFilter.MOMENTS,
        )
    else:  # the scanner's own positions are the start (one session, one frame of reference)
        initial = sitk.Euler3DTransform()
        initial.SetCenter(fixed.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in fixed.GetSize()]))
    rigid, rigid_info = _sitk_stage(
        fixed, moving, metric_mask, initial, shrink=(4, 2, 1), sigmas=(2, 1, 0), iterations=200, learning_rate=2.0
    )
    parameters = {
        "initializer": ("CenteredTransformInitializer MOMENTS (head masks)" if centre_initialisation
                        else "identity (scanner positions)"),
        "metric": f"MattesMutualInformation {SITK_HISTOGRAM_BINS} bins",
        "sampling": {"strategy": "RANDOM", "samples_per_level": SITK_SAMPLES, "seed": SITK_SEED},
        "optimizer": "RegularStepGradientDescent, scales from physical shift",
        "rigid": rigid_info,
    }
    if rigid_only:
        return as_affine(rigid), parameters
    affine, affine_info = _sitk_stage(
        fixed, moving, metric_mask, as_affine(rigid), shrink=(2, 1), sigmas=(1, 0), iterations=200, learning_rate=1.0
    )
    parameters["affine"] = affine_info
    return as_affine(affine), parameters


# --------------------------------------------------------------------------------------------------- elastix


def _to_itk(image: sitk.Image) -> Any:
    import itk

    array = sitk.GetArrayFromImage(sitk.Cast(image, sitk.sitkFloat32))
    result = itk.image_from_array(np.ascontiguousarray(array))
    result.SetOrigin([float(v) for v in image.GetOrigin()])
    result.SetSpacing([float(v) for v in image.GetSpacing()])
    result.SetDirection(itk.matrix_from_array(np.array(image.GetDirection(), dtype=np.float64).reshape(3, 3)))
    return result


def elastix_parameter_object(itk_module: Any, resolutions: int = 3, rigid_only: bool = False,
                             centre_initialisation: bool = True) -> Any:
    """elastix's default rigid + affine parameter maps (or rigid alone), tuned for speed and reproducibility;
    the rigid stage starts from the centres of gravity, or from the scanner's positions."""
    parameter_object = itk_module.ParameterObject.New()
    for name in ("rigid",) if rigid_only else ("rigid", "affine"):
        parameter_map = parameter_object.GetDefaultParameterMap(name, resolutions)
        parameter_map["WriteResultImage"] = ["false"]
        parameter_map["RandomSeed"] = [str(ELASTIX_SEED)]
        if name == "rigid" and centre_initialisation:
            parameter_map["AutomaticTransformInitialization"] = ["true"]
            parameter_map["AutomaticTransformInitializationMethod"] = ["CenterOfGravity"]
        parameter_object.AddParameterMap(parameter_map)
    return parameter_object


def transform_parameter_maps(transform_parameter_object: Any) -> list[dict[str, tuple[str, ...]]]:
    """The maps of an elastix TransformParameterObject as plain dicts, first stage first."""
    return [
        {key: tuple(value) for key, value in dict(transform_parameter_object.GetParameterMap(i)).items()}
        for i in range(transform_parameter_object.GetNumberOfParameterMaps())
    ]


def _register_elastix(fixed: sitk.Image, moving: sitk.Image, rigid_only: bool = False,
                      centre_initialisation: bool = True) -> tuple[sitk.AffineTransform, dict]:
    import itk

    parameter_object = elastix_parameter_object(itk, rigid_only=rigid_only,
                                                centre_initialisation=centre_initialisation)
    _, transform_parameter_object = itk.elastix_registration_method(
        _to_itk(fixed),
        _to_itk(moving),
        parameter_object=parameter_object,
        log_to_console=False,
    )
    maps = transform_parameter_maps(transform_parameter_object)
    parameters = {
        "parameter_maps": [{key: list(value) for key, value in dict(parameter_object.GetParameterMap(i)).items()}
                           for i in range(parameter_object.GetNumberOfParameterMaps())],
        "transform_parameter_maps": [{key: list(value) for key, value in m.items()} for m in maps],
    }
    return elastix_maps_to_affine(maps), parameters


def elastix_available() -> tuple[bool, str]:
    """Whether ``itk`` with elastix imports, and if not, why."""
    try:
        import itk

        itk.ElastixRegistrationMethod  # noqa: B018 - forces the lazy module to load
    except Exception as exc:  # ImportError, or a broken binary wheel
        return False, f"{type(exc).__name__}: {exc}"
    return True, ""


# --------------------------------------------------------------------------------------------------- entry point


def register_affine(fixed: sitk.Image, moving: sitk.Image, method: Method = "elastix", *, rigid_only: bool = False,
                    centre_initialisation: bool = True) -> RegistrationResult:
    """Register ``moving`` (follow-up) onto ``fixed`` (baseline): rigid, then affine (12 DOF).

    Args:
        fixed: the baseline, prepared by :func:`prepare_for_registration`.
        moving: the follow-up, prepared the same way.
        method: ``"elastix"`` (itk-elastix; falls back to SimpleITK when not installed) or ``"sitk"``.
        rigid_only: stop after the rigid stage (6 DOF): the sequences of one session.
        centre_initialisation: start from the centres of gravity (different sessions), else from the
            scanner's positions (one frame of reference).

    Returns:
        A :class:`RegistrationResult` whose ``transform`` maps fixed LPS mm to moving LPS mm.
    """
    if method not in ("elastix", "sitk"):
        raise ValueError(f"unknown registration method {method!r}")
    fixed = sitk.Cast(fixed, sitk.sitkFloat32)
    moving = sitk.Cast(moving, sitk.sitkFloat32)
    fixed_mask = head_mask(fixed)
    ncc_before = normalized_cross_correlation(fixed, moving, sitk.Transform(), fixed_mask)
    label: str = method
    if method == "elastix":
        available, reason = elastix_available()  # the first import of itk takes seconds: not timed
        if not available:
            label = f"sitk (elastix not installed: {reason})"
    start = time.perf_counter()
    if label == "elastix":
        transform, parameters = _register_elastix(fixed, moving, rigid_only, centre_initialisation)
    else:
        transform, parameters = _register_sitk(fixed, moving, fixed_mask, rigid_only, centre_initialisation)
    seconds = time.perf_counter() - start
    ncc_after = normalized_cross_correlation(fixed, moving, transform, fixed_mask)
    return RegistrationResult(
        transform=transform,
        method=label,
        ncc_before=ncc_before,
        ncc_after=ncc_after,
        seconds=seconds,
        parameters=parameters,
    )
