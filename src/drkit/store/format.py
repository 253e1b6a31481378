"""The store format: every shard array is ``[samples, views, *per_record]`` with a fixed width, so
one record is a fixed-size slice read without touching the other NS-1 views; and the manifest."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from ..errors import RecipeError
from ..fileio import sha256_bytes
from ..textspec import split_options

if TYPE_CHECKING:
    from ..augment import Recipe, ViewParams

FORMAT_NAME = "drkit-store"
#: 2: the manifest spells out renderer, sampler, recipe side, digests, replay and partner window;
#: 3: the importer's crop and erasing are settings of drkit's ops (:data:`RESPELT`); 4: the manifest
#: records its own sha256 (:func:`manifest_digest`); formats 1-2 are upgraded when read (:func:`upgrade_manifest`)
FORMAT_VERSION = 4
MANIFEST = "manifest.json"
RUN_CONFIG = "run.json"
SHARD_DIR = "shards"

#: the content digests a store may record: each a ``Source.digest_kind`` (pixels of array sources, file bytes)
DIGEST_KINDS = ("crc32-array-v1", "crc32-file-v1")
REQUIRED_MANIFEST_KEYS = ("format", "format_version", "drkit_version", "source", "num_classes", "teachers",
                          "image_size", "recipe", "num_samples", "num_views", "topk", "seed",
                          "samples_per_shard", "arrays", "shards", "renderer", "sampler", "recipe_side",
                          "content_digest", "replay", "partner_window")
#: what a version-1 manifest meant by leaving a key out
V1_DEFAULTS: dict[str, Any] = {"renderer": {"name": "drkit", "version": 1, "device": "cpu"}, "sampler": 1,
                               "recipe_side": None, "content_digest": None, "replay": "exact", "partner_window": 0}
#: the settings a store header takes from its maker, in manifest order (``replay`` defaults to exact)
HEADER_FIELDS = ("image_size", "recipe_request", "recipe_side", "num_views", "topk", "seed", "samples_per_shard",
                 "renderer", "sampler", "content_digest", "replay")


def manifest_digest(m: Mapping[str, Any]) -> str:
    """sha256 of a manifest's canonical JSON but its ``provenance`` (the command and time): format 4 records it,
    so an edit into another valid setting (a recipe magnitude, a seed) is refused, not replayed. Against accidents,
    not forgers: a manifest rewritten as format 3 (which has none) is read without it."""
    body = {k: v for k, v in m.items() if k not in ("manifest_sha256", "provenance")}
    return sha256_bytes(json.dumps(body, sort_keys=True).encode())


def store_header(src: Any, teachers: list[dict[str, Any]], recipe: Recipe, **fields: Any) -> dict[str, Any]:
    """What determines a store's content (``run.json``), for ``reinforce`` and the importers:
    ``fields`` names all of :data:`HEADER_FIELDS` (``replay`` optional), then any extra keys."""
    f = {"replay": "exact", **fields}
    missing = [k for k in HEADER_FIELDS if k not in f]
    if missing:
        raise TypeError(f"store_header needs {missing}")
    num_classes = len(src.classes)
    head = {"source": src.describe(), "num_classes": num_classes, "teachers": teachers, "in_chans": src.channels,
            "recipe": recipe.describe(), "num_samples": len(src),
            "arrays": array_schema(recipe.code_bytes, int(f["topk"]), num_classes, recipe.mix_layout),
            "partner_window": int(getattr(src, "partner_window", 0))}
    for k in ("image_size", "num_views", "topk", "seed", "samples_per_shard"):
        f[k] = int(f[k])
    return {**head, **f}


#: format 2's importer-only ops -> (format 3's op, the old op's defaults, the settings it implies)
RESPELT: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "rcrop": ("padcrop", {"resize": 0, "pad": 0, "flip": 0.5}, {}),
    "erase": ("re", {"p": 0.25, "scale_min": 0.02, "scale_max": 0.33, "ratio_min": 0.3, "ratio_max": 3.3},
              {"fill": "zero", "units": "px"})}


def respell(spec: str, renderer: int) -> str:
    """A format-1/2 recipe spec in format 3's words: :data:`RESPELT`, and renderer 1's erasing noise."""
    parts = []
    for token in spec.split("+"):
        name, settings = split_options(token, context="recipe op", error=RecipeError)
        name = name.strip()
        noise = {"fill": "generator"} if name == "re" and renderer < 2 else {}
        new, then, implied = RESPELT.get(name, (name, {}, noise))
        parts.append(f"{new}@" + ",".join(f"{k}={v}" for k, v in {**then, **settings, **implied}.items()))
    return "+".join(p.rstrip("@") for p in parts)


def upgrade_manifest(m: dict[str, Any]) -> dict[str, Any]:
    """A format-1 or 2 manifest as formats 3-4 say it (in memory, without a digest): format 1's missing keys
    filled in, the recipe respelt (:func:`respell`) and described with every setting this drkit has."""
    out = {**V1_DEFAULTS, **m, "format_version": FORMAT_VERSION}
    out["renderer"] = dict(out["renderer"] or V1_DEFAULTS["renderer"])
    if isinstance(m.get("recipe"), dict):
        out["recipe"] = {**m["recipe"], **current_recipe(out)}
    return out


def current_recipe(doc: dict[str, Any]) -> dict[str, Any]:
    """An earlier format's manifest or ``run.json`` recipe, respelt for its renderer, fully described."""
    from ..augment import get_recipe

    renderer = int((doc.get("renderer") or V1_DEFAULTS["renderer"]).get("version", 1))
    return get_recipe(respell(str(doc["recipe"].get("spec", "")), renderer)).describe()


