"""The clinical summary of a report: an LLM's (ollama) when one is configured, else a deterministic one.

Both state only numbers OncoFlow computed (:func:`~oncoflow_rag.number_check.unsupported_numbers`):

* :func:`deterministic_summary` writes plain sentences from the findings with the findings' own values,
  then up to three sentences of the retrieved notes that state no uncomputed number, each citing its
  file. It passes the number check by construction.
* :func:`summarise` asks the configured LLM for 3-4 sentences from the findings (as a facts list) and
  the retrieved passages, all de-identified first (:func:`~oncoflow_rag.text_deidentification.deidentify_text`,
  dates as days relative to the report's study). The ``[day N]`` labels of the reply are turned back into
  dates, then the reply is checked: a reply with an invented number is rejected (and so is an empty one, one
  cut off at the token limit, or one that repeats a sentence), and so is any LLM trouble (server down,
  timeout, HTTP error): the deterministic summary is used instead, with the reason in ``note``. It never
  raises for LLM trouble.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any, Literal

import httpx
import ollama

from oncoflow.core.config import LlmSettings

from .clinical_findings import ChangeFinding, ClinicalFindings, TimePointFinding
from .number_check import unsupported_numbers
from .passage import Passage
from .text_deidentification import PatientIdentity, deidentify_text

__all__ = ["ClinicalSummary", "deterministic_summary", "llm_messages", "summarise"]

NOTE_SENTENCES = 3  # at most this many sentences quoted from the notes
LLM_PASSAGES = 4  # the closest passages sent to the LLM
LLM_PASSAGE_CHARS = 700  # each cut to this many characters
LLM_NUM_PREDICT = 200  # tokens the LLM may write: 3-4 sentences
SYSTEM_PROMPT = (
    "You are a neuroradiology assistant writing the clinical summary of a brain tumour MRI report. "
    "Use only the facts given. Copy numbers exactly as written, with sign, decimals and unit. "
    "Write no number that is not in the facts; do not repeat numbers or dates from the notes. "
    "Write dates as given, e.g. [day -120]. Write 3-4 plain sentences."
)


@dataclass(frozen=True)
class ClinicalSummary:
    """The report's clinical summary and where it came from."""

    text: str
    source: Literal["llm", "deterministic"]
    model: str | None  # the LLM model name when source == "llm"
    passages: tuple[Passage, ...]  # the retrieved passages the summary drew on (for citation in the report)
    note: str | None  # why the LLM text was not used (invented numbers: listed; timeout; server error), else None
    deidentified: bool  # whether text was de-identified before leaving the process (True whenever an LLM was called)
    llm_host_local: bool | None  # LlmSettings.is_local of the LLM called; None when none is configured


# ------------------------------------------------------------------------------------------------ formatting


def _number(value: float, decimals: int, signed: bool = False) -> str:
    return f"{value:+.{decimals}f}" if signed else f"{value:.{decimals}f}"


def _significant(value: float, digits: int = 3) -> str:
    """``value`` with about ``digits`` significant digits in fixed notation (growth rates: 0.0376)."""
    if value == 0 or not math.isfinite(value):
        return _number(value, 1)
    decimals = min(6, max(1, digits - 1 - math.floor(math.log10(abs(value)))))
    return _number(value, decimals)


def _ci_cm3(ci: tuple[float, float] | None) -> str:
    return f" (panel 95% CI {_number(ci[0], 1)} to {_number(ci[1], 1)} cm³)" if ci else ""


def _time_point(findings: ClinicalFindings, day: date) -> TimePointFinding | None:
    return next((p for p in findings.time_points if p.study_date == day), None)


