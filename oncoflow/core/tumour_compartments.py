"""Tumour compartments and the BraTS regions built from them.

A segmentation model's ``MASK`` is a label map with OncoFlow's compartment values (:class:`Compartment`, the
values nnU-Net's BraTS 2021 model, Dataset137, gives after its regions are resolved): 1 oedema, 2 necrosis
(the non-enhancing core), 3 enhancing tumour, 4 non-enhancing tumour (only where a model tells it apart from
oedema). A model that gives one binary tumour mask names the region it is (``tumour core`` by default: the
enhancing rim and the necrosis, as OncoFlow's earlier phantoms defined the tumour).

Regions (BraTS): **ET**, the enhancing tumour; **TC**, the tumour core = ET + necrosis; **WT**, the whole tumour
= every compartment. RANO 2.0 measures the enhancing disease, so ET is the default driving region.

:func:`compartment_of_label` reads a model's own label names (``dataset.json`` ``labels``: ``edema``, ``NCR``,
``enhancing tumor``, ``SNFH`` ...), :func:`region_of_name` its region names (``whole tumor``, ``TC`` ...).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Literal

import numpy as np
import numpy.typing as npt


class Compartment(enum.IntEnum):
    """Label values of a compartment ``MASK``."""

    OEDEMA = 1
    NECROSIS = 2
    ENHANCING = 3
    NON_ENHANCING = 4

    @property
    def display_name(self) -> str:
        return _DISPLAY[self]


_DISPLAY = {Compartment.OEDEMA: "oedema", Compartment.NECROSIS: "necrosis", Compartment.ENHANCING:
            "enhancing tumour", Compartment.NON_ENHANCING: "non-enhancing tumour"}

Region = Literal["ET", "TC", "WT"]
REGIONS: tuple[Region, ...] = ("ET", "TC", "WT")
REGION_NAMES: dict[Region, str] = {"ET": "enhancing tumour", "TC": "tumour core", "WT": "whole tumour"}
REGION_COMPARTMENTS: dict[Region, tuple[Compartment, ...]] = {
    "ET": (Compartment.ENHANCING,),
    "TC": (Compartment.ENHANCING, Compartment.NECROSIS),
    "WT": tuple(Compartment),
}

_LABEL_SPELLINGS: dict[Compartment, tuple[str, ...]] = {
    Compartment.OEDEMA: ("edema", "oedema", "ed", "snfh", "peritumoraledema", "flairhyperintensity",
                         "surroundingnonenhancingflairhyperintensity"),
    Compartment.NECROSIS: ("necrosis", "necrotic", "ncr", "netc", "ncrnet", "necroticcore", "necrotictumorcore",
                           "nonenhancingtumorcore", "nonenhancingcore", "necrosisnonenhancing"),
    Compartment.ENHANCING: ("enhancing", "enhancingtumor", "enhancingtumour", "et", "enhancinglesion", "enhancingrim"),
    Compartment.NON_ENHANCING: ("nonenhancing", "nonenhancingtumor", "nonenhancingtumour", "net",
                                "nonenhancinglesion"),
}
_REGION_SPELLINGS: dict[Region, tuple[str, ...]] = {
    "WT": ("wt", "wholetumor", "wholetumour", "whole"),
    "TC": ("tc", "tumorcore", "tumourcore", "core"),
    "ET": ("et", "enhancingtumor", "enhancingtumour", "enhancing"),
}


def _key(name: str) -> str:
    return "".join(ch for ch in name.strip().lower() if ch.isalnum())


_LABELS = {spelling: c for c, names in _LABEL_SPELLINGS.items() for spelling in names}
_REGIONS = {spelling: r for r, names in _REGION_SPELLINGS.items() for spelling in names}


def compartment_of_label(name: str) -> Compartment | None:
    """The compartment a model's label name means (``"NCR"`` -> necrosis), or ``None``."""
    return _LABELS.get(_key(name))


def region_of_name(name: str) -> Region | None:
    """The region a name means (``"whole tumor"`` -> ``"WT"``), or ``None``."""
    return _REGIONS.get(_key(name))


def region_mask(labels: npt.NDArray[np.integer], region: Region) -> npt.NDArray[np.bool_]:
    """The voxels of ``region`` in a compartment label map."""
    return np.isin(labels, [int(c) for c in REGION_COMPARTMENTS[region]])


def compartments_from_regions(regions: Mapping[Region, npt.NDArray[np.bool_]],
                              non_enhancing: npt.NDArray[np.bool_] | None = None) -> npt.NDArray[np.uint8]:
    """A compartment label map from nested regions: ET enhancing, TC outside ET necrosis, WT outside TC oedema
    (or non-enhancing tumour where ``non_enhancing`` says so). A region is widened to hold the regions inside it
    (WT >= TC >= ET), so the map is consistent whatever the masks given."""
    shape = next(iter(regions.values())).shape
    empty = np.zeros(shape, bool)
    et = regions.get("ET", empty)
    tc = regions.get("TC", empty) | et
    wt = regions.get("WT", empty) | tc
    labels = np.zeros(shape, np.uint8)
    labels[wt] = Compartment.OEDEMA
    if non_enhancing is not None:
        labels[wt & non_enhancing] = Compartment.NON_ENHANCING
    labels[tc] = Compartment.NECROSIS
    labels[et] = Compartment.ENHANCING
    return labels


def parse_output_labels(text: str) -> tuple[dict[int, Compartment], Region | None, list[str]]:
    """A model's ``output_labels`` parameter: ``"1:oedema,2:necrosis,3:enhancing"`` (label value : compartment)
    for a compartment map, or one region name (``"tumour core"``, ``"WT"``) for a binary mask.

    Returns (value -> compartment, the binary mask's region or ``None``, problems).
    """
    text = text.strip()
    if not text:
        return {}, "TC", []
    if ":" not in text:
        region = region_of_name(text)
        return {}, region, [] if region else [f"{text!r} is no region (ET, TC, WT)"]
    mapping: dict[int, Compartment] = {}
    problems: list[str] = []
    for item in (part for part in text.split(",") if part.strip()):
        value, _, name = item.partition(":")
        compartment = compartment_of_label(name)
        if not value.strip().isdigit() or compartment is None:
            problems.append(f"{item.strip()!r} is not value:compartment (oedema, necrosis, enhancing, non-enhancing)")
            continue
        mapping[int(value)] = compartment
    return mapping, None, problems


def format_output_labels(mapping: Mapping[int, Compartment]) -> str:
    """The ``output_labels`` parameter for a compartment map (inverse of :func:`parse_output_labels`)."""
    return ",".join(f"{value}:{compartment.name.lower()}" for value, compartment in sorted(mapping.items()))


def describe(compartments: Iterable[Compartment]) -> str:
    return ", ".join(c.display_name for c in sorted(set(compartments)))