def ids_dtype(num_classes: int) -> np.dtype:
    """uint16 when class ids fit, else int32 -- never floats."""
    return np.dtype(np.uint16) if num_classes <= 65535 else np.dtype(np.int32)


def array_schema(code_bytes: int, topk: int, num_classes: int, mixes: bool | str | None) -> dict[str, dict[str, Any]]:
    """name -> {dtype, shape per record}, which readers check shards against. ``mixes``: the recipe's
    mix layout (``"drkit"`` or True; ``"reference"``, imported: pixel box, the partner's own code)."""
    arrays = [("params", "uint8", [code_bytes]), ("topk_ids", ids_dtype(num_classes).name, [topk]),
              ("topk_probs", "float16", [topk])]
    if mixes == "reference":
        arrays += [("partner", "uint32", []), ("lam", "float16", []), ("box", "uint16", [4]),
                   ("mix_mode", "uint8", []), ("partner_params", "uint8", [code_bytes])]
    elif mixes:
        arrays += [("partner", "uint32", []), ("partner_view", "uint16", []), ("lam", "float16", []),
                   ("box", "uint8", [4]), ("mix_mode", "uint8", [])]
    return {name: {"dtype": dtype, "shape": shape} for name, dtype, shape in arrays}


def bytes_per_record(schema: dict[str, dict[str, Any]]) -> int:
    return int(sum(np.dtype(a["dtype"]).itemsize * int(np.prod(a["shape"], dtype=np.int64)) for a in schema.values()))


def shard_ranges(num_samples: int, samples_per_shard: int) -> list[tuple[int, int]]:
    """Fixed sample ranges: the shard layout depends on nothing but N and the shard size."""
    return [(s, min(s + samples_per_shard, num_samples)) for s in range(0, num_samples, samples_per_shard)]


def shard_name(index: int) -> str:
    return f"{SHARD_DIR}/{index:05d}.safetensors"


#: per-sample content digests, in a file beside the shard (records keep their bytes); 0: skipped
CONTENT_SCHEMA: dict[str, dict[str, Any]] = {"content": {"dtype": "uint32", "shape": []}}


