"""A retrieved piece of a patient's note: what the store returns and the summary cites."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Passage:
    """One chunk of one uploaded document, as returned by a search.

    ``distance`` is the embedding distance to the query (cosine, 0 = identical); smaller is closer.
    """

    document_id: str  # the stored document's ID (a hex digest), stable across restarts
    filename: str  # the uploaded file's name, as sanitised at upload
    chunk_index: int  # 0-based position of the chunk in its document
    text: str
    distance: float