def _change_sentences(findings: ClinicalFindings, change: ChangeFinding) -> list[str]:
    follow_up = _time_point(findings, change.follow_up_date)
    baseline = _time_point(findings, change.baseline_date)
    sentences = [
        f"Follow-up MRI of {change.follow_up_date.isoformat()} compared with the baseline of "
        f"{change.baseline_date.isoformat()}, {change.days_between} days earlier."
    ]
    if change.percent_change is None:
        percent = "; no tumour at baseline, so no % change"
    else:
        percent = f", {_number(change.percent_change, 1, signed=True)}%"
        if change.percent_change_ci95:
            low, high = change.percent_change_ci95
            percent += f" (95% CI {_number(low, 1, signed=True)}% to {_number(high, 1, signed=True)}%)"
    volume = (
        f"Fused tumour volume {_number(change.volume_follow_up_cm3, 1)} cm³"
        f"{_ci_cm3(follow_up.volume_ci95_cm3 if follow_up else None)} versus {_number(change.volume_baseline_cm3, 1)}"
        f" cm³ at baseline: change {_number(change.delta_cm3, 1, signed=True)} cm³{percent}"
    )
    if change.growth_rate_cm3_per_day is not None:
        volume += f", growth rate {_significant(change.growth_rate_cm3_per_day)} cm³/day"
    sentences.append(volume + ".")
    sentences.append(f"Flag: {change.flag} ({change.flag_reason}).")
    overlap = f"Overlap of the registered tumour masks: Dice {_number(change.dice, 2)}"
    if change.hd95_mm is not None:
        overlap += f", HD95 {_number(change.hd95_mm, 1)} mm"
    sentences.append(overlap + ".")
    if follow_up and follow_up.longest_axial_diameter_mm is not None:
        diameter = f"Longest axial diameter {_number(follow_up.longest_axial_diameter_mm, 1)} mm"
        if baseline and baseline.longest_axial_diameter_mm is not None:
            diameter += f" (baseline {_number(baseline.longest_axial_diameter_mm, 1)} mm)"
        sentences.append(diameter + ".")
    return sentences


def _single_study_sentences(findings: ClinicalFindings) -> list[str]:
    latest = findings.time_points[-1]
    first = len(findings.time_points) == 1
    sentence = (
        f"{'Baseline study' if first else 'Study'} of {latest.study_date.isoformat()}: fused tumour volume "
        f"{_number(latest.volume_cm3, 1)} cm³{_ci_cm3(latest.volume_ci95_cm3)}"
    )
    if latest.longest_axial_diameter_mm is not None:
        sentence += f", longest axial diameter {_number(latest.longest_axial_diameter_mm, 1)} mm"
    comparison = ("No prior study is available for comparison." if first
                  else "No volumetric comparison with a prior study is available.")
    return [sentence + ".", comparison]


def _findings_sentences(findings: ClinicalFindings) -> list[str]:
    """The findings in plain sentences, each stating only the findings' own numbers."""
    sentences: list[str] = []
    if findings.change is not None:
        sentences += _change_sentences(findings, findings.change)
    elif findings.time_points:
        sentences += _single_study_sentences(findings)
    else:
        sentences.append("No tumour measurement is available.")
    if len(findings.time_points) >= 3 or (findings.change is None and len(findings.time_points) == 2):
        history = "; ".join(f"{p.study_date.isoformat()} {_number(p.volume_cm3, 1)} cm³" for p in findings.time_points)
        sentences.append(f"Volume history over {len(findings.time_points)} time points: {history}.")
    experts = len(findings.experts_ran)
    if experts and findings.agreement_score is not None:
        agreement = f"{_number(findings.agreement_score, 2)}"
        label = f" ({findings.agreement_flag})" if findings.agreement_flag else ""
        sentences.append(f"Expert panel of {experts} models: mean pairwise Dice {agreement}{label}.")
    elif experts:
        sentences.append(f"Segmented by a panel of {experts} expert models." if experts > 1
                         else "Segmented by 1 expert model.")
    return [s for s in sentences if not unsupported_numbers(s, findings)]  # a guard: never drops one in tests


# --------------------------------------------------------------------------------------------- notes sentences

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])|\s*\n\s*")
_HEADER_LINE_CHARS = 50  # a line this short ends its sentence ("Re: follow-up"); a longer one wraps
_ABBREVIATION = re.compile(r"(?i)\b(?:dr|mr|mrs|ms|prof|st|vs|e\.g|i\.e|approx|ca|cf|fig|no|nr|pt|dept)\.$")
_RELEVANT = re.compile(
    r"(?i)\b(?:tumou?r|glioma|glioblastoma|astrocytoma|oligodendroglioma|metasta|lesion|mass|resect|surgery|"
    r"operat|biops|radiother|radiation|chemo|temozolomide|bevacizumab|lomustine|steroid|dexamethasone|"
    r"mgmt|idh|methylat|enhanc|oedema|edema|necros|recurren|progress|pseudoprogress|respon|stable|seizure|"
    r"headache|deficit|hemipares|aphasia|symptom|histolog|patholog|grade|rano|trial|mri)"
)
_MIN_SENTENCE_CHARS = 20
_MAX_SENTENCE_CHARS = 300


