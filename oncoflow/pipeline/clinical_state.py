"""What a clinician enters for a time point: the clinical status and the corticosteroid dose.

RANO 2.0 reads both (docs/response-criteria.md): clinical deterioration not attributable to other causes is
progression, a CR needs no more than a physiological steroid dose, and a PR or MR needs a dose no higher than at
baseline. Neither can be seen on an image, so a doctor or radiologist enters them
(``PUT /oncoflow/studies/{StudyInstanceUID}/clinical-state``); they are stored per study
(:meth:`~oncoflow.pipeline.job_store.JobStore.set_clinical_state`) and read by the patient timeline as
:class:`~oncoflow.measure.rano_response.ClinicalState`. Nothing entered means "not known", never "stable".
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from oncoflow.measure.rano_response import ClinicalState, ClinicalStatus

CLINICAL_STATUSES: tuple[ClinicalStatus, ...] = ("improved", "stable", "worse")
MAX_STEROID_MG_PER_DAY = 100.0  # dexamethasone-equivalent; far above any clinical dose, so a typo is refused
_FIELDS = frozenset({"status", "steroid_mg_per_day"})


class ClinicalEntryError(ValueError):
    """The entry cannot be recorded; the message says which field and why."""


@dataclass(frozen=True)
class ClinicalEntry:
    """One entry: ``status`` improved / stable / worse, ``steroid_mg_per_day`` the dexamethasone-equivalent
    dose in mg per day (0 for none); ``None`` for what is not known."""

    status: ClinicalStatus | None
    steroid_mg_per_day: float | None

    @classmethod
    def parse(cls, body: bytes | str) -> ClinicalEntry:
        """The entry in a request body, ``{"status": ..., "steroid_mg_per_day": ...}`` (both keys required;
        ``null`` for not known). Raises :class:`ClinicalEntryError`."""
        try:
            payload = json.loads(body or b"")
        except (ValueError, UnicodeDecodeError) as exc:
            raise ClinicalEntryError(f"the body is not JSON: {exc}") from exc
        if not isinstance(payload, dict) or set(payload) != _FIELDS:
            raise ClinicalEntryError('the body must be {"status": "improved" | "stable" | "worse" | null, '
                                     '"steroid_mg_per_day": number | null}')
        status, dose = payload["status"], payload["steroid_mg_per_day"]
        if status is not None and status not in CLINICAL_STATUSES:
            raise ClinicalEntryError(f"status must be one of {', '.join(CLINICAL_STATUSES)} or null, not {status!r}")
        if dose is not None:
            if isinstance(dose, bool) or not isinstance(dose, int | float) or not math.isfinite(dose):
                raise ClinicalEntryError(f"steroid_mg_per_day must be a number or null, not {dose!r}")
            if not 0.0 <= dose <= MAX_STEROID_MG_PER_DAY:
                raise ClinicalEntryError(f"steroid_mg_per_day must be between 0 and {MAX_STEROID_MG_PER_DAY:g} "
                                         f"(dexamethasone-equivalent mg/day), not {dose:g}")
            dose = float(dose)
        return cls(cast("ClinicalStatus | None", status), dose)


def clinical_state_of(stored: Mapping[str, Any] | None) -> ClinicalState:
    """A stored entry (a row of ``clinical_states``, or ``None``) as the response rules read it."""
    if not stored:
        return ClinicalState()
    dose = stored.get("steroid_mg_per_day")
    return ClinicalState(cast("ClinicalStatus | None", stored.get("status")), None if dose is None else float(dose))