def content_name(index: int) -> str:
    return f"{SHARD_DIR}/{index:05d}.content.safetensors"


# -- the record: the only place that knows how a view's parameters are stored --------------------
def pack(recipe: Recipe, views: Sequence[ViewParams]) -> dict[str, np.ndarray]:
    """Stored arrays of views (``[len(views), ...]``): the base-op code and, when the recipe mixes,
    partner, its view, λ (float16 bits: the stored value is the one used), box (1/255 units), mode."""
    out = {"params": recipe.codec.encode_many(list(views))}
    if recipe.mixes:
        mix = [p["mix"] for p in views]
        out.update({"partner": np.array([m["partner"] for m in mix], np.uint32),
                    "partner_view": np.array([m["partner_view"] for m in mix], np.uint16),
                    "lam": np.array([m["lam"] for m in mix], np.uint16).view(np.float16),
                    "box": np.array([(m["top"], m["left"], m["h"], m["w"]) for m in mix], np.uint8).reshape(-1, 4),
                    "mix_mode": np.array([m["mode"] for m in mix], np.uint8)})
    return out


def unpack(recipe: Recipe, row: Mapping[str, Any]) -> ViewParams:
    """One stored record (arrays indexed down to one view) -> its parameters (:func:`unpack_many` batched)."""
    params = recipe.decode(row["params"])
    if recipe.mixes:
        lam = int(np.asarray(row["lam"], dtype=np.float16).view(np.uint16))
        params["mix"] = _mix(recipe, int(row["mix_mode"]), int(row["partner"]),
                             int(row["partner_view"]) if "partner_view" in row else 0, lam,
                             [int(b) for b in row["box"]],
                             recipe.decode(row["partner_params"]) if "partner_params" in row else None)
    return params


def unpack_many(recipe: Recipe, rows: Mapping[str, Any]) -> list[ViewParams]:
    """Stored records (arrays ``[n, ...]``) -> the views' parameters, the codes decoded in one pass."""
    params = recipe.codec.decode_many(np.asarray(rows["params"]))
    if not recipe.mixes:
        return params
    n = len(params)
    mode, partner = np.asarray(rows["mix_mode"]).tolist(), np.asarray(rows["partner"]).tolist()
    views = np.asarray(rows["partner_view"]).tolist() if "partner_view" in rows else [0] * n
    lam = np.asarray(rows["lam"], dtype=np.float16).view(np.uint16).tolist()
    box = np.asarray(rows["box"]).reshape(n, 4).tolist()
    others = recipe.codec.decode_many(np.asarray(rows["partner_params"])) if "partner_params" in rows else [None] * n
    for r, p in enumerate(params):
        p["mix"] = _mix(recipe, mode[r], partner[r], views[r], lam[r], box[r], others[r])
    return params


def _mix(recipe: Recipe, mode: int, partner: int, view: int, lam: int, box: list[int],
         partner_params: ViewParams | None) -> dict[str, Any]:
    """A view's ``"mix"`` entry (box: top, left, height, width): an imported view's box is stored as
    pixel corners, with the partner's own parameters; drkit's in 1/255 units, with the partner's view."""
    top, left, h, w = box
    mix = {"mode": mode, "partner": partner, "partner_view": view, "lam": lam, "top": top, "left": left}
    if recipe.mix_layout == "reference":
        return {**mix, "h": h - top, "w": w - left, "partner_params": partner_params}
    return {**mix, "h": h, "w": w}


def partner_ids(arrays: Mapping[str, Any]) -> np.ndarray | None:
    """Mixing partner of every record (``-1``: unmixed), or ``None`` when the recipe never mixes."""
    if "mix_mode" not in arrays:
        return None
    mode = np.asarray(arrays["mix_mode"])
    return np.where(mode > 0, np.asarray(arrays["partner"]).astype(np.int64), -1)
