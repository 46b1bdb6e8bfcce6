"""Lesion correspondence and tracking identifiers on boxes whose overlaps are counted by hand.

Grid: 1 mm axial, index ``(k, j, i)`` at LPS ``(i, j, k)`` mm, so a box's centroid is its mean index reversed.
Most boxes are 6 x 6 voxels in (k, j) and differ along i, so their overlaps are lengths along i times 36.
"""

from __future__ import annotations

import numpy as np
import pytest

from oncoflow.measure.lesion_instances import find_lesions
from oncoflow.measure.lesion_matching import (
    LesionEvent,
    LesionMerge,
    LesionSplit,
    MatchingCriteria,
    TimePointLesions,
    TrackedLesion,
    carry_identifiers,
    initial_identifiers,
    match_lesion_sets,
    match_lesions,
)

SHAPE = (12, 12, 90)
AFFINE = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float)


def _labels(*boxes: tuple[int, int, int]) -> np.ndarray:
    """A label image of boxes ``(label, i_start, i_stop)``, each 6 x 6 voxels in (k, j) at k, j 3..8."""
    labels = np.zeros(SHAPE, np.int32)
    for label, start, stop in boxes:
        labels[3:9, 3:9, start:stop] = label
    return labels


def _lesions(*boxes: tuple[int, int, int]) -> TimePointLesions:
    return TimePointLesions.from_label_image(_labels(*boxes), AFFINE)


def _pairs(correspondence) -> set[tuple[int, int]]:
    return {(m.baseline, m.followup) for m in correspondence.matches}


def test_time_point_lesions_from_a_label_image() -> None:
    lesions = _lesions((4, 10, 20), (7, 40, 44))
    assert lesions.ids == (4, 7)
    assert lesions.centroids_lps_mm[4] == pytest.approx((14.5, 5.5, 5.5))
    assert lesions.centroids_lps_mm[7] == pytest.approx((41.5, 5.5, 5.5))
    assert lesions.volumes_cm3 == pytest.approx({4: 0.36, 7: 0.144})
    with pytest.raises(ValueError, match="label image holds"):
        TimePointLesions({4: (0.0, 0.0, 0.0)}, {4: 1.0}, _labels((4, 0, 3), (5, 5, 8)))
    with pytest.raises(ValueError, match="different lesions"):
        TimePointLesions({4: (0.0, 0.0, 0.0)}, {5: 1.0})


def test_identity_matches_every_lesion_to_itself() -> None:
    lesions = _lesions((1, 10, 20), (2, 40, 46))
    c = match_lesions(lesions, lesions)
    assert _pairs(c) == {(1, 1), (2, 2)}
    assert all(m.method == "overlap" and m.overlap == 1.0 and m.centroid_distance_mm == 0.0 for m in c.matches)
    assert (c.new, c.disappeared, c.merges, c.splits) == ((), (), (), ())
    assert c.events() == (LesionEvent("matched", (1,), (1,)), LesionEvent("matched", (2,), (2,)))


def test_labels_need_not_agree_between_time_points() -> None:
    c = match_lesions(_lesions((1, 10, 20), (2, 40, 46)), _lesions((2, 10, 20), (1, 40, 46)))
    assert _pairs(c) == {(1, 2), (2, 1)}
    assert c.match_of_baseline(1).followup == 2 and c.match_of_followup(2).baseline == 1


def test_a_shifted_lesion_is_matched_with_its_overlap() -> None:
    # 10 voxels long, shifted by 3: overlap 7 x 36 voxels; Dice 2·7/20 = 0.7, IoU 7/13; centroids 3 mm apart.
    baseline, followup = _lesions((1, 10, 20)), _lesions((1, 13, 23))
    (m,) = match_lesions(baseline, followup).matches
    assert (m.baseline, m.followup, m.method) == (1, 1, "overlap")
    assert m.overlap == pytest.approx(0.7) and m.centroid_distance_mm == pytest.approx(3.0)
    (m,) = match_lesions(baseline, followup, MatchingCriteria(overlap_measure="iou")).matches
    assert m.overlap == pytest.approx(7 / 13)
    c = match_lesions(baseline, followup)
    assert c.overlap.shape == (1, 1) and c.overlap[0, 0] == pytest.approx(0.7)


def test_a_new_lesion_and_a_disappeared_one() -> None:
    c = match_lesions(_lesions((1, 10, 20), (2, 70, 76)), _lesions((1, 11, 21), (2, 40, 46)))
    assert _pairs(c) == {(1, 1)}
    assert c.new == (2,) and c.disappeared == (2,)
    assert LesionEvent("new", (), (2,)) in c.events() and LesionEvent("disappeared", (2,), ()) in c.events()


