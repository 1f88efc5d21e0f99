"""One eval's ``results.json`` as a Markdown table (``results.md``, the stdout of ``eval``)."""

from __future__ import annotations

import math
from typing import Any


def _fmt(value: float | None, scale: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value * scale:.2f}"


def markdown_table(results: dict[str, Any], *, scale: float = 100.0) -> str:
    """One row per dataset, one column per metric (x100 as the paper prints them), plus a mean row
    over the datasets shown when there are several, and a line under the table saying the scale."""
    metrics: list[str] = results["metric_names"]
    rows = results["metrics"]
    info = results.get("datasets", {})
    header = ["dataset", "split", "queries", "docs", *metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 4 + ["---:"] * len(metrics)) + "|"]
    for key, values in rows.items():
        d = info.get(key, {})
        cells = [key, str(d.get("split", "")), f"{d.get('n_queries', 0):,}", f"{d.get('n_docs', 0):,}"]
        cells += [_fmt(values.get(m), scale) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    if len(rows) > 1:
        means = [_fmt(sum(v[m] for v in rows.values()) / len(rows), scale) for m in metrics]
        lines.append("| " + " | ".join([f"**mean ({len(rows)})**", "", "", "", *means]) + " |")
    if scale != 1:
        lines += ["", f"{', '.join(metrics)} x{scale:g} (0.6451 is shown as {_fmt(0.6451, scale)})."]
    return "\n".join(lines)
