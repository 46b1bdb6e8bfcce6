"""The clinical summary without an LLM: the number check, text de-identification and the deterministic summary."""

from __future__ import annotations

import random
import re
from datetime import date, timedelta

import pytest
from oncoflow_rag.clinical_findings import ChangeFinding, ClinicalFindings, TimePointFinding
from oncoflow_rag.clinical_summary import deterministic_summary, summarise
from oncoflow_rag.number_check import find_numbers, unsupported_numbers
from oncoflow_rag.passage import Passage
from oncoflow_rag.text_deidentification import PatientIdentity, deidentify_text, find_dates

from oncoflow.core.change_thresholds import ChangeThresholds
from oncoflow.measure.change_flags import change_flag

BASELINE = date(2024, 1, 15)
FOLLOW_UP = date(2024, 5, 14)  # 120 days later
FIRST = date(2023, 11, 2)


def progression_findings() -> ClinicalFindings:
    """Three time points, the last one progressing: the values a real report would carry (unrounded)."""
    return ClinicalFindings(
        time_points=(
            TimePointFinding(FIRST, 10.1234, (9.5012, 10.9377), 28.31),
            TimePointFinding(BASELINE, 12.7349, (11.9021, 13.4188), 31.2),
            TimePointFinding(FOLLOW_UP, 17.2412, (16.0316, 18.3302), 35.04),
        ),
        change=ChangeFinding(
            baseline_date=BASELINE, follow_up_date=FOLLOW_UP, days_between=120, volume_baseline_cm3=12.7349,
            volume_follow_up_cm3=17.2412, delta_cm3=4.5063, percent_change=35.3851, percent_change_ci95=(28.12, 42.71),
            dice=0.8123, hd95_mm=3.214, growth_rate_cm3_per_day=0.037553, flag="progression",
            flag_reason="volume +35.4% > +25%",
        ),
        experts_ran=("nnunet_demo", "nnunet_demo_2d", "nnunet_demo_3d_seed2"),
        agreement_score=0.8841,
        agreement_flag="high",
    )


def response_findings() -> ClinicalFindings:
    """Two time points, a shrinking tumour (negative delta, % change and growth rate)."""
    return ClinicalFindings(
        time_points=(TimePointFinding(BASELINE, 20.4, None, None), TimePointFinding(FOLLOW_UP, 18.3, None, None)),
        change=ChangeFinding(BASELINE, FOLLOW_UP, 120, 20.4, 18.3, -2.1, -10.2941, (-12.5, -8.1), 0.7, None,
                             -0.0175, "minor change",
                             "volume -10.3%, between ±5% and the progression/response thresholds"),
        experts_ran=("a", "b"),
        agreement_score=None,
        agreement_flag=None,
    )


# ------------------------------------------------------------------------------------------------ number check


@pytest.mark.parametrize("text", [
    "Volume 12.7 cm³ at baseline, 12.73 cm3 to two decimals, 17.2 cm³ at follow-up.",
    "Change +4.5 cm³, +35.4% (95% CI +28.1% to +42.7%); also written 35.4 % and 35.4 percent.",
    "Panel CI of the follow-up volume 16.0 to 18.3 cm³, or 16.0-18.3 cm³, or 16.0–18.3 cm³.",
    "Studies of 2023-11-02, 2024-01-15 and 2024-05-14; written 14.05.2024, 05/14/2024, 14/05/2024, 20240514.",
    "Follow-up on May 14, 2024, baseline on 15 January 2024, first study in November 2023.",
    "Interval 120 days over 3 time points with 3 experts.",
    "Dice 0.81 (81.2%), HD95 3.2 mm, agreement 0.88 or 88.4%, growth rate 0.0376 cm³/day or 3.755e-2.",
    "Flag: progression (volume +35.4% > +25%), threshold 25%.",
    "Longest axial diameter 35.0 mm, previously 31.2 mm, first 28.3 mm.",
    "T1-weighted, T1c, T2/FLAIR, IDH1, MGMT, H3K27M, 1p/19q, 3D, HD95, cm3, Ki-67, BraTS2021, 5-ALA.",
    "The 95% confidence interval and the 95th percentile Hausdorff distance are names, not numbers.",
    "Cited from [mri_report_2023-10-02.pdf] and [note 7.txt].",
    "",
])
def test_computed_numbers_are_supported(text: str) -> None:
    assert unsupported_numbers(text, progression_findings()) == []


