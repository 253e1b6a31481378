"""Loops users already have (docs/loops.md): persistent DataLoader workers follow ``set_epoch``
(fork and spawn), timm's ``create_loader`` hands the dataset's items through unchanged, a
Lightning module trains on the right view each epoch, and drkit's loss equals timm's."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from drkit.store import open_store
from drkit.train import ReinforcedDataset, SoftTargetLoss
from drkit.train.order import epoch_views
from drkit.train.losses import SoftTargetCrossEntropy

NS = 4  # stored views per image


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(source, store): 48 digits, NS = 4 ``padcrop`` views, top-3, a random teacher."""
    from conftest import make_teacher

    from drkit.reinforce import ReinforceConfig, reinforce
    from drkit.sources import load_source

    base = tmp_path_factory.mktemp("loops")
    src = load_source("digits:train?n=48")
    teacher = make_teacher(base / "t", src.classes, seed=1)
    root = reinforce(ReinforceConfig(data=src, teacher=[teacher], out=base / "store", recipe="padcrop", views=NS,
                                     topk=3, workers=0, progress=False, device="cpu", command=["t"]))
    return src, open_store(root)


class ViewsOf(ReinforcedDataset):
    """Also says which stored view the item replayed, and in which process (module level: spawn
    pickles it by name)."""

    def __getitem__(self, pos: int) -> tuple[torch.Tensor, torch.Tensor, int, int, int]:
        x, y = super().__getitem__(pos)
        return x, y, pos, self.views(pos)[0], os.getpid()


def _epoch_items(ds: ReinforcedDataset, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """What the dataset yields in ``epoch``, read in this process (the reference)."""
    ds.set_epoch(epoch)
    xs, ys = zip(*(ds[p] for p in range(len(ds))))
    return torch.stack(xs), torch.stack(ys)


def _rows(x: torch.Tensor, y: torch.Tensor) -> list[bytes]:
    """A batch as sorted byte strings: exact equality of (image, target) multisets, whatever order."""
    return sorted(a.numpy().tobytes() + b.numpy().tobytes() for a, b in zip(x, y))


def test_persistent_workers_follow_the_epoch(tiny):
    src, store = tiny
    ds = ViewsOf(src, store)
    ref = ReinforcedDataset(src, store)
    loader = DataLoader(ds, batch_size=12, num_workers=2, persistent_workers=True)
    replayed: dict[int, list[int]] = {p: [] for p in range(len(ds))}
    pids = set()
    for epoch in range(NS):
        ds.set_epoch(epoch)
        xs, ys = [], []
        for x, y, pos, view, pid in loader:
            xs.append(x)
            ys.append(y)
            pids |= set(pid.tolist())
            for p, v in zip(pos.tolist(), view.tolist()):
                replayed[p].append(v)
        want = _epoch_items(ref, epoch)
        assert torch.equal(torch.cat(xs), want[0]) and torch.equal(torch.cat(ys), want[1])
    assert len(pids) == 2 and os.getpid() not in pids  # the same two workers served every epoch
    for p, views in replayed.items():
        assert views == [epoch_views(ds.seed, p, e, NS)[0] for e in range(NS)]
        assert sorted(views) == list(range(NS))  # not one view repeated
    assert ds.epoch == NS - 1 and ReinforcedDataset(src, store, epoch=3).epoch == 3


def test_spawned_workers_follow_the_epoch(tiny):
    """Under ``spawn`` the dataset is pickled into the worker; torch's pickler sends the shared
    epoch's memory, not a copy."""
    src, store = tiny
    ds, ref = ReinforcedDataset(src, store), ReinforcedDataset(src, store)
    loader = DataLoader(ds, batch_size=len(ds), num_workers=1, persistent_workers=True, multiprocessing_context="spawn")
    got = []
    for epoch in range(2):
        ds.set_epoch(epoch)
        (x, y), = list(loader)
        want = _epoch_items(ref, epoch)
        assert torch.equal(x, want[0]) and torch.equal(y, want[1])
        got.append(x)
    assert not torch.equal(got[0], got[1])


def test_augmented_dataset_epoch_is_shared():
    """The ERM/KD dataset keeps its epoch in the same shared memory (fork shares the mapping)."""
    import multiprocessing as mp

    from drkit.sources import load_source
    from drkit.train import AugmentedDataset

    ds = AugmentedDataset(load_source("digits:train?n=8"), "padcrop", 16, epoch=2)
    assert ds.epoch == 2 and ds.view() == 2
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    go = ctx.Event()
    child = ctx.Process(target=_report_view, args=(ds, go, q))
    child.start()
    ds.set_epoch(5)
    go.set()
    assert q.get(timeout=60) == 5
    child.join(timeout=60)


def _report_view(ds, go, q) -> None:
    go.wait(60)
    q.put(ds.view())


@pytest.mark.parametrize("prefetcher", [False, True], ids=["default_collate", "prefetcher"])
def test_timm_create_loader_round_trip(tiny, prefetcher):
    """timm builds its own transform and sets it on the dataset (ignored: the store holds the
    augmentation); items pass through unchanged, in shuffled order, with the epoch's views."""
    from timm.data import create_loader

    src, store = tiny
    mean, std = (0.5,), (0.25,)
    ds = ReinforcedDataset(src, store, as_uint8=prefetcher)
    ref = ReinforcedDataset(src, store, as_uint8=prefetcher)
    loader = create_loader(ds, input_size=(1, store.image_size, store.image_size), batch_size=16, is_training=True,
                           no_aug=True, re_prob=0.0, use_prefetcher=prefetcher, mean=mean, std=std,
                           device=torch.device("cpu"), num_workers=2, persistent_workers=True)
    assert loader.dataset is ds and ds.transform is not None  # timm's transform: set, never called
    epochs = []
    for epoch in range(3):
        loader.dataset.set_epoch(epoch)  # the one line timm's own train.py may not run (docs/loops.md)
        x, y = map(torch.cat, zip(*loader))
        assert x.dtype == torch.float32 and len(x) == len(ds)
        want_x, want_y = _epoch_items(ref, epoch)
        if prefetcher:  # PrefetchLoader: uint8 -> (x - 255 mean) / (255 std), same ops, same bits
            m, s = (torch.tensor([v * 255 for v in t]).view(1, -1, 1, 1) for t in (mean, std))
            want_x = want_x.to(torch.float32).sub_(m).div_(s)
        assert _rows(x, y) == _rows(want_x, want_y)
        epochs.append(_rows(x, y))
    assert epochs[0] != epochs[1] != epochs[2] != epochs[0]  # the views follow the epoch


def test_lightning_epoch_hook(tiny):
    pytest.importorskip("lightning")
    import lightning as L

    src, store = tiny
    data = _lightning_data(L, src, store)
    module = _lightning_module(L, store.image_size)
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=data)
    seed = data.train_set.seed
    assert sorted({e for e, _, _ in module.replayed}) == [0, 1]
    for epoch in (0, 1):
        seen = {p: v for e, p, v in module.replayed if e == epoch}
        assert seen == {p: epoch_views(seed, p, epoch, NS)[0] for p in range(len(data.train_set))}
    assert len({pid for _, pid in module.pids}) == 2  # persistent: the same two workers both epochs


