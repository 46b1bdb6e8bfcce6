"""``make bench-longitudinal`` (second part): lesion-by-lesion response assessment over multi-lesion phantom patients.

Patients: :func:`oncoflow.phantoms.multi_lesion_phantom.make_multi_lesion_case` on the **Colin27** anatomy (never
MNI152, the anatomy the demo nnU-Nets were trained on), the longitudinal phantom's lesion shape model
(``Lesion``: ellipsoids with lobes) and its T1c-like appearance (enhancing rim, optional necrotic core), head
motion and a scanner grid drawn per visit. The scenarios of ``SCENARIOS`` are cycled (stable, new lesion,
disappearing lesion, complete response, progression after response, one grows while the total stays stable),
with 1-4 lesions, every patient scanned ``ONCOFLOW_BENCH_VISITS`` (default 3) times.

Every visit is measured with the patient timeline's own functions (``oncoflow.pipeline.lesion_tracking``):
``lesions_of`` -> ``first_visit`` / ``follow_visit`` (each visit registered onto the one before it with
``compare(...).follow_up_to_baseline_lps``, as ``PatientTimeline._to_previous``) -> ``lesion_row`` ->
``response_time_point`` -> ``current_response`` (``CRITERIA["rano2-volumetric"]``, the default). Modes:

* ``truth``: the phantom's truth tumour mask stands in for the panel;
* ``panel``: the three demo nnU-Nets (T1c) segment every visit, fused by majority vote. The registration of a
  visit pair is the one of the truth pass (it sees only the two images, the same in both modes).

The true response category comes from an independent oracle in this file (:func:`oracle_categories`), which
reads only the phantom's true per-lesion volumes and its truth label maps (measurability by
:func:`oracle_measurable`), never the code it checks.

Writes ``bench/results/<NAME>-<UTC>.json`` and ``bench/results/<NAME>-latest.json`` (``ONCOFLOW_BENCH_NAME``,
default ``longitudinal-lesions``) after every patient, so a stopped run keeps what it measured. Environment:
``ONCOFLOW_BENCH_PATIENTS`` (40), ``ONCOFLOW_BENCH_VISITS`` (0: per scenario), ``ONCOFLOW_BENCH_MODES``
(``truth,panel``), ``ONCOFLOW_BENCH_FIRST_INDEX`` (start the plan there), ``ONCOFLOW_BENCH_DEADLINE_UTC`` (no
new patient after it). Parts of the plan run side by side are joined with ``--merge <json>...`` (an ``--oracle``
run's JSON among them replaces the runs' true categories by the oracle of the current code).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

RESULTS = Path(__file__).resolve().parent / "results"
N_PATIENTS = int(os.environ.get("ONCOFLOW_BENCH_PATIENTS", "40"))
N_VISITS = int(os.environ.get("ONCOFLOW_BENCH_VISITS", "0"))  # 0: per scenario, SCENARIO_VISITS
MODES = tuple(m.strip() for m in os.environ.get("ONCOFLOW_BENCH_MODES", "truth,panel").split(",") if m.strip())
FIRST_SEED = int(os.environ.get("ONCOFLOW_BENCH_FIRST_SEED", "18000"))
FIRST_INDEX = int(os.environ.get("ONCOFLOW_BENCH_FIRST_INDEX", "0"))  # start the plan here (runs side by side)
NAME = os.environ.get("ONCOFLOW_BENCH_NAME", "longitudinal-lesions")  # results/<NAME>-<UTC>.json, <NAME>-latest.json
DEADLINE_UTC = os.environ.get("ONCOFLOW_BENCH_DEADLINE_UTC")  # e.g. 2026-12-07T18:00:00: no new patient after it
ANATOMY = "colin27"
JOIN_MM = 5.0  # ONCOFLOW_LESION_JOIN_MM's default
# visits per scenario (the 2 cores this runs on): 3 where the course needs a nadir or a later visit (a response
# before the complete response, a new lesion seen again after its first visit), 2 elsewhere
SCENARIO_VISITS = {"stable": 2, "new lesion": 3, "disappearing lesion": 2, "complete response": 3,
                   "progression after response": 3, "one grows, total stable": 2}
GOALS = {"truth": {"matching_accuracy": 0.98, "category_accuracy": 0.98},
         "panel": {"category_accuracy": 0.90, "ci_coverage": 0.90, "lesion_change_median_abs_error_points": 5.0}}

# --- the oracle: RANO 2.0 volumetric from the phantom's truth, written apart from oncoflow.measure --------------

ORACLE_PR_PERCENT = -65.0  # sum of target volumes against baseline
ORACLE_PD_PERCENT = 40.0  # sum of target volumes against the nadir (smallest sum so far, baseline included)
ORACLE_MAX_TARGETS = 3
ORACLE_MIN_DIAMETER_MM = 10.0  # both diameters; 2 x the slice thickness when that is larger; >= 2 axial slabs
ORACLE_CONFIRMATION_DAYS = 28


def oracle_measurable(mask: npt.NDArray[np.bool_], affine_lps: npt.NDArray[np.float64],
                      slice_thickness_mm: float) -> bool:
    """Whether one true lesion is measurable (RANO 2.0, docs/response-criteria.md section 2): on the axial cross-
    section with the most voxels, the longest in-plane distance between voxel centres and the longest chord
    perpendicular to it that crosses it are both at least ``max(10 mm, 2 x slice thickness)``, and the lesion
    lies on at least 2 axial slabs. Axial slabs: voxel centres binned on LPS z by the z-step of the grid axis
    closest to z. The perpendicular chord at a position along the longest diameter: the spread across it of the
    voxel centres within half an in-plane voxel of that position. A simple calculation of its own (brute-force
    pairs, binning), not the system's callipers."""
    index = np.argwhere(mask)
    if len(index) == 0:
        return False
    points = index @ affine_lps[:3, :3].T + affine_lps[:3, 3]
    step = float(np.max(np.abs(affine_lps[2, :3])))
    slabs = np.round((points[:, 2] - points[:, 2].min()) / step).astype(int)
    values, counts = np.unique(slabs, return_counts=True)
    if len(values) < 2:
        return False
    xy = points[slabs == values[int(np.argmax(counts))], :2]
    if len(xy) < 2:
        return False
    d2 = ((xy[:, None, :] - xy[None, :, :]) ** 2).sum(axis=-1)
    i, j = np.unravel_index(int(np.argmax(d2)), d2.shape)
    longest = float(np.sqrt(d2[i, j]))
    if longest == 0:
        return False
    along = (xy[j] - xy[i]) / longest
    across = np.array([-along[1], along[0]])
    s, t = (xy - xy[i]) @ along, (xy - xy[i]) @ across
    half = 0.5 * float(np.max(np.linalg.norm(affine_lps[:2, :3], axis=0)))  # half the largest in-plane step
    width = 0.0
    for position in np.unique(np.round(s / half) * half):
        if 0.0 <= position <= longest:
            chord = t[np.abs(s - position) <= half]
            if chord.min() <= 1e-6 and chord.max() >= -1e-6:  # it crosses the longest diameter
                width = max(width, float(chord.max() - chord.min()))
    minimum = max(ORACLE_MIN_DIAMETER_MM, 2.0 * slice_thickness_mm)
    return longest >= minimum and width >= minimum


