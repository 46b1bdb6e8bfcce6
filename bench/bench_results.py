"""Where every ``make bench`` script writes its JSON: ``bench/results/<name>-<UTC time>.json`` and
``bench/results/<latest>`` (the newest run of that benchmark)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def write_result(name: str, result: dict[str, Any], latest: str | None = None) -> str:
    """Write ``result`` under a time-stamped name and as ``latest`` (default ``<name>-latest.json``); returns it."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"{name}-{stamp}.json").write_text(text + "\n")
    (RESULTS / (latest or f"{name}-latest.json")).write_text(text + "\n")
    return text
