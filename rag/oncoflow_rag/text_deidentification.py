"""De-identify free text before it leaves the process (the LLM prompt), in the spirit of DICOM PS3.15 Annex E.

Annex E's profiles act on DICOM attributes; for free text (clinical notes, the facts list of a prompt) this
module applies the same intent to the identifiers it can recognise:

* the patient's names (every part of length >= 2, in any order and case, DICOM ``FAMILY^GIVEN`` forms,
  accents folded or transliterated) -> ``[name]``; title and particle words (``Dr``, ``von``) are kept;
* the PatientID and other identifiers (with or without separators: ``PAT-0042`` = ``pat 0042``) -> ``[id]``;
* the birth date, in any recognised format -> ``[birth date]``;
* every other absolute date -> the days relative to a reference date, ``[day -120]`` (``[day 0]``,
  ``[day +14]``), so intervals survive (Annex E's "modified dates" option); a month-only date
  (``March 2024``) -> ``[month -2]``; an impossible date (``31.02.2024``) -> ``[date]``;
* ages of 90 years and more -> ``[age 90 or older]`` (HIPAA Safe Harbor aggregates them);
* e-mail addresses -> ``[email]``, phone numbers -> ``[phone]``, DICOM UIDs -> ``[uid]``, and any token
  holding a run of 6 or more digits (medical record numbers, accession numbers) -> ``[number]``.

Recognised dates (see :func:`find_dates`): ISO ``2024-03-01`` (also ``/`` or ``.``), ``01.03.2024``,
``01/03/2024`` and ``03/01/2024`` (day-first and month-first both considered), 2-digit years with ``.`` or
``/`` (``01.03.24``), DICOM ``20240301``, ``March 1, 2024``, ``1 March 2024``, ``1st of March 2024``,
``1. März 2024`` (English and German month names and abbreviations), and month-only ``March 2024``,
``2024-03``, ``03/2024``.

Not recognised, so still to be kept out of notes by the uploader: street addresses, postcodes, other
people's names (relatives, physicians), free-text ages below 90, dates without a year ("on 3 March").
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date

__all__ = ["DateMention", "PatientIdentity", "deidentify_text", "find_dates", "relative_day_label"]

NAME_MASK = "[name]"
ID_MASK = "[id]"
BIRTH_DATE_MASK = "[birth date]"
INVALID_DATE_MASK = "[date]"
EMAIL_MASK = "[email]"
PHONE_MASK = "[phone]"
UID_MASK = "[uid]"
NUMBER_MASK = "[number]"
OLD_AGE_MASK = "[age 90 or older]"


@dataclass(frozen=True)
class PatientIdentity:
    """What identifies the patient in free text: taken from the DICOM header of the patient's studies."""

    patient_id: str  # PatientID (0010,0020)
    names: tuple[str, ...]  # PatientName (0010,0010) values, DICOM "FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX" or free
    birth_date: date | None  # PatientBirthDate (0010,0030)
    other_identifiers: tuple[str, ...] = ()  # OtherPatientIDs, IssuerOfPatientID, AccessionNumber, MRNs ...


@dataclass(frozen=True)
class DateMention:
    """An absolute date written in free text."""

    start: int  # character offsets of the mention in the text
    end: int
    text: str  # as written
    dates: tuple[date, ...]  # the calendar dates it can mean: two for an ambiguous "03/04/2024", none if invalid
    month_only: bool  # "March 2024": ``dates`` holds the first day of that month


# ---------------------------------------------------------------------------------------------------- dates

_MONTHS: dict[str, int] = {
    "january": 1, "february": 2, "march": 3, "april": 4, "may": 5, "june": 6, "july": 7, "august": 8,
    "september": 9, "october": 10, "november": 11, "december": 12,
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "sept": 9, "oct": 10,
    "nov": 11, "dec": 12,
    "januar": 1, "februar": 2, "märz": 3, "maerz": 3, "mai": 5, "juni": 6, "juli": 7, "oktober": 10,
    "dezember": 12, "okt": 10, "dez": 12,
}
_MONTH = "(?P<month>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_ORDINAL = r"(?:st|nd|rd|th|\.)?"

