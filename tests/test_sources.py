"""Pins drkit.sources: spec grammar, image-mode normalisation, fingerprints, real Fashion-MNIST."""
from __future__ import annotations

import gzip
import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from drkit.errors import SourceError
from drkit.sources import SOURCES, Source, load_source, register_source

FMNIST_DIR = "/usr/share/datasets/fashion-mnist"
needs_fmnist = pytest.mark.skipif(
    not os.path.isfile(os.path.join(FMNIST_DIR, "train-images-idx3-ubyte.gz")),
    reason=f"Debian's dataset-fashion-mnist is not installed ({FMNIST_DIR} missing)",
)


# ------------------------------------------------------------------ Fashion-MNIST (real data)
@pytest.fixture(scope="module")
def fm_train() -> Source:
    return load_source("fashion-mnist")


@pytest.fixture(scope="module")
def fm_test() -> Source:
    return load_source("fashion-mnist:test")


@needs_fmnist
def test_fashion_mnist_real_data(fm_train: Source, fm_test: Source) -> None:
    assert (len(fm_train), len(fm_test)) == (60_000, 10_000)
    for src, split in ((fm_train, "train"), (fm_test, "test")):
        assert src.split == split and src.mode == "L" and src.channels == 1
        assert len(src.classes) == 10 and src.classes[0] == "T-shirt/top"
        assert src.labels.dtype == np.int64 and src.labels.shape == (len(src),)
        assert src.labels.min() == 0 and src.labels.max() == 9
        assert np.bincount(src.labels).tolist() == [len(src) // 10] * 10  # balanced, as published
        assert src.image_size(0) == (28, 28) and src.image_size(-1) == (28, 28)
        t = src.load_uint8(5)
        assert t.dtype == torch.uint8 and tuple(t.shape) == (1, 28, 28)
        img, label = src[5]
        assert img.mode == "L" and img.size == (28, 28) and label == int(src.labels[5])
        assert torch.equal(torch.from_numpy(np.array(img))[None], t)
    with pytest.raises(IndexError):
        fm_test.load_uint8(10_000)


@needs_fmnist
def test_fashion_mnist_fingerprints(fm_train: Source, fm_test: Source) -> None:
    again = load_source("fashion-mnist:train")
    assert again.fingerprint == fm_train.fingerprint
    assert len(fm_train.fingerprint) == 64 and int(fm_train.fingerprint, 16) >= 0
    assert fm_train.fingerprint != fm_test.fingerprint
    small = load_source("fashion-mnist:train?n=100")
    assert len(small) == 100 and small.spec == "fashion-mnist:train?n=100"
    assert small.fingerprint != fm_train.fingerprint
    assert small.fingerprint == fm_train.subset(range(100)).fingerprint
    assert np.array_equal(small.labels, fm_train.labels[:100])
    assert torch.equal(small.load_uint8(99), fm_train.load_uint8(99))
    assert load_source(f"fashion-mnist:{FMNIST_DIR}:test").fingerprint == fm_test.fingerprint
    desc = small.describe()
    assert json.loads(json.dumps(desc)) == desc
    assert set(desc) >= {"spec", "split", "len", "classes", "mode", "fingerprint"}


@needs_fmnist
def test_fashion_mnist_forced_rgb(fm_test: Source) -> None:
    rgb = load_source("fashion-mnist:test?mode=RGB")
    assert rgb.mode == "RGB" and rgb.channels == 3 and rgb.spec == "fashion-mnist:test?mode=RGB"
    t = rgb.load_uint8(3)
    assert tuple(t.shape) == (3, 28, 28) and all(torch.equal(t[c], fm_test.load_uint8(3)[0]) for c in range(3))
    assert rgb[3][0].mode == "RGB"
    assert rgb.fingerprint != fm_test.fingerprint


def test_fashion_mnist_missing_dir(tmp_path) -> None:
    with pytest.raises(SourceError, match="apt-get install dataset-fashion-mnist") as info:
        load_source(f"fashion-mnist:{tmp_path}")
    assert "fashion-mnist:DIR" in str(info.value)
    with pytest.raises(SourceError, match="no split 'val'"):
        load_source("fashion-mnist:val")


# ------------------------------------------------------------------ digits
def test_digits_exact_scaling_and_split() -> None:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    train, test = load_source("digits"), load_source("digits:test")
    assert (len(train), len(test)) == (1500, 297)
    assert train.classes == [str(d) for d in range(10)] and train.mode == "L"
    assert np.array_equal(np.concatenate([train.labels, test.labels]), bunch.target)
    got = torch.stack([test.load_uint8(i)[0] for i in range(len(test))]).numpy()
    expected = np.vectorize(lambda v: round(v * 255 / 16))(bunch.images[1500:]).astype(np.uint8)
    assert np.array_equal(got, expected)
    assert set(np.unique(got).tolist()) <= {round(v * 255 / 16) for v in range(17)}
    assert got.max() == 255 and train.image_size(0) == (8, 8)
    assert train.fingerprint != test.fingerprint


# ------------------------------------------------------------------ ImageFolder
def _save(img: Image.Image, path, **kw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)


@pytest.fixture()
def mixed_folder(tmp_path):
    """Two classes, every PIL mode the contract names, different sizes; known pixel at (0, 0).

    Value: expected (R, G, B) of pixel (0, 0) after conversion to RGB, with a tolerance.
    """
    root = tmp_path / "mixed"
    expect: dict[str, tuple[tuple[int, int, int], int]] = {}

    def add(rel: str, img: Image.Image, rgb: tuple[int, int, int], tol: int = 0, **kw) -> None:
        _save(img, root / rel, **kw)
        expect[rel] = (rgb, tol)

    gray = Image.new("L", (10, 12), 3)
    gray.putpixel((0, 0), 77)
    add("ants/gray.png", gray, (77, 77, 77))
    add("ants/rgb.PNG", Image.new("RGB", (7, 9), (10, 20, 30)), (10, 20, 30))
    add("ants/rgba.png", Image.new("RGBA", (5, 6), (200, 100, 50, 0)), (200, 100, 50))
    pal = Image.new("P", (4, 4), 0)
    pal.putpalette([0, 0, 0, 5, 6, 7] + [0] * 762)
    pal.putpixel((0, 0), 1)
    add("ants/pal_transparent.png", pal, (5, 6, 7), transparency=1)
    add("ants/sub/pal.gif", pal.copy(), (5, 6, 7))
    add("bees/la.png", Image.new("LA", (6, 3), (90, 0)), (90, 90, 90))
    i16 = Image.fromarray(np.array([[65535, 256], [40000, 0]], dtype=np.uint16))
    assert i16.mode == "I;16"
    add("bees/i16.png", i16, (255, 255, 255))
    i16b = Image.new("I;16B", (3, 2), 0)
    i16b.putpixel((0, 0), 40000)
    add("bees/i16b.tif", i16b, (156, 156, 156))  # 40000 >> 8 = 156 (PIL's convert would give 255)
    add("bees/cmyk.jpg", Image.new("CMYK", (16, 8), (0, 0, 0, 0)), (255, 255, 255), tol=3, quality=100)
    add("bees/z.bmp", Image.new("RGB", (3, 5), (1, 2, 3)), (1, 2, 3))
    add("bees/w.webp", Image.new("RGB", (4, 4), (9, 8, 7)), (9, 8, 7), lossless=True)
    (root / "bees" / "notes.txt").write_text("not an image")
    _save(Image.new("RGB", (2, 2)), root / "bees" / ".hidden.png")
    _save(Image.new("RGB", (2, 2)), root / ".cache" / "x.png")
    (root / "empty_class").mkdir()
    return root, expect


def test_imagefolder_mixed_modes_rgb(mixed_folder) -> None:
    root, expect = mixed_folder
    src = load_source(f"imagefolder:{root}")
    assert src.classes == ["ants", "bees", "empty_class"] and src.mode == "RGB" and src.channels == 3
    rels = [os.path.relpath(src.path(i), root).replace(os.sep, "/") for i in range(len(src))]
    assert rels == sorted(expect, key=lambda r: (r.split("/")[0], "/sub/" in r, r))  # torchvision order
    assert src.labels.tolist() == [0 if r.startswith("ants") else 1 for r in rels]
    for i, rel in enumerate(rels):
        (rgb, tol) = expect[rel]
        t = src.load_uint8(i)
        with Image.open(root / rel) as raw:
            w, h = raw.size
        assert t.dtype == torch.uint8 and tuple(t.shape) == (3, h, w), rel
        assert src.image_size(i) == (h, w)
        diff = (t[:, 0, 0].int() - torch.tensor(rgb)).abs().max().item()
        assert diff <= tol, (rel, t[:, 0, 0].tolist(), rgb)
        img, label = src[i]
        assert img.mode == "RGB" and label == int(src.labels[i])
        assert torch.equal(torch.from_numpy(np.array(img)).permute(2, 0, 1), t)
    i16 = src.load_uint8(rels.index("bees/i16.png"))
    assert i16[0].tolist() == [[255, 1], [156, 0]]  # >> 8, not PIL's clipping


def test_imagefolder_mode_l(mixed_folder) -> None:
    root, expect = mixed_folder
    src = load_source(f"imagefolder:{root}?mode=L")
    assert src.mode == "L" and src.channels == 1 and src.spec.endswith("?mode=L")
    for i in range(len(src)):
        rel = os.path.relpath(src.path(i), root).replace(os.sep, "/")
        (rgb, tol) = expect[rel]
        luma = Image.new("RGB", (1, 1), rgb).convert("L").getpixel((0, 0))
        t = src.load_uint8(i)
        assert t.dtype == torch.uint8 and t.shape[0] == 1
        assert abs(int(t[0, 0, 0]) - luma) <= tol, rel
        assert src[i][0].mode == "L"
    rgb_src = load_source(f"imagefolder:{root}")
    assert src.fingerprint != rgb_src.fingerprint  # the declared mode is part of what is enumerated


def test_imagefolder_fingerprint_tracks_files(mixed_folder) -> None:
    root, _ = mixed_folder
    a = load_source(f"imagefolder:{root}")
    assert load_source(f"imagefolder:{root}").fingerprint == a.fingerprint
    moved = root.parent / "moved"
    shutil.copytree(root, moved)
    assert load_source(f"imagefolder:{moved}").fingerprint == a.fingerprint  # relative paths only
    _save(Image.new("RGB", (30, 30), (1, 1, 1)), moved / "ants" / "rgb.PNG")  # rewritten: new size
    assert load_source(f"imagefolder:{moved}").fingerprint != a.fingerprint


def test_imagefolder_corrupt_file_names_path(tmp_path) -> None:
    root = tmp_path / "bad"
    _save(Image.new("RGB", (4, 4)), root / "cls" / "a_ok.png")
    bad = root / "cls" / "b_broken.png"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 512, dtype=np.uint8).tobytes())
    src = load_source(f"imagefolder:{root}")  # listing does not decode
    assert len(src) == 2 and src.load_uint8(0).shape == (3, 4, 4)
    for call in (src.load_uint8, src.__getitem__, src.image_size):
        with pytest.raises(SourceError) as info:
            call(1)
        assert str(bad) in str(info.value)


