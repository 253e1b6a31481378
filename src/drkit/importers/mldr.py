"""``drkit import-mldr``: the reference work's reinforcement files (apple/ml-dr) as a drkit store.

The reference writes one ``{index}.pth.tar`` per training image, ``torch.save((index, samples))``,
each of the NS samples ``{"params": [...], "prob": (probs, ids)}`` (top-k, unsorted), plus
``config.pth.tar``. With ``compress`` on, ``params`` is positional: the mixing partner's id (or
``None``) when the config mixes, then one entry per op with parameters, in the fixed op order::

    resize: its size | random_crop: (top, left) in padded, resized pixels |
    random_resized_crop: (i, j, h, w) in source pixels | random_horizontal_flip: bool |
    rand_augment: [(op index, signed magnitude)] x num_ops or None | random_erase: (x, y, h, w)
    in output pixels, zero fill, or None | mixup: lambda or None | cutmix: [lambda, x1, y1, x2, y2] or None

A mixed view stores ``[own, partner]`` pairs per op, and may apply MixUp and then CutMix. Files
are read with a data-only unpickler, from a directory or streamed out of a ``.tar.gz``. The
reference replays through PIL, so an imported store is ``"replay": "approximate"``.
"""
from __future__ import annotations

import json
import os
import re
import tarfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from ..augment import Recipe, get_recipe
from ..augment.autoaugment import AA_OP_NAMES, magnitudes
from ..augment.mixing import MODE_CUTMIX, MODE_MIXUP
from ..errors import DrkitError
from ..store import StoreWriter, array_schema, shard_ranges
from ..store.format import store_header
from .safe_pickle import load_torch_save

#: the reference's fixed op order, and the ops that record no parameters
ORDER = ("uint8", "resize", "center_crop", "random_crop", "random_resized_crop", "random_horizontal_flip",
         "rand_augment", "to_tensor", "random_erase", "normalize", "mixup", "cutmix")
NO_PARAMS = ("uint8", "center_crop", "to_tensor", "normalize")
MIXING = ("mixup", "cutmix")
_SAMPLE = re.compile(r"^(\d+)\.pth\.tar$")