def _unwrapped(text: str) -> str:
    """``text`` with soft line wraps (PDF text) joined; a line break stays after punctuation or a short line."""
    lines: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if lines and lines[-1] and line and not lines[-1].endswith((".", "!", "?", ":", ";")) \
                and len(lines[-1]) >= _HEADER_LINE_CHARS:
            lines[-1] = f"{lines[-1]} {line}"
        else:
            lines.append(line)
    return "\n".join(lines)


def _sentences(text: str) -> list[str]:
    """Sentences of a passage, whitespace-normalised; a full stop after an abbreviation does not end one."""
    pieces: list[str] = []
    for piece in _SENTENCE_END.split(_unwrapped(text)):
        piece = " ".join(piece.split())
        if pieces and pieces[-1] and _ABBREVIATION.search(pieces[-1]):
            pieces[-1] = f"{pieces[-1]} {piece}"
        elif piece:
            pieces.append(piece)
    return pieces


def _quoted(sentence: str, passage: Passage) -> str:
    return f"{sentence.rstrip(' .!?;:')} [{passage.filename}]."


def _note_sentences(findings: ClinicalFindings, passages: Sequence[Passage]) -> list[tuple[str, Passage]]:
    """Up to :data:`NOTE_SENTENCES` relevant sentences of the closest passages that state no uncomputed number."""
    chosen: list[tuple[str, Passage]] = []
    seen: set[str] = set()
    for passage in sorted(passages, key=lambda p: p.distance):  # closest first, then in the note's order
        for sentence in _sentences(passage.text):
            key = sentence.lower()
            if key in seen or not _MIN_SENTENCE_CHARS <= len(sentence) <= _MAX_SENTENCE_CHARS:
                continue
            seen.add(key)
            quoted = _quoted(sentence, passage)
            if _RELEVANT.search(sentence) and not unsupported_numbers(quoted, findings):
                chosen.append((quoted, passage))
                if len(chosen) == NOTE_SENTENCES:
                    return chosen
    return chosen


def deterministic_summary(findings: ClinicalFindings, passages: Sequence[Passage]) -> ClinicalSummary:
    """A few plain sentences from the findings, then up to three cited sentences of the notes.

    ``unsupported_numbers(summary.text, findings) == []`` by construction: the findings' sentences print the
    findings' own values, and a notes sentence is quoted only when it (with its citation) passes the check.
    """
    text = " ".join(_findings_sentences(findings))
    quoted = _note_sentences(findings, passages)
    if quoted:
        text += " From the notes: " + " ".join(sentence for sentence, _ in quoted)
    cited = tuple(dict.fromkeys(passage for _, passage in quoted))
    return ClinicalSummary(text=text, source="deterministic", model=None, passages=cited, note=None,
                           deidentified=False, llm_host_local=None)


# ------------------------------------------------------------------------------------------------------ LLM


def _reference_date(findings: ClinicalFindings) -> date:
    """The day dates are counted from in the prompt: the report's own study (its latest date)."""
    dates = [p.study_date for p in findings.time_points]
    if findings.change is not None:
        dates += [findings.change.baseline_date, findings.change.follow_up_date]
    return max(dates) if dates else date.today()


def _prompt_passages(passages: Sequence[Passage]) -> tuple[Passage, ...]:
    return tuple(sorted(passages, key=lambda p: p.distance)[:LLM_PASSAGES])


