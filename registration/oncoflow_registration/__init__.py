"""Follow-up to baseline registration (SimpleITK, optionally itk-elastix).

Transforms follow the ITK convention: they map baseline (fixed) LPS mm to follow-up (moving) LPS mm,
which is what resampling the follow-up (or its mask) onto the baseline grid needs.
"""

from .affine_registration import RegistrationResult, normalized_cross_correlation, register_affine
from .landmark_error import brain_landmarks_mm, target_registration_error_mm
from .preprocess import head_mask, prepare_for_registration
from .sitk_volume import from_sitk, mask_to_sitk, to_sitk
from .warp import resample_to

__all__ = [
    "RegistrationResult",
    "brain_landmarks_mm",
    "from_sitk",
    "head_mask",
    "mask_to_sitk",
    "normalized_cross_correlation",
    "prepare_for_registration",
    "register_affine",
    "resample_to",
    "target_registration_error_mm",
    "to_sitk",
]