@pytest.mark.parametrize(("text", "invented"), [
    ("Volume 13 cm³.", ["13"]),  # integers are strict: 12.7349 is not 13
    ("Volume grew by +35% to 17 cm³.", ["+35%", "17"]),
    ("Volume 12.8 cm³.", ["12.8"]),  # 12.7349 rounds to 12.7
    ("Volume 12.7350 cm³.", ["12.7350"]),  # more decimals than computed must still agree
    ("A change of -35.4% was measured.", ["-35.4%"]),  # a minus sign only matches negatives
    ("A prior MRI on 2024-03-01 was stable.", ["2024-03-01"]),
    ("A prior MRI on 1 March 2024 and on 01.03.2024.", ["1 March 2024", "01.03.2024"]),
    ("Ki-67 15%.", ["15%"]),  # the identifier is skipped, the quantity next to it is not
    ("WHO grade 4 glioblastoma.", ["4"]),
    ("Growth about45% glued to a word.", ["45%"]),
    ("Seen on [day -120].", ["-120"]),  # relative days are not findings dates
    ("In 2024 and version 1.2.3.", ["2024", "1.2.3"]),
    ("Dice 81.2 without a percent sign.", ["81.2"]),  # a fraction as a percentage needs the % sign
    ("Dice 88% rounded.", ["88%"]),  # 88.41 is not a whole number
    ("Volume 42.0 cm³, and again 42.0 cm³, then 7 cm.", ["42.0", "7"]),  # each number once, in order
    ("Invalid date 2024-02-30.", ["2024-02-30"]),
])
def test_invented_numbers_are_listed_as_written(text: str, invented: list[str]) -> None:
    assert unsupported_numbers(text, progression_findings()) == invented


def test_a_date_is_one_token_not_three_numbers() -> None:
    mentions = find_numbers("Seen on 2024-03-01 and 20240301.")
    assert [(m.text, m.value, m.dates) for m in mentions] == [
        ("2024-03-01", None, (date(2024, 3, 1),)), ("20240301", None, (date(2024, 3, 1),))]


def test_signs_and_ranges_are_read() -> None:
    read = [(m.text, m.value, m.decimals, m.sign, m.percent)
            for m in find_numbers("(95% CI +28.1% to +42.7%), 15.0-28.6, −2.1, ±5%, 1.2e-3, - 7")]
    assert read == [("+28.1%", 28.1, 1, "+", True), ("+42.7%", 42.7, 1, "+", True), ("15.0", 15.0, 1, "", False),
                    ("28.6", 28.6, 1, "", False), ("−2.1", -2.1, 1, "-", False), ("±5%", 5.0, 0, "±", True),
                    ("1.2e-3", 0.0012, 4, "", False), ("7", 7.0, 0, "", False)]


def test_negative_changes_match_by_sign_or_in_words() -> None:
    findings = response_findings()
    assert unsupported_numbers("Decrease of 2.1 cm³ (-2.1 cm³, −10.3%, 10.3% smaller), -0.0175 cm³/day.",
                               findings) == []
    assert unsupported_numbers("CI -12.5% to -8.1%, within ±5%.", findings) == []
    assert unsupported_numbers("Change +2.1 cm³, +10.3%.", findings) == ["+2.1", "+10.3%"]


