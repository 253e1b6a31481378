"""PNG figures: reliability diagram (calibration), training curves, and the bare Agg figures they (and
``drkit inspect``'s grid) draw on: nothing at import, no display needed, the caller's pyplot state left alone."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, List, Mapping, Sequence, Union

PathLike = Union[str, "os.PathLike[str]"]


def new_figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Any, path: PathLike, dpi: float | None = None) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=dpi or "figure")
    return out


def reliability_diagram(bins: Mapping[str, Any], path: PathLike, title: str = "") -> Path:
    """A reliability diagram of ``bins`` (``MetricAccumulator.bins``): per-bin accuracy against the diagonal,
    the gap to mean confidence shaded, ECE in the title; below, samples per bin (sparse bins read with care)."""
    edges = [float(e) for e in bins["edges"]]
    count = [int(n) for n in bins["count"]]
    filled = [i for i, n in enumerate(count) if n > 0]
    left, width = edges[:-1], [b - a for a, b in zip(edges[:-1], edges[1:])]
    acc, conf = ([float(v[i]) for i in filled] for v in (bins["accuracy"], bins["confidence"]))
    fleft, fwidth = [left[i] for i in filled], [width[i] for i in filled]
    fig = new_figure(5.0, 6.0)
    grid = fig.add_gridspec(2, 1, height_ratios=(3, 1), hspace=0.08)
    ax = fig.add_subplot(grid[0])
    ax.bar(fleft, acc, width=fwidth, align="edge", color="#4477aa", edgecolor="black", linewidth=0.6, label="accuracy")
    ax.bar(fleft, [c - a for a, c in zip(acc, conf)], width=fwidth, bottom=acc, align="edge", color="#ee6677",
           alpha=0.45, edgecolor="#cc3311", hatch="//", linewidth=0.6, label="gap to confidence")
    ax.plot([0, 1], [0, 1], linestyle="--", color="gray", linewidth=1, label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy")
    ax.tick_params(labelbottom=False)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(f"{title + ' — ' if title else ''}ECE {100 * float(bins.get('ece', math.nan)):.2f}%")
    hist = fig.add_subplot(grid[1], sharex=ax)
    hist.bar(left, count, width=width, align="edge", color="#888888", edgecolor="black", linewidth=0.4)
    hist.set(xlabel="confidence", ylabel="count")
    return save_figure(fig, path)


_CURVE_PANELS = (("loss", lambda k: "loss" in k), ("accuracy", lambda k: any(t in k for t in ("top1", "top5", "acc"))),
                 ("learning rate", lambda k: k == "lr"))
_X_KEYS = ("epoch", "step")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def plot_curves(metrics_rows: Sequence[Mapping[str, Any]], path: PathLike, title: str = "") -> Path:
    """Per-epoch training curves from the trainer's dict rows to a PNG: ``loss`` keys share a panel,
    ``top1``/``top5``/``acc`` another, ``lr`` its own (log scale when positive); non-finite values skipped;
    x is ``epoch``, else ``step``, else the row index."""
    rows: List[Mapping[str, Any]] = list(metrics_rows)
    x_key = next((k for k in _X_KEYS if any(k in r for r in rows)), None)
    keys = list(dict.fromkeys(k for r in rows for k, v in r.items() if k not in _X_KEYS and _is_number(v)))
    panels = [(name, members) for name, match in _CURVE_PANELS if (members := [k for k in keys if match(k)])]
    fig = new_figure(4.0 * max(1, len(panels)), 3.2)
    if not panels:
        ax = fig.add_subplot(1, 1, 1)
        ax.text(0.5, 0.5, "no metrics to plot", ha="center", va="center")
        ax.set_axis_off()
    for i, (name, members) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for k in members:
            pts = [(r[x_key] if x_key and _is_number(r.get(x_key)) else j, r[k])
                   for j, r in enumerate(rows) if _is_number(r.get(k))]
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker="o" if len(pts) < 30 else None, markersize=3, label=k)
        if name == "learning rate" and all(r["lr"] > 0 for r in rows if _is_number(r.get("lr"))):
            ax.set_yscale("log")
        ax.set(title=name, xlabel=x_key or "row")
        ax.grid(True, alpha=0.3)
        if len(members) > 1 or name != "learning rate":
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


__all__: List[str] = ["new_figure", "plot_curves", "reliability_diagram", "save_figure"]