def enabled_ops(aug: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The configured ops (``enable: false`` removed), with their settings."""
    out = {}
    for name, settings in aug.items():
        settings = dict(settings or {})
        if settings.pop("enable", True):
            out[name] = settings
    unknown = sorted(set(out) - set(ORDER))
    if unknown:
        raise DrkitError(f"reference config uses ops drkit cannot replay: {', '.join(unknown)}")
    return out


def _side(value: Any, what: str) -> int:
    """A square output size from an int or an [h, w] pair."""
    sizes = [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]
    if len(set(sizes)) != 1 or sizes[0] < 1:
        raise DrkitError(f"reference config: {what} size {value!r} is not one square side")
    return sizes[0]


def recipe_for(ops: dict[str, dict[str, Any]]) -> tuple[Recipe, int]:
    """The drkit recipe that replays the reference's op list, and the output size."""
    if "center_crop" in ops:
        raise DrkitError("reference config uses center_crop before its random crop: importing it is not supported")
    flip = float(ops.get("random_horizontal_flip", {}).get("p", 0.5)) if "random_horizontal_flip" in ops else 0.0
    if "random_resized_crop" in ops:
        s = ops["random_resized_crop"]
        size = _side(s["size"], "random_resized_crop")
        scale, ratio = s.get("scale", (0.08, 1.0)), s.get("ratio", (3 / 4, 4 / 3))
        parts = [f"rrc@scale_min={scale[0]},scale_max={scale[1]},ratio_min={ratio[0]},ratio_max={ratio[1]},"
                 f"flip={flip}"]
    elif "random_crop" in ops:
        s = ops["random_crop"]
        size = _side(s["size"], "random_crop")
        resize = _side(ops["resize"]["size"], "resize") if "resize" in ops else 0
        pad = s.get("padding") or 0
        if not isinstance(pad, int):
            raise DrkitError(f"reference config: random_crop padding {pad!r} is not one number")
        parts = [f"padcrop@resize={resize},pad={pad},flip={flip}"]
    else:
        raise DrkitError("reference config has neither random_resized_crop nor random_crop")
    if "rand_augment" in ops:
        s = ops["rand_augment"]
        parts.append(f"ra@n={int(s.get('num_ops', 2))},m={int(s.get('magnitude', 9))},"
                     f"bins={int(s.get('num_magnitude_bins', 31))}")
    if "random_erase" in ops:
        s = ops["random_erase"]
        scale, ratio = s.get("scale", (0.02, 0.33)), s.get("ratio", (0.3, 3.3))
        parts.append(f"re@p={float(s.get('p', 0.5))},scale_min={scale[0]},scale_max={scale[1]},"
                     f"ratio_min={ratio[0]},ratio_max={ratio[1]},fill=zero,units=px")
    if any(m in ops for m in MIXING):
        mu, cm = ops.get("mixup"), ops.get("cutmix")
        parts.append(f"refmix@mixup={float(mu.get('alpha', 1.0)) if mu else 0.0},"
                     f"div_by={float(mu.get('div_by', 1.0)) if mu else 1.0},"
                     f"mixup_p={float(mu.get('p', 1.0)) if mu else 0.0},"
                     f"cutmix={float(cm.get('alpha', 1.0)) if cm else 0.0},"
                     f"cutmix_p={float(cm.get('p', 1.0)) if cm else 0.0}")
    return get_recipe("+".join(parts)), size


def ra_bin(op: int, magnitude: float, bins: int, size: int) -> tuple[int, int]:
    """(magnitude bin, sign) of a stored signed RandAugment magnitude (translations in output pixels)."""
    scale = size if AA_OP_NAMES[op] in ("TranslateX", "TranslateY") else 1.0
    value = abs(float(magnitude))
    for b, m in enumerate(magnitudes(op, bins, False)):
        if abs(m * scale - value) <= 1e-3 * max(1.0, value):
            return b, int(float(magnitude) < 0)
    raise DrkitError(f"RandAugment {AA_OP_NAMES[op]} magnitude {magnitude} is not in the {bins}-bin table")


def view_params(recipe: Recipe, values: dict[str, Any], size: int) -> dict[str, dict[str, int]]:
    """drkit base-op parameters of one image of a reference view (``values``: op name -> its entry)."""
    flip = int(bool(values.get("random_horizontal_flip", False)))
    if recipe.ops[0].name == "rrc":
        i, j, h, w = (int(v) for v in values["random_resized_crop"])
        out: dict[str, dict[str, int]] = {"rrc": {"top": i, "left": j, "height": h, "width": w, "flip": flip}}
    else:
        top, left = (int(v) for v in values["random_crop"])
        out = {"padcrop": {"top": top, "left": left, "flip": flip}}
    ops = {op.name: op for op in recipe.ops}
    if "ra" in ops:
        n = ops["ra"].settings["n"]
        chosen = values.get("rand_augment") or [(0, 0.0)] * n  # None: skipped, identity ops
        if len(chosen) != n:
            raise DrkitError(f"a view has {len(chosen)} RandAugment ops, the config {n}")
        out["ra"] = {}
        for k, (op, m) in enumerate(chosen):
            b, sign = ra_bin(int(op), m, ops["ra"].settings["bins"], size)
            out["ra"].update({f"op{k}": int(op), f"mag{k}": b, f"sign{k}": sign})
    if "re" in ops:
        box = values.get("random_erase")
        x, y, h, w = (int(v) for v in box) if box is not None else (0, 0, 0, 0)
        out["re"] = {"on": int(box is not None), "top": x, "left": y, "h": h, "w": w}
    return out


def mix_fields(values: dict[str, Any], partner: int | None, index: int) -> dict[str, Any]:
    """The mixing arrays of one view (``"reference"`` layout) from its ``mixup``/``cutmix`` entries."""
    lam, box, mode = 1.0, (0, 0, 0, 0), 0
    if partner is not None and values.get("mixup") is not None:
        lam, mode = float(values["mixup"]), mode | MODE_MIXUP
    if partner is not None and values.get("cutmix") is not None:
        _, x1, y1, x2, y2 = (v for v in values["cutmix"])  # x: rows, y: columns
        box, mode = (int(x1), int(y1), int(x2), int(y2)), mode | MODE_CUTMIX
    return {"partner": index if partner is None else int(partner), "lam": lam, "box": box, "mix_mode": mode}


def sample_records(recipe: Recipe, names: list[str], obj: Any, index: int, ctx: dict[str, int],
                   where: str) -> dict[str, np.ndarray]:
    """The stored arrays (``[NS, ...]``) of one reference file's ``(index, samples)``."""
    if not (isinstance(obj, tuple) and len(obj) == 2 and obj[0] == index and isinstance(obj[1], list)):
        raise DrkitError(f"{where}: expected (index {index}, [samples]), found something else")
    if len(obj[1]) != ctx["views"]:
        raise DrkitError(f"{where}: {len(obj[1])} samples, the config says {ctx['views']}")
    rows, own_views, partner_views = {}, [], []  # views encoded in one call a file (~150 µs a call however few)
    for v in obj[1]:
        params = list(v["params"])
        partner = params.pop(0) if recipe.mixes else None
        if partner is not None and not 0 <= int(partner) < ctx["samples"]:
            raise DrkitError(f"{where}: mixing partner {partner} is outside 0..{ctx['samples'] - 1}")
        values = dict(zip(names, params))
        own = {k: (x[0] if partner is not None and k not in MIXING else x) for k, x in values.items()}
        own_views.append(view_params(recipe, own, ctx["size"]))
        if recipe.mixes:  # an unmixed view's partner is itself (its code is never rendered)
            other = {k: x[1] for k, x in values.items() if k not in MIXING} if partner is not None else own
            partner_views.append(view_params(recipe, other, ctx["size"]))
        for k, x in {**(mix_fields(values, partner, index) if recipe.mixes else {}),
                     **dict(zip(("topk_ids", "topk_probs"), _topk(v["prob"], ctx, where)))}.items():
            rows.setdefault(k, []).append(x)
    codes, n = recipe.codec.encode_many(own_views + partner_views), len(own_views)
    rows = {"params": codes[:n], **({"partner_params": codes[n:]} if recipe.mixes else {}), **rows}
    schema = array_schema(recipe.code_bytes, ctx["topk"], ctx["classes"], recipe.mix_layout)
    return {k: np.stack([np.asarray(x) for x in xs]).astype(schema[k]["dtype"]) for k, xs in rows.items()}


def checked_records(recipe: Recipe, names: list[str], obj: Any, index: int, ctx: dict[str, int],
                    where: str) -> dict[str, np.ndarray]:
    """:func:`sample_records`, any malformed entry refused with one line naming the file."""
    try:
        return sample_records(recipe, names, obj, index, ctx, where)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError) as exc:
        raise DrkitError(f"{where}: not a reference sample the config describes ({type(exc).__name__}: "
                         f"{exc})") from None