def test_rounding_ties_accept_either_convention() -> None:
    findings = ClinicalFindings((TimePointFinding(BASELINE, 12.75, None, None),), None, (), None, None)
    assert unsupported_numbers("12.7 or 12.8 or 12.75", findings) == []
    assert unsupported_numbers("12.6 or 12.9 or 13", findings) == ["12.6", "12.9", "13"]


def test_flag_reason_numbers_are_allowed_only_from_the_reason() -> None:
    findings = progression_findings()
    assert unsupported_numbers("Above the +25% threshold.", findings) == []
    without_threshold = ClinicalFindings(findings.time_points, _with_reason(findings, "experts agree"),
                                         findings.experts_ran, findings.agreement_score, findings.agreement_flag)
    assert unsupported_numbers("Above the +25% threshold.", without_threshold) == ["+25%"]


def _with_reason(findings: ClinicalFindings, reason: str) -> ChangeFinding:
    change = findings.change
    assert change is not None
    return ChangeFinding(change.baseline_date, change.follow_up_date, change.days_between, change.volume_baseline_cm3,
                         change.volume_follow_up_cm3, change.delta_cm3, change.percent_change,
                         change.percent_change_ci95, change.dice, change.hd95_mm, change.growth_rate_cm3_per_day,
                         change.flag, reason)


def test_check_rejects_a_summary_that_invents_one_number() -> None:
    findings = progression_findings()
    text = deterministic_summary(findings, []).text
    assert "17.2 cm³" in text and unsupported_numbers(text, findings) == []
    assert unsupported_numbers(text.replace("17.2 cm³", "17.9 cm³", 1), findings) == ["17.9"]


# ------------------------------------------------------------------------------------------- de-identification

IDENTITY = PatientIdentity(
    patient_id="PAT-0042",
    names=("MÜLLER-LÜDENSCHEIDT^Anne^Marie^Dr.^", "Anne Müller"),
    birth_date=date(1962, 7, 14),
    other_identifiers=("A12345678",),
)
REFERENCE = FOLLOW_UP

CLINIC_LETTER = """Neuro-oncology clinic, letter of 02.05.2024
Re: Anne Marie MÜLLER-LÜDENSCHEIDT, DOB 14.07.1962, patient ID PAT0042, MRN 00987654 (acc. A12345678)
Dear Dr. Weber, thank you for seeing Mrs. Mueller-Ludenscheidt (also written müller, ANNE) again.
She underwent gross total resection of a right frontal glioblastoma on 2023-10-02 and completed
radiotherapy on 15 December 2023. The MRI of January 15, 2024 (20240115) was the new baseline; the MRI
of 14/05/2024 shows a volume of 17.2 cm³ (+35.4%, 95% CI +28.1% to +42.7%), HD95 3.2 mm, Ki-67 15%.
Next review in June 2024. Born 07/14/1962 (also 14 July 1962, 1962-07-14, 19620714).
Contact: anne.mueller@example.org, phone +49 30 1234 5678, tel. 030/7654321, (555) 123-4567.
Study UID 1.2.826.0.1.3680043.8.498.1234567890. Her 93-year-old mother; she is 61 years old.
"""


def test_deidentify_removes_names_ids_birth_date_and_contacts() -> None:
    text = deidentify_text(CLINIC_LETTER, IDENTITY, REFERENCE)
    for phi in ("Anne", "Marie", "MÜLLER", "Müller", "müller", "Mueller", "LÜDENSCHEIDT", "Ludenscheidt",
                "PAT0042", "0042", "00987654", "A12345678", "1962", "14.07", "07/14", "anne.mueller", "example.org",
                "1234 5678", "7654321", "123-4567", "3680043", "93-year"):
        assert phi.lower() not in text.lower(), phi
    assert text.count("[birth date]") == 5
    assert "Dr. Weber" in text  # other people's names are not the patient's (documented limit)
    assert "61 years old" in text  # ages under 90 stay
    assert "[email]" in text and "[phone]" in text and "[uid]" in text and "[age 90 or older]" in text