def _lightning_data(L, src, store):
    """The docs/loops.md data module, with :class:`ViewsOf` to see the views replayed."""

    class DRData(L.LightningDataModule):
        def setup(self, stage: str) -> None:
            self.train_set = ViewsOf(src, store)

        def train_dataloader(self) -> DataLoader:
            self.train_set.set_epoch(self.trainer.current_epoch)
            return DataLoader(self.train_set, batch_size=16, shuffle=True, num_workers=2, persistent_workers=True)

    return DRData()


def _lightning_module(L, size: int):
    class Student(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(size * size, 10))
            self.loss = SoftTargetLoss()
            self.replayed: list[tuple[int, int, int]] = []
            self.pids: set[tuple[int, int]] = set()

        def on_train_epoch_start(self) -> None:
            self.trainer.datamodule.train_set.set_epoch(self.trainer.current_epoch)

        def training_step(self, batch, batch_idx: int) -> torch.Tensor:
            x, y, pos, view, pid = batch
            self.replayed += [(self.current_epoch, p, v) for p, v in zip(pos.tolist(), view.tolist())]
            self.pids |= {(self.current_epoch, q) for q in pid.tolist()}
            return self.loss(self.net((x - 0.5) / 0.25), y)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return Student()


def test_soft_target_cross_entropy_equals_timm():
    from timm.loss import SoftTargetCrossEntropy as TimmSoftTargetCE

    g = torch.Generator().manual_seed(0)
    for b, c in [(1, 2), (7, 10), (32, 1000)]:
        logits = (torch.randn(b, c, generator=g) * 3).requires_grad_(True)
        target = torch.softmax(torch.randn(b, c, generator=g) * 2, -1)
        ours, theirs = SoftTargetCrossEntropy()(logits, target), TimmSoftTargetCE()(logits, target)
        assert torch.allclose(ours, theirs, rtol=1e-6, atol=1e-7)
        assert torch.allclose(SoftTargetLoss()(logits, target), theirs, rtol=1e-6, atol=1e-7)
        g_ours, = torch.autograd.grad(ours, logits)
        g_theirs, = torch.autograd.grad(theirs, logits)
        assert torch.allclose(g_ours, g_theirs, rtol=1e-5, atol=1e-8)
    # views_per_image = k: [B, k, C] targets against the flattened [B * k, C] logits (or [B, k, C])
    logits, target = torch.randn(4 * 3, 10, generator=g), torch.softmax(torch.randn(4, 3, 10, generator=g), -1)
    flat = TimmSoftTargetCE()(logits, target.flatten(0, 1))
    assert torch.allclose(SoftTargetCrossEntropy()(logits, target), flat, rtol=1e-6)
    assert torch.allclose(SoftTargetCrossEntropy()(logits.view(4, 3, 10), target), flat, rtol=1e-6)
    with pytest.raises(ValueError, match="differ in shape"):
        SoftTargetCrossEntropy()(torch.randn(5, 10), target)


def test_loops_doc_names_what_the_tests_run():
    """docs/loops.md's recipes use the arguments these tests pin."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "loops.md").read_text()
    for needle in ("persistent_workers=True", "use_prefetcher", "as_uint8=True", "no_aug=True", "re_prob=0",
                   "use_multi_epochs_loader", "on_train_epoch_start", "sampler.set_epoch(epoch)",
                   "ds.set_epoch(epoch)", "SoftTargetCrossEntropy"):
        assert needle in text, needle
