"""The guard of every clinical summary: each number it states must be one OncoFlow computed.

:func:`unsupported_numbers` lists the numbers of a text that equal no computed number of a
:class:`~oncoflow_rag.clinical_findings.ClinicalFindings`. The rules:

What is a number
    Digits not attached to a preceding word: integers, decimals, a sign (``+``, ``-``, ``−``, ``–``,
    ``±``, ``+/-``), an exponent (``1.2e-3``), a percent sign or the word "percent", glued units or
    ordinals (``12.7cm3``, ``3rd``: still numbers). Both ends of a range are numbers (``15.0 to 28.6``,
    ``15.0-28.6``: a dash right after a digit, ``%`` or bracket is a range dash, not a minus sign).
    A comma separates numbers (``12,7`` is 12 and 7; thousands separators are not read). Digits in
    words ("three") are not read. ``1.2.3`` is one unreadable number (unsupported).
What is a date
    Dates are single tokens, never split into numbers: every format of
    :func:`~oncoflow_rag.text_deidentification.find_dates` (ISO, ``01.03.2024``, ``01/03/2024``,
    DICOM ``20240301``, ``March 1, 2024``, ``1 March 2024``; month-only ``March 2024``). A date is
    supported when it is one of the findings' dates (either reading of an ambiguous ``03/04/2024``); a
    month-only date when a findings date falls in that month. A bare year ("in 2024") is a number.
What is not a number
    Identifiers: a word with digits that starts with a single letter, an upper-case or camel-case run
    (``T1``, ``t2``, ``HD95``, ``IDH1``, ``H3K27M``, ``O6``, ``SAM2``, ``BraTS2021``), unit powers
    (``cm3``, ``mm2``), an upper-case word or a capitalised one of at most 3 letters, a hyphen and digits
    (``Ki-67``, ``IL-6``, ``COVID-19``), chromosome arms (``1p/19q``), ``2D``/``3D``/``4D``, agents
    (``5-ALA``, ``18F-FET``), file names (``mri_2024-03-01.pdf``: the cited notes), and the confidence level
    of ``95% CI`` / ``95th percentile``. Digits glued to an ordinary lower-case or capitalised word are
    numbers (``about45%`` is 45%), and an identifier never hides the quantity next to it: ``Ki-67 15%``
    still flags ``15%``.
When a number matches
    A number written with d >= 1 decimals matches a computed value v when ``|written - v| <= 0.5 * 10**-d``
    (``12.7`` matches 12.7349 and, at a tie, both 12.65 and 12.75: either rounding convention). Integers
    are strict: ``13`` matches only a computed value that is a whole number (days, counts, thresholds
    such as 25 %), never 12.73 - a summary copies the decimals it was given.
Signs
    ``+x`` matches only v >= 0; ``-x`` (any minus) only v < 0 (or -0.0, printed "-0.0"); ``±x`` and an
    unsigned ``x`` match by magnitude, because prose carries the direction in words ("decreased by
    2.1 cm³" for a delta of -2.1). The check is about numbers, not whether the words around them are right.
Units
    Not cross-checked: a volume written with ``%`` still matches. Only fractions (Dice, the agreement
    score, 0..1) are additionally allowed as percentages when written with ``%`` (Dice 0.873 -> ``87.3%``).
What is computed
    Every numeric field of the findings (volumes and their CIs, diameters, delta, % change and its CI,
    Dice, HD95, growth rate, days between), the agreement score, the number of time points and of
    experts, the findings' dates, and every number written in ``flag_reason`` (OncoFlow's own text, made
    of computed values and configured thresholds).
Limits
    The check compares values, not meanings: an invented number that happens to equal a computed one
    ("3 months" when there are 3 time points) passes. Numbers written in words are not read.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date

from .clinical_findings import ClinicalFindings
from .text_deidentification import find_dates

__all__ = ["NumberMention", "find_numbers", "unsupported_numbers"]


@dataclass(frozen=True)
class NumberMention:
    """A number (or date) written in a text."""

    start: int  # character offsets; ``text`` is the span as written, sign and percent included
    end: int
    text: str
    value: float | None  # signed value; None for a date or an unreadable number such as "1.2.3"
    decimals: int  # digits after the decimal point (reduced by an exponent: "1.2e-3" has 4)
    sign: str  # "+", "-", "±" or "" (unsigned)
    percent: bool  # written with % or "percent"
    dates: tuple[date, ...] | None = None  # for a date mention: the dates it can mean (empty if invalid)
    month_only: bool = False


# Spans that hold digits but no quantity; matched on the text before numbers are read.
_EXEMPT = (
    re.compile(r"(?i)(?<![0-9.])95\s?(?:%|percent|per\s?cent)[\s-]?(?:CI\b|conf)"),  # the CI's level
    re.compile(r"(?i)(?<![0-9.])95(?:th)?[\s-]*percentile"),
    re.compile(r"(?i)(?<![\w.-])[\w.-]*[0-9][\w.-]*\.(?:txt|pdf|docx?|rtf|md)\b"),  # cited file names
)
_IDENTIFIERS = (
    re.compile(r"(?<![A-Za-z_.])(?P<letters>[A-Za-z]+)[0-9][A-Za-z0-9_]*"),  # judged by _is_identifier
    re.compile(r"(?<![\w.])(?:[A-Z][A-Z]{1,5}|[A-Z][a-z]{1,2})-[0-9]+(?![0-9.]|[A-Za-z])"),  # Ki-67, COVID-19
    re.compile(r"(?<![\w.])[0-9]{1,2}[pq](?:/?[0-9]{1,2}[pq])?(?![\w])"),  # 1p/19q
    re.compile(r"(?<![\w.])[234]D(?![\w])"),
    re.compile(r"(?<![\w.])[0-9]{1,3}(?:[A-Z][a-z]?)?-[A-Z]{2,}(?![\w])"),  # 5-ALA, 5-FU, 18F-FET (agents)
)
_UNIT_POWER = re.compile(r"(?:cm|mm|dm|m)[23]")
_NUMBER = re.compile(
    r"(?P<sign>\+/-|\+/−|±|[+\-−–])?"
    r"(?P<body>(?<![0-9_.])(?:[0-9]+(?:\.[0-9]+)*|\.[0-9]+)(?:[eE][+\-−]?[0-9]+)?)"
    r"(?P<percent>\s?(?:%|percent\b|per\s?cent\b))?"
)
_SIGN_CONTEXT = re.compile(r"[\w%)\]³²]")  # a sign right after one of these is a range dash or an operator


def _is_identifier(match: re.Match[str]) -> bool:
    """Whether a word-with-digits is an identifier (T1, HD95, cm3) rather than a word glued to a number."""
    letters, token = match.group("letters"), match.group()
    if match.end() < len(match.string) and match.string[match.end()] == "." and \
            match.string[match.end() + 1:match.end() + 2].isdigit():
        return False  # "volume12.7": a decimal glued to a word
    if len(letters) == 1 or letters.isupper() or _UNIT_POWER.fullmatch(token):
        return True
    return any(c.isupper() for c in letters[1:])  # camel case: BraTS2021, nnUNet2


def _blanked(text: str, spans: Iterable[tuple[int, int]]) -> str:
    """``text`` with the spans replaced by spaces (same length, so offsets hold)."""
    chars = list(text)
    for start, end in spans:
        chars[start:end] = " " * (end - start)
    return "".join(chars)


def _without_exempt(text: str) -> str:
    for pattern in _EXEMPT:
        text = _blanked(text, (m.span() for m in pattern.finditer(text)))
    return text


def _without_identifiers(text: str) -> str:
    for pattern in _IDENTIFIERS:
        spans = [m.span() for m in pattern.finditer(text) if "letters" not in pattern.groupindex or _is_identifier(m)]
        text = _blanked(text, spans)
    return text


def _read_number(match: re.Match[str], text: str) -> NumberMention:
    sign = match.group("sign") or ""
    start = match.start()
    if sign and match.start() > 0 and _SIGN_CONTEXT.match(text[match.start() - 1]):
        sign, start = "", match.start("body")  # "15.0-28.6": a range, not a negative number
    sign = {"+/-": "±", "+/−": "±", "−": "-", "–": "-"}.get(sign, sign)
    body = match.group("body").replace("−", "-")
    mantissa, _, exponent = body.lower().partition("e")
    value: float | None
    if mantissa.count(".") > 1:
        value, decimals = None, 0
    else:
        value = float(mantissa if not mantissa.startswith(".") else "0" + mantissa)
        decimals = len(mantissa.partition(".")[2])
        if exponent:
            value *= 10.0 ** int(exponent)
            decimals -= int(exponent)
        if sign == "-":
            value = -value
    end = match.end()
    return NumberMention(start, end, text[start:end].strip(), value, decimals, sign, bool(match.group("percent")))


def find_numbers(text: str) -> list[NumberMention]:
    """The numbers and dates written in ``text``, in order (see the module's rules)."""
    readable = _without_exempt(text)
    mentions = [NumberMention(m.start, m.end, m.text, None, 0, "", False, m.dates, m.month_only)
                for m in find_dates(readable)]
    readable = _without_identifiers(_blanked(readable, ((m.start, m.end) for m in mentions)))
    mentions += [_read_number(match, text) for match in _NUMBER.finditer(readable)]
    return sorted(mentions, key=lambda m: m.start)


# ------------------------------------------------------------------------------------------- computed numbers


@dataclass(frozen=True)
class _Computed:
    values: tuple[float, ...]  # any written form
    fractions: tuple[float, ...]  # 0..1 values that may also be written as percentages
    dates: frozenset[date]
    verbatim: frozenset[str]  # tokens of flag_reason as written (covers any that cannot be read as a value)


def _computed(findings: ClinicalFindings) -> _Computed:
    values: list[float | None] = [float(len(findings.time_points)), float(len(findings.experts_ran))]
    fractions: list[float | None] = [findings.agreement_score]
    dates: set[date] = set()
    verbatim: set[str] = set()
    for point in findings.time_points:
        dates.add(point.study_date)
        values += [point.volume_cm3, point.longest_axial_diameter_mm, *(point.volume_ci95_cm3 or ())]
    change = findings.change
    if change is not None:
        dates.update((change.baseline_date, change.follow_up_date))
        values += [float(change.days_between), change.volume_baseline_cm3, change.volume_follow_up_cm3,
                   change.delta_cm3, change.percent_change, *(change.percent_change_ci95 or ()), change.dice,
                   change.hd95_mm, change.growth_rate_cm3_per_day]
        fractions.append(change.dice)
        for mention in find_numbers(change.flag_reason):
            verbatim.add(mention.text)
            if mention.dates:
                dates.update(mention.dates)
            if mention.value is not None:
                values += [mention.value, -mention.value] if mention.sign == "±" else [mention.value]
    fractions = [f for f in fractions if f is not None]
    return _Computed(tuple(v for v in values + fractions if v is not None and math.isfinite(v)),
                     tuple(f for f in fractions if f is not None and math.isfinite(f)), frozenset(dates),
                     frozenset(verbatim))


def _matches(mention: NumberMention, value: float) -> bool:
    """Whether a written number equals ``value`` under the rules of the module's docstring."""
    assert mention.value is not None
    negative = math.copysign(1.0, value) < 0  # -0.0 too: it prints as "-0.0"
    if (mention.sign == "+" and negative) or (mention.sign == "-" and not negative):
        return False
    written, target = abs(mention.value), abs(value)
    if mention.decimals <= 0:
        return abs(target - round(target)) <= 1e-9 and round(target) == round(written)
    return abs(written - target) <= 0.5 * 10.0 ** -mention.decimals + 1e-9 * max(1.0, target)


def _supported(mention: NumberMention, computed: _Computed) -> bool:
    if mention.text in computed.verbatim:
        return True
    if mention.dates is not None:
        if mention.month_only:
            return any((d.year, d.month) == (m.year, m.month) for d in computed.dates for m in mention.dates)
        return any(d in computed.dates for d in mention.dates)
    if mention.value is None:
        return False
    candidates: Iterator[float] = iter(computed.values)
    if mention.percent:
        candidates = iter((*computed.values, *(100.0 * f for f in computed.fractions)))
    return any(_matches(mention, value) for value in candidates)


def unsupported_numbers(text: str, findings: ClinicalFindings) -> list[str]:
    """The numbers in ``text`` that equal no computed number of ``findings``, as written (e.g. '12.7', '+35%',
    '2024-03-01'), in order of appearance, each once."""
    computed = _computed(findings)
    found = [m.text for m in find_numbers(text) if not _supported(m, computed)]
    return list(dict.fromkeys(found))
