"""The ``GET /oncoflow/model-stats.png`` chart: each expert's mean Dice against the fused mask."""

from __future__ import annotations

from typing import Any

from oncoflow.report.png_figure import new_figure, png_bytes


def render_model_stats_png(stats: list[dict[str, Any]]) -> bytes:
    """A bar chart (PNG) of ``mean_dice`` per expert, with the number of studies on each bar."""
    figure = new_figure(6.4, 3.6)
    axes = figure.add_subplot()
    names = [str(s["expert"]) for s in stats]
    dices = [float(s["mean_dice"]) for s in stats]
    bars = axes.bar(names, dices, color="#2b6cb0")
    for bar, row in zip(bars, stats, strict=True):
        axes.annotate(f"{row['mean_dice']:.2f} (n={row['studies']})", (bar.get_x() + bar.get_width() / 2,
                      bar.get_height()), ha="center", va="bottom", fontsize=8)
    axes.set_ylim(0, 1.05)
    axes.set_ylabel("mean Dice vs fused mask")
    axes.set_title("OncoFlow experts across studies" if stats else "OncoFlow experts: no study evaluated yet")
    axes.tick_params(axis="x", labelrotation=20, labelsize=8)
    figure.tight_layout()
    return png_bytes(figure)
