"""Pins the container sources hf:, wds: and lmdb: against an imagefolder of the same files: labels,
classes, exact pixels, content digests, fingerprints, one-line refusals, and a reinforce + train
run on each (the LMDB one also through the CLI with forked DataLoader workers)."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_teacher
from PIL import Image

from drkit.errors import SourceError, StoreError
from drkit.sources import Source, load_source

CLASSES = ["ant", "bee", "cow"]
N = 18
KINDS = ["hf", "wds", "lmdb"]

datasets = pytest.importorskip("datasets")
webdataset = pytest.importorskip("webdataset")
lmdb = pytest.importorskip("lmdb")


# ------------------------------------------------------------------ building the same images four ways
def _encode(i: int, rng: np.random.Generator) -> tuple[str, bytes]:
    """Image i: 16x16, PNG (grayscale) or JPEG (RGB) alternately, with seeded random content."""
    buf = io.BytesIO()
    if i % 2 == 0:
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(buf, format="PNG")
        return "png", buf.getvalue()
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buf, format="JPEG", quality=90)
    return "jpg", buf.getvalue()


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> list[tuple[str, int, bytes]]:
    """(extension, label, encoded bytes) in the order an imagefolder of them enumerates."""
    rng = np.random.default_rng(13)
    out = []
    for label in range(len(CLASSES)):
        for _ in range(N // len(CLASSES)):
            ext, data = _encode(len(out), rng)
            out.append((ext, label, data))
    return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory, records) -> Path:
    root = tmp_path_factory.mktemp("folder")
    for k, (ext, label, data) in enumerate(records):
        (root / CLASSES[label]).mkdir(exist_ok=True)
        (root / CLASSES[label] / f"img{k:02d}.{ext}").write_bytes(data)
    return root


def build_hf(path: Path, records, classes=CLASSES, label_col: str = "label") -> str:
    feats = datasets.Features({"image": datasets.Image(), label_col: datasets.ClassLabel(names=list(classes))})
    ds = datasets.Dataset.from_dict({"image": [{"bytes": d, "path": None} for _, _, d in records],
                                     label_col: [lab for _, lab, _ in records]}, features=feats)
    ds.save_to_disk(str(path))
    return f"hf:{path}"


def build_wds(path: Path, records, shards: int = 2, classes=CLASSES) -> str:
    path.mkdir(parents=True)
    per = -(-len(records) // shards)
    for s in range(shards):
        with webdataset.TarWriter(str(path / f"part-{s:06d}.tar")) as w:
            for k in range(s * per, min(len(records), (s + 1) * per)):
                ext, label, data = records[k]
                w.write({"__key__": f"sample{k:06d}", ext: data, "cls": label, "json": {"k": k}})
    if classes is not None:
        (path / "classes.txt").write_text("\n".join(classes) + "\n")
    return f"wds:{path}"


def build_lmdb(path: Path, records, classes=CLASSES, skip: bytes | None = None) -> str:
    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        txn.put(b"__len__", str(len(records)).encode())
        if classes is not None:
            txn.put(b"__classes__", json.dumps(list(classes)).encode())
        for i, (_, label, data) in enumerate(records):
            txn.put(f"{i:08d}".encode(), data)
            txn.put(f"{i:08d}.cls".encode(), str(label).encode())
        if skip is not None:
            txn.delete(skip)
    env.close()
    return f"lmdb:{path}"


BUILDERS = {"hf": build_hf, "wds": build_wds, "lmdb": build_lmdb}


@pytest.fixture(scope="module")
def specs(tmp_path_factory, records) -> dict[str, str]:
    base = tmp_path_factory.mktemp("containers")
    return {kind: BUILDERS[kind](base / kind, records) for kind in KINDS}


# ------------------------------------------------------------------ same samples as the imagefolder
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_same_samples_as_imagefolder(kind, mode, specs, folder):
    ref = load_source(f"imagefolder:{folder}?mode={mode}")
    src = load_source(f"{specs[kind]}?mode={mode}")
    assert len(src) == len(ref) == N and src.classes == ref.classes == CLASSES
    assert np.array_equal(src.labels, ref.labels) and src.mode == mode and src.channels == ref.channels
    assert src.digest_kind == ref.digest_kind == "crc32-file-v1"
    for i in range(N):
        t, d = src.load_with_digest(i)
        assert torch.equal(t, ref.load_uint8(i)), (kind, i)
        assert d == src.digest(i) == ref.digest(i)
        assert src.image_size(i) == ref.image_size(i) == (16, 16)
        img, label = src[i]
        assert img.mode == mode and label == int(ref.labels[i])
    assert src.spec == specs[kind] + ":train" + ("" if mode == "RGB" else "?mode=L")
    assert load_source(src.spec).fingerprint == src.fingerprint  # the spec round-trips
    assert json.loads(json.dumps(src.describe()))["len"] == N
    head = load_source(src.subset(range(5)).spec)
    assert len(head) == 5 and head.fingerprint == src.subset(range(5)).fingerprint


def test_where_names_the_sample(specs):
    srcs = {k: load_source(specs[k]) for k in KINDS}
    assert srcs["hf"].where(3).startswith("hf ") and srcs["hf"].where(3).endswith("hf:train row 3")
    assert srcs["wds"].where(-1).endswith("part-000001.tar:sample000017.jpg")
    assert srcs["lmdb"].where(12).startswith("lmdb ") and srcs["lmdb"].where(12).endswith("key 00000012")


@pytest.mark.parametrize("kind", KINDS)
def test_index_out_of_range_is_a_source_error(kind, specs):
    src = load_source(specs[kind])
    for call in (src.load_uint8, src.digest, src.where):
        with pytest.raises(SourceError, match=f"sample index {N} out of range"):
            call(N)
    with pytest.raises(IndexError):  # still Python's sequence protocol
        src[N]
    assert sum(1 for _ in src) == N


# ------------------------------------------------------------------ fingerprints
@pytest.mark.parametrize("kind", KINDS)
def test_fingerprint_stable_and_sensitive(kind, specs, records, tmp_path):
    first, again = load_source(specs[kind]), load_source(specs[kind])
    assert first.fingerprint == again.fingerprint and len(first.fingerprint) == 64
    relabelled = list(records)
    ext, label, data = relabelled[4]
    relabelled[4] = (ext, (label + 1) % len(CLASSES), data)
    assert load_source(BUILDERS[kind](tmp_path / "relabelled", relabelled)).fingerprint != first.fingerprint
    swapped = list(records)
    swapped[0], swapped[1] = swapped[1], swapped[0]  # same labels, a PNG and a JPEG: sizes differ
    assert load_source(BUILDERS[kind](tmp_path / "swapped", swapped)).fingerprint != first.fingerprint
    assert load_source(specs[kind] + "?mode=L").fingerprint != first.fingerprint


# ------------------------------------------------------------------ refusals: one line, naming the thing
def _refused(spec: str, *words: str) -> str:
    with pytest.raises(SourceError) as info:
        load_source(spec)
    msg = str(info.value)
    assert "\n" not in msg and all(w in msg for w in words), msg
    return msg


def test_missing_paths_and_foreign_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    for kind in KINDS:
        _refused(f"{kind}:{tmp_path / 'nope'}", str(tmp_path / "nope"))
    _refused(f"hf:{tmp_path / 'empty'}", "save_to_disk", str(tmp_path / "empty"))
    _refused(f"wds:{tmp_path / 'empty'}", "no .tar shards")
    _refused(f"lmdb:{tmp_path / 'empty'}", "not an LMDB environment")
    (tmp_path / "x.tar").write_bytes(b"this is no tar file" * 100)
    _refused(f"wds:{tmp_path / 'x.tar'}", "not a readable uncompressed tar", "x.tar")
    _refused(f"wds:{tmp_path}/part-{{000..003}}.tar", "part-000.tar", "does not exist")
    for kind in KINDS:
        _refused(f"{kind}:", "needs")


@pytest.mark.parametrize("kind", KINDS)
def test_corrupt_image_names_the_sample(kind, records, tmp_path):
    bad = list(records)
    bad[5] = (bad[5][0], bad[5][1], b"definitely not an image")
    src = load_source(BUILDERS[kind](tmp_path / "bad", bad))
    assert len(src) == N  # listing and fingerprinting decode nothing
    assert src.fingerprint
    for call in (src.load_uint8, src.load_with_digest, src.image_size):
        with pytest.raises(SourceError, match="cannot (decode image|read image header)") as info:
            call(5)
        assert src.where(5) in str(info.value)
    assert src.digest(5) is not None and src.load_uint8(6).shape == (3, 16, 16)


def test_hf_columns_and_splits(tmp_path, records):
    _refused(build_hf(tmp_path / "other", records, label_col="target"), "no label column", "target",
             "rename_column")
    ds = datasets.load_from_disk(str(tmp_path / "other")).rename_column("target", "label")
    ds.add_column("labels", list(ds["label"])).save_to_disk(str(tmp_path / "two"))
    _refused(f"hf:{tmp_path / 'two'}", "several label columns", "label, labels")
    dd = datasets.DatasetDict({"train": ds, "validation": ds.select(range(6))})
    dd.save_to_disk(str(tmp_path / "dict"))
    assert len(load_source(f"hf:{tmp_path / 'dict'}")) == N
    val = load_source(f"hf:{tmp_path / 'dict'}:val")
    assert len(val) == 6 and val.split == "val" and val.spec.endswith(":val") and val.classes == CLASSES
    _refused(f"hf:{tmp_path / 'dict'}:test", "no split 'test'", "train, validation")
    _refused(f"hf:{tmp_path / 'dict'}:validation", "not a directory", "split 'validation'")
    plain = datasets.Dataset.from_dict({"img": [d for _, _, d in records], "fine_label": [2] * N})
    plain.save_to_disk(str(tmp_path / "plain"))
    src = load_source(f"hf:{tmp_path / 'plain'}")
    assert src.classes == ["0", "1", "2"] and src.labels.tolist() == [2] * N and src.digest(1) is not None
    datasets.Dataset.from_dict({"img": [d for _, _, d in records], "label": [-1] * N}).save_to_disk(
        str(tmp_path / "unlabelled"))
    _refused(f"hf:{tmp_path / 'unlabelled'}", "label -1")


def test_wds_shard_forms_and_refusals(tmp_path, specs, records):
    root = Path(specs["wds"].removeprefix("wds:"))
    ref = load_source(specs["wds"])
    for form in (f"{root}/part-{{000000..000001}}.tar", f"{root}/part-*.tar", f"{root}/part-{{000000,000001}}.tar"):
        assert load_source(f"wds:{form}").fingerprint == ref.fingerprint
    assert len(load_source(f"wds:{root}/part-000001.tar")) == N // 2
    no_names = load_source(build_wds(tmp_path / "nocls", records, shards=3, classes=None))
    assert no_names.classes == ["0", "1", "2"] and np.array_equal(no_names.labels, ref.labels)
    with webdataset.TarWriter(str(tmp_path / "nolabel.tar")) as w:
        w.write({"__key__": "a", "png": records[0][2]})
    _refused(f"wds:{tmp_path / 'nolabel.tar'}", "nolabel.tar:a", "label")
    with webdataset.TarWriter(str(tmp_path / "twoimages.tar")) as w:
        w.write({"__key__": "a", "png": records[0][2], "jpg": records[1][2], "cls": 0})
    _refused(f"wds:{tmp_path / 'twoimages.tar'}", "twoimages.tar:a", "exactly one image")
    with tarfile.open(tmp_path / "z.tar.gz", "w:gz") as tf:
        tf.add(root / "part-000000.tar", arcname="x.tar")
    _refused(f"wds:{tmp_path / 'z.tar.gz'}", "z.tar.gz", "unpack")
    build_wds(tmp_path / "few" / "s", records, classes=None)
    (tmp_path / "few" / "s" / "classes.txt").write_text("ant\nbee\n")
    _refused(f"wds:{tmp_path / 'few' / 's'}", "label 2", "2 class names")


def test_wds_index_is_cached_while_shards_are_unchanged(tmp_path, records, monkeypatch):
    from drkit.sources import webdataset_source

    spec = build_wds(tmp_path / "w", records)
    for shard in (tmp_path / "w").glob("*.tar"):  # older than the racy window
        os.utime(shard, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    first = load_source(spec)

    def no_scan(shard):
        raise AssertionError(f"scanned {shard} again")

    monkeypatch.setattr(webdataset_source, "scan_shard", no_scan)
    cached = load_source(spec)
    assert cached.fingerprint == first.fingerprint and torch.equal(cached.load_uint8(17), first.load_uint8(17))
    os.utime(tmp_path / "w" / "part-000001.tar", ns=(1_000_000_001_000_000_000,) * 2)
    with pytest.raises(AssertionError, match="part-000001.tar"):
        load_source(spec)


def test_lmdb_layout_refusals(tmp_path, records):
    _refused(build_lmdb(tmp_path / "a", records, skip=b"00000005.cls"), "no key '00000005.cls'", str(tmp_path / "a"))
    _refused(build_lmdb(tmp_path / "b", records, skip=b"00000007"), "no key '00000007'")
    _refused(build_lmdb(tmp_path / "c", records, skip=b"__len__"), "no key '__len__'")
    src = load_source(build_lmdb(tmp_path / "d", records, classes=None))
    assert src.classes == ["0", "1", "2"]
    env = lmdb.open(str(tmp_path / "e"), map_size=1 << 20)
    with env.begin(write=True) as txn:
        txn.put(b"__len__", b"two")
    env.close()
    _refused(f"lmdb:{tmp_path / 'e'}", "'__len__'", "not an integer")


def test_missing_library_says_what_to_install(specs, tmp_path, records, monkeypatch):
    lmdb_spec = build_lmdb(tmp_path / "fresh", records)  # a path no handle of this process is open on
    monkeypatch.setitem(sys.modules, "datasets", None)
    monkeypatch.setitem(sys.modules, "lmdb", None)
    _refused(specs["hf"], "pip install 'drkit[hf]'")
    _refused(lmdb_spec, "pip install 'drkit[lmdb]'")
    assert len(load_source(specs["wds"])) == N  # tar shards need no library to read


def test_optional_libraries_are_not_imported_with_drkit():
    code = ("import sys, drkit, drkit.sources; "
            "print(sorted(m for m in ('datasets', 'webdataset', 'lmdb', 'pyarrow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------ end to end
@pytest.mark.parametrize("kind", KINDS)
def test_reinforce_and_train(kind, specs, tmp_path):
    from drkit.reinforce import ReinforceConfig, reinforce
    from drkit.store import open_store
    from drkit.train import TrainConfig, train

    src: Source = load_source(specs[kind] + "?mode=L")
    teacher = make_teacher(tmp_path / "t", src.classes, seed=1, image_size=16, in_chans=src.channels)
    store = reinforce(ReinforceConfig(data=src, teacher=[teacher], out=tmp_path / "store", recipe="padcrop", views=2,
                                      topk=2, workers=0, progress=False, device="cpu", command=["t"]))
    opened = open_store(store)
    assert opened.verify(src)["ok"] and opened.num_samples == N
    summary = train(TrainConfig.build(data=src, out=tmp_path / "run", reinforced=store, model="drkit_cnn_tiny", epochs=1,
                                batch_size=8, workers=0, device="cpu", quiet=True))
    assert (tmp_path / "run" / "model.safetensors").is_file() and summary


def test_lmdb_reinforce_with_forked_workers_cli(specs, tmp_path):
    spec = specs["lmdb"] + "?mode=L"
    teacher = make_teacher(tmp_path / "t", CLASSES, seed=2, image_size=16, in_chans=1)
    args = ["--data", spec, "--teacher", teacher, "--recipe", "padcrop", "--samples", "2", "--topk", "2",
            "--batch-size", "4", "--device", "cpu", "--quiet"]
    for workers in ("2", "0"):
        proc = subprocess.run([sys.executable, "-m", "drkit", "reinforce", *args, "--workers", workers,
                               "--out", str(tmp_path / f"w{workers}")], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
    shards = [sorted((tmp_path / f"w{w}" / "shards").glob("*.safetensors")) for w in ("2", "0")]
    assert [p.read_bytes() for p in shards[0]] == [p.read_bytes() for p in shards[1]]


def test_lmdb_handles_do_not_cross_a_fork(specs):
    """The parent reads first (its handle is open), then forked DataLoader workers read too."""
    src = load_source(specs["lmdb"] + "?mode=L")
    expected = torch.stack([src.load_uint8(i) for i in range(N)])
    loader = torch.utils.data.DataLoader(src, batch_size=None, num_workers=2,
                                         collate_fn=lambda item: item)
    got = {}
    for i, (img, label) in zip(range(N), loader):
        got[i] = (torch.from_numpy(np.array(img))[None], label)
    assert all(torch.equal(got[i][0], expected[i]) and got[i][1] == int(src.labels[i]) for i in range(N))
    assert torch.equal(src.load_uint8(3), expected[3])  # the parent reopens after the fork


# ------------------------------------------------------------------ one store, another packaging
def test_a_store_serves_another_packaging_of_the_same_images(specs, folder, records, tmp_path):
    """A store made from the image folder trains from the tar shards (other fingerprint, same
    content digests); a packaging in which one image differs is refused, naming it."""
    from drkit.reinforce import ReinforceConfig, reinforce
    from drkit.store import open_store
    from drkit.train import TrainConfig, train

    src = load_source(f"imagefolder:{folder}?mode=L")
    teacher = make_teacher(tmp_path / "t", src.classes, seed=1, image_size=16, in_chans=1)
    made = reinforce(ReinforceConfig(data=src, teacher=[teacher], out=tmp_path / "store", recipe="padcrop", views=2,
                                     topk=2, workers=0, progress=False, device="cpu", command=["t"]))
    for kind in KINDS:
        other = load_source(specs[kind] + "?mode=L")
        assert other.fingerprint != src.fingerprint
        store = open_store(made)
        store.check_source(other)  # accepted: every digest matches
        assert torch.equal(store.render_uint8(other, 5, 1), open_store(made).render_uint8(src, 5, 1))
    train(TrainConfig.build(data=load_source(specs["wds"] + "?mode=L"), out=tmp_path / "run", reinforced=made,
                      model="drkit_cnn_tiny", epochs=1, batch_size=8, workers=0, device="cpu", quiet=True))
    changed = list(records)
    ext, label, _ = changed[7]
    changed[7] = (ext, label, changed[8][2])  # one image replaced by another
    wrong = load_source(build_wds(tmp_path / "wrong", changed) + "?mode=L")
    with pytest.raises(StoreError, match="its images differ.*sample000007"):
        open_store(made).check_source(wrong)


# ------------------------------------------------------------------ a streamed source
def _parquet(path: Path, records, files: int = 2) -> Path:
    """The records as parquet files, the layout a hub dataset streams from."""
    feats = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list(CLASSES))})
    ds = datasets.Dataset.from_dict({"image": [{"bytes": d, "path": None} for _, _, d in records],
                                     "label": [lab for _, lab, _ in records]}, features=feats)
    (path / "data").mkdir(parents=True)
    per = -(-len(records) // files)
    for f in range(files):
        ds.select(range(f * per, min(len(records), (f + 1) * per))).to_parquet(str(path / "data" / f"train-{f:05d}.parquet"))
    return path


def test_a_streamed_source_reinforces_in_one_pass_with_nearby_partners(tmp_path, records, folder):
    """hf-stream: labels from one label-only pass; images read in order; mixing partners within the
    window (recorded in the manifest); the store then trains from the folder of the same images;
    reading far out of order refuses with one line."""
    from drkit.reinforce import ReinforceConfig, reinforce
    from drkit.sources.hf import MAX_RESTARTS, hf_stream
    from drkit.store import open_store
    from drkit.train import TrainConfig, train

    root = _parquet(tmp_path / "pq", records)
    src = hf_stream(str(root), split="train", mode="L", window=3)
    plain = load_source(f"imagefolder:{folder}?mode=L")
    assert len(src) == N and src.classes == list(CLASSES) and list(src.labels) == list(plain.labels)
    assert [src.digest(i) for i in range(N)] == [plain.digest(i) for i in range(N)]
    assert load_source(f"hf-stream:{root}?mode=L").fingerprint == src.fingerprint
    assert load_source(f"hf-stream:{root}").fingerprint != src.fingerprint  # RGB: other pixels, other samples
    import pickle

    src.load_uint8(2)  # an open stream
    again = pickle.loads(pickle.dumps(src))  # what a spawned worker receives: its own stream, same bytes
    assert [again.digest(i) for i in range(4)] == [src.digest(i) for i in range(4)]
    prefix = load_source(f"hf-stream:{root}?n=10&mode=L")  # ?n= keeps it a stream
    assert prefix.sequential and prefix.partner_window == 1024 and prefix.probe_indices(4).tolist() == [0, 1, 2, 3]
    teacher = make_teacher(tmp_path / "t", src.classes, seed=1, image_size=16, in_chans=1)
    made = reinforce(ReinforceConfig(data=src, teacher=[teacher], out=tmp_path / "store", recipe="padcrop+mix", views=3,
                                     topk=2, workers=0, batch_size=6, progress=False, device="cpu", command=["t"]))
    store = open_store(made)
    assert store.manifest["partner_window"] == 3
    for i in range(N):
        rec = store.raw(i)
        mixed = rec["mix_mode"] > 0
        assert (np.abs(rec["partner"][mixed].astype(int) - i) <= 3).all()
    assert (store.raw(5)["mix_mode"] > 0).any()
    # the folder serves the store made from the stream (same digests)
    train(TrainConfig.build(data=plain, out=tmp_path / "run", reinforced=made, model="drkit_cnn_tiny", epochs=1, batch_size=8,
                      workers=0, device="cpu", quiet=True))
    fresh = hf_stream(str(root), split="train", mode="L", window=3)
    for _ in range(MAX_RESTARTS + 2):  # whole passes in order (eval's clean set, then each corruption set) are fine
        assert [fresh.digest(i) for i in range(N)] == [plain.digest(i) for i in range(N)]
    with pytest.raises(SourceError, match="read out of order"):
        for i in list(range(N - 1, -1, -1)) * (MAX_RESTARTS + 1):
            fresh.load_uint8(i)


def test_a_stream_is_read_in_one_process_whatever_workers_say(tmp_path, records):
    """A streamed dataset shards itself across DataLoader workers; drkit reads it in one process
    instead, and says so: --workers 2 works for reinforce, and eval's default --workers 2 too."""
    root = _parquet(tmp_path / "pq", records)
    teacher = make_teacher(tmp_path / "t", list(CLASSES), seed=1, image_size=16, in_chans=1)
    spec = f"hf-stream:{root}?mode=L"
    r = subprocess.run([sys.executable, "-m", "drkit", "reinforce", "--data", spec, "--teacher", teacher, "--recipe",
                        "padcrop+mix", "--samples", "2", "--topk", "2", "--device", "cpu", "--quiet", "--workers", "2",
                        "--out", str(tmp_path / "store")], capture_output=True, text=True)
    assert r.returncode == 0 and "is a stream, read in order in one process" in r.stderr, r.stderr[-2000:]
    r = subprocess.run([sys.executable, "-m", "drkit", "eval", "--checkpoint", teacher.split(":", 1)[1], "--data",
                        spec, "--quiet", "--device", "cpu"], capture_output=True, text=True)
    assert r.returncode == 0 and f"({N} images)" in r.stdout, r.stderr[-2000:]
    r = subprocess.run([sys.executable, "-m", "drkit", "train", "--data", spec, "--reinforced", str(tmp_path / "store"),
                        "--model", "drkit_cnn_tiny", "--epochs", "1", "--quiet", "--out", str(tmp_path / "run")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "random-access copy" in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "run").exists()