def test_two_lesions_growing_together_are_a_merge() -> None:
    # Baseline 1 at i 10..19 (10 long), 2 at i 24..29 (6 long); the follow-up's one lesion covers i 10..29.
    # Dice with 1: 2·10/(10 + 20) = 0.67, with 2: 2·6/(6 + 20) = 0.46: the match is 1; 2 merged into it.
    c = match_lesions(_lesions((1, 10, 20), (2, 24, 30)), _lesions((1, 10, 30)))
    assert _pairs(c) == {(1, 1)}
    assert c.matches[0].overlap == pytest.approx(2 / 3)
    assert c.overlap[1, 0] == pytest.approx(12 / 26)
    assert c.merges == (LesionMerge(1, (1, 2)),)
    assert (c.splits, c.new, c.disappeared) == ((), (), ())
    assert LesionEvent("merged", (1, 2), (1,)) in c.events()


def test_a_lesion_falling_apart_is_a_split() -> None:
    # Baseline i 10..29; follow-up 3 at i 10..15 (6 long) and 5 at i 19..29 (11 long): the larger part first.
    c = match_lesions(_lesions((1, 10, 30)), _lesions((3, 10, 16), (5, 19, 30)))
    assert _pairs(c) == {(1, 5)}
    assert c.splits == (LesionSplit(1, (5, 3)),)
    assert (c.merges, c.new, c.disappeared) == ((), (), ())
    assert LesionEvent("split", (1,), (5, 3)) in c.events()


def test_the_assignment_is_optimal_not_greedy() -> None:
    # Baseline 1: i 10..29 (20), 2: i 32..51 (20). Follow-up 1: i 20..39 (20), 2: i 0..18 (19).
    # Dice: (b1, f1) = 2·10/40 = 0.5, (b1, f2) = 2·9/39 = 0.46, (b2, f1) = 2·8/40 = 0.4, (b2, f2) = 0.
    # Greedy takes the best pair (b1, f1) and leaves b2 and f2 unmatched (sum 0.5); the optimum pairs
    # (b1, f2) and (b2, f1) (sum 0.86) although their labels are swapped.
    baseline, followup = _lesions((1, 10, 30), (2, 32, 52)), _lesions((1, 20, 40), (2, 0, 19))
    for criteria in (MatchingCriteria(), MatchingCriteria(min_contact_fraction=1.0)):
        c = match_lesions(baseline, followup, criteria)
        assert _pairs(c) == {(1, 2), (2, 1)}
        assert sorted(m.overlap for m in c.matches) == pytest.approx([0.4, 18 / 39])
        assert c.new == () and c.disappeared == ()


def test_a_shrunken_lesion_beside_where_it_was_is_matched_by_distance() -> None:
    # Baseline i 10..29 (centroid x 19.5); follow-up i 33..34 (x 33.5): no overlap, 14 mm apart. A second
    # baseline lesion far away (x 72.5) stays disappeared.
    baseline, followup = _lesions((1, 10, 30), (2, 70, 76)), _lesions((1, 33, 35))
    c = match_lesions(baseline, followup)
    (m,) = c.matches
    assert (m.baseline, m.followup, m.method, m.overlap) == (1, 1, "distance", 0.0)
    assert m.centroid_distance_mm == pytest.approx(14.0)
    assert c.disappeared == (2,) and c.new == ()
    c = match_lesions(baseline, followup, MatchingCriteria(max_centroid_distance_mm=13.0))
    assert c.matches == () and c.new == (1,) and c.disappeared == (1, 2)


def test_a_remnant_inside_the_old_lesion_is_matched_by_contact() -> None:
    # 2 mm of 40 left inside: Dice 2·2/42 = 0.095 < 0.1, but all the remnant is inside (contact 1.0).
    c = match_lesions(_lesions((1, 10, 50)), _lesions((1, 47, 49)))
    (m,) = c.matches
    assert m.method == "overlap" and m.overlap == pytest.approx(4 / 42)
    assert m.centroid_distance_mm == pytest.approx(47.5 - 29.5)  # too far for the distance rule
    assert c.new == () and c.disappeared == ()


def test_centroids_alone_are_matched_by_optimal_distance() -> None:
    # b1 (0, 0, 0), b2 (10, 0, 0); f1 (6, 0, 0), f2 (-3, 0, 0): (b1, f2) + (b2, f1) = 7 mm beats 6 + 13.
    baseline = TimePointLesions({1: (0.0, 0.0, 0.0), 2: (10.0, 0.0, 0.0)}, {1: 1.0, 2: 1.0})
    followup = TimePointLesions({1: (6.0, 0.0, 0.0), 2: (-3.0, 0.0, 0.0), 3: (60.0, 0.0, 0.0)},
                                {1: 1.0, 2: 1.0, 3: 0.1})
    c = match_lesions(baseline, followup)
    assert _pairs(c) == {(1, 2), (2, 1)}
    assert all(m.method == "distance" for m in c.matches)
    assert c.new == (3,) and c.merges == () and c.splits == ()
    assert not c.overlap.any()


