"""PNG charts for reports. The one module that imports matplotlib (Agg backend: no display needed)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mbert_retrieval.core.io import atomic_path


@dataclass(frozen=True)
class BarSeries:
    """One bar per category; ``None`` leaves a gap. ``low``/``high`` draw an interval when given."""

    label: str
    values: Sequence[float | None]
    low: Sequence[float | None] | None = None
    high: Sequence[float | None] | None = None


def grouped_bar_chart(
    path: str | Path, categories: Sequence[str], series: Sequence[BarSeries], *, title: str, ylabel: str
) -> Path:
    """Grouped bars (one group per category, one bar per series) with interval whiskers; written atomically."""
    fig = bar_figure(categories, series, title=title, ylabel=ylabel)
    import matplotlib.pyplot as plt  # after bar_figure chose the Agg backend

    try:
        target = Path(path)
        with atomic_path(target, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=120)
    finally:
        plt.close(fig)
    return target


def bar_figure(categories: Sequence[str], series: Sequence[BarSeries], *, title: str, ylabel: str) -> Any:
    """The figure ``grouped_bar_chart`` saves (the caller closes it), its title wrapped to fit its width."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    n_cat, n_ser = len(categories), max(1, len(series))
    width = 0.8 / n_ser
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * n_cat * max(1, n_ser / 2) + 2), 4.5))
    try:
        for j, s in enumerate(series):
            xs = [i - 0.4 + width * (j + 0.5) for i in range(n_cat)]
            present = [i for i, v in enumerate(s.values) if v is not None]
            heights = [float(s.values[i]) for i in present]  # type: ignore[arg-type]
            bars = ax.bar([xs[i] for i in present], heights, width=width * 0.95, label=s.label)
            if s.low is not None and s.high is not None:
                err_x, err_lo, err_hi = [], [], []
                for i in present:
                    lo, hi = s.low[i], s.high[i]
                    if lo is not None and hi is not None:
                        err_x.append(xs[i])
                        err_lo.append(float(s.values[i]) - lo)  # type: ignore[arg-type]
                        err_hi.append(hi - float(s.values[i]))  # type: ignore[arg-type]
                if err_x:
                    ax.errorbar(
                        err_x,
                        [float(s.values[i]) for i in present if s.low[i] is not None],  # type: ignore[arg-type]
                        yerr=[err_lo, err_hi],
                        fmt="none",
                        ecolor="black",
                        capsize=2,
                        linewidth=0.8,
                    )
            for bar, h in zip(bars, heights, strict=True):
                ax.annotate(f"{h:.1f}", (bar.get_x() + bar.get_width() / 2, h), ha="center", va="bottom", fontsize=6)
        ax.set_xticks(range(n_cat))
        ax.set_xticklabels(categories, rotation=30 if n_cat > 4 else 0, ha="right" if n_cat > 4 else "center")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7, loc="best")
        ax.grid(axis="y", linewidth=0.3)
        _fit_title(fig, ax, title)
    except BaseException:
        plt.close(fig)
        raise
    return fig


def _fit_title(fig: Any, ax: Any, title: str) -> None:
    """Set ``title`` on ``ax``, wrapped onto more lines until, with the figure laid out, it lies inside
    the figure (a long title centred over the axes was cut at both edges)."""
    renderer = fig.canvas.get_renderer()
    for width in range(max(len(title), 1), 19, -5) or [max(len(title), 1)]:
        ax.set_title(textwrap.fill(title, width), fontsize=10)
        fig.tight_layout()
        box = ax.title.get_window_extent(renderer)
        if box.x0 >= 0 and box.x1 <= fig.bbox.width and box.y1 <= fig.bbox.height:
            break


__all__ = ["BarSeries", "bar_figure", "grouped_bar_chart"]