def test_deidentify_turns_dates_into_days_from_the_reference() -> None:
    text = deidentify_text(CLINIC_LETTER, IDENTITY, REFERENCE)
    assert "letter of [day -12]" in text
    assert "on [day -225]" in text  # 2023-10-02
    assert "on [day -151]" in text  # 15 December 2023
    assert "The MRI of [day -120] ([day -120])" in text  # January 15, 2024 and 20240115
    assert "of [day 0] shows" in text
    assert "review in [month +1]" in text
    assert not re.search(r"\b(?:20(?:23|24)|January|December)\b", text)


def test_deidentify_keeps_the_clinical_numbers() -> None:
    text = deidentify_text(CLINIC_LETTER, IDENTITY, REFERENCE)
    assert "a volume of 17.2 cm³ (+35.4%, 95% CI +28.1% to +42.7%), HD95 3.2 mm, Ki-67 15%" in text
    facts = "Volume 12.7 cm³ -> 17.2 cm³, change +4.5 cm³ (+35.4%), Dice 0.81, 120 days, growth 0.0376 cm³/day."
    assert deidentify_text(facts, IDENTITY, REFERENCE) == facts


@pytest.mark.parametrize(("written", "label"), [
    ("2024-05-28", "[day +14]"), ("2024-05-14", "[day 0]"), ("28.05.2024", "[day +14]"),
    ("May 28, 2024", "[day +14]"), ("28th of May 2024", "[day +14]"), ("28. Mai 2024", "[day +14]"),
    ("20240528", "[day +14]"), ("28/05/24", "[day +14]"), ("31.02.2024", "[date]"), ("2024-03", "[month -2]"),
])
def test_deidentify_date_formats(written: str, label: str) -> None:
    assert deidentify_text(f"on {written}.", PatientIdentity("X-1", (), None), REFERENCE) == f"on {label}."


def test_deidentify_dicom_name_forms_and_short_parts() -> None:
    identity = PatientIdentity("ID-77", ("DOE^JO^A",), None)
    text = deidentify_text("Jo Doe; DOE, JO; doe^jo; John Doe-Smith; A. Doe; de novo", identity, REFERENCE)
    assert text == "[name]; [name]; [name]; John [name]-Smith; A. [name]; de novo"


def test_find_dates_reads_ambiguous_slashes_both_ways() -> None:
    (mention,) = find_dates("on 03/04/2024")
    assert mention.dates == (date(2024, 4, 3), date(2024, 3, 4))


# ------------------------------------------------------------------------------------ deterministic summary


def test_progression_summary_states_the_findings() -> None:
    findings = progression_findings()
    summary = deterministic_summary(findings, [])
    assert summary.text == (
        "Follow-up MRI of 2024-05-14 compared with the baseline of 2024-01-15, 120 days earlier. "
        "Fused tumour volume 17.2 cm³ (panel 95% CI 16.0 to 18.3 cm³) versus 12.7 cm³ at baseline: "
        "change +4.5 cm³, +35.4% (95% CI +28.1% to +42.7%), growth rate 0.0376 cm³/day. "
        "Flag: progression (volume +35.4% > +25%). "
        "Overlap of the registered tumour masks: Dice 0.81, HD95 3.2 mm. "
        "Longest axial diameter 35.0 mm (baseline 31.2 mm). "
        "Volume history over 3 time points: 2023-11-02 10.1 cm³; 2024-01-15 12.7 cm³; 2024-05-14 17.2 cm³. "
        "Expert panel of 3 models: mean pairwise Dice 0.88 (high)."
    )
    assert (summary.source, summary.model, summary.passages, summary.note) == ("deterministic", None, (), None)
    assert (summary.deidentified, summary.llm_host_local) == (False, None)
    assert unsupported_numbers(summary.text, findings) == []


