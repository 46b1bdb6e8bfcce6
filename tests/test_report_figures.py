"""The report's figures: slices in patient space, radiological convention, the mask where the lesion is."""

from __future__ import annotations

from datetime import date
from io import BytesIO

import numpy as np
from PIL import Image

from oncoflow.core.volume import Volume
from oncoflow.report.report_figures import (
    TimePointImage,
    VolumePoint,
    lesion_centre_mm,
    orthogonal_slice,
    overlay_figure,
    volume_plot,
)

from .conftest import axial_volume


def head_with_lesion() -> tuple[Volume, np.ndarray]:
    """A 40x64x64 axial volume (3x2x2 mm): a bright block on the patient's left, anterior and superior."""
    voxels = np.full((40, 64, 64), 10.0, np.float32)
    mask = np.zeros(voxels.shape, np.uint8)
    mask[28:32, 10:16, 44:52] = 1  # columns 44-51 = +x = patient's left; rows 10-15 = anterior; slices = superior
    voxels[mask > 0] = 100.0
    return axial_volume(voxels), mask


def test_lesion_centre_is_the_mask_centroid_in_lps() -> None:
    volume, mask = head_with_lesion()
    centre = lesion_centre_mm(volume, mask)
    assert np.allclose(centre, [-64 + 47.5 * 2, -64 + 12.5 * 2, -40 + 29.5 * 3])
    empty_centre = lesion_centre_mm(volume, np.zeros_like(mask))
    assert np.allclose(empty_centre, [-64 + 31.5 * 2, -64 + 31.5 * 2, -40 + 19.5 * 3])


def test_views_follow_radiological_convention() -> None:
    volume, mask = head_with_lesion()
    centre = lesion_centre_mm(volume, mask)
    axial_image, axial_mask = orthogonal_slice(volume, mask, centre, "axial")
    rows, cols = np.nonzero(axial_mask)
    middle = axial_mask.shape[0] / 2
    assert abs(cols.mean() - middle) < 2 and abs(rows.mean() - middle) < 2  # centred on the lesion
    assert axial_image[axial_mask].mean() > 90 and axial_mask.sum() == 12 * 16  # 6 rows x 8 cols at 2 mm -> 1 mm
    # the patient's left is on the image's right: a point 10 mm to the patient's left of the centre
    left = orthogonal_slice(volume, mask, centre + np.array([-10.0, 0.0, 0.0]), "axial")[1]
    assert np.nonzero(left)[1].mean() > cols.mean() + 9
    # coronal: superior up. Cutting 6 mm below the lesion's centre puts the lesion in the upper half
    coronal = orthogonal_slice(volume, mask, centre + np.array([0.0, 0.0, -6.0]), "coronal")[1]
    assert np.nonzero(coronal)[0].mean() < coronal.shape[0] / 2 - 4
    # sagittal: anterior on the left. Cutting 10 mm posterior of the lesion puts it left of centre
    sagittal = orthogonal_slice(volume, mask, centre + np.array([0.0, 10.0, 0.0]), "sagittal")[1]
    assert np.nonzero(sagittal)[1].mean() < sagittal.shape[1] / 2 - 8


def test_overlay_figure_draws_the_mask_in_red_and_the_plot_its_band() -> None:
    volume, mask = head_with_lesion()
    png = overlay_figure([TimePointImage("Baseline", volume, mask), TimePointImage("Follow-up", volume, mask)])
    pixels = np.asarray(Image.open(BytesIO(png)).convert("RGB")).astype(int)
    red = (pixels[..., 0] > 180) & (pixels[..., 1] < 110) & (pixels[..., 2] < 110)
    assert red.sum() > 100
    empty = overlay_figure([TimePointImage("No lesion", volume, np.zeros_like(mask))])
    pixels = np.asarray(Image.open(BytesIO(empty)).convert("RGB")).astype(int)
    assert ((pixels[..., 0] > 180) & (pixels[..., 1] < 110) & (pixels[..., 2] < 110)).sum() == 0
    plot = volume_plot([VolumePoint(date(2025, 1, 1), 10.0, (9.0, 11.0), is_baseline=True),
                        VolumePoint(date(2025, 4, 1), 14.0, (12.5, 15.5), is_current=True)])
    assert Image.open(BytesIO(plot)).size[0] > 400


def test_a_tall_figure_is_scaled_to_fit_the_page() -> None:
    from io import BytesIO

    from PIL import Image as PilImage
    from reportlab.lib.units import mm

    from oncoflow.report.report_pdf import MAX_IMAGE_HEIGHT_MM, _image

    png = BytesIO()
    PilImage.new("RGB", (100, 300)).save(png, format="PNG")  # three time points stacked: 1 : 3
    image = _image(png.getvalue(), 100)
    assert abs(image.drawHeight - MAX_IMAGE_HEIGHT_MM * mm) < 1e-6  # 300 mm asked, 200 mm given
    assert abs(image.drawWidth / image.drawHeight - 1 / 3) < 1e-6  # the aspect kept
    wide = BytesIO()
    PilImage.new("RGB", (300, 100)).save(wide, format="PNG")
    assert abs(_image(wide.getvalue(), 100).drawWidth - 100 * mm) < 1e-6  # a wide one keeps its width