def oracle_categories(volumes: Sequence[Sequence[float]], measurable: Sequence[Sequence[bool]]) -> list[str]:
    """True RANO 2.0 volumetric category of every follow-up (``volumes[1:]``).

    ``volumes[t][k]``: true volume (cm³) of lesion ``k`` at visit ``t`` (0 when absent); ``measurable[t][k]``
    its measurability there. Targets: the up to 3 largest lesions measurable at baseline. PD: the target sum
    >= +40 % from the nadir, or back above 0 after it reached 0, or a lesion seen for the first time (absent at
    every earlier visit) that is measurable; else CR: every lesion gone; PR: target sum <= -65 % from baseline;
    else SD. No targets: PD (new measurable lesion) or SD."""
    n_lesions = len(volumes[0])
    targets = sorted((k for k in range(n_lesions) if volumes[0][k] > 0 and measurable[0][k]),
                     key=lambda k: -volumes[0][k])[:ORACLE_MAX_TARGETS]
    sums = [sum(v[k] for k in targets) for v in volumes]
    categories = []
    for t in range(1, len(volumes)):
        nadir = min(sums[:t])
        new = [k for k in range(n_lesions) if volumes[t][k] > 0 and all(volumes[s][k] == 0 for s in range(t))]
        back = bool(targets) and nadir == 0 and sums[t] > 0  # disease back after the sum reached 0
        grown = bool(targets) and nadir > 0 and 100.0 * (sums[t] - nadir) / nadir >= ORACLE_PD_PERCENT
        if any(measurable[t][k] for k in new) or back or grown:
            categories.append("PD")
        elif not targets:
            categories.append("SD")
        elif all(v == 0 for v in volumes[t]):
            categories.append("CR")
        elif 100.0 * (sums[t] - sums[0]) / sums[0] <= ORACLE_PR_PERCENT:
            categories.append("PR")
        else:
            categories.append("SD")
    return categories