def test_baseline_only_summary() -> None:
    findings = ClinicalFindings((TimePointFinding(BASELINE, 8.04, (7.5, 8.61), 24.96),), None, ("a",), None, None)
    text = deterministic_summary(findings, []).text
    assert text == ("Baseline study of 2024-01-15: fused tumour volume 8.0 cm³ (panel 95% CI 7.5 to 8.6 cm³), "
                    "longest axial diameter 25.0 mm. No prior study is available for comparison. "
                    "Segmented by 1 expert model.")
    assert unsupported_numbers(text, findings) == []


def test_negative_change_summary() -> None:
    findings = response_findings()
    text = deterministic_summary(findings, []).text
    assert "change -2.1 cm³, -10.3% (95% CI -12.5% to -8.1%), growth rate -0.0175 cm³/day" in text
    assert "Flag: minor change (volume -10.3%, between ±5% and the progression/response thresholds)." in text
    assert "Segmented by a panel of 2 expert models." in text
    assert unsupported_numbers(text, findings) == []


def _random_findings(rng: random.Random) -> ClinicalFindings:
    """Findings as the plugin builds them, with the real flag rules; values, Nones and signs vary."""
    count = rng.choice([1, 1, 2, 3, 4, 6])
    day = date(2020, 1, 1) + timedelta(days=rng.randrange(1500))
    points = []
    for _ in range(count):
        volume = rng.choice([0.0, rng.uniform(0.01, 1.0), rng.uniform(1, 150), rng.uniform(100, 999)])
        ci = None if rng.random() < 0.3 else (volume * rng.uniform(0.8, 1.0), volume * rng.uniform(1.0, 1.2))
        diameter = None if rng.random() < 0.3 else rng.uniform(1, 90)
        points.append(TimePointFinding(day, volume, ci, diameter))
        day += timedelta(days=rng.randrange(1, 400))
    change = None
    if count > 1 and rng.random() < 0.9:
        base, follow = rng.choice(points[:-1]), points[-1]
        delta = follow.volume_cm3 - base.volume_cm3
        percent = None if base.volume_cm3 == 0 else 100 * delta / base.volume_cm3
        ci95 = None if percent is None or rng.random() < 0.3 else (percent - rng.uniform(0, 30),
                                                                    percent + rng.uniform(0, 30))
        ncc = rng.choice([None, rng.uniform(0, 1), 0.9])
        thresholds = ChangeThresholds(progression_percent=rng.choice([25.0, 20.0, 33.3]))
        flag, reason = change_flag(base.volume_cm3, follow.volume_cm3, ci95, ncc, thresholds)
        days = (follow.study_date - base.study_date).days
        change = ChangeFinding(base.study_date, follow.study_date, days, base.volume_cm3, follow.volume_cm3, delta,
                               percent, ci95, rng.uniform(0, 1), rng.choice([None, rng.uniform(0, 40)]),
                               rng.choice([None, delta / days]), flag, reason)
    experts = tuple(f"expert{i}" for i in range(rng.choice([0, 1, 2, 5])))
    agreement = None if len(experts) < 2 or rng.random() < 0.2 else rng.uniform(0, 1)
    return ClinicalFindings(tuple(points), change, experts, agreement,
                            None if agreement is None else rng.choice(["high", "review", "low"]))


def test_deterministic_summary_states_no_uncomputed_number_for_many_findings() -> None:
    rng = random.Random(20240514)
    for _ in range(400):
        findings = _random_findings(rng)
        text = deterministic_summary(findings, [_passage("n.txt", NOTE_TEXT, 0.1)]).text
        assert unsupported_numbers(text, findings) == [], (text, findings)
        latest = findings.time_points[-1]
        if findings.change is None:
            assert f"{latest.volume_cm3:.1f} cm³" in text and "No " in text, text
        else:  # every findings sentence is there (the guard dropped none)
            change = findings.change
            assert f"Fused tumour volume {change.volume_follow_up_cm3:.1f} cm³" in text, text
            assert f"Flag: {change.flag} ({change.flag_reason})." in text, text
            assert f"{change.days_between} days earlier" in text and "Dice " in text, text
        if len(findings.time_points) >= 3:
            assert f"Volume history over {len(findings.time_points)} time points" in text, text


