"""The one writer of what the project reports: markdown tables and PNG plots.

The experiments' pages (``keras_cnns.lab.report``), the searches' reports
(``keras_cnns.lab.tuning_report``) and the benchmarks (``keras_cnns.benchmark``, ``scripts/``)
all make their tables and figures here, so every table escapes its cells the same way, every
span of time reads alike and no figure touches pyplot's global state. Files are written with
``keras_cnns.storage``'s atomic writes by the caller, which knows which lock it holds.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any


def cell(value: Any) -> str:
    """A table cell: its text, with the characters that would break a markdown row escaped."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def duration(seconds: float) -> str:
    """A span of time as a reader takes it in: ``45 s``, ``12 min`` or ``5.6 h``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:,.0f} min" if seconds < 2 * 3600 else f"{seconds / 3600:,.1f} h"


def table_lines(head: Sequence[Any], body: Sequence[Sequence[Any]]) -> list[str]:
    """A GitHub markdown table as lines: the header, the rule, one line per row."""
    lines = ["| " + " | ".join(cell(h) for h in head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in body]
    return lines


def table(head: Sequence[Any], body: Sequence[Sequence[Any]]) -> str:
    """``table_lines`` joined into one text."""
    return "\n".join(table_lines(head, body))


def figure(width: float, height: float):
    """A matplotlib ``Figure`` on its own Agg canvas (no pyplot, no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png(fig, *, dpi: int = 100) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