def oracle_confirmations(categories: Sequence[str], dates: Sequence[date]) -> list[str]:
    """Confirmation of each follow-up's category (``dates[0]`` is the baseline): a CR or PR is "confirmed" when an
    earlier follow-up of the unbroken run of CR/PR just before it, at least 28 days earlier, was as good or
    better (CR better than PR), else "preliminary"; SD and PD need none ("not needed")."""
    rank = {"CR": 0, "PR": 1}
    out = []
    for t, category in enumerate(categories):
        if category not in rank:
            out.append("not needed")
            continue
        state = "preliminary"
        for s in range(t - 1, -1, -1):
            if categories[s] not in rank:
                break
            if rank[categories[s]] <= rank[category] and (dates[t + 1] - dates[s + 1]).days >= ORACLE_CONFIRMATION_DAYS:
                state = "confirmed"
                break
        out.append(state)
    return out


# --- metrics: pure helpers ---------------------------------------------------------------------------------------


def majority_true_label(labels: npt.NDArray[np.uint8], lesion_mask: npt.NDArray[np.bool_]) -> int:
    """The true lesion (1-based) holding most of a system lesion's voxels; 0 when it covers no true lesion."""
    inside = labels[lesion_mask]
    inside = inside[inside > 0]
    return 0 if len(inside) == 0 else int(np.bincount(inside).argmax())


def matching_checks(visits: Sequence[Mapping[int, tuple[str, str] | None]], present: Sequence[Sequence[int]]
                    ) -> list[dict[str, Any]]:
    """Whether each true lesion's tracking identity is right, per (visit, true lesion present there).

    ``visits[t][k]``: ``(identifier, status)`` of the system lesion holding most of true lesion ``k`` at visit
    ``t`` (the identifier as the response reads it: ``split_from`` or ``tracking_id``), ``None`` when no system
    lesion covers it; ``present[t]``: the true lesions present at ``t``. Correct when: the lesion is found; at
    its first appearance, status "baseline" (visit 0) or "new" (later) with an identifier no other true lesion
    has had; later, the identifier of its first appearance; and no other true lesion present at ``t`` has the
    same identifier."""
    reference: dict[int, str] = {}
    owner: dict[str, int] = {}  # identifier -> the true lesion that first had it
    checks = []
    for t, lesions in enumerate(present):
        found = visits[t]
        ids_here = [found[k][0] for k in lesions if found.get(k) is not None]  # type: ignore[index]
        for k in lesions:
            entry = found.get(k)
            first = k not in reference and all(k not in present[s] for s in range(t))
            if entry is None:
                ok, why = False, "not found"
            else:
                name, status = entry
                if ids_here.count(name) > 1:
                    ok, why = False, f"{name} shared with another true lesion"
                elif first:
                    ok = status == ("baseline" if t == 0 else "new") and owner.get(name, k) == k
                    why = "" if ok else f"first appearance tracked as {name} ({status})"
                elif k not in reference:  # missed at its first appearance (counted there): its own identifier now
                    ok = owner.get(name, k) == k
                    why = "" if ok else f"found late as {name}, another lesion's identifier"
                else:
                    ok = reference.get(k) == name
                    why = "" if ok else f"tracked as {name}, was {reference.get(k)}"
                if k not in reference and (first or ok):
                    reference[k] = name
                owner.setdefault(name, k)
            checks.append({"visit": t, "lesion": k, "correct": ok, **({"why": why} if why else {})})
    return checks


