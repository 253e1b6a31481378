"""Trust (issue 12): a store is checked on every use, never read outside itself, and every fault
is one line. Each case here ran through (exit 0, a traceback, or a read outside) before the fix."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_teacher, write_manifest

from drkit.fileio import sha256_file
from drkit.reinforce import ReinforceConfig, reinforce


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "drkit", *args], capture_output=True, text=True)


def _one_line_error(r: subprocess.CompletedProcess, *words: str) -> None:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, r.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("drkit: error:"), r.stderr[-2000:]
    assert all(w in lines[0] for w in words), lines[0]


@pytest.fixture(scope="module")
def store(tmp_path_factory, digits_train) -> Path:
    base = tmp_path_factory.mktemp("trust")
    teacher = make_teacher(base / "t", digits_train.classes, seed=3)
    return reinforce(ReinforceConfig(data=digits_train, teacher=[teacher], out=base / "store", recipe="padcrop+ra+mix",
                                     views=2, topk=3, workers=0, images_per_shard=16, device="cpu", progress=False,
                                     command=["t"]))


def _copy(store: Path, tmp: Path) -> Path:
    out = tmp / "copy"
    shutil.copytree(store, out)
    return out


def _edit_shard(root: Path, fn, fix_manifest: bool) -> None:
    from safetensors.numpy import load_file, save

    manifest = json.loads((root / "manifest.json").read_text())
    info = manifest["shards"][1]
    path = root / info["file"]
    header_meta = {"drkit": f"drkit-store v1 samples {info['start']}:{info['stop']}"}
    arrays = dict(load_file(str(path)))
    fn(arrays)
    path.write_bytes(save(arrays, metadata=header_meta))
    if fix_manifest:  # an editor who also rewrote the checksum
        info.update(bytes=path.stat().st_size, sha256=sha256_file(path))
        write_manifest(root, manifest)


def _train(root: Path, tmp: Path) -> subprocess.CompletedProcess:
    return _cli("train", "--data", "digits:train?n=48", "--reinforced", str(root), "--model", "drkit_cnn_tiny",
                "--epochs", "1", "--batch-size", "16", "--workers", "0", "--device", "cpu", "--quiet",
                "--out", str(tmp / "run"))


def test_training_refuses_a_shard_whose_labels_were_shifted(tmp_path, store):
    root = _copy(store, tmp_path)

    def shift(a):
        a["topk_ids"] = ((a["topk_ids"].astype(np.int64) + 1) % 10).astype(a["topk_ids"].dtype)

    _edit_shard(root, shift, fix_manifest=False)
    _one_line_error(_train(root, tmp_path), "00001.safetensors", "sha256")
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_training_refuses_class_ids_past_the_class_count_even_with_a_fixed_checksum(tmp_path, store):
    root = _copy(store, tmp_path)

    def past(a):
        a["topk_ids"] = a["topk_ids"] + np.uint16(40)

    _edit_shard(root, past, fix_manifest=True)
    _one_line_error(_train(root, tmp_path), "class id outside")
    _one_line_error(_cli("inspect", str(root)), "class id outside")


def test_merge_checks_its_inputs_before_writing(tmp_path, store, digits_train):
    teacher = make_teacher(tmp_path / "t", digits_train.classes, seed=3)
    other = reinforce(ReinforceConfig(data=digits_train, teacher=[teacher], out=tmp_path / "other",
                                      recipe="padcrop+ra+mix", views=2, topk=3, workers=0, images_per_shard=16,
                                      device="cpu", progress=False, seed=5, command=["t"]))
    root = _copy(store, tmp_path)

    def flip(a):
        a["topk_probs"] = a["topk_probs"][..., ::-1].copy()

    _edit_shard(root, flip, fix_manifest=False)
    _one_line_error(_cli("merge", str(root), str(other), "--out", str(tmp_path / "merged")), "sha256")
    assert not (tmp_path / "merged").exists()


def test_a_manifest_edited_into_another_valid_setting_is_refused(tmp_path, store):
    """Format 4 records the manifest's own sha256: a recipe magnitude or a seed edited into another
    valid value would replay other views under the stored labels, so it is refused. A format-3 store
    (written before the digest) still opens."""
    from drkit.store import open_store

    root = _copy(store, tmp_path)
    manifest = json.loads((root / "manifest.json").read_text())
    spec = manifest["recipe"]["spec"]
    assert manifest["format_version"] == 4 and ",m=2," in spec  # size-aware: m 9 at 224 px is 2 at 16
    (root / "manifest.json").write_text(json.dumps({**manifest, "recipe": {**manifest["recipe"],
                                                                           "spec": spec.replace(",m=2,", ",m=3,")}}))
    _one_line_error(_cli("verify", str(root)), "manifest_sha256", "edited")
    _one_line_error(_train(root, tmp_path), "manifest_sha256")
    (root / "manifest.json").write_text(json.dumps({**manifest, "seed": manifest["seed"] + 1}))
    _one_line_error(_cli("inspect", str(root)), "manifest_sha256")
    doc = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    (root / "manifest.json").write_text(json.dumps(doc))  # the digest deleted: refused as well
    _one_line_error(_cli("verify", str(root)), "manifest_sha256")
    (root / "manifest.json").write_text(json.dumps({**doc, "format_version": 3}))
    assert open_store(root).manifest["seed"] == manifest["seed"]  # format 3: read as it always was


@pytest.mark.parametrize("name, words", [("../outside.safetensors", ("resolves outside",)),
                                          ("/etc/passwd", ("not a relative path",))])
def test_manifest_paths_never_leave_the_store(tmp_path, store, name, words):
    root = _copy(store, tmp_path)
    shutil.copy(root / "shards" / "00000.safetensors", tmp_path / "outside.safetensors")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["shards"][0]["file"] = name
    write_manifest(root, manifest)
    _one_line_error(_cli("verify", str(root)), *words)
    _one_line_error(_train(root, tmp_path), *words)


def test_checkpoint_weights_path_is_confined_and_checked(tmp_path, digits_train):
    ckpt = Path(make_teacher(tmp_path / "c", digits_train.classes, seed=1)[5:])
    other = Path(make_teacher(tmp_path / "other", digits_train.classes, seed=2)[5:])
    doc = json.loads((ckpt / "config.json").read_text())
    (ckpt / "config.json").write_text(json.dumps({**doc, "weights": f"../{other.name}/model.safetensors"}))
    _one_line_error(_cli("eval", "--checkpoint", str(ckpt), "--data", "digits:test?n=32", "--quiet"),
                    "resolves outside")
    doc.pop("weights_sha256")
    (ckpt / "config.json").write_text(json.dumps(doc))
    _one_line_error(_cli("eval", "--checkpoint", str(ckpt), "--data", "digits:test?n=32", "--quiet"),
                    "records no weights_sha256")


def test_a_job_removes_only_its_own_temp_files(tmp_path):
    from drkit.augment import get_recipe
    from drkit.store import StoreWriter, array_schema

    rec = get_recipe("padcrop")
    config = {"num_samples": 8, "num_views": 1, "samples_per_shard": 4, "num_classes": 10, "topk": 2,
              "recipe": rec.describe(), "arrays": array_schema(rec.code_bytes, 2, 10, False)}
    first = StoreWriter(tmp_path / "s", config, shared=True, job=0, jobs=2)
    theirs = first.root / "shards" / f".00000.safetensors.{first.tag}.abc123.tmp"
    theirs.write_bytes(b"half a shard being written")
    mine = first.root / "shards" / ".00001.safetensors.job1of2.zzz.tmp"
    mine.write_bytes(b"debris of my own killed write")
    StoreWriter(tmp_path / "s", config, shared=True, job=1, jobs=2)
    assert theirs.exists() and not mine.exists()


def test_sealing_removes_debris_of_jobs_killed_under_another_shard_layout(tmp_path, store, digits_train):
    """A run killed as 4 jobs and finished as one: the 4-job layout's temp files have no job left to remove
    them, so the writer that seals the store does."""
    root = _copy(store, tmp_path)
    debris = root / "shards" / ".00000.safetensors.job3of4.q1w2.tmp"
    debris.write_bytes(b"half a shard")
    reinforce(ReinforceConfig(data=digits_train, teacher=[f"ckpt:{store.parent / 't'}"], out=root, resume=True,
                              recipe="padcrop+ra+mix", views=2, topk=3, workers=0, images_per_shard=16, device="cpu",
                              progress=False, command=["t"]))
    assert not debris.exists() and not list((root / "shards").glob(".*"))
    assert _cli("verify", str(root)).returncode == 0


def test_a_resumed_shard_whose_image_was_repaired_drops_the_killed_runs_skip_list(tmp_path):
    """A run killed after writing shard 0's skip list but before the shard, resumed after the image was
    fixed: the redone shard has no skips, so the stale list must go (else a good sample is never trained on)."""
    import numpy as np

    from drkit.augment import get_recipe
    from drkit.store import StoreWriter, array_schema

    rec = get_recipe("padcrop")
    config = {"num_samples": 4, "num_views": 1, "samples_per_shard": 4, "num_classes": 10, "topk": 2,
              "recipe": rec.describe(), "arrays": array_schema(rec.code_bytes, 2, 10, False)}
    writer = StoreWriter(tmp_path / "s", config)
    (writer.root / "shards" / "00000.skipped.json").write_text("[2]")  # what the killed run left
    arrays = {name: np.zeros([4, 1, *spec["shape"]], dtype=spec["dtype"]) for name, spec in config["arrays"].items()}
    arrays["topk_ids"][..., 1], arrays["topk_probs"][...] = 1, 0.5
    writer.write(0, arrays)
    assert writer.skipped() == [] and not (writer.root / "shards" / "00000.skipped.json").exists()


def test_merge_refuses_stores_rendered_by_different_renderers(tmp_path, store, digits_train):
    teacher = f"ckpt:{store.parent / 't'}"  # the fixture's own teacher: only the renderer differs
    other = reinforce(ReinforceConfig(data=digits_train, teacher=[teacher], out=tmp_path / "other",
                                      recipe="padcrop+ra+mix", views=2, topk=3, workers=0, images_per_shard=16,
                                      device="cpu", progress=False, seed=5, command=["t"]))
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["renderer"] = {**manifest["renderer"], "device": "cuda"}  # as if made on a GPU: replays differ
    write_manifest(other, manifest)
    _one_line_error(_cli("merge", str(store), str(other), "--out", str(tmp_path / "merged")), "different renderer")
    assert not (tmp_path / "merged").exists()


def _folder(root: Path, corrupt: bool = False) -> Path:
    from PIL import Image

    for c in ("a", "b"):
        (root / c).mkdir(parents=True, exist_ok=True)
        for k in range(4):
            Image.new("L", (12, 12), 40 * k + (100 if c == "b" else 0)).save(root / c / f"{k}.png")
    if corrupt:
        (root / "b" / "9.png").write_bytes(b"\\x89PNG\\r\\n\\x1a\\n not really an image")
    return root


@pytest.mark.parametrize("recipe, words", [("padcrop@pad=abc", ("pad='abc'", "not an int")),
                                            ("rrc@scale_min=2", ("scale_min=2.0", "[0.0001, 1.0]"))])
def test_bad_recipe_settings_are_one_line_and_leave_nothing_behind(tmp_path, recipe, words):
    data = f"imagefolder:{_folder(tmp_path / 'img')}?mode=L"
    teacher = make_teacher(tmp_path / "t", ["a", "b"], seed=1, image_size=12)
    out = tmp_path / "store"
    args = ["reinforce", "--data", data, "--teacher", teacher, "--samples", "2", "--topk", "2", "--workers", "0",
            "--device", "cpu", "--quiet", "--out", str(out)]
    _one_line_error(_cli(*args, "--recipe", recipe), *words)
    assert not out.exists()
    assert _cli(*args, "--recipe", "padcrop").returncode == 0  # the corrected rerun is not blocked


def test_a_corrupt_image_in_a_loader_worker_is_one_line_naming_the_file(tmp_path):
    data = f"imagefolder:{_folder(tmp_path / 'img', corrupt=True)}?mode=L"
    teacher = make_teacher(tmp_path / "t", ["a", "b"], seed=1, image_size=12)
    r = _cli("reinforce", "--data", data, "--teacher", teacher, "--samples", "2", "--topk", "2", "--workers", "2",
             "--device", "cpu", "--quiet", "--out", str(tmp_path / "store"))
    _one_line_error(r, "9.png")


def test_out_that_is_a_file_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    teacher = make_teacher(tmp_path / "t", ["a", "b"], seed=1, image_size=12)
    for out in (blocker, blocker / "sub"):
        r = _cli("reinforce", "--data", f"imagefolder:{_folder(tmp_path / 'img')}?mode=L", "--teacher", teacher,
                 "--samples", "2", "--topk", "2", "--workers", "0", "--device", "cpu", "--quiet", "--out", str(out))
        _one_line_error(r, str(blocker))


@pytest.mark.parametrize("key, value, words", [("num_samples", 1e30, "num_samples"), ("topk", 10**12, "topk"),
                                                ("num_views", "ten", "num_views"), ("shards", {}, "shard"),
                                                ("renderer", 5, "renderer"), ("source", "x", "source"),
                                                ("source", {"fingerprint": 5}, "source"), ("skipped", ["a"], "skipped"),
                                                ("skipped", [10**6], "skipped"),
                                                ("content_digest", "bogus", "content_digest")])
def test_a_manifest_with_wrong_types_or_sizes_is_one_line(tmp_path, store, key, value, words):
    root = _copy(store, tmp_path)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest[key] = value
    write_manifest(root, manifest)
    _one_line_error(_cli("inspect", str(root)), words)
    _one_line_error(_cli("verify", str(root)), words)


def test_every_sources_content_digest_is_one_a_store_may_record():
    """A manifest naming another digest is refused (else its per-image checks would be silently off)."""
    from drkit.sources import base, encoded
    from drkit.store.format import DIGEST_KINDS

    kinds = {c.digest_kind for m in (base, encoded) for c in vars(m).values()
             if isinstance(c, type) and issubclass(c, base.Source)} - {None}
    assert kinds == set(DIGEST_KINDS)


@pytest.mark.parametrize("args, words", [(["verify", "STORE", "--replay", "-3"], "--replay"),
                                         (["verify", "STORE", "--content"], "give the data with --data SRC"),
                                         (["inspect", "STORE", "--grid", "GRID", "--grid-samples", "0"], "--grid-samples"),
                                         (["reinforce", "--data", "digits:train", "--teacher", "ckpt:t", "--seed", "-1",
                                           "--out", "OUT"], "--seed")])
def test_negative_counts_and_seeds_are_one_line(tmp_path, store, args, words):
    places = {"STORE": str(store), "OUT": str(tmp_path / "o"), "GRID": str(tmp_path / "g.png")}
    args = [places.get(a, a) for a in args]
    r = _cli(*args)
    _one_line_error(r, words)
    assert not r.stdout and not (tmp_path / "o").exists() and not (tmp_path / "g.png").exists()


def test_a_symlink_loop_in_an_imagefolder_is_refused(tmp_path):
    root = _folder(tmp_path / "img")
    (root / "a" / "loop").symlink_to(root / "a", target_is_directory=True)
    r = _cli("verify", str(tmp_path / "nostore"), "--data", f"imagefolder:{root}")
    _one_line_error(r, "symlink loop")


def test_fuzzed_stores_fail_only_with_drkit_errors(tmp_path_factory, store, digits_train):
    """Mutated manifests, shard headers and shard bytes: drkit answers with its own error (or, for a
    harmless change, works) -- never another exception type, never a read outside the store."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from drkit.errors import DrkitError
    from drkit.store import open_store

    json_values = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                            st.text(max_size=8), st.lists(st.integers(), max_size=3))
    keys = ["num_samples", "num_views", "topk", "num_classes", "seed", "samples_per_shard", "image_size", "arrays",
            "recipe", "shards", "format_version"]

    # derandomized: the same examples on every run, so CI is not flaky; explore with a larger
    # max_examples and derandomize=False when changing the readers: DRKIT_FUZZ_EXAMPLES=5000 (done)
    @settings(max_examples=int(os.environ.get("DRKIT_FUZZ_EXAMPLES", 60)), deadline=None,
              derandomize=os.environ.get("DRKIT_FUZZ_EXAMPLES") is None, suppress_health_check=list(HealthCheck))
    @given(kind=st.sampled_from(["manifest", "bytes", "header", "truncate", "shardentry"]),
           key=st.sampled_from(keys), value=json_values, pos=st.integers(0, 10**6), byte=st.integers(0, 255))
    def run(kind, key, value, pos, byte):
        calls.append(kind)
        root = tmp_path_factory.mktemp("fuzz") / "s"
        shutil.copytree(store, root)
        manifest = json.loads((root / "manifest.json").read_text())
        shard = root / "shards" / "00001.safetensors"
        data = bytearray(shard.read_bytes())
        if kind == "manifest":
            manifest[key] = value
        elif kind == "shardentry":
            manifest["shards"][1]["file"] = value if isinstance(value, str) else "../../" + str(value)
        elif kind == "truncate":
            shard.write_bytes(bytes(data[: pos % len(data)]))
        else:  # header (first bytes) or body bytes; the checksum is recomputed so the deeper checks run
            at = pos % 64 if kind == "header" else pos % len(data)
            data[at] = byte
            shard.write_bytes(bytes(data))
            manifest["shards"][1].update(bytes=len(data), sha256=sha256_file(shard))
        write_manifest(root, manifest)
        try:
            s = open_store(root)
            s.verify(digits_train)
            for i in (0, 20, 47):
                s.record(i, 0)
            s.replay(digits_train, 20, 1)
        except DrkitError:
            pass

    calls: list[str] = []
    run()
    print(f"fuzz: {len(calls)} stores tried")
    assert len(calls) >= 20 and len(set(calls)) == 5  # it really ran, every kind of damage