# Each pattern names its groups year/month/day; "order" says how to read numeric day/month fields.
_DATE_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?<![0-9.])(?P<year>(?:1[89]|2[01])[0-9]{2})(?P<sep>[-/.])(?P<a>[0-9]{1,2})(?P=sep)"
                r"(?P<b>[0-9]{1,2})(?![0-9])"), "ymd"),
    (re.compile(r"(?<![0-9.])(?P<a>[0-9]{1,2})(?P<sep>[./-])(?P<b>[0-9]{1,2})(?P=sep)(?P<year>[0-9]{4})(?![0-9])"),
     "dmy"),
    (re.compile(r"(?<![0-9.])(?P<a>[0-9]{1,2})(?P<sep>[./])(?P<b>[0-9]{1,2})(?P=sep)(?P<year>[0-9]{2})"
                r"(?![0-9]|\.[0-9])"), "dmy"),
    (re.compile(r"(?<![0-9])(?P<year>(?:19|20)[0-9]{2})(?P<a>[0-9]{2})(?P<b>[0-9]{2})(?![0-9])"), "dicom"),
    (re.compile(rf"(?i)\b{_MONTH}\s+(?P<day>[0-9]{{1,2}}){_ORDINAL},?\s+(?P<year>[0-9]{{4}})(?![0-9])"), "name"),
    (re.compile(rf"(?i)(?<![0-9.])(?P<day>[0-9]{{1,2}}){_ORDINAL}\s+(?:of\s+)?{_MONTH},?\s+(?P<year>[0-9]{{4}})"
                r"(?![0-9])"), "name"),
    (re.compile(rf"(?i)\b{_MONTH},?\s+(?P<year>[0-9]{{4}})(?![0-9])"), "month"),
    (re.compile(r"(?<![0-9./-])(?P<year>(?:19|20)[0-9]{2})-(?P<a>0[1-9]|1[0-2])(?![0-9]|-[0-9])"), "month-numeric"),
    (re.compile(r"(?<![0-9./])(?P<a>0?[1-9]|1[0-2])/(?P<year>(?:19|20)[0-9]{2})(?![0-9]|/[0-9])"), "month-numeric"),
)


def _calendar_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _read_date(match: re.Match[str], order: str) -> tuple[tuple[date, ...], bool] | None:
    """The dates a match can mean and whether it is month-only; None when it is no date after all."""
    groups = match.groupdict()
    year = int(groups["year"])
    if len(groups["year"]) == 2:
        year += 2000 if year <= 49 else 1900  # 2-digit years: 00-49 -> 20xx, 50-99 -> 19xx
    if order in ("month", "name"):
        month = _MONTHS[groups["month"].lower()]
        if order == "month":
            return (date(year, month, 1),), True
        found = _calendar_date(year, month, int(groups["day"]))
        return ((found,) if found else ()), False
    if order == "month-numeric":
        return (date(year, int(groups["a"]), 1),), True
    a, b = int(groups["a"]), int(groups["b"])
    if order == "dicom":
        found = _calendar_date(year, a, b)
        return ((found,), False) if found else None  # an invalid 8-digit run is a number, not a date
    if order == "ymd":
        candidates = [_calendar_date(year, a, b)]
    elif groups["sep"] == ".":
        candidates = [_calendar_date(year, b, a)]  # dotted dates are day-first
    else:
        candidates = [_calendar_date(year, b, a), _calendar_date(year, a, b)]  # 03/04/2024: either reading
    return tuple(dict.fromkeys(d for d in candidates if d is not None)), False