def covered(ci: Sequence[float] | None, truth: float) -> bool | None:
    """Whether ``truth`` lies in the interval ``ci`` (``None``: no interval)."""
    return None if ci is None else bool(ci[0] <= truth <= ci[1])


def rate(values: Sequence[bool | None]) -> float | None:
    kept = [bool(v) for v in values if v is not None]
    return None if not kept else round(float(np.mean(kept)), 3)


# --- the run -----------------------------------------------------------------------------------------------------


def plan(n_patients: int, n_visits: int) -> list[tuple[int, str, int, int]]:
    """``(seed, scenario, number of lesions, visits)`` per patient: scenarios cycled, lesions cycled over what each
    allows; ``n_visits`` visits each (0: ``SCENARIO_VISITS``)."""
    from oncoflow.phantoms.multi_lesion_phantom import _SCENARIO_MIN_LESIONS, MAX_LESIONS, SCENARIOS

    rows = []
    for i in range(FIRST_INDEX, n_patients):
        scenario = SCENARIOS[i % len(SCENARIOS)]
        low = _SCENARIO_MIN_LESIONS[scenario]
        rows.append((FIRST_SEED + i, scenario, low + (i // len(SCENARIOS)) % (MAX_LESIONS - low + 1),
                     n_visits or SCENARIO_VISITS[scenario]))
    return rows


def change_ci95(previous: dict[str, Any], current: dict[str, Any]) -> tuple[float, float] | None:
    """THE place where the panel's 95 % interval of the reported change is computed (CI coverage is measured on
    it): the interval the pipeline reports for a pair of visits, the leave-one-expert-out re-fusion jackknife of
    the change between the two fused volumes (``longitudinal_comparison.change_ci95_from_masks``: each visit fused
    by majority vote as the job fuses it, the same expert left out at both visits), from both visits' expert
    masks, each measured on its own grid."""
    from oncoflow.measure.longitudinal_comparison import change_ci95_from_masks

    ci = change_ci95_from_masks(previous["expert_masks"], current["expert_masks"],
                                previous["volume"].voxel_volume_mm3, current["volume"].voxel_volume_mm3,
                                strategy="majority", driving_region="TC")
    return None if ci is None else (float(ci.low), float(ci.high))


def run_patient(case: Any, experts: Sequence[Any], criteria: Any, thresholds: Any,
                registrations: dict[int, npt.NDArray[np.float64]], mode: str) -> dict[str, Any]:
    """One patient in one mode, measured as the timeline measures it."""
    from oncoflow.measure.fusion import majority_vote
    from oncoflow.measure.longitudinal_comparison import TimePointData, compare
    from oncoflow.measure.mask_metrics import volume_cm3
    from oncoflow.pipeline.lesion_tracking import (
        current_response,
        first_visit,
        follow_visit,
        lesion_row,
        lesions_of,
        response_json,
        response_time_point,
    )

    started = time.perf_counter()
    visits: list[dict[str, Any]] = []
    for tp in case.time_points:
        volume = tp.phantom.volume
        if mode == "truth":
            mask = tp.phantom.tumour_mask.astype(np.uint8)
            expert_masks = {"truth": mask}
        else:
            expert_masks = {e.name: e.predict(volume.voxels, volume.spacing_mm).mask for e in experts}
            mask = majority_vote(expert_masks)
        visits.append({"volume": volume, "mask": mask, "expert_masks": expert_masks,
                       "expert_volumes": {n: volume_cm3(m, volume.voxel_volume_mm3) for n, m in expert_masks.items()},
                       "brain": tp.phantom.brain_mask, "date": tp.study_date})
    segment_s = time.perf_counter() - started

    tracked, comparisons = [], [None]
    register_s = 0.0
    for t, visit in enumerate(visits):
        lesions = lesions_of(visit["mask"], visit["volume"], JOIN_MM)
        if t == 0:
            tracked.append(first_visit(lesions))
            continue
        before = visits[t - 1]
        comparison = None
        if t not in registrations:  # the timeline's _to_previous: compare the visit with the one before
            clock = time.perf_counter()
            points = [TimePointData(f"{case.patient_id}-{s}", v["date"], v["volume"], v["mask"], v["expert_volumes"],
                                    v["brain"]) for s, v in ((t - 1, before), (t, visit))]
            comparison = compare(points[0], points[1], thresholds, "elastix")
            register_s += time.perf_counter() - clock
            registrations[t] = comparison.follow_up_to_baseline_lps
        visit["to_previous"] = registrations[t]
        used = sorted({i for k in range(t) for i in (*tracked[k].tracking_ids.values(), *tracked[k].ended_ids)})
        tracked.append(follow_visit(tracked[t - 1], before["volume"], lesions, visit["volume"], registrations[t], used))
        comparisons.append(comparison)

    rows = [[lesion_row(tracked[t], lesion, target=False) for lesion in tracked[t].lesions.lesions]
            for t in range(len(visits))]
    points = [response_time_point(v["date"], rows[t], criteria) for t, v in enumerate(visits)]
    responses = [current_response(points[: t + 1], criteria) for t in range(1, len(visits))]

    # truth per visit (the phantom's own): volumes, measurability (oracle), categories
    true_volumes = [list(tp.lesion_volumes_cm3) for tp in case.time_points]
    truth = true_response(case)
    true_measurable, true_categories, true_confirmations = truth["measurable"], truth["categories"], \
        truth["confirmations"]

    # identity: the system lesion (and its identifier) holding most of each true lesion at each visit
    identity: list[dict[int, tuple[str, str] | None]] = []
    for t, tp in enumerate(case.time_points):
        by_label = {int(r["label"]): r for r in rows[t]}
        best: dict[int, tuple[int, int]] = {}  # true lesion -> (voxels, system label)
        false_positive = 0
        for lesion in tracked[t].lesions.lesions:
            own = tracked[t].lesions.mask(lesion.label)
            inside = tp.lesion_labels[own]
            counts = np.bincount(inside, minlength=case.n_lesions + 1)
            if counts[1:].sum() == 0:
                false_positive += 1
            for k in range(1, case.n_lesions + 1):
                if counts[k] > best.get(k, (0, 0))[0]:
                    best[k] = (int(counts[k]), lesion.label)
        found: dict[int, tuple[str, str] | None] = {}
        for k in tp.present_labels:
            row = by_label[best[k][1]] if k in best else None
            found[k] = None if row is None else (str(row.get("split_from") or row["tracking_id"]), str(row["status"]))
        identity.append(found)
        visits[t]["false_positive_lesions"] = false_positive
    checks = matching_checks(identity, [tp.present_labels for tp in case.time_points])

    # per-lesion % change from baseline: the identifier that holds true lesion k at baseline, in the response's sums
    lesion_changes = []
    baseline_names = {k: v[0] for k, v in identity[0].items() if v is not None}
    for k in case.time_points[0].present_labels:
        name = baseline_names.get(k)
        shared = name is not None and list(baseline_names.values()).count(name) > 1
        for t in range(1, len(visits)):
            truth = 100.0 * (true_volumes[t][k - 1] - true_volumes[0][k - 1]) / true_volumes[0][k - 1]
            entry: dict[str, Any] = {"visit": t, "lesion": k, "true_percent": round(truth, 2)}
            if name is None or shared:
                entry["unmatched"] = "not found at baseline" if name is None else f"{name} holds several true lesions"
            else:
                base = points[0].lesions[name].value
                now = points[t].lesions[name].value if name in points[t].lesions else 0.0
                measured = 100.0 * (now - base) / base
                entry |= {"percent": round(measured, 2), "error_points": round(measured - truth, 2)}
            lesion_changes.append(entry)

    follow_ups = []
    for t in range(1, len(visits)):
        response = responses[t - 1]
        assert response is not None
        true_previous, true_now = sum(true_volumes[t - 1]), sum(true_volumes[t])
        true_change = None if true_previous == 0 else 100.0 * (true_now - true_previous) / true_previous
        fused_previous = volume_cm3(visits[t - 1]["mask"], visits[t - 1]["volume"].voxel_volume_mm3)
        fused_now = volume_cm3(visits[t]["mask"], visits[t]["volume"].voxel_volume_mm3)
        fused_change = None if fused_previous == 0 else 100.0 * (fused_now - fused_previous) / fused_previous
        ci = change_ci95(visits[t - 1], visits[t]) if mode == "panel" else None
        follow_ups.append({
            "visit": t, "category": response.category, "true_category": true_categories[t - 1],
            "category_correct": response.category == true_categories[t - 1],
            "confirmation": response.confirmation, "true_confirmation": true_confirmations[t - 1],
            "response": response_json(response, criteria),
            "true_change_from_previous_percent": None if true_change is None else round(true_change, 2),
            "change_from_previous_percent": None if fused_change is None else round(fused_change, 2),
            "change_ci95": None if ci is None else [round(ci[0], 2), round(ci[1], 2)],
            "ci_covers_truth": None if ci is None or true_change is None else covered(ci, true_change),
            "false_positive_lesions": visits[t]["false_positive_lesions"],
        })
    return {
        "follow_ups": follow_ups, "matching": checks, "lesion_changes": lesion_changes,
        "lesions_per_visit": [len(r) for r in rows],
        "true_targets_measurable_at_baseline": true_measurable[0],
        "segment_s": round(segment_s, 1), "register_s": round(register_s, 1),
        "seconds": round(time.perf_counter() - started, 1),
    }


def summarise(patients: list[dict[str, Any]], mode: str) -> dict[str, Any]:
    runs = [p[mode] for p in patients if mode in p]
    follow = [f for r in runs for f in r["follow_ups"]]
    checks = [c for r in runs for c in r["matching"]]
    changes = [c for r in runs for c in r["lesion_changes"]]
    errors = np.abs([c["error_points"] for c in changes if "error_points" in c])
    by_scenario: dict[str, list[bool]] = {}
    for p in patients:
        if mode in p:
            by_scenario.setdefault(p["scenario"], []).extend(f["category_correct"] for f in p[mode]["follow_ups"])
    confusion: dict[str, int] = {}
    for f in follow:
        key = f"{f['true_category']}->{f['category']}"
        confusion[key] = confusion.get(key, 0) + 1
    responses = [f for f in follow if f["true_category"] in ("CR", "PR") and f["category"] == f["true_category"]]
    return {
        "n_patients": len(runs), "n_patients_failed": sum(f"{mode}_error" in p for p in patients),
        "n_follow_ups": len(follow), "n_lesion_visits": len(checks),
        "matching_accuracy": rate([c["correct"] for c in checks]),
        "category_accuracy": rate([f["category_correct"] for f in follow]),
        "category_accuracy_by_scenario": {k: rate(v) for k, v in by_scenario.items()},
        "confusion_true_to_measured": dict(sorted(confusion.items())),
        "confirmation_agreement_where_category_right": rate([f["confirmation"] == f["true_confirmation"]
                                                             for f in responses]),
        "ci_coverage": rate([f["ci_covers_truth"] for f in follow]),
        "n_with_ci": sum(f["ci_covers_truth"] is not None for f in follow),
        "ci_width_median_points": None if not any(f["change_ci95"] for f in follow) else round(float(np.median(
            [f["change_ci95"][1] - f["change_ci95"][0] for f in follow if f["change_ci95"]])), 1),
        "lesion_change_median_abs_error_points": None if not len(errors) else round(float(np.median(errors)), 2),
        "lesion_change_p95_abs_error_points": None if not len(errors) else round(float(np.percentile(errors, 95)), 2),
        "n_lesion_changes": len(errors),
        "n_lesion_changes_unmatched": sum("unmatched" in c for c in changes),
        "false_positive_lesions": sum(f["false_positive_lesions"] for f in follow),
        "seconds_per_patient_median": None if not runs else round(float(np.median([r["seconds"] for r in runs])), 1),
    }


def write(patients: list[dict[str, Any]], started: float, stamp: str, modes: Sequence[str] = MODES,
          name: str = NAME) -> dict[str, Any]:
    result = {
        "benchmark": "longitudinal-lesions",
        "utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "make bench-longitudinal",
        "n_patients_planned": N_PATIENTS,
        "visits_per_patient": N_VISITS or SCENARIO_VISITS,
        "anatomy": ANATOMY, "criteria": "rano2-volumetric", "registration": "elastix, each visit onto the one before",
        "experts": ["nnunet_demo", "nnunet_demo_2d", "nnunet_demo_3d_seed2"], "fusion": "majority vote",
        "modes": {mode: summarise(patients, mode) for mode in modes},
        "goals": {mode: GOALS[mode] for mode in modes},
        "seconds": round(time.perf_counter() - started, 1),
        "patients": patients,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2)
    (RESULTS / f"{name}-{stamp}.json").write_text(text + "\n")
    (RESULTS / f"{name}-latest.json").write_text(text + "\n")
    return result


def main() -> int:
    from oncoflow.core.change_thresholds import ChangeThresholds
    from oncoflow.core.config import REPO_ROOT
    from oncoflow.measure.rano_response import CRITERIA
    experts: list[Any] = []
    if "panel" in MODES:
        from oncoflow_inference.experts.nnunet_expert import NnUNetExpert

        names = ("nnunet_demo", "nnunet_demo_2d", "nnunet_demo_3d_seed2")
        experts = [NnUNetExpert(REPO_ROOT / "inference" / "model_repository" / n / "1" / "nnunet", name=n,
                                input_channels=["t1c"]) for n in names]
        for expert in experts:
            expert.load()
    criteria, thresholds = CRITERIA["rano2-volumetric"], ChangeThresholds()
    deadline = None if not DEADLINE_UTC else datetime.fromisoformat(DEADLINE_UTC).replace(tzinfo=UTC)
    started = time.perf_counter()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    patients: list[dict[str, Any]] = []
    registrations: dict[int, dict[int, npt.NDArray[np.float64]]] = {}  # seed -> visit -> 4x4 onto the visit before
    for mode in MODES:  # every patient in one mode, then the next: the truth pass first, the panel's as far as it gets
        for index, (seed, scenario, n_lesions, n_visits) in enumerate(plan(N_PATIENTS, N_VISITS)):
            if deadline is not None and datetime.now(UTC) >= deadline:
                print(f"deadline {DEADLINE_UTC} reached: {mode} stopped after {index} patients", flush=True)
                break
            clock = time.perf_counter()
            case = make_case(seed, scenario, n_lesions, n_visits)
            if index == len(patients):
                patients.append({
                    "seed": seed, "scenario": scenario, "n_lesions": case.n_lesions, "n_visits": n_visits,
                    "courses": [[round(f, 3) for f in case.course(k)] for k in range(1, case.n_lesions + 1)],
                    "true_volumes_cm3": [[round(v, 3) for v in tp.lesion_volumes_cm3] for tp in case.time_points],
                    "generate_s": round(time.perf_counter() - clock, 1)})
            row = patients[index]
            try:
                row[mode] = run_patient(case, experts, criteria, thresholds, registrations.setdefault(seed, {}), mode)
            except Exception as exc:  # noqa: BLE001 - a failed patient is recorded, the run goes on
                row[f"{mode}_error"] = f"{type(exc).__name__}: {exc}"
            print(json.dumps({"mode": mode, "seed": seed, "scenario": scenario, "n_lesions": case.n_lesions,
                              "true->measured": [(f["true_category"], f["category"]) for f in row[mode]["follow_ups"]]
                              if mode in row else row.get(f"{mode}_error"),
                              "s": round(time.perf_counter() - clock, 1)}), flush=True)
            write(patients, started, stamp)
    result = write(patients, started, stamp)
    print(json.dumps(result["modes"], indent=2))
    return 0


def make_case(seed: int, scenario: str, n_lesions: int, n_visits: int) -> Any:
    """The planned patient (four large lesions may not fit 12 mm apart in one brain: then one fewer)."""
    from oncoflow.phantoms.multi_lesion_phantom import make_multi_lesion_case

    while True:
        try:
            return make_multi_lesion_case(seed, n_visits, scenario=scenario, n_lesions=n_lesions,  # type: ignore[arg-type]
                                          anatomy=ANATOMY)
        except ValueError:
            if n_lesions <= 1:
                raise
            n_lesions -= 1


def true_response(case: Any) -> dict[str, Any]:
    """The oracle's truth for one patient: measurability per visit and lesion, category and confirmation per
    follow-up."""
    measurable = [[oracle_measurable(tp.lesion_mask(k), tp.phantom.volume.affine_lps(),
                                     float(tp.phantom.volume.spacing_mm[0])) if tp.volume_factors[k - 1] > 0
                   else False for k in range(1, case.n_lesions + 1)] for tp in case.time_points]
    categories = oracle_categories([list(tp.lesion_volumes_cm3) for tp in case.time_points], measurable)
    return {"measurable": measurable, "categories": categories,
            "confirmations": oracle_confirmations(categories, [tp.study_date for tp in case.time_points])}


def oracle_only() -> int:
    """The oracle alone over the plan (the phantoms made again, nothing measured): ``<NAME>-oracle-latest.json``."""
    out = []
    for seed, scenario, n_lesions, n_visits in plan(N_PATIENTS, N_VISITS):
        out.append({"seed": seed, **true_response(make_case(seed, scenario, n_lesions, n_visits))})
        (RESULTS / f"{NAME}-oracle-latest.json").write_text(json.dumps(out) + "\n")
        print(json.dumps(out[-1]), flush=True)
    return 0


def merge(paths: Sequence[Path]) -> int:
    """One result from runs of the same plan made apart (e.g. ``ONCOFLOW_BENCH_MODES=truth`` and ``=panel`` side by
    side on two cores): each patient's modes put together by seed, the summaries computed again, written as
    ``longitudinal-lesions-latest.json``; the seconds are those of the longest run (they ran at the same time)."""
    runs = [json.loads(path.read_text()) for path in paths]
    oracle = {row["seed"]: row for run in runs if isinstance(run, list) for row in run}  # an --oracle run
    runs = [run for run in runs if isinstance(run, dict)]
    patients: dict[int, dict[str, Any]] = {}
    for run in runs:
        for patient in run["patients"]:
            patients.setdefault(patient["seed"], {}).update(patient)
    ordered = [patients[seed] for seed in sorted(patients)]
    for patient in ordered:  # the oracle of the latest code, where it was run again apart
        truth = oracle.get(patient["seed"])
        for mode in ("truth", "panel"):
            if truth is None or mode not in patient:
                continue
            patient[mode]["true_measurable"] = truth["measurable"]
            for f, category, confirmation in zip(patient[mode]["follow_ups"], truth["categories"],
                                                 truth["confirmations"], strict=True):
                if f["true_category"] != category:
                    f["true_category_in_run"] = f["true_category"]
                f |= {"true_category": category, "category_correct": f["category"] == category,
                      "true_confirmation": confirmation}
    modes = [m for m in ("truth", "panel") if any(m in p for p in ordered)]
    result = write(ordered, time.perf_counter() - max(run["seconds"] for run in runs),
                   datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"), modes, "longitudinal-lesions")
    result["merged_from"] = [str(path) for path in paths]
    text = json.dumps(result, indent=2)
    (RESULTS / "longitudinal-lesions-latest.json").write_text(text + "\n")
    print(json.dumps(result["modes"], indent=2))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--merge":  # --merge results/a.json results/b.json [oracle.json]
        sys.exit(merge([Path(p) for p in sys.argv[2:]]))
    if sys.argv[1:] == ["--oracle"]:
        sys.exit(oracle_only())
    sys.exit(main())
