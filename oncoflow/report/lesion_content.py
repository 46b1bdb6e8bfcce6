"""The report's lesion-by-lesion content (RANO 2.0 / RANO-BM): the rows of the lesion table and the response, as
typed values the pipeline's report stage fills from the timeline it stored. Nothing here is computed: the layout
(:mod:`.report_pdf`) only formats these numbers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

UNIT_TEXT = {"cm3": "cm³", "mm2": "mm²", "mm": "mm"}  # the response's unit as printed


@dataclass(frozen=True)
class LesionChange:
    """A lesion against an earlier visit, matched by tracking identifier: percent changes of its volume and of its
    product of perpendicular diameters, or a note instead ("new", "gone", "split from Lesion 1", ...)."""

    volume_percent: float | None = None
    product_percent: float | None = None
    note: str | None = None


@dataclass(frozen=True)
class LesionRow:
    """One lesion of the reported study, or one seen before and not seen now (``status`` "gone")."""

    tracking_id: str  # "Lesion 1" ...
    status: str  # baseline | continued | merged | split | new | gone
    target: bool | None  # None: not yet chosen (the first visit has no response)
    measurable: bool | None  # None: not seen at this study
    not_measurable: tuple[str, ...]  # why not measurable
    volume_cm3: float | None
    longest_diameter_mm: float | None
    perpendicular_diameter_mm: float | None
    product_mm2: float | None
    merged_ids: tuple[str, ...] = ()
    split_from: str | None = None
    vs_baseline: LesionChange | None = None  # None: this study is the baseline
    vs_previous: LesionChange | None = None  # None: no earlier visit
    last_seen: date | None = None  # a gone lesion's last visit


@dataclass(frozen=True)
class ResponseSummary:
    """The response of the reported study against the first visit, as the response rules gave it."""

    criteria: str  # e.g. "RANO 2.0"
    category: str  # CR | PR | MR | SD | PD
    confirmation: str  # preliminary | confirmed | not needed
    label: str  # e.g. "PR (preliminary)"
    targets: tuple[str, ...]
    unit: str  # cm3 | mm2 | mm
    target_sum: float | None
    baseline_sum: float | None
    nadir_sum: float | None
    change_from_baseline_percent: float | None
    change_from_nadir_percent: float | None
    reasons: tuple[str, ...]

    @property
    def unit_text(self) -> str:
        return UNIT_TEXT.get(self.unit, self.unit)