def _topk(prob: Any, ctx: dict[str, int], where: str) -> tuple[np.ndarray, np.ndarray]:
    """(ids, probabilities) sorted by probability (ties by class id) from the reference's unsorted pair."""
    p, c = (np.asarray(a, dtype=np.float64) for a in prob)
    if len(c) != ctx["topk"] or c.min(initial=0) < 0 or c.max(initial=0) >= ctx["classes"]:
        raise DrkitError(f"{where}: top-k ids must be {ctx['topk']} classes below {ctx['classes']}")
    order = np.lexsort((c, -p))
    return c[order].astype(np.int64), p[order]


def plain(obj: Any) -> Any:
    """JSON-ready copy of a config value (numpy scalars, tuples)."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj if isinstance(obj, (str, int, float, bool)) or obj is None else str(obj)


def _members(path: Path) -> Iterator[tuple[str, bytes]]:
    """(file name, bytes) of every ``*.pth.tar`` in a directory or a ``.tar.gz`` (streamed)."""
    if path.is_dir():
        yield from ((n, (path / n).read_bytes()) for n in sorted(os.listdir(path), key=lambda n: (len(n), n))
                    if n.endswith(".pth.tar"))
        return
    try:
        with tarfile.open(path, "r|*") as tar:
            for member in tar:
                name = os.path.basename(member.name)
                if member.isfile() and name.endswith(".pth.tar"):
                    f = tar.extractfile(member)
                    yield name, f.read() if f is not None else b""
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DrkitError(f"cannot read {path} as a directory or tar archive: {exc}") from None


def read_config(path: Path) -> dict[str, Any]:
    """The reference's generation config (``config.pth.tar``), found before any sample is used."""
    for name, data in _members(path):
        if name == "config.pth.tar":
            config = load_torch_save(data, f"{path}:{name}")
            if not isinstance(config, dict) or not isinstance(config.get("reinforce"), dict):
                raise DrkitError(f"{path}:{name} is not a reference config (no 'reinforce' section)")
            return config
    raise DrkitError(f"{path} holds no config.pth.tar: is it a reference reinforcement directory?")