def test_imagefolder_empty_and_missing(tmp_path) -> None:
    with pytest.raises(SourceError, match="no class folders"):
        load_source(f"imagefolder:{tmp_path}")
    (tmp_path / "cls").mkdir()
    (tmp_path / "cls" / "readme.txt").write_text("x")
    with pytest.raises(SourceError, match="no images"):
        load_source(f"imagefolder:{tmp_path}")
    with pytest.raises(SourceError, match="not a directory"):
        load_source(f"imagefolder:{tmp_path / 'nope'}")


def test_imagefolder_split_layout(tmp_path) -> None:
    for split, n in (("train", 3), ("val", 2)):
        for k in range(n):
            _save(Image.new("L", (4, 4), k), tmp_path / "d" / split / f"c{k % 2}" / f"{k}.png")
    train = load_source(f"imagefolder:{tmp_path / 'd'}")
    val = load_source(f"imagefolder:{tmp_path / 'd'}:val")
    assert (len(train), len(val)) == (3, 2) and (train.split, val.split) == ("train", "val")
    assert load_source(f"imagefolder:{tmp_path / 'd'}", split="val").fingerprint == val.fingerprint
    assert train.fingerprint != val.fingerprint
    with pytest.raises(SourceError, match="no test/ folder"):
        load_source(f"imagefolder:{tmp_path / 'd'}:test")