def test_skip_bad_end_to_end(tmp_path):
    """--skip-bad: the store lists the undecodable image; inspect (statistics and grid) and DR
    training (input statistics included) work around it; the CLI says how many were skipped."""
    data = f"imagefolder:{_folder(tmp_path / 'img', corrupt=True)}?mode=L"
    teacher = make_teacher(tmp_path / "t", ["a", "b"], seed=1, image_size=12)
    out = tmp_path / "store"
    r = _cli("reinforce", "--data", data, "--teacher", teacher, "--recipe", "padcrop+mix", "--samples", "3",
             "--topk", "2", "--workers", "2", "--device", "cpu", "--quiet", "--skip-bad", "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "skipped 1 undecodable image" in r.stdout + r.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["skipped"] == [8]  # b/9.png sorts after b/0..3.png: index 4 + 4
    r = _cli("inspect", str(out), "--grid", str(tmp_path / "grid.png"), "--grid-samples", "9")
    assert r.returncode == 0, r.stderr[-2000:]
    r = _cli("train", "--data", data, "--reinforced", str(out), "--model", "drkit_cnn_tiny", "--epochs", "1",
             "--batch-size", "4", "--workers", "0", "--device", "cpu", "--quiet", "--out", str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr[-2000:]


# -- content-true source identity (part 2) ----------------------------------------------------
def _reinforce_folder(tmp_path: Path, data: str, out: Path) -> None:
    teacher = make_teacher(tmp_path / "t", ["a", "b"], seed=1, image_size=12)
    r = _cli("reinforce", "--data", data, "--teacher", teacher, "--recipe", "padcrop+mix", "--samples", "2",
             "--topk", "2", "--workers", "0", "--device", "cpu", "--quiet", "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]


def test_the_store_records_each_images_content_digest(tmp_path, store, digits_train):
    """Digits (an array source): the digest of every sample is the CRC-32 of its pixel bytes;
    a folder: the CRC-32 of each file's bytes."""
    import zlib

    from drkit.store import open_store

    s = open_store(store)
    assert s.digest_kind == "crc32-array-v1"
    want = [zlib.crc32(np.ascontiguousarray(digits_train._parent._images[int(j)]).tobytes())
            for j in digits_train.indices] if hasattr(digits_train, "indices") else None
    got = [s.content_digest(i) for i in range(len(digits_train))]
    assert want is not None and got == want
    root = _folder(tmp_path / "img")
    out = tmp_path / "fstore"
    _reinforce_folder(tmp_path, f"imagefolder:{root}?mode=L", out)
    fs = open_store(out)
    files = sorted(root.glob("*/*.png"))
    assert fs.digest_kind == "crc32-file-v1"
    assert [fs.content_digest(i) for i in range(len(files))] == [zlib.crc32(p.read_bytes()) for p in files]
    r = _cli("inspect", str(out))
    assert r.returncode == 0 and "crc32-file-v1" in r.stdout and "replay" in r.stdout, r.stderr


def test_swapped_same_size_images_pass_the_fingerprint_but_not_replay(tmp_path):
    """Two same-size images swapped across classes: paths, labels and sizes are unchanged, so the
    listing fingerprint matches; replay reads the bytes and refuses, naming the file."""
    from PIL import Image

    root = tmp_path / "img"
    for c, shade in (("a", 30), ("b", 200)):
        (root / c).mkdir(parents=True)
        for k in range(4):  # raw PGM: equal sizes whatever the pixels
            Image.new("L", (12, 12), shade + 5 * k).save(root / c / f"{k}.pgm")
    data = f"imagefolder:{root}?mode=L"
    out = tmp_path / "store"
    _reinforce_folder(tmp_path, data, out)
    a, b = root / "a" / "1.pgm", root / "b" / "2.pgm"
    a_bytes, b_bytes = a.read_bytes(), b.read_bytes()
    a.write_bytes(b_bytes)
    b.write_bytes(a_bytes)
    assert _cli("verify", str(out), "--data", data).returncode == 0  # the fast listing check cannot see it
    _one_line_error(_cli("verify", str(out), "--data", data, "--content"), "1.pgm", "changed since")
    r = _cli("train", "--data", data, "--reinforced", str(out), "--model", "drkit_cnn_tiny", "--epochs", "1",
             "--batch-size", "4", "--workers", "0", "--device", "cpu", "--quiet", "--out", str(tmp_path / "run"))
    _one_line_error(r, "changed since", ".pgm")
    _one_line_error(_cli("inspect", str(out), "--grid", str(tmp_path / "g.png"), "--data", data), "changed since")
    a.write_bytes(a_bytes)
    b.write_bytes(b_bytes)  # restored: everything works again
    r = _cli("verify", str(out), "--data", data, "--content")
    assert r.returncode == 0 and "8 images unchanged" in r.stdout, r.stderr


def test_content_digest_files_are_checked_like_shards(tmp_path, store):
    root = _copy(store, tmp_path)
    side = root / "shards" / "00001.content.safetensors"
    raw = bytearray(side.read_bytes())
    raw[-1] ^= 0xFF
    side.write_bytes(bytes(raw))
    _one_line_error(_cli("verify", str(root)), "00001.content.safetensors", "sha256")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["shards"][0]["content"]["file"] = "../../etc/passwd"
    write_manifest(root, manifest)
    _one_line_error(_cli("verify", str(root)), "resolves outside")


def test_merge_refuses_stores_of_different_images_and_keeps_digests(tmp_path, store, digits_train):
    from drkit.store import merge_stores, open_store

    teacher = json.loads((store / "manifest.json").read_text())["teachers"][0]["spec"]
    other = reinforce(ReinforceConfig(data=digits_train, teacher=[teacher], out=tmp_path / "b", recipe="padcrop+ra+mix",
                                      views=2, topk=3, seed=5, workers=0, images_per_shard=16, device="cpu",
                                      progress=False, command=["t"]))
    merged = open_store(merge_stores([store, other], tmp_path / "m"))
    assert [merged.content_digest(i) for i in range(48)] == [open_store(store).content_digest(i) for i in range(48)]
    changed = _copy(other, tmp_path / "c")
    from safetensors.numpy import load_file, save

    side = changed / "shards" / "00000.content.safetensors"
    arrays = dict(load_file(str(side)))
    arrays["content"] = arrays["content"] + np.uint32(1)
    side.write_bytes(save(arrays, metadata={"drkit": "drkit-store v1 samples 0:16"}))
    manifest = json.loads((changed / "manifest.json").read_text())
    manifest["shards"][0]["content"].update(bytes=side.stat().st_size, sha256=sha256_file(side))
    write_manifest(changed, manifest)
    with pytest.raises(Exception, match="different images"):
        merge_stores([store, changed], tmp_path / "m2")
    assert not (tmp_path / "m2").exists()


def test_eval_skip_bad_leaves_undecodable_images_out(tmp_path):
    """Without --skip-bad a corrupt image stops eval with one line naming it; with it, the image is
    left out of the metrics, counted and listed, and the other images score as before."""
    root = _folder(tmp_path / "img", corrupt=True)
    data = f"imagefolder:{root}?mode=L"
    ckpt = make_teacher(tmp_path / "t", ["a", "b"], seed=1, image_size=12).split(":", 1)[1]
    _one_line_error(_cli("eval", "--checkpoint", ckpt, "--data", data, "--quiet"), "9.png")
    out = tmp_path / "r.json"
    r = _cli("eval", "--checkpoint", ckpt, "--data", data, "--quiet", "--skip-bad", "--json", str(out),
             "--corruptions", "--families", "gaussian_noise", "--severities", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["images"] == 8 and report["skipped"] == [8] and "1 undecodable skipped" in r.stdout
    (root / "b" / "9.png").unlink()
    r = _cli("eval", "--checkpoint", ckpt, "--data", data, "--quiet", "--json", str(tmp_path / "c.json"))
    clean = json.loads((tmp_path / "c.json").read_text())
    assert clean["images"] == 8 and clean["top1"] == report["top1"] and clean["nll"] == report["nll"]


@pytest.fixture()
def read_only_dir(tmp_path):
    """A real read-only file system (a tmpfs mounted ro; root ignores permission bits)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], capture_output=True).returncode:
        pytest.skip("cannot mount a read-only tmpfs here")
    yield ro
    subprocess.run(["umount", str(ro)], capture_output=True)


def test_read_only_output_is_one_line(tmp_path, read_only_dir):
    data = f"imagefolder:{_folder(tmp_path / 'img')}?mode=L"
    teacher = make_teacher(tmp_path / "t", ["a", "b"], seed=1, image_size=12)
    r = _cli("reinforce", "--data", data, "--teacher", teacher, "--samples", "2", "--topk", "2", "--workers", "0",
             "--device", "cpu", "--quiet", "--out", str(read_only_dir / "store"))
    _one_line_error(r, "Read-only file system")
    r = _cli("eval", "--checkpoint", teacher.split(":", 1)[1], "--data", data, "--quiet", "--json",
             str(read_only_dir / "r.json"))
    _one_line_error(r, "not writable")
    r = _cli("train", "--data", data, "--model", "drkit_cnn_tiny", "--epochs", "1", "--batch-size", "4", "--workers",
             "0", "--device", "cpu", "--quiet", "--out", str(read_only_dir / "run"))
    _one_line_error(r, "Read-only file system")


def test_verify_replay_reproduces_the_stored_labels_and_refuses_another_teacher(tmp_path):
    """verify --replay N labels N replayed views again with the recorded teachers: a fresh store
    reproduces 100 %; with another teacher the check refuses, naming the first view that is off."""
    from PIL import Image

    root = tmp_path / "img"
    for c, shade in (("a", 30), ("b", 200)):
        (root / c).mkdir(parents=True)
        for k in range(4):
            Image.new("L", (12, 12), shade + 5 * k).save(root / c / f"{k}.pgm")
    data = f"imagefolder:{root}?mode=L"
    out = tmp_path / "store"
    _reinforce_folder(tmp_path, data, out)
    r = _cli("verify", str(out), "--data", data, "--replay", "12")
    assert r.returncode == 0 and "12 views labelled again: 100.0% reproduce" in r.stdout, r.stderr[-2000:]
    other = make_teacher(tmp_path / "t2", ["a", "b"], seed=9, image_size=12)
    _one_line_error(_cli("verify", str(out), "--data", data, "--replay", "12", "--teacher", other),
                    "replay reproduces the stored labels of only")
    _one_line_error(_cli("verify", str(out), "--replay", "4"), "--data")