def store_config(src: Any, config: dict[str, Any], recipe: Recipe, size: int, path: Path,
                 samples_per_shard: int, digests: bool = False) -> dict[str, Any]:
    """The imported store's configuration (what ``run.json`` and the manifest start with)."""
    import torchvision

    r = config["reinforce"]
    teacher = plain(config.get("teacher", {}))
    renderer = {"name": "ml-dr", "version": 2, "device": "cpu", "torch": torch.__version__,
                "torchvision": torchvision.__version__}
    return store_header(src, [{"spec": f"ml-dr:{json.dumps(teacher, sort_keys=True)}", "imported": True}], recipe,
                        image_size=size, recipe_request="import-mldr", recipe_side=size,
                        num_views=int(r["num_samples"]), topk=int(r["topk"]), seed=0,
                        samples_per_shard=samples_per_shard, renderer=renderer, sampler=None,
                        content_digest=src.digest_kind if digests else None, replay="approximate",
                        imported_from={"format": "ml-dr", "path": str(path), "config": plain(r)})


def import_mldr(path: str | Path, data: Any, out: str | Path, images_per_shard: int = 1024,
                progress: bool = True, command: list[str] | None = None, digests: bool = False,
                resume: bool = False) -> Path:
    """Convert a reference reinforcement directory or ``.tar.gz`` into a store at ``out``. ``data``
    is the source it reinforced (spec or Source); ``digests`` reads every image once to record its
    content digest; ``resume`` keeps the finished shards of an import that was killed."""
    from ..sources import load_source

    path, out = Path(path), Path(out)
    if not path.exists():
        raise DrkitError(f"{path} does not exist")
    src = load_source(data) if isinstance(data, str) else data
    config = read_config(path)
    r = config["reinforce"]
    if not r.get("compress", False):
        raise DrkitError(f"{path}: uncompressed parameters (compress: false) are not supported; "
                         "regenerate with compress: true")
    ops = enabled_ops(r.get("image_augmentation", {}))
    recipe, size = recipe_for(ops)
    if digests and src.digest_kind is None:
        raise DrkitError(f"{src.spec} cannot digest its images: import without --digests")
    writer = StoreWriter(out, store_config(src, config, recipe, size, path, images_per_shard, digests), resume=resume)
    try:
        _convert(path, src, ops, recipe, size, writer, progress)
        writer.close({"command": command or ["import-mldr"], "source": str(path)})
    except BaseException:
        writer.abandon(keep_finished=False)  # a refused import leaves nothing behind
        raise
    return writer.root


def _convert(path: Path, src: Any, ops: dict[str, Any], recipe: Recipe, size: int, writer: StoreWriter,
             progress: bool) -> None:
    """Every sample file into the writer; each shard sealed when its last sample is in."""
    from tqdm.auto import tqdm

    r, n = writer.config, len(src)
    names = [k for k in ORDER if k in ops and k not in NO_PARAMS]
    ctx = {"views": int(r["num_views"]), "topk": int(r["topk"]), "classes": int(r["num_classes"]), "size": size,
           "samples": n}
    per = int(r["samples_per_shard"])
    left = [b - a for a, b in shard_ranges(n, per)]
    seen = np.zeros(n, dtype=bool)
    files = ((int(m.group(1)), name, data) for name, data in _members(path) if (m := _SAMPLE.match(name)))
    for index, name, data in tqdm(files, total=n, unit="img", desc="import", disable=not progress):
        where = f"{path}:{name}"
        if not 0 <= index < n or seen[index]:
            raise DrkitError(f"{where}: index {index} is outside 0..{n - 1} or repeated")
        k = index // per
        seen[index] = True
        if writer.done(k):  # --resume: this shard was written before the import was stopped
            continue
        arrays = checked_records(recipe, names, load_torch_save(data, where), index, ctx, where)
        digest = np.full(ctx["views"], src.digest(index) if writer.digests else -1, dtype=np.int64)
        writer.add(k, np.full(ctx["views"], index), np.arange(ctx["views"]), arrays, digests=digest)
        left[k] -= 1
        if left[k] == 0:
            writer.seal(k)
    if not seen.all():
        missing = np.flatnonzero(~seen)
        raise DrkitError(f"{path} lacks {missing.size} of {n} sample files (first: {missing[0]}.pth.tar): "
                         "is --data the dataset it reinforced?")
