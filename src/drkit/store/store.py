"""Reading a reinforced store: manifest, random access to records, replay, verification."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from ..augment import Recipe, ViewParams, get_recipe, partner_of
from ..augment import partner_params as partner_view_params
from ..errors import StoreError
from .check import open_content, open_shard, read_manifest
from .format import array_schema, bytes_per_record, unpack, unpack_many
from .shards import ShardReader

if TYPE_CHECKING:
    from ..augment.replay import ImageLoader
    from ..sources import Source


_LABELS = ("topk_ids", "topk_probs")
#: stores whose approximate replay was already announced in this process
_WARNED: set[str] = set()
#: below this many records, :meth:`Store.records` reads them one by one
_FEW_RECORDS = 8


def _record(params: ViewParams, topk_ids: np.ndarray, topk_probs: np.ndarray) -> dict[str, Any]:
    """A record as :meth:`Store.record` gives it: parameters, top-k, and the mixing fields spelled out."""
    rec: dict[str, Any] = {"params": params, "topk_ids": topk_ids, "topk_probs": topk_probs}
    mix = params.get("mix")
    if mix is not None:
        rec.update(partner=mix["partner"], partner_view=mix["partner_view"],
                   lam=float(np.array([mix["lam"]], np.uint16).view(np.float16)[0]),
                   box=[mix["top"], mix["left"], mix["h"], mix["w"]], mix_mode=mix["mode"])
    return rec


class Store:
    """A reinforced dataset on disk. Records are read lazily through memory maps."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.manifest = m = read_manifest(self.path)
        #: the renderer that made the pixels the teacher labelled
        self.renderer: dict[str, Any] = dict(m["renderer"])
        self.recipe: Recipe = get_recipe(m["recipe"])
        self.num_samples, self.num_views, self.topk, self.num_classes, self.image_size, self.seed = (
            int(m[k]) for k in ("num_samples", "num_views", "topk", "num_classes", "image_size", "seed"))
        self.schema: dict[str, dict[str, Any]] = m["arrays"]
        self.classes: list[str] = list(m["source"].get("classes", []))
        if self.schema != array_schema(self.recipe.code_bytes, self.topk, self.num_classes, self.recipe.mix_layout):
            raise StoreError(f"store {self.path}: the manifest's array schema does not follow from its recipe, "
                             "top-k and class count: the store was edited; rebuild it")
        self._starts = np.array([s["start"] for s in m["shards"]], dtype=np.int64)
        self._readers: dict[int, ShardReader] = {}
        self._content: dict[int, np.ndarray] = {}
        self._per_shard = int(m["samples_per_shard"])
        self._checked_sources: set[int] = set()
        self.digest_kind: str | None = m["content_digest"]  # None: made before digests were recorded
        self.exact_replay: bool = m["replay"] == "exact"

    @property
    def bytes_per_record(self) -> int:
        return bytes_per_record(self.schema)

    @property
    def skipped(self) -> list[int]:
        return list(self.manifest.get("skipped", []))

    def kept_samples(self) -> np.ndarray:
        """Sample ids (int64, ascending) minus those skipped as undecodable (``--skip-bad``)."""
        return np.setdiff1d(np.arange(self.num_samples, dtype=np.int64), np.asarray(self.skipped, dtype=np.int64))

    def __len__(self) -> int:
        return self.num_samples

    def __repr__(self) -> str:
        return (f"Store({str(self.path)!r}, samples={self.num_samples}, views={self.num_views}, "
                f"topk={self.topk}, recipe={self.manifest['recipe']['spec']!r})")

    @staticmethod
    def _check_index(i: int, n: int, what: str) -> None:
        if not 0 <= i < n:
            raise IndexError(f"{what} {i} outside 0..{n - 1}")

    def _shard_of(self, sample_id: int) -> tuple[ShardReader, int]:
        self._check_index(sample_id, self.num_samples, "sample")
        k = int(np.searchsorted(self._starts, sample_id, side="right") - 1)
        return self._reader(k), sample_id - int(self._starts[k])

    def _reader(self, k: int) -> ShardReader:
        """Shard ``k``, checked (path, size, sha256, schema, values) the first time it is used."""
        if k not in self._readers:
            self._readers[k] = open_shard(self.path, self.manifest["shards"][k], self.manifest,
                                          self.recipe.codec.num_bits)
        return self._readers[k]

    def content_digests(self, k: int) -> np.ndarray | None:
        """Shard ``k``'s per-sample content digests (uint32), checked on first use, or ``None``."""
        if not self.digest_kind:
            return None
        if k not in self._content:
            self._content[k] = open_content(self.path, self.manifest["shards"][k])
        return self._content[k]

    def content_digest(self, sample_id: int) -> int | None:
        """The content digest recorded for ``sample_id``'s image, or ``None``."""
        self._check_index(sample_id, self.num_samples, "sample")
        k, local = divmod(sample_id, self._per_shard)  # shards hold samples_per_shard samples each
        digests = self.content_digests(k)
        return None if digests is None else int(digests[local])

    def image_loader(self, src: Source) -> ImageLoader:
        """``load(i)``: sample ``i`` of ``src`` as uint8 CHW, refused when its content digest differs
        from the recorded one (unchecked where the digests cannot be compared)."""
        self.check_source(src)
        if not self.digest_kind or src.digest_kind != self.digest_kind:
            return src.load_uint8
        return CheckedLoader(self, src)

    def shard_arrays(self) -> Any:
        """(first sample id, memory-mapped arrays) of each shard, in order, each checked on first use."""
        for k, info in enumerate(self.manifest["shards"]):
            yield int(info["start"]), self._reader(k).arrays

    def raw(self, sample_id: int) -> dict[str, np.ndarray]:
        """All NS views of one sample as arrays ``[NS, ...]`` (copies, safe to keep)."""
        reader, local = self._shard_of(sample_id)
        return {k: np.array(a[local]) for k, a in reader.arrays.items()}

    def view_params(self, sample_id: int, view: int) -> ViewParams:
        """The stored parameters of one view (a ``"mix"`` entry when the recipe mixes)."""
        self._check_index(view, self.num_views, "view")
        reader, local = self._shard_of(sample_id)
        return unpack(self.recipe, {k: a[local, view] for k, a in reader.arrays.items() if k not in _LABELS})

    def gather(self, sample_ids: Sequence[int] | np.ndarray,
               views: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
        """The arrays of many records, row r = view ``views[r]`` of ``sample_ids[r]`` (copies): one
        indexed read per shard touched."""
        ids, vs = np.asarray(sample_ids, dtype=np.int64).reshape(-1), np.asarray(views, dtype=np.int64).reshape(-1)
        for values, n, what in ((ids, self.num_samples, "sample"), (vs, self.num_views, "view")):
            if values.size and not (0 <= values.min() and values.max() < n):
                self._check_index(int(values[(values < 0) | (values >= n)][0]), n, what)
        shard = np.searchsorted(self._starts, ids, side="right") - 1
        out: dict[str, np.ndarray] = {}
        for k in np.unique(shard).tolist():
            rows = np.flatnonzero(shard == k)
            local = ids[rows] - int(self._starts[k])
            for name, a in self._reader(k).arrays.items():
                out.setdefault(name, np.empty((ids.size, *a.shape[2:]), dtype=a.dtype))[rows] = a[local, vs[rows]]
        return out

    def records(self, sample_ids: Sequence[int] | np.ndarray,
                views: Sequence[int] | np.ndarray) -> list[dict[str, Any]]:
        """:meth:`record` of many views: one gather and one decode (a handful go one by one)."""
        ids, vs = np.asarray(sample_ids, dtype=np.int64).reshape(-1), np.asarray(views, dtype=np.int64).reshape(-1)
        if ids.size <= _FEW_RECORDS:
            return [self.record(int(i), int(v)) for i, v in zip(ids, vs)]
        arrays = self.gather(ids, vs)
        topk_ids, topk_probs = arrays["topk_ids"].astype(np.int64), arrays["topk_probs"].astype(np.float32)
        return [_record(p, topk_ids[r], topk_probs[r]) for r, p in enumerate(unpack_many(self.recipe, arrays))]

    def record(self, sample_id: int, view: int) -> dict[str, Any]:
        """One view: decoded ``params``, ``topk_ids``, ``topk_probs`` (+ mixing fields)."""
        params = self.view_params(sample_id, view)
        reader, local = self._shard_of(sample_id)
        a = reader.arrays
        return _record(params, np.array(a["topk_ids"][local, view], dtype=np.int64),
                       np.array(a["topk_probs"][local, view], dtype=np.float32))

    def soft_target(self, sample_id: int, view: int, smooth: bool = True) -> torch.Tensor:
        """Dense target: top-k probabilities, the residual mass spread over the other classes."""
        rec = self.record(sample_id, view)
        return densify(rec["topk_ids"], rec["topk_probs"], self.num_classes, smooth)

    def check_source(self, src: Source) -> None:
        """Refuse a source that is not the one the store was made from. Another packaging of the same
        images (another fingerprint) is accepted when its classes and every content digest match."""
        if id(src) in self._checked_sources:
            return
        want = self.manifest["source"]
        sizes = (f"store {self.path} has {self.num_samples} samples/{self.num_classes} classes; "
                 f"source {src.spec} has {len(src)}/{len(src.classes)}")
        same_size = len(src) == self.num_samples and len(src.classes) == self.num_classes
        if src.fingerprint != want["fingerprint"]:
            mismatch = (f"store {self.path} was made from {want.get('spec')} (fingerprint "
                        f"{want['fingerprint'][:12]}), not {src.spec} ({src.fingerprint[:12]})")
            if not same_size:
                raise StoreError(f"{mismatch}: {sizes.split('; ', 1)[1]} against {self.num_samples}/{self.num_classes}")
            if not self.digest_kind or src.digest_kind != self.digest_kind or list(src.classes) != self.classes:
                raise StoreError(mismatch)
            print(f"drkit: {src.spec} is not the source {self.path} was made from; comparing the content digests "
                  f"of its {len(src)} images", file=sys.stderr)
            try:
                self._verify_content(src, progress=sys.stderr.isatty())
            except StoreError as exc:
                raise StoreError(f"{mismatch}, and its images differ: {exc}") from None
        elif not same_size:
            raise StoreError(sizes)
        self._checked_sources.add(id(src))

    def render_uint8(self, src: Source, sample_id: int, view: int, image_size: int | None = None,
                     record: dict[str, Any] | None = None, image: torch.Tensor | None = None) -> torch.Tensor:
        """Replay a view as uint8 CHW at ``image_size`` (default: the teacher's) through the batched
        renderer; ``image`` is the sample's decoded image when the caller has it. A store rendered
        on an accelerator replays there bit-exactly when this process has one and is not a loader
        worker; elsewhere on the CPU, approximately, said once."""
        from ..augment.batch import render_batch

        self.check_source(src)
        params = record["params"] if record is not None else self.view_params(sample_id, view)
        device = torch.device("cpu")
        if self.renderer.get("device") == "cuda" and torch.cuda.is_available() and \
                torch.utils.data.get_worker_info() is None:
            device = torch.device("cuda")
        else:
            self._warn_cpu_replay()
        load = self.image_loader(src)
        partner = partner_of(params)
        images = [(load(sample_id) if image is None else image).to(device)]
        images += [load(partner[0]).to(device)] if partner else []
        partner_params = [partner_view_params(params, self.view_params)] if partner else [None]
        return render_batch(self.recipe, images, [0], [params], image_size or self.image_size,
                            [1 if partner else -1], partner_params)[0].cpu()

    def _warn_cpu_replay(self) -> None:
        """Say once per store and process (forked workers inherit it) that a CPU replay is approximate."""
        made_on, key = self.renderer.get("device", "cpu"), str(self.path.resolve())
        if key in _WARNED or (self.exact_replay and made_on == "cpu"):
            return
        _WARNED.add(key)
        if not self.exact_replay:
            print(f"drkit: warning: store {self.path} was imported from {self.renderer.get('name')}; drkit "
                  "replays its views approximately (README 'Importing ImageNet+')", file=sys.stderr)
        else:
            print(f"drkit: warning: store {self.path} was rendered on {made_on}; replaying on cpu matches "
                  "its pixels only approximately (resizes differ by device: README 'Renderers')", file=sys.stderr)

    def replay(self, src: Source, sample_id: int, view: int, image_size: int | None = None) -> torch.Tensor:
        """CHW float in [0, 1]: exactly the tensor the teacher saw (at the teacher's size)."""
        return self.render_uint8(src, sample_id, view, image_size).to(torch.float32).div_(255)

    def verify(self, src: Source | None = None, checksums: bool = True, content: bool = False,
               progress: bool = False) -> dict[str, Any]:
        """Check every shard (and the source, if given; with ``content`` every image's digest); raise
        on the first fault."""
        for info in self.manifest["shards"]:  # read_manifest checked that they cover the samples in order
            open_shard(self.path, info, self.manifest, self.recipe.codec.num_bits, checksums=checksums)
            if self.digest_kind:
                open_content(self.path, info, checksums=checksums)
        report = {"store": str(self.path), "shards": len(self.manifest["shards"]), "samples": self.num_samples,
                  "views": self.num_views, "ok": True, "replay": "exact" if self.exact_replay else "approximate"}
        if src is not None:
            self._checked_sources.discard(id(src))
            self.check_source(src)
            if content:
                report["content_checked"] = self._verify_content(src, progress)
        return report

    def _verify_content(self, src: Source, progress: bool) -> int:
        """Compare every non-skipped image's bytes with its recorded digest; returns how many."""
        from tqdm.auto import tqdm

        if not self.digest_kind:
            raise StoreError(f"store {self.path} records no content digests (made before drkit recorded them): "
                             "reinforce again to get them, or verify without --content")
        if src.digest_kind != self.digest_kind:
            raise StoreError(f"store {self.path} digests images as {self.digest_kind}, source {src.spec} as "
                             f"{src.digest_kind}: the contents cannot be compared")
        ids = self.kept_samples()
        for i in tqdm(ids.tolist(), desc="content", unit="img", disable=not progress, dynamic_ncols=True):
            self.check_digest(src, i, src.digest(i))
        return len(ids)

    def check_digest(self, src: Source, i: int, got: int | None) -> None:
        """Refuse sample ``i`` of ``src`` when ``got``, the digest of the bytes just read, is not the recorded one."""
        want = self.content_digest(int(i))
        if got != want:
            raise StoreError(f"{src.where(i)} changed since store {self.path} was made (content crc32 "
                             f"{got if got is None else format(got, '08x')}, the store recorded {want:08x}): "
                             "restore the original image, or reinforce the changed data again")


class CheckedLoader:
    """A source's images, each checked against its recorded content digest (picklable, for workers)."""

    def __init__(self, store: Store, src: Source):
        self.store, self.src = store, src

    def __call__(self, i: int) -> torch.Tensor:
        img, got = self.src.load_with_digest(i)
        self.store.check_digest(self.src, i, got)
        return img


def densify(ids: np.ndarray | torch.Tensor, probs: np.ndarray | torch.Tensor, num_classes: int,
            smooth: bool = True) -> torch.Tensor:
    """Sparse top-k -> dense distribution over ``num_classes`` (``[..., K]`` batches): ``smooth``
    spreads the missing mass over the other classes, else the top-k is renormalised."""
    ids_t = torch.as_tensor(np.asarray(ids, dtype=np.int64) if isinstance(ids, np.ndarray) else ids).long()
    p = torch.as_tensor(np.asarray(probs, dtype=np.float32) if isinstance(probs, np.ndarray) else probs).float()
    k = ids_t.shape[-1]
    out = torch.zeros(*ids_t.shape[:-1], num_classes, dtype=torch.float32)
    mass = p.sum(-1, keepdim=True).clamp(max=1.0)
    if smooth and num_classes > k:
        out += (1.0 - mass) / (num_classes - k)
        out.scatter_(-1, ids_t, p)
    else:
        out.scatter_(-1, ids_t, p / mass.clamp(min=1e-12))
    return out


def open_store(path: str | Path) -> Store:
    """Open a finished store (refuses an incomplete or foreign directory with a one-line reason)."""
    return Store(path)
