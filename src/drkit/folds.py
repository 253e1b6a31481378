"""Out-of-fold splits: which samples each member of a ``drkit train --folds K`` directory saw.

Why: a teacher's "soft" labels on images it trained on are near one-hot. Member k trains on every sample
whose fold is not k, and reinforcing labels each image only with the member(s) that never saw it. A
sample's fold is a fixed hash of its index in the *root* source (the dataset a ``?n=N`` prefix is cut
from), so a prefix has the same folds as the whole, with no seed or RNG.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .configs import check
from .errors import DrkitError
from .fileio import read_json_object
from .hashing import mix64_np

if TYPE_CHECKING:
    from .sources import Source

FOLDS_FILE = "folds.json"
FOLDS_FORMAT = "drkit.folds"
FOLDS_VERSION = 1
FOLD_HASH = "splitmix64-v1"
#: a sample's fold: SplitMix64 of (root index XOR this tag), mod K
_FOLD_TAG = np.uint64(0xF01D5)


def fold_of(root_ids: np.ndarray | list[int], folds: int) -> np.ndarray:
    """Fold (0..K-1) of each root sample index."""
    ids = np.asarray(root_ids, dtype=np.int64).astype(np.uint64)
    return (mix64_np(ids ^ _FOLD_TAG) % np.uint64(folds)).astype(np.int64)


def root_indices(src: Source) -> tuple[Source, np.ndarray]:
    """(root source, index of each of ``src``'s samples in it): a ``?n=`` prefix or any subset
    maps onto the full dataset it was cut from."""
    parent = getattr(src, "parent", None)
    if parent is not None and hasattr(src, "indices"):
        return parent, np.asarray(src.indices, dtype=np.int64)
    return src, np.arange(len(src), dtype=np.int64)


@dataclass(frozen=True)
class FoldSplit:
    """What a folds directory records about the data its members trained on."""

    folds: int
    root_spec: str
    root_fingerprint: str
    trained: int  # members trained on root samples [0, trained) outside their fold

    def trained_on(self, root_ids: np.ndarray, fold: int) -> np.ndarray:
        """Whether member ``fold`` trained on each root sample."""
        ids = np.asarray(root_ids, dtype=np.int64)
        return (ids < self.trained) & (fold_of(ids, self.folds) != fold)

    def to_json(self) -> dict[str, Any]:
        return {"folds": self.folds, "hash": FOLD_HASH, "root_spec": self.root_spec,
                "root_fingerprint": self.root_fingerprint, "trained_prefix": self.trained}


def split_for(src: Source, folds: int) -> tuple[FoldSplit, np.ndarray]:
    """The split of a training source (the full dataset or a ``?n=`` prefix) and each sample's fold."""
    check(folds >= 2, f"--folds must be at least 2, got {folds}")
    root, ids = root_indices(src)
    if not np.array_equal(ids, np.arange(ids.size)):
        raise DrkitError(f"--folds needs the full dataset or a ?n=N prefix of it; {src.spec} is another subset")
    check(len(src) >= folds, f"--folds {folds} needs at least {folds} samples; {src.spec} has {len(src)}")
    split = FoldSplit(folds, root.spec, root.fingerprint, int(ids.size))
    return split, fold_of(ids, folds)


def read_folds(directory: str | Path) -> dict[str, Any] | None:
    """``DIR/folds.json`` as a checked dict, or None when ``DIR`` is not a folds directory."""
    path = Path(directory) / FOLDS_FILE
    if not path.is_file():
        return None
    doc = read_json_object(path, DrkitError)
    ok = (doc.get("format") == FOLDS_FORMAT and doc.get("format_version") == FOLDS_VERSION
          and isinstance(doc.get("split"), dict) and isinstance(doc.get("members"), list))
    check(ok, f"{path} is not a drkit folds file (format {FOLDS_FORMAT} v{FOLDS_VERSION})")
    s = doc["split"]
    check(s.get("hash") == FOLD_HASH, f"{path} uses fold hash {s.get('hash')!r}; this drkit knows {FOLD_HASH}")
    members = doc["members"]
    folds = s.get("folds")
    if not isinstance(folds, int) or folds < 2 or len(members) != folds:
        raise DrkitError(f"{path} lists {len(members)} members for {folds} folds")
    try:
        load_split(doc)
    except (KeyError, TypeError, ValueError) as exc:
        raise DrkitError(f"{path}: split is missing or has a malformed field ({type(exc).__name__}: {exc})") from None
    for k, m in enumerate(members):
        rel = m.get("dir") if isinstance(m, dict) else None
        if not isinstance(rel, str) or m.get("fold") != k or Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise DrkitError(f"{path}: member {k} must be a relative directory inside {directory} with fold {k}")
    return doc


def load_split(doc: dict[str, Any]) -> FoldSplit:
    s = doc["split"]
    return FoldSplit(int(s["folds"]), str(s["root_spec"]), str(s["root_fingerprint"]), int(s["trained_prefix"]))
