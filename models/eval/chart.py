"""The retrieval bar chart (`kiosk eval retrieval --chart`), drawn with matplotlib."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from models.errors import UserError
from models.io import write_bytes_atomic


def retrieval_chart(results: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    """Grouped bars of top-1 and top-5 per embedder, like the paper's Figure 3, as a PNG."""
    try:
        # a bare Figure: no pyplot, so no global backend state (the GUI may share it)
        from matplotlib.figure import Figure
    except ImportError:  # installations such as the door bundle leave matplotlib out
        raise UserError("--chart needs matplotlib: pip install matplotlib") from None
    import numpy as np

    names = [row["embedder"] for row in results]
    x = np.arange(len(names))
    fig = Figure(figsize=(max(4.0, 1.6 * len(names) + 2), 4.0))
    ax = fig.subplots()
    for offset, key, label in ((-0.2, "top1", "top-1"), (0.2, "top5", "top-5")):
        values = [100 * row[key] for row in results]
        bars = ax.bar(x + offset, values, 0.4, label=label)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks(x, names, rotation=15, ha="right")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 118)  # room above the bars for the legend
    ax.set_title(title)
    ax.legend(loc="upper left", ncols=2)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, dpi=120, format="png")
    write_bytes_atomic(path, png.getvalue())