# ---------------------------------------------------------------------------------------- notes in the summary

NOTE_TEXT = (
    "Patient: Anne Müller, DOB 14.07.1962. She underwent gross total resection of a glioblastoma on 2023-10-02. "
    "Histology: glioblastoma, IDH-wildtype, CNS WHO grade 4; MGMT promoter methylated. "
    "She completed radiotherapy with concomitant temozolomide. Ki-67 15%. "
    "The MRI of 2024-01-15 showed a small enhancing residual tumour. "
    "She enjoys gardening with her grandchildren. "
    "She reports new left-sided weakness and morning headaches. Dexamethasone was started."
)


def _passage(filename: str, text: str, distance: float, chunk: int = 0) -> Passage:
    return Passage(document_id=filename.encode().hex()[:16], filename=filename, chunk_index=chunk, text=text,
                   distance=distance)


def test_notes_sentences_are_relevant_cited_and_state_no_uncomputed_number() -> None:
    findings = progression_findings()
    letter = _passage("clinic_letter_2024-05-02.txt", NOTE_TEXT, 0.35)
    operation = _passage("op_note.pdf", "Operative note, Dr. Weber. The tumour was resected under 5-ALA guidance, "
                                        "and the tumour bed was lined with 8 wafers.", 0.2)
    summary = deterministic_summary(findings, [letter, operation])
    notes = summary.text.split(" From the notes: ", 1)[1]
    assert notes == (
        "Operative note, Dr. Weber [op_note.pdf]. "
        "She completed radiotherapy with concomitant temozolomide [clinic_letter_2024-05-02.txt]. "
        "The MRI of 2024-01-15 showed a small enhancing residual tumour [clinic_letter_2024-05-02.txt]."
    )
    assert summary.passages == (operation, letter)  # closest first, each once
    assert unsupported_numbers(summary.text, findings) == []
    for skipped in ("8 wafers", "2023-10-02", "grade 4", "Ki-67 15%", "14.07.1962", "gardening"):
        assert skipped not in summary.text


def test_notes_overlapping_chunks_are_quoted_once_and_at_most_three() -> None:
    findings = progression_findings()
    sentences = [f"The tumour {word} on the last scan." for word in ("enhances", "grew", "bled", "shrank")]
    passages = [_passage("a.txt", " ".join(sentences[:3]), 0.1), _passage("a.txt", " ".join(sentences[1:]), 0.2, 1)]
    summary = deterministic_summary(findings, passages)
    quoted = re.findall(r"The tumour \w+ on the last scan \[a\.txt\]\.", summary.text)
    assert len(quoted) == 3 and len(set(quoted)) == 3 and "shrank" not in summary.text
    assert summary.passages == (passages[0],)


def test_summarise_without_llm_is_the_deterministic_summary() -> None:
    findings = progression_findings()
    passages = [_passage("n.txt", NOTE_TEXT, 0.1)]
    assert summarise(findings, passages, None, IDENTITY) == deterministic_summary(findings, passages)


def test_notes_wrapped_lines_are_joined_into_sentences() -> None:
    text = ("Neuro-oncology clinic\nRe: follow-up MRI\n"
            "She reports new left-sided weakness and morning headaches since\n"
            "the last visit, and the dexamethasone dose was increased.\n\nPlan: discuss at the tumour board.")
    summary = deterministic_summary(progression_findings(), [_passage("letter.pdf", text, 0.1)])
    assert summary.text.split(" From the notes: ", 1)[1] == (  # the header lines are too short to quote
        "She reports new left-sided weakness and morning headaches since the last visit, and the dexamethasone "
        "dose was increased [letter.pdf]. Plan: discuss at the tumour board [letter.pdf].")
