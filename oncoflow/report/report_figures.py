"""The report's pictures: segmentation overlays through the lesion, lesion views with their RANO diameters, and
the volume-over-time plot (with the sum of the target lesions).

Overlays are resampled in patient space (LPS mm, 1 mm pixels) whatever the acquisition's
orientation, and shown in radiological convention: axial and coronal views have the
patient's right on the image's left (+x, patient left, to the right); axial has anterior
up; coronal and sagittal have superior up; sagittal has anterior on the left. Each view
passes through the centroid of the lesion of its own time point, so baseline and
follow-up are each cut through their tumour. Figures use matplotlib's object API (no
pyplot state, safe in Orthanc's threads) and come back as PNG bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from oncoflow.core.volume import Volume
from oncoflow.report.png_figure import new_figure, png_bytes

if TYPE_CHECKING:
    from matplotlib.axes import Axes

View = Literal["axial", "coronal", "sagittal"]
VIEWS: tuple[View, ...] = ("axial", "coronal", "sagittal")
# For each view: the LPS unit vectors along the image's columns (left -> right) and rows (top -> bottom).
_VIEW_AXES: dict[View, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "axial": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),  # right->left of the patient across, anterior->posterior down
    "coronal": ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),  # superior at the top
    "sagittal": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),  # anterior on the left
}
OVERLAY_RGB = (1.0, 0.15, 0.1)
LONG_AXIS_RGB = (0.0, 0.9, 1.0)  # cyan: the longest diameter
PERPENDICULAR_AXIS_RGB = (0.25, 1.0, 0.25)  # green: the longest diameter perpendicular to it
TARGET_SUM_COLOUR = "#dd6b20"  # the volume plot's second series
LESION_VIEW_MIN_MM = 25.0  # the lesion view shows at least this far around the lesion's centre
REPORT_DPI = 110  # pixels per inch of the PNGs the PDF embeds


@dataclass(frozen=True)
class TimePointImage:
    """One time point's image and fused mask, for the overlay figure."""

    label: str  # e.g. "Baseline 2024-01-10"
    volume: Volume
    mask: npt.NDArray[np.uint8]  # on the volume's grid


@dataclass(frozen=True)
class VolumePoint:
    """One time point of the volume plot."""

    study_date: date
    volume_cm3: float
    ci95_cm3: tuple[float, float] | None
    is_baseline: bool = False
    is_current: bool = False
    target_sum: float | None = None  # the response's sum of the target lesions (its unit: volume_plot's)


@dataclass(frozen=True)
class LesionAxes:
    """One lesion to draw centred, with RANO's two perpendicular diameters (endpoints in the volume's LPS mm)."""

    label: str  # the panel's title, e.g. "Lesion 1 (target)"
    centroid_lps_mm: tuple[float, float, float]
    long_axis_lps_mm: tuple[tuple[float, float, float], tuple[float, float, float]] | None
    perpendicular_axis_lps_mm: tuple[tuple[float, float, float], tuple[float, float, float]] | None


def lesion_centre_mm(volume: Volume, mask: npt.NDArray[np.uint8]) -> npt.NDArray[np.float64]:
    """The mask's centroid in LPS mm, or the volume's centre when the mask is empty."""
    affine = volume.affine_lps()
    index = np.argwhere(mask > 0).mean(axis=0) if mask.any() else (np.asarray(volume.shape) - 1) / 2.0
    return (affine @ np.array([*index, 1.0]))[:3]


def _volume_extent_mm(volume: Volume) -> float:
    """The largest physical extent of the volume (mm): the field of view of every view."""
    return float(max(n * s for n, s in zip(volume.shape, volume.spacing_mm, strict=True)))


