"""The one training loop: ERM, DR (``reinforced=STORE``) and online KD (``kd_teacher=[T...]``).

The three modes differ only in the dataset (stored views vs fresh recipe views) and in where the
target comes from (hard labels, stored top-k, teacher on the batch); model, optimiser, schedule,
batching, logging and checkpoints are one code path, so comparisons between modes are fair.

Determinism: data choices come from ``(seed, epoch, sample)``; torch's RNG (model init, dropout)
is seeded explicitly per epoch inside a forked RNG, so a resumed run replays the same epochs and
the caller's RNG is left alone.
"""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..configs import check
from ..device import autocast, resolve_device
from ..distributed import DistEnv, dist_env, init_process_group
from .config import TrainConfig
from .data import PlainBatches
from .optim import EMA, cosine_lr, create_optimizer, flatten_optimizer, set_lr, unflatten_optimizer
from .order import epoch_batches
from .outputs import finish, log_row, note, warn_if_underfit, warn_once_past_teachers, write_curves, write_metrics
from .replay import RawBatches, render_pixels
from .setup import Run, build_run
from .state import load_state, save_state, split_prefix, with_prefix

TAG_TORCH = 0x7C4D  #: per-epoch torch seed: (seed, TAG_TORCH, epoch, rank)


# -- small helpers ---------------------------------------------------------------------------------
@dataclasses.dataclass
class Fit:
    """The optimisation state the epochs share: optimiser, loss scaler, EMA, LR schedule, step."""

    optimizer: torch.optim.Optimizer
    scaler: Any
    ema: EMA | None
    peak_lr: float
    total_steps: int
    warmup_steps: int
    step: int = 0

    def lr(self) -> float:
        return cosine_lr(self.step, self.total_steps, self.warmup_steps, self.peak_lr)


