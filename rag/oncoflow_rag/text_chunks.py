"""Split a note's text into overlapping, sentence-aligned chunks for embedding.

A chunk is a contiguous slice of the text: ``text[chunk.start_char:chunk.start_char + len(chunk.text)] ==
chunk.text``. Chunks end on sentence boundaries; a sentence longer than a chunk is split at a line break or
between words (mid-word only for a "word" longer than a chunk). Consecutive chunks share whole
trailing sentences of at most ``overlap_chars`` characters, so a fact at a chunk border is found in both.
The result depends on the text and the two sizes only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Sentence end: terminal punctuation, optional closing quotes/brackets, then whitespace; or a blank line.
_SENTENCE_END = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*(?=\s)|\n[ \t]*\n")
# The word just before a full stop, to recognise abbreviations ("Dr. Smith", "approx. 3 cm").
_LAST_WORD = re.compile(r"([A-Za-z][A-Za-z.]*)\.$")
_NEXT_CHAR = re.compile(r"\s*(\S)")
_SPACE = re.compile(r"\s")
_ABBREVIATIONS = frozenset({
    "dr", "mr", "mrs", "ms", "prof", "st", "vs", "e.g", "i.e", "approx", "ca", "cf", "fig", "no", "nr", "al",
    "resp", "incl", "pt", "pts", "dept", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct",
    "nov", "dec",
})


@dataclass(frozen=True)
class TextChunk:
    """One piece of a document's text."""

    index: int  # 0-based position in the document
    text: str
    start_char: int  # offset of the chunk's first character in the document's text, in characters


def chunk_text(text: str, max_chars: int = 800, overlap_chars: int = 150) -> list[TextChunk]:
    """Split ``text`` into chunks of at most ``max_chars`` characters.

    ``overlap_chars`` (characters, ``0 <= overlap_chars < max_chars``) bounds how much of a chunk's end is
    repeated at the start of the next one; the overlap is made of whole sentences (or whole pieces of a long
    sentence), so it is shorter, or absent, when the last sentence is longer than that. Leading and trailing
    whitespace is not part of any chunk. Empty or whitespace-only text gives no chunks.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be positive, got {max_chars}")
    if not 0 <= overlap_chars < max_chars:
        raise ValueError(f"overlap_chars must be in [0, max_chars), got {overlap_chars} (max_chars={max_chars})")
    piece_chars = min(max_chars, max(overlap_chars, max_chars // 4, 1))
    units: list[tuple[int, int]] = []
    for start, end in _sentences(text):
        if end - start <= max_chars:
            units.append((start, end))
        else:
            units.extend(_split_long(text, start, end, piece_chars, max_chars))
    return _pack(text, units, max_chars, overlap_chars)


def _sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) character spans of the sentences, without surrounding whitespace."""
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        end = match.end()
        if match.group().strip() and not _is_boundary(text, match.start(), end):
            continue
        spans.extend(_trimmed(text, start, end))
        start = end
    spans.extend(_trimmed(text, start, len(text)))
    return spans


def _is_boundary(text: str, punct_start: int, end: int) -> bool:
    """Whether the punctuation ending at ``end`` closes a sentence (not an abbreviation, no lower-case next)."""
    following = _NEXT_CHAR.match(text, end)
    if following and following.group(1).islower():
        return False
    if text[punct_start] == ".":
        word = _LAST_WORD.search(text[max(0, punct_start - 20):punct_start + 1])
        if word and word.group(1).lower() in _ABBREVIATIONS:
            return False
    return True


def _trimmed(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """The span without leading/trailing whitespace, or nothing if it is blank."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return [(start, end)] if end > start else []


def _split_long(text: str, start: int, end: int, piece_chars: int, max_chars: int) -> list[tuple[int, int]]:
    """Cut a too-long sentence into pieces of about ``piece_chars``, preferably at a line break, else a space.

    A piece is longer (up to ``max_chars``) only when it is one word longer than ``piece_chars``.
    """
    pieces: list[tuple[int, int]] = []
    while end - start > piece_chars:
        window = text[start:start + piece_chars + 1]  # a break right after the window still fits
        cut = window.rfind("\n", piece_chars // 2)
        if cut <= 0:
            cut = max(window.rfind(" "), window.rfind("\t"))
        if cut <= 0:  # a "word" longer than a piece: keep it whole if it fits in a chunk, else cut it
            space = _SPACE.search(text, start, min(end, start + max_chars + 1))
            cut = space.start() - start if space else min(end - start, max_chars)
        pieces.extend(_trimmed(text, start, start + cut))
        start += cut
        while start < end and text[start].isspace():
            start += 1
    pieces.extend(_trimmed(text, start, end))
    return pieces


def _pack(text: str, units: list[tuple[int, int]], max_chars: int, overlap_chars: int) -> list[TextChunk]:
    """Greedily group consecutive units into chunks; the next chunk restarts at the overlapping units."""
    chunks: list[TextChunk] = []
    first = 0
    while first < len(units):
        chunk_start = units[first][0]
        last = first
        while last + 1 < len(units) and units[last + 1][1] - chunk_start <= max_chars:
            last += 1
        chunk_end = units[last][1]
        chunks.append(TextChunk(len(chunks), text[chunk_start:chunk_end], chunk_start))
        if last + 1 == len(units):
            break
        following_end = units[last + 1][1]
        next_first = last + 1
        for candidate in range(last, first, -1):  # extend the overlap backwards while it stays small enough
            candidate_start = units[candidate][0]
            if chunk_end - candidate_start > overlap_chars or following_end - candidate_start > max_chars:
                break
            next_first = candidate
        first = next_first
    return chunks
