"""Figures drawn inside Orthanc: matplotlib's object API on the Agg backend (no pyplot global state
shared between Orthanc's threads), returned as PNG bytes. matplotlib is imported on first use, not
at plugin start."""

from __future__ import annotations

from io import BytesIO
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def new_figure(width_in: float, height_in: float, dpi: float = 100) -> Figure:
    """An empty figure of ``width_in`` x ``height_in`` inches."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), dpi=dpi)


def png_bytes(figure: Figure, dpi: float | None = None) -> bytes:
    """The figure as PNG, at ``dpi`` (default: the figure's own)."""
    buffer = BytesIO()
    figure.savefig(buffer, format="png", **({} if dpi is None else {"dpi": dpi}))
    return buffer.getvalue()