# ------------------------------------------------------------------ spec grammar
@pytest.mark.parametrize(
    "spec, match",
    [
        ("", "empty source spec"),
        ("nope:/x", "known sources: digits, fashion-mnist, hf, hf-stream, imagefolder, lmdb, torchvision, wds"),
        ("digits:foo", "takes no argument"),
        ("digits:val", "no split 'val'"),
        ("digits?n=0", "positive integer"),
        ("digits?n=abc", "positive integer"),
        ("digits?n=5000", "more than the 1500 samples"),
        ("digits?mode=CMYK", "L or RGB"),
        ("digits?k=1", "unknown query key"),
        ("digits?n=1&n=2", "given twice"),
        ("imagefolder", "needs a path"),
        ("imagefolder:train", "needs a path"),
        ("torchvision:CIFAR10", "NAME and ROOT"),
        ("torchvision:ImageNet:/tmp", "unsupported torchvision dataset"),
    ],
)
def test_bad_specs(spec: str, match: str) -> None:
    with pytest.raises(SourceError, match=match):
        load_source(spec)


def test_split_suffix_and_argument() -> None:
    assert load_source("digits", split="test").split == "test"
    assert load_source("digits:test", split="test").spec == "digits:test"
    with pytest.raises(SourceError, match="also given"):
        load_source("digits:test", split="train")
    with pytest.raises(SourceError, match="unknown split"):
        load_source("digits", split="holdout")