def orthogonal_slice(
    volume: Volume, mask: npt.NDArray[np.uint8], centre_mm: npt.ArrayLike, view: View, pixel_mm: float = 1.0
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """The ``view`` plane through ``centre_mm`` (LPS), sampled every ``pixel_mm``: (image, mask).

    The image is trilinear, the mask nearest-neighbour; outside the volume both are 0.
    """
    across, down = (np.asarray(v) for v in _VIEW_AXES[view])
    half = _volume_extent_mm(volume) / 2.0
    steps = np.arange(-half, half + pixel_mm / 2, pixel_mm)
    rows, cols = np.meshgrid(steps, steps, indexing="ij")
    points = np.asarray(centre_mm, np.float64)[None, None, :] + rows[..., None] * down + cols[..., None] * across
    inverse = np.linalg.inv(volume.affine_lps())
    homogeneous = np.concatenate([points, np.ones((*points.shape[:2], 1))], axis=-1)
    indices = np.moveaxis(homogeneous @ inverse.T, -1, 0)[:3]
    image = ndimage.map_coordinates(volume.voxels, indices, order=1, mode="constant", cval=0.0)
    labels = ndimage.map_coordinates(mask.astype(np.uint8), indices, order=0, mode="constant", cval=0)
    return image.astype(np.float32), labels > 0


def view_pixel(volume: Volume, centre_mm: npt.ArrayLike, point_mm: npt.ArrayLike, view: View,
               pixel_mm: float = 1.0) -> tuple[float, float]:
    """Where the LPS point ``point_mm`` falls on :func:`orthogonal_slice`'s image of ``view`` through ``centre_mm``:
    (row, column) in pixels, the point projected onto the plane."""
    across, down = (np.asarray(v) for v in _VIEW_AXES[view])
    offset = np.asarray(point_mm, np.float64) - np.asarray(centre_mm, np.float64)
    half = _volume_extent_mm(volume) / 2.0
    return float((offset @ down + half) / pixel_mm), float((offset @ across + half) / pixel_mm)


def _window(image: npt.NDArray[np.float32]) -> tuple[float, float]:
    """Display window: 1st to 99.5th percentile of the non-zero pixels."""
    values = image[image > 0]
    if values.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(values, [1.0, 99.5])
    return float(low), float(max(high, low + 1e-6))


def _draw_slice(axes: Axes, image: npt.NDArray[np.float32], labels: npt.NDArray[np.bool_], side: str) -> None:
    """The slice in grey, windowed, the mask over it in translucent red with its outline, ``side`` ("R", "A")
    written at the image's left edge."""
    low, high = _window(image)
    axes.imshow(image, cmap="gray", vmin=low, vmax=high, interpolation="nearest")
    overlay = np.zeros((*labels.shape, 4), np.float32)
    overlay[labels] = (*OVERLAY_RGB, 0.45)
    axes.imshow(overlay, interpolation="nearest")
    if labels.any():
        axes.contour(labels.astype(np.uint8), levels=[0.5], colors=[OVERLAY_RGB], linewidths=0.8)
    axes.set_xticks([])
    axes.set_yticks([])
    axes.text(0.02, 0.5, side, color="yellow", fontsize=8, transform=axes.transAxes, va="center")


def overlay_figure(time_points: Sequence[TimePointImage]) -> bytes:
    """A PNG grid: one row per view (axial, coronal, sagittal), one column per time point, mask in red."""
    columns = len(time_points)
    figure = new_figure(3.0 * columns, 8.4)
    for column, point in enumerate(time_points):
        centre = lesion_centre_mm(point.volume, point.mask)
        for row, view in enumerate(VIEWS):
            image, labels = orthogonal_slice(point.volume, point.mask, centre, view)
            axes = figure.add_subplot(len(VIEWS), columns, row * columns + column + 1)
            _draw_slice(axes, image, labels, "A" if view == "sagittal" else "R")
            if row == 0:
                axes.set_title(point.label, fontsize=9)
            if column == 0:
                axes.set_ylabel(view, fontsize=9)
    figure.tight_layout()
    return png_bytes(figure, REPORT_DPI)


def lesion_axes_figure(volume: Volume, mask: npt.NDArray[np.uint8], lesions: Sequence[LesionAxes]) -> bytes:
    """A PNG row of axial views, one per lesion, each centred on the lesion's centroid and cut through the plane
    of its diameters (the centroid's plane when it has none), zoomed on it: the mask in red, the longest diameter
    in cyan and the perpendicular one in green, drawn from their LPS endpoints with the volume's geometry."""
    figure = new_figure(3.0 * max(len(lesions), 1), 3.3)
    for column, lesion in enumerate(lesions):
        centre = np.asarray(lesion.centroid_lps_mm, np.float64)
        if lesion.long_axis_lps_mm is not None:
            centre[2] = float(np.mean([p[2] for p in lesion.long_axis_lps_mm]))
        image, labels = orthogonal_slice(volume, mask, centre, "axial")
        axes = figure.add_subplot(1, len(lesions), column + 1)
        _draw_slice(axes, image, labels, "R")
        reach = LESION_VIEW_MIN_MM
        for points, colour in ((lesion.long_axis_lps_mm, LONG_AXIS_RGB),
                               (lesion.perpendicular_axis_lps_mm, PERPENDICULAR_AXIS_RGB)):
            if points is None:
                continue
            (row0, col0), (row1, col1) = (view_pixel(volume, centre, p, "axial") for p in points)
            axes.plot([col0, col1], [row0, row1], color=colour, linewidth=1.6, solid_capstyle="butt")
            reach = max(reach, 1.5 * float(np.linalg.norm(np.subtract(points[1], points[0]))))
        middle_row, middle_col = view_pixel(volume, centre, centre, "axial")
        axes.set_xlim(middle_col - reach, middle_col + reach)
        axes.set_ylim(middle_row + reach, middle_row - reach)  # rows down: anterior up
        axes.set_title(lesion.label, fontsize=9)
    figure.tight_layout()
    return png_bytes(figure, REPORT_DPI)


def volume_plot(points: Sequence[VolumePoint], target_unit: str | None = None) -> bytes:
    """A PNG of the fused tumour volume (cm³) against study date, with each time point's 95 % CI band; where
    points have a ``target_sum``, the sum of the target lesions (in ``target_unit``): on the volume's axis in cm³,
    else on a second axis."""
    figure = new_figure(6.6, 2.8)
    import matplotlib.dates as mdates  # after new_figure: the Agg backend is chosen
    axes = figure.add_subplot()
    dates = [p.study_date for p in points]
    volumes = [p.volume_cm3 for p in points]
    with_ci = [p for p in points if p.ci95_cm3 is not None]
    if with_ci:
        axes.fill_between([p.study_date for p in with_ci], [p.ci95_cm3[0] for p in with_ci],  # type: ignore[index]
                          [p.ci95_cm3[1] for p in with_ci], color="#90cdf4", alpha=0.5,  # type: ignore[index]
                          label="95% CI, panel mean (jackknife)")
    axes.plot(dates, volumes, "-o", color="#2b6cb0", label="fused volume")
    for point in points:
        if point.is_baseline or point.is_current:
            axes.annotate("baseline" if point.is_baseline else "this study", (point.study_date, point.volume_cm3),
                          textcoords="offset points", xytext=(0, 8), ha="center", fontsize=7)
    axes.set_ylabel("tumour volume (cm³)")
    axes.set_ylim(bottom=0)
    axes.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
    axes.tick_params(axis="x", labelsize=7)
    handles, labels = axes.get_legend_handles_labels()
    sums = [p for p in points if p.target_sum is not None]
    top = axes
    if sums and target_unit == "cm³":  # volumetric criteria: on the volume's own axis
        axes.plot([p.study_date for p in sums], [p.target_sum for p in sums], "--s", color=TARGET_SUM_COLOUR,
                  markersize=4, label="sum of target lesions (cm³)")
        handles, labels = axes.get_legend_handles_labels()
    elif sums:
        second = axes.twinx()
        name = f"sum of target lesions ({target_unit or 'criteria unit'})"
        second.plot([p.study_date for p in sums], [p.target_sum for p in sums], "--s", color=TARGET_SUM_COLOUR,
                    markersize=4, label=name)
        second.set_ylabel(name, color=TARGET_SUM_COLOUR, fontsize=8)
        second.set_ylim(0, 1.15 * max(p.target_sum for p in sums) or 1.0)  # type: ignore[type-var]
        second.tick_params(axis="y", labelsize=7, colors=TARGET_SUM_COLOUR)
        more_handles, more_labels = second.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
        top = second  # drawn over the first axes: the legend goes on it
    top.legend(handles, labels, fontsize=7, loc="upper left", framealpha=0.9)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    return png_bytes(figure, REPORT_DPI)