def _to_input(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """uint8 NCHW on the host -> float [0, 1] on the device (the model normalises)."""
    x = x.to(device, non_blocking=True).float().div_(255)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _loader(ds: Any, batches: list[np.ndarray], device: torch.device, workers: int) -> DataLoader:
    """``ds[b]`` for each ``b`` in ``batches`` (refilled each epoch): one loader a run, workers persistent (a start
    costs seconds where they spawn: macOS, Python >= 3.14), seeded by its own generator (dropout's RNG left alone)."""
    return DataLoader(ds, batch_size=None, sampler=batches, num_workers=workers, persistent_workers=workers > 0,
                      pin_memory=device.type == "cuda", prefetch_factor=4 if workers > 0 else None,
                      generator=torch.Generator())


def _all_reduce(values: list[float], env: DistEnv, device: torch.device) -> list[float]:
    if not env.is_distributed:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


# -- one epoch -------------------------------------------------------------------------------------
def _step(run: Run, model: nn.Module, fit: Fit, raw: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One optimiser step on a raw batch (decoded images + view parameters from a loader worker,
    :mod:`drkit.train.replay`): its views are rendered here, on the training device, by the batched
    renderer; the targets are the store's (DR), the recipe's hard ones (ERM) or the teacher's (KD).
    Returns (loss, logits, labels)."""
    device, ds = run.device, run.dataset
    set_lr(fit.optimizer, fit.lr())
    x = _to_input(render_pixels(raw, ds.recipe, ds.image_size, device), device, run.cfg.runtime.channels_last)
    labels = raw["label"].to(device, non_blocking=True)
    if run.teacher is not None:  # the teacher sees the same views, at its own input size
        xt = _to_input(render_pixels(raw, ds.recipe, ds.teacher_size, device), device, True) if ds.teacher_size else x
        target = run.teacher(xt, sample_ids=raw["sample"], partner_ids=raw["partner"]).float()
    else:
        target = ds.targets(raw).to(device, non_blocking=True)
    with autocast(device, run.amp_dtype):
        logits = model(x)
    loss = run.criterion(logits.float(), target)
    fit.optimizer.zero_grad(set_to_none=True)
    if fit.scaler is not None:
        fit.scaler.scale(loss).backward()
        fit.scaler.step(fit.optimizer)
        fit.scaler.update()
    else:
        loss.backward()
        fit.optimizer.step()
    if fit.ema is not None:
        fit.ema.update(run.model)
    fit.step += 1
    return loss, logits, labels


def _train_epoch(run: Run, model: nn.Module, fit: Fit, loader: DataLoader, epoch: int) -> dict[str, float]:
    from tqdm.auto import tqdm

    device, env, cfg = run.device, run.env, run.cfg
    model.train()
    loss_sum, correct = (torch.zeros((), dtype=torch.float64, device=device) for _ in range(2))
    seen, lr = 0, fit.peak_lr
    bar = tqdm(total=len(loader), desc=f"epoch {epoch + 1}/{cfg.optim.epochs}", unit="batch", dynamic_ncols=True,
               disable=cfg.runtime.quiet or not env.is_main, leave=False)
    start = time.perf_counter()
    for b, batch in enumerate(loader):
        lr = fit.lr()
        loss, logits, labels = _step(run, model, fit, batch)
        n = int(labels.shape[0])
        seen += n
        loss_sum += loss.detach().double() * n
        correct += (logits.detach().argmax(-1) == labels).sum().double()
        bar.update(1)
        if b % 20 == 0 and not bar.disable:
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.3g}")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    bar.close()
    tot_loss, tot_correct, tot_seen = _all_reduce([loss_sum.item(), correct.item(), float(seen)], env, device)
    check(math.isfinite(tot_loss),
          f"training loss became non-finite in epoch {epoch + 1}; lower --lr or check the data")
    return {"train_loss": tot_loss / max(tot_seen, 1), "train_top1": tot_correct / max(tot_seen, 1), "lr": lr,
            "epoch_seconds": seconds, "img_per_s": tot_seen / max(seconds, 1e-9), "train_samples": int(tot_seen)}


def _val_loader(run: Run) -> DataLoader:
    """The eval view of ``--val`` in batches; ranks take strided slices."""
    idx, bs = np.arange(len(run.val_src))[run.env.rank::run.env.world_size], run.cfg.optim.batch_size
    return _loader(PlainBatches(run.val_src, run.image_size), [idx[a:a + bs] for a in range(0, len(idx), bs)],
                   run.device, run.cfg.runtime.workers)


@torch.no_grad()
def _validate(run: Run, model: nn.Module, loader: DataLoader) -> dict[str, float]:
    """Top-1 and NLL on the eval view; sums are all-reduced over the ranks."""
    env, device, was_training = run.env, run.device, model.training
    model.eval()
    nll = correct = count = 0.0
    for batch in loader:
        x = _to_input(batch["image"], device, run.cfg.runtime.channels_last)
        labels = batch["label"].to(device)
        with autocast(device, run.amp_dtype):
            logits = model(x)
        logp = torch.log_softmax(logits.float(), dim=-1)
        nll += float(-logp.gather(1, labels[:, None]).sum())
        correct += float((logp.argmax(-1) == labels).sum())
        count += int(labels.shape[0])
    model.train(was_training)
    nll, correct, count = _all_reduce([nll, correct, count], env, device)
    return {"top1": correct / max(count, 1), "nll": nll / max(count, 1)}


# -- resume state ----------------------------------------------------------------------------------
def _save(run: Run, fit: Fit, rows: list[dict[str, Any]], epoch: int) -> None:
    tensors = with_prefix(run.model.state_dict(), "model")
    opt_tensors, opt_meta = flatten_optimizer(fit.optimizer)
    tensors.update(opt_tensors)
    if fit.ema is not None:
        tensors.update(with_prefix(fit.ema.state_dict(), "ema"))
    save_state(Path(run.cfg.out), tensors, {
        "epoch": epoch, "step": fit.step, "rows": rows, "run": run.config, "config": run.cfg.to_dict(),
        "optimizer": opt_meta, "scaler": fit.scaler.state_dict() if fit.scaler else None})


def _restore(run: Run, fit: Fit) -> dict[str, Any]:
    """Load ``out/state`` into the model and ``fit``, refusing a run made with other settings."""
    out = Path(run.cfg.out)
    tensors, doc = load_state(out)
    diff = run.cfg.diff(doc.get("config") or {})
    diff += [k for k in ("data_fingerprint", "store_views", "amp") if doc["run"].get(k) != run.config.get(k)]
    check(not diff, f"--resume: {out} holds a run with other settings ({', '.join(sorted(diff))}); "
          "resume with the same options or choose another --out")
    run.model.load_state_dict(split_prefix(tensors, "model"), strict=True)
    # on the CPU: load_state_dict moves each tensor where torch keeps it (a plain AdamW's step stays on the CPU)
    unflatten_optimizer(fit.optimizer, {k: v for k, v in tensors.items() if k.startswith("optim.")}, doc["optimizer"])
    if fit.ema is not None:
        fit.ema.load_state_dict(split_prefix(tensors, "ema"))
    if fit.scaler is not None and doc.get("scaler"):
        fit.scaler.load_state_dict(doc["scaler"])
    fit.step = int(doc["step"])
    return doc


# -- the verb --------------------------------------------------------------------------------------
def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train a student, ``train(TrainConfig.build(data=..., out=...))``; returns a JSON-serialisable summary
    (see :class:`TrainConfig`). Writes ``out/{model.safetensors, config.json, metrics.jsonl, curves.png,
    state/}``; ``resume`` continues from ``out/state``. ``folds = K`` trains K out-of-fold members
    (:mod:`drkit.train.folds`): teachers that never saw the images they later label.
    """
    check(isinstance(cfg, TrainConfig), "train takes one TrainConfig: train(TrainConfig.build(data=..., out=...))")
    env = dist_env()
    if cfg.folds is not None:
        from .folds import train_folds

        return train_folds(cfg.validate(env.world_size), train)
    cfg.validate(env.world_size)
    device = resolve_device(cfg.runtime.device, env)
    started_pg = init_process_group(device) if env.is_distributed else False
    forked = [device.index or 0] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=forked):
            return _train(cfg, env, device)
    finally:
        if started_pg:
            import torch.distributed as dist

            dist.destroy_process_group()


def _fit(run: Run, steps: int) -> Fit:
    o = run.cfg.optim
    return Fit(optimizer=create_optimizer(run.model, o.opt, o.peak_lr, o.decay),
               scaler=torch.amp.GradScaler("cuda") if run.amp_dtype == torch.float16 else None,
               ema=EMA(run.model, o.ema) if o.ema else None, peak_lr=o.peak_lr, total_steps=steps * o.epochs,
               warmup_steps=int(round(o.warmup_epochs * steps)))


def _train(cfg: TrainConfig, env: DistEnv, device: torch.device) -> dict[str, Any]:
    t_start = time.perf_counter()
    out = Path(cfg.out)
    run = build_run(cfg, env, device)
    o, rt = cfg.optim, cfg.runtime
    run.config.update(epochs=o.epochs, batch_size=o.batch_size, lr=o.peak_lr, opt=o.opt, weight_decay=o.decay,
                      warmup_epochs=o.warmup_epochs, label_smoothing=cfg.smoothing if cfg.mode == "erm" else None,
                      **(cfg.distill.resolved if cfg.mode != "erm" else {"temperature": None, "soften_targets": None}),
                      ema=o.ema, seed=cfg.seed, limit_batches=rt.limit_batches, world_size=env.world_size,
                      amp=str(run.amp_dtype).replace("torch.", "") if run.amp_dtype else "off",
                      channels_last=rt.channels_last, init=cfg.init)
    per_rank_items = cfg.optim.batch_size // env.world_size // cfg.distill.views_per_image
    n_items = len(run.dataset)
    steps = len(epoch_batches(n_items, cfg.seed, 0, per_rank_items, env.rank, env.world_size)[:rt.limit_batches])
    fit = _fit(run, steps)
    rows: list[dict[str, Any]] = []
    start_epoch = 0
    if cfg.runtime.resume:
        doc = _restore(run, fit)
        rows, start_epoch = list(doc["rows"]), int(doc["epoch"])
        note(f"resuming {out} after epoch {start_epoch}/{cfg.optim.epochs}", env.rank, cfg.runtime.quiet)
    model: nn.Module = run.model
    if env.is_distributed:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(run.model, device_ids=[device.index] if device.type == "cuda" else None)
    last_plot = time.perf_counter()
    batches: list[np.ndarray] = []  # the epoch's, refilled in place: the sampler of one loader for the run
    loader = _loader(RawBatches(run.dataset), batches, device, rt.workers)
    val_loader = _val_loader(run) if run.val_src is not None else None
    for epoch in range(start_epoch, cfg.optim.epochs):
        torch.manual_seed(int(np.random.default_rng([cfg.seed, TAG_TORCH, epoch, env.rank]).integers(2**62)))
        run.dataset.set_epoch(epoch)
        batches[:] = epoch_batches(n_items, cfg.seed, epoch, per_rank_items, env.rank, env.world_size)[:steps]
        metrics = _train_epoch(run, model, fit, loader, epoch)
        row: dict[str, Any] = {"epoch": epoch + 1, "step": fit.step, **metrics}
        if val_loader is not None:
            row.update(_validation_row(run, fit, val_loader))
            warn_once_past_teachers(rows, row, run.config, env.rank)
        rows.append(row)
        if env.is_main:
            log_row(row, cfg.optim.epochs, cfg.runtime.quiet)
            _save(run, fit, rows, epoch + 1)  # first: a run that fails here (disk full) leaves nothing to refuse
            write_metrics(out, rows)
            if epoch + 1 == cfg.optim.epochs or time.perf_counter() - last_plot > 60:
                write_curves(out, rows, f"{cfg.mode} {cfg.model}")
                last_plot = time.perf_counter()
    del loader, val_loader  # persistent workers end with the run, not when a frame cycle (matplotlib's) is collected
    warn_if_underfit(rows, run.config, env.rank)
    return finish(run, rows, fit.ema, time.perf_counter() - t_start)


def _validation_row(run: Run, fit: Fit, loader: DataLoader) -> dict[str, float]:
    v0 = time.perf_counter()
    row = {f"val_{k}": v for k, v in _validate(run, run.model, loader).items()}
    if fit.ema is not None:
        row.update({f"val_ema_{k}": v for k, v in _validate(run, fit.ema.module, loader).items()})
    return {**row, "val_seconds": time.perf_counter() - v0}