def llm_messages(findings: ClinicalFindings, passages: Sequence[Passage], identity: PatientIdentity,
                 reference_date: date) -> list[dict[str, str]]:
    """The chat messages sent to the LLM: the closest passages and the findings as a facts list, de-identified.

    Notes are labelled "Note A", "Note B" (their file names may identify the patient and are not sent). The
    facts come last, next to the request, where small models attend best.
    """
    facts = "\n".join(f"- {sentence}" for sentence in _findings_sentences(findings))
    notes = "\n".join(
        f"Note {chr(ord('A') + index)}: {' '.join(passage.text.split())[:LLM_PASSAGE_CHARS]}"
        for index, passage in enumerate(_prompt_passages(passages))
    ) or "(no notes)"
    user = (f"Excerpts of the clinical notes:\n{notes}\n\nFacts computed from the MRI studies:\n{facts}\n\n"
            "Summarise the facts in 3-4 sentences.")
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": deidentify_text(user, identity, reference_date)},
    ]


_RELATIVE_DAY = re.compile(r"(?i)\[\s*day\s*([+\-−]?)\s*([0-9]{1,5})\s*\]")


def _dated(text: str, reference_date: date) -> str:
    """The reply's ``[day N]`` labels back as ISO dates (they were the findings' dates in the prompt)."""
    def iso(match: re.Match[str]) -> str:
        days = int(match.group(2)) * (-1 if match.group(1) in ("-", "−") else 1)
        return (reference_date + timedelta(days=days)).isoformat()

    return _RELATIVE_DAY.sub(iso, text)


def _llm_trouble(error: Exception, llm: LlmSettings) -> str:
    if isinstance(error, httpx.TimeoutException):
        return f"LLM {llm.model} at {llm.host} gave no answer within the timeout ({llm.timeout_s:g} s)"
    if isinstance(error, ConnectionError):
        return f"LLM server {llm.host} unreachable: {error}"
    if isinstance(error, ollama.ResponseError):
        return f"LLM server error (HTTP {error.status_code}): {error.error}"
    return f"LLM call failed: {type(error).__name__}: {error}"


def _reply_problems(text: str, findings: ClinicalFindings, done_reason: str | None) -> list[str]:
    """Why the LLM's reply cannot be the summary: invented numbers, cut off, looping; empty list if none."""
    if not text:
        return ["empty reply"]
    problems: list[str] = []
    invented = unsupported_numbers(text, findings)
    if invented:
        problems.append(f"numbers not computed by OncoFlow: {', '.join(invented)}")
    if done_reason == "length":
        problems.append("reply cut off at the token limit")
    sentences = [s.lower() for s in _sentences(text) if len(s) >= _MIN_SENTENCE_CHARS]
    if len(set(sentences)) < len(sentences):
        problems.append("reply repeats itself")
    return problems


def summarise(findings: ClinicalFindings, passages: Sequence[Passage], llm: LlmSettings | None,
              identity: PatientIdentity) -> ClinicalSummary:
    """The report's clinical summary: the LLM's when ``llm`` is set and its reply passes the number check.

    Falls back to :func:`deterministic_summary` (``note`` says why) on any LLM trouble; never raises for it.
    """
    if llm is None:
        return deterministic_summary(findings, passages)
    reference_date = _reference_date(findings)
    messages = llm_messages(findings, passages, identity, reference_date)

    def fallback(note: str) -> ClinicalSummary:
        return replace(deterministic_summary(findings, passages), note=f"{note}; deterministic summary used",
                       deidentified=True, llm_host_local=llm.is_local)

    options: dict[str, Any] = {"temperature": 0, "num_predict": LLM_NUM_PREDICT}
    try:
        with ollama.Client(host=llm.host, timeout=llm.timeout_s) as client:
            response = client.chat(model=llm.model, messages=messages, options=options)
        reply = response.message.content or ""
    except Exception as error:  # any LLM trouble: the report still gets its (deterministic) summary
        return fallback(_llm_trouble(error, llm))
    text = " ".join(_dated(reply, reference_date).split())
    problems = _reply_problems(text, findings, response.done_reason)
    if problems:
        return fallback(f"LLM {llm.model} summary rejected: {'; '.join(problems)}")
    return ClinicalSummary(text=text, source="llm", model=llm.model, passages=_prompt_passages(passages), note=None,
                           deidentified=True, llm_host_local=llm.is_local)