def test_spec_round_trip(mixed_folder) -> None:
    root, _ = mixed_folder
    specs = ["digits", "DIGITS:test?n=7", "digits?mode=RGB&n=3", f"imagefolder:{root}?mode=L",
             f"imagefolder:{root}:train?n=2"]
    for spec in specs:
        src = load_source(spec)
        again = load_source(src.spec)
        assert again.spec == src.spec and again.fingerprint == src.fingerprint and len(again) == len(src)
    assert load_source("DIGITS:test?n=7").spec == "digits:test?n=7"
    assert load_source("digits?mode=L").spec == "digits:train"  # the default mode is not spelled out
    assert load_source("digits?mode=RGB&n=3").spec == "digits:train?n=3&mode=RGB"


def test_subset_composes() -> None:
    src = load_source("digits:test")
    sub = src.subset([5, 2, 2])
    assert len(sub) == 3 and sub.labels.tolist() == src.labels[[5, 2, 2]].tolist()
    assert torch.equal(sub.load_uint8(0), src.load_uint8(5))
    assert sub.fingerprint != src.fingerprint
    assert sub.subset([1]).fingerprint == src.subset([2]).fingerprint  # composes onto the root
    assert sub.describe()["subset_of"]["fingerprint"] == src.fingerprint
    assert src.subset(range(4)).spec == "digits:test?n=4"
    with pytest.raises(SourceError):
        src.subset([len(src)])
    assert not src.labels.flags.writeable


def test_scheme_table_is_what_the_modules_register() -> None:
    """The registry's static table (help texts, refusals) names every registered scheme and the module
    that registers it; reading it imports no torch."""
    import importlib
    import pkgutil
    import subprocess
    import sys

    import drkit.sources
    from drkit.sources.registry import SCHEMES

    for info in pkgutil.iter_modules(drkit.sources.__path__):
        importlib.import_module(f"drkit.sources.{info.name}")
    registered = {k: f.__module__ for k, f in SOURCES.items() if f.__module__.startswith("drkit.sources.")}
    assert registered == {k: f"drkit.sources.{module}" for k, (module, _) in SCHEMES.items()}
    code = "import sys, drkit.sources.registry; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


def test_data_help_lists_every_scheme(monkeypatch) -> None:
    from drkit.cli import build_parser
    from drkit.sources.registry import SCHEMES, scheme_help

    monkeypatch.setenv("COLUMNS", "1000")  # argparse wraps help at the terminal width (and at hyphens)
    sub = next(a for a in build_parser()._actions if a.choices and "reinforce" in a.choices)
    text = sub.choices["reinforce"].format_help()
    for scheme, (_, usage) in SCHEMES.items():
        assert usage.startswith(scheme) and usage in scheme_help() and usage in text, scheme


def test_registry_accepts_new_scheme() -> None:
    from drkit.sources.base import ArraySource

    @register_source("tiny-test")
    def tiny(arg, *, split, mode, download=False):
        imgs = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
        return ArraySource(images=imgs, labels=np.array([0, 1]), classes=["a", "b"],
                           spec=f"tiny-test:{split}", split=split, mode=mode)

    try:
        src = load_source("tiny-test:test")
        assert len(src) == 2 and src.image_size(1) == (3, 4) and src.load_uint8(1)[0, 0, 0] == 12
    finally:
        SOURCES.pop("tiny-test")


