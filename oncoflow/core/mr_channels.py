"""The four structural MR sequences of a brain-tumour study, and the names models give them.

OncoFlow's channel names are the series kinds of :mod:`oncoflow.dicom.series_selection`: ``t1`` (native T1),
``t1c`` (T1 after gadolinium), ``t2`` and ``flair`` (T2 FLAIR). nnU-Net's ``dataset.json`` ``channel_names``
(and the older ``modality``) name them as each challenge did: BraTS 2021 ``T1``, ``T1ce``, ``T2``, ``Flair``;
BraTS 2023 ``t1n``, ``t1c``, ``t2w``, ``t2f``; others ``T1Gd``, ``T1CE``, ``FLAIR``. :func:`canonical_channel`
maps any of them (case-insensitively) to OncoFlow's name.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

Channel = Literal["t1", "t1c", "t2", "flair"]
CHANNELS: tuple[Channel, ...] = ("t1", "t1c", "t2", "flair")
DISPLAY_NAMES: dict[Channel, str] = {"t1": "T1", "t1c": "T1c", "t2": "T2", "flair": "FLAIR"}

_SPELLINGS: dict[Channel, tuple[str, ...]] = {
    "t1": ("t1", "t1n", "t1w", "t1native", "t1pre", "nativet1"),
    "t1c": ("t1c", "t1ce", "t1gd", "t1post", "t1+c", "t1c+", "t1wce", "cet1", "t1contrast", "t1+gd"),
    "t2": ("t2", "t2w", "t2weighted"),
    "flair": ("flair", "t2f", "t2flair", "t2wflair"),
}
_ALIASES: dict[str, Channel] = {spelling: channel for channel, names in _SPELLINGS.items() for spelling in names}


def canonical_channel(name: str) -> Channel | None:
    """OncoFlow's name for a model's or a user's channel name (``"T1ce"`` -> ``"t1c"``), or ``None``.

    Case, spaces, hyphens and underscores are ignored (``"T1-Gd"``, ``"t1_gd"``).
    """
    key = "".join(ch for ch in name.strip().lower() if ch not in " -_")
    return _ALIASES.get(key)


def parse_channels(names: Iterable[str]) -> tuple[list[Channel], list[str]]:
    """The channels named, in order, and the names that are no channel OncoFlow knows."""
    known: list[Channel] = []
    unknown: list[str] = []
    for name in names:
        channel = canonical_channel(name)
        if channel is None:
            unknown.append(name)
        else:
            known.append(channel)
    return known, unknown


def channel_list(channels: Iterable[Channel]) -> str:
    """``"T1c, FLAIR"``: channels as a radiologist reads them."""
    return ", ".join(DISPLAY_NAMES[c] for c in channels)