def test_lesion_sets_on_one_grid() -> None:
    shape = (16, 24, 60)
    k, j, i = np.indices(shape)
    ball = (k - 8) ** 2 + (j - 12) ** 2
    baseline = find_lesions((ball + (i - 15) ** 2 <= 25) | (ball + (i - 45) ** 2 <= 9), AFFINE)
    followup = find_lesions(ball + (i - 46) ** 2 <= 16, AFFINE)
    c = match_lesion_sets(baseline, followup)
    assert _pairs(c) == {(2, 1)} and c.disappeared == (1,)
    assert c.matches[0].centroid_distance_mm == pytest.approx(1.0)
    shifted = find_lesions(np.zeros((16, 24, 61), bool), AFFINE)
    with pytest.raises(ValueError, match="one grid"):
        match_lesion_sets(baseline, shifted)


# --------------------------------------------------------------------------- tracking identifiers


def test_identifiers_over_three_visits() -> None:
    # Visit 1: 1 (i 10..29), 2 (i 33..38), 3 (i 70..75): Lesion 1, 2, 3.
    visit1 = _lesions((1, 10, 30), (2, 33, 39), (3, 70, 76))
    ids1 = initial_identifiers(visit1.ids)
    assert ids1 == {1: "Lesion 1", 2: "Lesion 2", 3: "Lesion 3"}
    # Visit 2: 1 and 2 grew together (i 10..38), 3 is gone, a new lesion at i 50..53.
    visit2 = _lesions((1, 10, 39), (2, 50, 54))
    update2 = carry_identifiers(match_lesions(visit1, visit2), ids1)
    assert update2.lesions == (
        TrackedLesion(1, "Lesion 1", "merged", merged_ids=("Lesion 2",)),
        TrackedLesion(2, "Lesion 4", "new"),  # not "Lesion 3": that one was given at visit 1
    )
    assert update2.ended_ids == ("Lesion 2", "Lesion 3")
    # Visit 3: Lesion 1 falls apart into i 10..14 (5 long, label 3) and i 18..38 (21 long, label 1);
    # Lesion 4 moved by 1 mm (label 2).
    visit3 = _lesions((1, 18, 39), (2, 51, 55), (3, 10, 15))
    correspondence = match_lesions(visit2, visit3)
    assert correspondence.splits == (LesionSplit(1, (1, 3)),)
    update3 = carry_identifiers(correspondence, update2.ids, used_ids=[*ids1.values(), *update2.ids.values()])
    assert update3.ids == {1: "Lesion 1", 2: "Lesion 4", 3: "Lesion 5"}
    assert update3.lesions[0] == TrackedLesion(1, "Lesion 1", "continued")
    assert update3.lesions[2] == TrackedLesion(3, "Lesion 5", "split", split_from="Lesion 1")
    assert update3.ended_ids == ()


def test_the_largest_contributor_keeps_its_identifier_even_when_not_the_match() -> None:
    # Baseline 1 (6 long, "Lesion 7") and 2 (12 long, "Lesion 2") merge; the follow-up matches 2 by Dice and
    # takes "Lesion 2" (the larger baseline lesion), recording "Lesion 7".
    c = match_lesions(_lesions((1, 10, 16), (2, 20, 32)), _lesions((1, 10, 32)))
    update = carry_identifiers(c, {1: "Lesion 7", 2: "Lesion 2"})
    assert update.lesions == (TrackedLesion(1, "Lesion 2", "merged", merged_ids=("Lesion 7",)),)
    assert update.ended_ids == ("Lesion 7",)


def test_new_numbers_follow_every_identifier_used() -> None:
    c = match_lesions(_lesions((1, 10, 20)), _lesions((1, 10, 20), (2, 40, 44), (3, 60, 63)))
    update = carry_identifiers(c, {1: "Lesion 2"}, used_ids=["Lesion 9", "other name"])
    assert update.ids == {1: "Lesion 2", 2: "Lesion 10", 3: "Lesion 11"}
    assert carry_identifiers(c, {1: "Lesion 2"}).ids == {1: "Lesion 2", 2: "Lesion 3", 3: "Lesion 4"}
    assert carry_identifiers(c, {1: "T1"}, prefix="T").ids == {1: "T1", 2: "T2", 3: "T3"}
    with pytest.raises(ValueError, match="no identifier"):
        carry_identifiers(c, {})