# ------------------------------------------------------------------ torchvision
def test_torchvision_without_download(tmp_path) -> None:
    with pytest.raises(SourceError, match="--download"):
        load_source(f"torchvision:CIFAR10:{tmp_path}")


@needs_fmnist
def test_torchvision_fashion_mnist_local(tmp_path, fm_test: Source) -> None:
    # torchvision.datasets.MNIST._check_exists wants the *decompressed* IDX files in
    # ROOT/FashionMNIST/raw/ (it only extracts the .gz as part of a download), so unpack them.
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in os.listdir(FMNIST_DIR):
        if name.endswith("-ubyte.gz"):
            with gzip.open(os.path.join(FMNIST_DIR, name), "rb") as f_in, open(raw / name[:-3], "wb") as f_out:
                shutil.copyfileobj(f_in, f_out)
    src = load_source(f"torchvision:fashionmnist:{tmp_path}:test")
    assert src.spec == f"torchvision:FashionMNIST:{tmp_path}:test"
    assert len(src) == 10_000 and src.mode == "L" and src.classes == fm_test.classes
    assert np.array_equal(src.labels, fm_test.labels)
    assert torch.equal(src.load_uint8(123), fm_test.load_uint8(123))
    # same pixels, labels and class names -> same fingerprint, whichever source delivered them
    assert src.fingerprint == fm_test.fingerprint
    assert load_source(src.spec).fingerprint == src.fingerprint


def _aged_folder(root, classes=("a", "b"), per_class=3):
    """A small image folder whose folder times lie an hour in the past (not 'racy')."""
    import os
    import time

    from PIL import Image

    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            Image.new("L", (8, 8), 30 * k).save(root / c / f"{k}.png")
    past = time.time() - 3600
    for d in [root, *(root / c for c in classes)]:
        os.utime(d, (past, past))
    return root


def test_imagefolder_listing_is_cached_until_a_folder_changes(tmp_path, monkeypatch):
    import os
    import time

    import drkit.sources.imagefolder as imf
    from drkit.sources import load_source

    monkeypatch.setenv("DRKIT_CACHE_DIR", str(tmp_path / "cache"))
    root = _aged_folder(tmp_path / "img")
    first = load_source(f"imagefolder:{root}")
    fp = first.fingerprint  # computing it caches the listing
    assert len(list((tmp_path / "cache" / "listings").glob("*.json"))) == 1

    def no_walk(_root):
        raise AssertionError("listed again although nothing changed")

    monkeypatch.setattr(imf, "scan_image_folder", no_walk)
    again = load_source(f"imagefolder:{root}")
    assert again.fingerprint == fp and [again.path(i) for i in range(6)] == [first.path(i) for i in range(6)]
    monkeypatch.undo()
    monkeypatch.setenv("DRKIT_CACHE_DIR", str(tmp_path / "cache"))
    (root / "b" / "9.png").write_bytes((root / "b" / "0.png").read_bytes())  # a new file: b/ changes
    past = time.time() - 1800
    os.utime(root / "b", (past, past))
    grown = load_source(f"imagefolder:{root}")
    assert len(grown) == 7 and grown.fingerprint != fp
    monkeypatch.chdir(tmp_path)  # "off" read as a folder name would land here
    monkeypatch.setenv("DRKIT_CACHE_DIR", "off")
    walks = []
    monkeypatch.setattr(imf, "scan_image_folder", lambda r, real=imf.scan_image_folder: walks.append(r) or real(r))
    assert load_source(f"imagefolder:{root}").fingerprint == grown.fingerprint
    assert not (tmp_path / "off").exists() and len(walks) == 1  # listed although a valid cache entry exists


def test_a_cached_listing_never_points_outside_its_folder(tmp_path, monkeypatch):
    import json

    from drkit.sources import load_source

    monkeypatch.setenv("DRKIT_CACHE_DIR", str(tmp_path / "cache"))
    root = _aged_folder(tmp_path / "img")
    fp = load_source(f"imagefolder:{root}").fingerprint
    (entry,) = (tmp_path / "cache" / "listings").glob("*.json")
    data = json.loads(entry.read_text())
    data["relpaths"][0] = "../../../etc/passwd"
    entry.write_text(json.dumps(data))
    src = load_source(f"imagefolder:{root}")  # the tampered entry is a miss: the folder is listed again
    assert src.path(0).endswith("a/0.png") and src.fingerprint == fp
    entry.write_text("{not json")
    assert load_source(f"imagefolder:{root}").fingerprint == fp
