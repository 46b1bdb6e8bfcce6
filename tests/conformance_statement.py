"""Read the tables of ``docs/dicom-conformance.md``, the claims its tests compare with a running OncoFlow.

Test-side only: the statement is the oracle, so nothing here imports OncoFlow's code.
"""

from __future__ import annotations

import re
from pathlib import Path

import pydicom

STATEMENT = Path(__file__).resolve().parents[1] / "docs" / "dicom-conformance.md"


def statement_text() -> str:
    return STATEMENT.read_text(encoding="utf-8")


def table_after(heading: str, text: str | None = None) -> list[dict[str, str]]:
    """The first Markdown table under the heading that starts with ``heading`` (e.g. ``"### 2.4"``), as rows keyed
    by the header's cells (lower case), backticks dropped."""
    lines = (text if text is not None else statement_text()).splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(heading)), None)
    if start is None:
        raise AssertionError(f"no heading '{heading}' in {STATEMENT.name}")
    rows: list[list[str]] = []
    for line in lines[start + 1:]:
        if line.startswith("#"):
            break
        if line.startswith("|"):
            rows.append([cell.replace("`", "").strip() for cell in line.strip().strip("|").split("|")])
        elif rows:
            break
    if len(rows) < 3:
        raise AssertionError(f"no table under '{heading}' in {STATEMENT.name}")
    header = [cell.lower() for cell in rows[0]]
    return [dict(zip(header, row, strict=True)) for row in rows[2:]]


def yes(cell: str) -> bool:
    """``yes...`` is true, ``no...`` false; anything else is a defect of the statement."""
    word = re.match(r"[a-z]+", cell.lower())
    if word is None or word.group() not in ("yes", "no"):
        raise AssertionError(f"'{cell}' is neither yes nor no")
    return word.group() == "yes"


def coded_concepts(item: pydicom.Dataset) -> set[tuple[str, str]]:
    """Every (CodingSchemeDesignator, code value) in ``item``'s sequences, at any depth."""
    found: set[tuple[str, str]] = set()
    for element in item:
        if element.VR != "SQ":
            continue
        for child in element.value:
            value = child.get("CodeValue") or child.get("LongCodeValue") or child.get("URNCodeValue")
            if value is not None and "CodingSchemeDesignator" in child:
                found.add((str(child.CodingSchemeDesignator), str(value)))
            found |= coded_concepts(child)
    return found