def find_dates(text: str) -> list[DateMention]:
    """The absolute dates written in ``text``, in order, without overlaps (the longest mention wins)."""
    found: list[DateMention] = []
    for pattern, order in _DATE_PATTERNS:
        for match in pattern.finditer(text):
            read = _read_date(match, order)
            if read is not None:
                found.append(DateMention(match.start(), match.end(), match.group(), read[0], read[1]))
    found.sort(key=lambda m: (m.start, -(m.end - m.start)))
    chosen: list[DateMention] = []
    for mention in found:
        if not chosen or mention.start >= chosen[-1].end:
            chosen.append(mention)
    return chosen


def relative_day_label(day: date, reference_date: date) -> str:
    """``[day -120]``: ``day`` as days from ``reference_date`` (``[day 0]``, ``[day +14]``)."""
    days = (day - reference_date).days
    return "[day 0]" if days == 0 else f"[day {days:+d}]"


# ---------------------------------------------------------------------------------------------------- names

_NAME_SPLIT = re.compile(r"[\s^,;]+")
_NAME_SKIP = frozenset({  # titles, suffixes and particles: not identifying on their own, common words
    "dr", "mr", "mrs", "ms", "miss", "prof", "sir", "md", "phd", "jr", "sr", "ii", "iii", "iv", "von", "van",
    "der", "den", "de", "da", "di", "du", "del", "della", "dos", "das", "la", "le", "ten", "ter", "bin", "al",
    "el", "zu", "und", "and",
})
_TRANSLITERATION = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue"})


def _name_parts(names: Iterable[str]) -> list[str]:
    """Every identifying name part (length >= 2), with its accent-folded and transliterated spellings."""
    parts: set[str] = set()
    for name in names:
        components = name.split("^")[:3] if "^" in name else [name]  # DICOM PN: drop prefix and suffix
        for component in components:
            for word in _NAME_SPLIT.split(component):
                pieces = [word, *word.split("-")] if "-" in word else [word]
                for piece in pieces:
                    piece = piece.strip(".'\"()")
                    if len(piece) >= 2 and piece.lower() not in _NAME_SKIP:
                        parts.update(_spellings(piece))
    return sorted(parts, key=len, reverse=True)  # longest first: "Anne-Marie" before "Anne"


def _spellings(word: str) -> set[str]:
    folded = "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))
    return {word, folded, word.translate(_TRANSLITERATION)}


def _mask_names(text: str, names: Iterable[str]) -> str:
    parts = _name_parts(names)
    if not parts:
        return text
    pattern = re.compile(r"(?<!\w)(?:" + "|".join(re.escape(p) for p in parts) + r")(?!\w)", re.IGNORECASE)
    text = pattern.sub(NAME_MASK, text)
    # "[name], [name]" / "[name]^[name]" / "[name]-[name]" -> one mask, so the text stays readable
    return re.sub(r"\[name\](?:(?:\s*[,^]\s*|\s+|-)\[name\])+", NAME_MASK, text)


# ------------------------------------------------------------------------------------------------ identifiers


def _identifier_pattern(identifier: str) -> re.Pattern[str] | None:
    """The identifier's characters in order, each pair optionally separated by one space, '-', '_', '.', '/'."""
    characters = [c for c in identifier.strip() if c.isalnum()]
    if len(characters) < 2:
        return None
    body = r"[\s\-_./]?".join(re.escape(c) for c in characters)
    return re.compile(rf"(?<![0-9A-Za-z]){body}(?![0-9A-Za-z])", re.IGNORECASE)


