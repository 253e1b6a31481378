"""``drkit inspect``: what a store holds, how good its labels are, and what its views look like."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .fileio import atomic_write_json
from .plots import new_figure, save_figure
from .store import label_warnings, open_store, view_label_stats


def inspect_store(path: str | Path, data: str | None = None, grid: str | Path | None = None,
                  json_path: str | Path | None = None, samples: int = 6, max_records: int = 200_000,
                  views_per_row: int = 4) -> dict[str, Any]:
    """Statistics of a store over its first ``max_records`` records (and, with ``grid``, a PNG of
    replayed views with the teacher's top-3)."""
    from .sources import load_source

    store = open_store(path)
    m = store.manifest
    src = load_source(data or m["source"]["spec"])
    labels = np.asarray(src.labels) if len(src) == store.num_samples else None
    ns, k, c = store.num_views, store.topk, store.num_classes
    views = view_label_stats(store.shard_arrays(), labels, c, k, ns, store.skipped, max_records)
    size_bytes = sum(int(s["bytes"]) for s in m["shards"])
    diagnostics = m.get("diagnostics") or {}
    plain = diagnostics.get("plain")
    stats: dict[str, Any] = {
        "store": str(store.path), "source": m["source"].get("spec"), "samples": store.num_samples,
        "views": ns, "topk": k, "num_classes": c, "recipe": m["recipe"]["spec"],
        "teachers": [t.get("spec") for t in m["teachers"]], "image_size": store.image_size,
        "seed": store.seed, "bytes_per_record": store.bytes_per_record, "total_bytes": size_bytes,
        "records_read": views["views_read"], "teacher_top1": views["top1"],
        "mean_entropy": views["mean_entropy"], "max_entropy": views["max_entropy"],
        "mean_top1_prob": views["mean_top1_prob"], "skipped": len(store.skipped),
        "out_of_fold": bool(diagnostics.get("out_of_fold")),
        "replay": "exact" if store.exact_replay else f"approximate (imported from {store.renderer.get('name')})",
        "content_digests": store.digest_kind, "partner_window": m["partner_window"],
        "plain_teacher_top1": plain.get("top1") if plain else None,
        "plain_mean_top1_prob": plain.get("mean_top1_prob") if plain else None,
        "warnings": label_warnings(plain, views, out_of_fold=bool(diagnostics.get("out_of_fold"))),
    }
    if grid is not None:
        stats["grid"] = str(render_grid(store, src, grid, samples=samples, views=min(views_per_row, ns)))
    if json_path is not None:
        atomic_write_json(json_path, stats)
    return stats


def render_grid(store: Any, src: Any, path: str | Path, samples: int = 6, views: int = 4) -> Path:
    """Replayed views (rows: samples, columns: views) titled with the teacher's top-3."""
    classes = store.classes or [str(i) for i in range(store.num_classes)]
    usable = store.kept_samples()  # --skip-bad
    ids = usable[np.linspace(0, len(usable) - 1, num=min(samples, len(usable))).astype(int)]
    cols = views + 1
    fig = new_figure(2.3 * cols, 2.6 * len(ids))
    axes = fig.subplots(len(ids), cols, squeeze=False)
    load = store.image_loader(src)
    for r, i in enumerate(ids):
        img = load(int(i))
        _show(axes[r][0], img, f"#{i} original\n{classes[int(src.labels[i])]}", 7)
        for v in range(views):
            rec = store.record(int(i), v)
            lines = [f"{classes[int(c)][:12]} {p:.2f}" for c, p in zip(rec["topk_ids"][:3], rec["topk_probs"][:3])]
            if rec.get("mix_mode"):
                lines.insert(0, f"{'mixup' if rec['mix_mode'] == 1 else 'cutmix'} #{i}+#{rec['partner']} "
                                f"λ={rec['lam']:.2f}")
            _show(axes[r][v + 1], store.render_uint8(src, int(i), v, record=rec, image=img), "\n".join(lines), 6.5)
    fig.suptitle(f"{Path(store.path).name}: {store.manifest['recipe']['spec'].split('@')[0]}… "
                 f"views with teacher top-3", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def _show(ax: Any, x: Any, title: str, fontsize: float) -> None:
    """A uint8 CHW image in a titled panel without axes."""
    a = x.numpy()
    ax.imshow(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0), cmap="gray" if a.shape[0] == 1 else None,
              vmin=0, vmax=255)
    ax.set_title(title, fontsize=fontsize)
    ax.axis("off")


def format_stats(s: dict[str, Any]) -> str:
    """Human table for the terminal."""
    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.2f} %"

    rows = [("store", s["store"]), ("source", s["source"]), ("samples x views", f"{s['samples']} x {s['views']}"),
            ("top-k", s["topk"]), ("classes", s["num_classes"]), ("recipe", s["recipe"]),
            ("teachers", ", ".join(s["teachers"])), ("teacher input", f"{s['image_size']} px"),
            ("bytes / record", s["bytes_per_record"]), ("total size", f"{s['total_bytes'] / 1e6:.2f} MB"),
            ("teachers on plain images", "n/a (store predates diagnostics)" if s["plain_teacher_top1"] is None else
             f"top-1 {pct(s['plain_teacher_top1'])}, mean top-1 probability {s['plain_mean_top1_prob']:.3f}"),
            ("out-of-fold teachers", "yes" if s["out_of_fold"] else "no"),
            ("teacher top-1 vs labels", pct(s["teacher_top1"])),
            ("mean top-1 probability", "n/a" if s["mean_top1_prob"] is None else f"{s['mean_top1_prob']:.3f}"),
            ("mean entropy", "n/a" if s["mean_entropy"] is None else
             f"{s['mean_entropy']:.3f} nats (max {s['max_entropy']:.3f})"),
            ("skipped samples", s["skipped"]),
            ("replay", s.get("replay", "exact")),
            ("content digests", s.get("content_digests") or "none (made before drkit recorded them, or imported)")]
    if s.get("partner_window"):
        rows.append(("mixing partners", f"within {s['partner_window']} samples (a streamed source)"))
    if "grid" in s:
        rows.append(("grid", s["grid"]))
    rows += [("warning", w) for w in s.get("warnings", [])]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