_EMAIL = re.compile(r"(?i)(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_UID = re.compile(r"(?<![\w.])[0-9]+(?:\.[0-9]+){3,}(?![\w]|\.[0-9])")
_OLD_AGE = re.compile(r"(?i)\b(?:9[0-9]|1[0-4][0-9])(?:\s*|-)(?:years?|yrs?|y)(?:\s*|-)old\b|"
                      r"\b(?:aged?|age:)\s*(?:9[0-9]|1[0-4][0-9])\b")
_PHONE_KEYWORD = re.compile(r"(?i)\b(?P<key>tel|telephone|phone|fax|mobile|mob|cell|pager|bleep)\b\.?\s*"
                            r"(?:no\.?|number|nr\.?)?\s*[:#]?\s*(?P<number>\+?\(?[0-9][0-9\s()/.-]{4,}[0-9])")
_PHONE_INTERNATIONAL = re.compile(r"(?<![\w+])\+[0-9]{1,3}(?:[\s.-]?\(?[0-9]{1,5}\)?){2,6}(?![0-9%]|\.[0-9])")
_PHONE_GROUPED = re.compile(r"(?<![\w.])(?:\(?[0-9]{3}\)?[\s.-][0-9]{3}[\s.-][0-9]{4}|"
                            r"0[0-9]{2,5}[\s/-][0-9]{4,9})(?![\w]|\.[0-9])")
_LONG_DIGITS = re.compile(r"(?<![\w])[A-Za-z]{0,4}[0-9]{6,}[A-Za-z0-9]*|[0-9]{6,}")


def _digit_count(text: str) -> int:
    return sum(c.isdigit() for c in text)


def _mask_phones(text: str) -> str:
    text = _PHONE_KEYWORD.sub(lambda m: m.string[m.start():m.start("number")] + PHONE_MASK
                              if _digit_count(m.group("number")) >= 6 else m.group(), text)
    text = _PHONE_INTERNATIONAL.sub(lambda m: PHONE_MASK if _digit_count(m.group()) >= 8 else m.group(), text)
    return _PHONE_GROUPED.sub(PHONE_MASK, text)


# --------------------------------------------------------------------------------------------------- the text


def _replace_dates(text: str, birth_date: date | None, reference_date: date) -> str:
    pieces: list[str] = []
    position = 0
    for mention in find_dates(text):
        pieces.append(text[position:mention.start])
        pieces.append(_date_label(mention, birth_date, reference_date))
        position = mention.end
    pieces.append(text[position:])
    return "".join(pieces)


def _date_label(mention: DateMention, birth_date: date | None, reference_date: date) -> str:
    if not mention.dates:
        return INVALID_DATE_MASK
    if mention.month_only:
        month = mention.dates[0]
        if birth_date is not None and (month.year, month.month) == (birth_date.year, birth_date.month):
            return BIRTH_DATE_MASK
        months = (month.year - reference_date.year) * 12 + month.month - reference_date.month
        return "[month 0]" if months == 0 else f"[month {months:+d}]"
    if birth_date is not None and birth_date in mention.dates:
        return BIRTH_DATE_MASK
    return relative_day_label(mention.dates[0], reference_date)  # "03/04/2024": the day-first reading


def _identifiers(identity: PatientIdentity) -> Iterator[re.Pattern[str]]:
    for identifier in sorted({identity.patient_id, *identity.other_identifiers}, key=len, reverse=True):
        pattern = _identifier_pattern(identifier)
        if pattern is not None:
            yield pattern


def deidentify_text(text: str, identity: PatientIdentity, reference_date: date) -> str:
    """``text`` without the patient's identifiers; absolute dates become days from ``reference_date``.

    The order matters: e-mails and UIDs first (they contain names and digits), then the patient's
    identifiers (before their digits are masked as long numbers), dates (before names: "June 3, 2024"
    is a date even for a patient named June), ages, names, phone numbers, long digit runs.
    """
    text = _EMAIL.sub(EMAIL_MASK, text)
    text = _UID.sub(UID_MASK, text)
    for pattern in _identifiers(identity):
        text = pattern.sub(ID_MASK, text)
    text = _replace_dates(text, identity.birth_date, reference_date)
    text = _OLD_AGE.sub(OLD_AGE_MASK, text)
    text = _mask_names(text, identity.names)
    text = _mask_phones(text)
    return _LONG_DIGITS.sub(NUMBER_MASK, text)
