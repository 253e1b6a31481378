"""The one training loop: ERM, DR (``reinforced=STORE``) and online KD (``kd_teacher=[T...]``).

The three modes differ only in the dataset (stored views vs fresh recipe views) and in where the
target comes from (hard labels, stored top-k, teacher on the batch); model, optimiser, schedule,
batching, logging and checkpoints are one code path, so comparisons between modes are fair.

Determinism: data choices come from ``(seed, epoch, sample)``; torch's RNG (model init, dropout)
is seeded explicitly per epoch inside a forked RNG, so a resumed run replays the same epochs and
the caller's RNG is left alone.
"""
from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..distributed import DistEnv, dist_env, init_process_group, resolve_device
from ..errors import DrkitError
from .build import Run, build_run, check_options
from .data import BatchDataset, PlainBatches, epoch_batches
from .optim import DEFAULTS, EMA, cosine_lr, create_optimizer, default_lr, flatten_optimizer, set_lr, unflatten_optimizer
from .outputs import finish, log_row, write_curves, write_metrics
from .prepare import note, parse_model_kwargs
from .state import load_state, save_state, split_prefix, with_prefix

TAG_TORCH = 0x7C4D
#: options that may change between an interrupted run and its --resume
RESUME_FREE = ("workers", "quiet", "device")


# ----------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------
def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return int(np.random.default_rng([int(seed), TAG_TORCH, int(epoch), int(rank)]).integers(2**62))


def _to_input(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """uint8 NCHW on the host -> float [0, 1] on the device (the model normalises)."""
    x = x.to(device, non_blocking=True).float().div_(255)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _loader(ds: Any, device: torch.device, workers: int) -> DataLoader:
    return DataLoader(ds, batch_size=None, shuffle=False, num_workers=workers,
                      pin_memory=device.type == "cuda", prefetch_factor=4 if workers > 0 else None)


def _all_reduce(values: list[float], env: DistEnv, device: torch.device) -> list[float]:
    if not env.is_distributed:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


# ----------------------------------------------------------------------------------------------
# one epoch
# ----------------------------------------------------------------------------------------------
def _train_epoch(run: Run, ddp_model: nn.Module, optimizer: torch.optim.Optimizer, scaler: Any, ema: EMA | None,
                 batches: list[np.ndarray], workers: int, step: int, schedule: dict[str, Any], epoch: int,
                 epochs: int, quiet: bool) -> tuple[dict[str, float], int]:
    from tqdm.auto import tqdm

    device, env = run.device, run.env
    loader = _loader(BatchDataset(run.dataset, batches), device, workers)
    ddp_model.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.float64, device=device)
    seen = 0
    lr = schedule["peak"]
    bar = tqdm(total=len(batches), desc=f"epoch {epoch + 1}/{epochs}", unit="batch", dynamic_ncols=True,
               disable=quiet or not env.is_main, leave=False)
    start = time.perf_counter()
    for b, batch in enumerate(loader):
        lr = cosine_lr(step, schedule["total"], schedule["warmup"], schedule["peak"])
        set_lr(optimizer, lr)
        x = _to_input(batch["image"], device, run.channels_last)
        labels = batch["label"].to(device, non_blocking=True)
        if run.teacher is not None:
            xt = _to_input(batch["teacher_image"], device, True) if "teacher_image" in batch else x
            target = run.teacher(xt, sample_ids=batch.get("index"), partner_ids=batch.get("partner")).float()
        else:
            target = batch["target"].to(device, non_blocking=True)
        with _autocast(device, run.amp_dtype):
            logits = ddp_model(x)
        loss = run.criterion(logits.float(), target)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        if ema is not None:
            ema.update(run.model)
        step += 1
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
    if not math.isfinite(tot_loss):
        raise DrkitError(f"training loss became non-finite in epoch {epoch + 1}; lower --lr or check the data")
    return {"train_loss": tot_loss / max(tot_seen, 1), "train_top1": tot_correct / max(tot_seen, 1), "lr": lr,
            "epoch_seconds": seconds, "img_per_s": tot_seen / max(seconds, 1e-9), "train_samples": int(tot_seen)}, step


@torch.no_grad()
def _validate(run: Run, model: nn.Module, batch_size: int, workers: int) -> dict[str, float]:
    """Top-1 and NLL on the eval view; ranks take strided slices, sums are all-reduced."""
    env, device = run.env, run.device
    idx = np.arange(len(run.val_src))[env.rank::env.world_size]
    batches = [idx[a:a + batch_size] for a in range(0, len(idx), batch_size)]
    was_training = model.training
    model.eval()
    nll = correct = count = 0.0
    for batch in _loader(PlainBatches(run.val_src, run.image_size, batches), device, workers):
        x = _to_input(batch["image"], device, run.channels_last)
        labels = batch["label"].to(device)
        with _autocast(device, run.amp_dtype):
            logits = model(x)
        logp = torch.log_softmax(logits.float(), dim=-1)
        nll += float(-logp.gather(1, labels[:, None]).sum())
        correct += float((logp.argmax(-1) == labels).sum())
        count += int(labels.shape[0])
    model.train(was_training)
    nll, correct, count = _all_reduce([nll, correct, count], env, device)
    return {"top1": correct / max(count, 1), "nll": nll / max(count, 1)}


# ----------------------------------------------------------------------------------------------
# resume state
# ----------------------------------------------------------------------------------------------
def _state_tensors(run: Run, optimizer: torch.optim.Optimizer, ema: EMA | None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = with_prefix(run.model.state_dict(), "model")
    opt_tensors, opt_meta = flatten_optimizer(optimizer)
    tensors.update(opt_tensors)
    if ema is not None:
        tensors.update(with_prefix(ema.state_dict(), "ema"))
    return tensors, opt_meta


def _restore(run: Run, optimizer: torch.optim.Optimizer, scaler: Any, ema: EMA | None, out: Path) -> dict[str, Any]:
    tensors, doc = load_state(out)
    diff = sorted(k for k in set(doc["run"]) | set(run.config)
                  if k not in RESUME_FREE and doc["run"].get(k) != run.config.get(k))
    if diff:
        raise DrkitError(f"--resume: {out} holds a run with other settings ({', '.join(diff)}); "
                         "resume with the same options or choose another --out")
    run.model.load_state_dict(split_prefix(tensors, "model"), strict=True)
    unflatten_optimizer(optimizer, {k: v.to(run.device) for k, v in tensors.items() if k.startswith("optim.")},
                        doc["optimizer"])
    if ema is not None:
        ema.load_state_dict(split_prefix(tensors, "ema"))
    if scaler is not None and doc.get("scaler"):
        scaler.load_state_dict(doc["scaler"])
    return doc


# ----------------------------------------------------------------------------------------------
# the verb
# ----------------------------------------------------------------------------------------------
def train(data: Any, out: str | Path | None = None, *, val: Any = None, model: str = "drkit_cnn_tiny",
          reinforced: str | Path | None = None, kd_teacher: str | Sequence[str] | None = None,
          recipe: str | None = None, image_size: int | None = None, epochs: int = 10, batch_size: int = 128,
          lr: float | None = None, opt: str = "sgd", weight_decay: float | None = None,
          warmup_epochs: float = 1.0, label_smoothing: float = 0.1, temperature: float = 1.0,
          views_per_image: int = 1, plain_fraction: float = 0.0, ema: float | None = None, workers: int = 2,
          device: str = "auto", amp: str = "auto", channels_last: bool = True, seed: int = 0,
          resume: bool = False, init: str | None = None, limit_batches: int | None = None, quiet: bool = False,
          split: str | None = None, download: bool = False, command: Sequence[str] | None = None,
          model_kwargs: str | dict[str, Any] | None = None, folds: int | None = None,
          soften_targets: bool = False) -> dict[str, Any]:
    """Train a student (see ``drkit train --help``); returns a JSON-serialisable summary.

    Mode: DR with ``reinforced`` (the store's views and soft labels), online KD with
    ``kd_teacher`` (the teacher labels each augmented batch), else ERM (``recipe`` views, hard or
    λ-mixed labels, ``label_smoothing``). ``batch_size`` is the global batch in *views*: split
    evenly across torchrun ranks, and with ``views_per_image = k`` each rank's batch is
    ``batch_size / ranks / k`` decoded images x k stored views each (an epoch then visits every
    image k times). Defaults: lr 0.1 (SGD) or 2e-3 (AdamW) times ``batch_size / 256``, weight decay
    5e-4 / 0.05, image size the store's (DR) or the source's native side. ``model_kwargs`` (dict or
    JSON text) go to the model factory. Writes ``out/{model.safetensors, config.json,
    metrics.jsonl, curves.png, state/}``; ``resume`` continues from ``out/state``.
    ``folds = K`` trains K out-of-fold members into ``out/fold{k}`` plus ``out/folds.json``
    (:mod:`drkit.train.folds`): teachers that never saw the images they later label.
    """
    if out is None:
        raise DrkitError("train needs an output directory (--out DIR)")
    out = Path(out)
    if folds is not None:
        from .folds import train_folds

        return train_folds(train, data, out, folds, val=val, model=model, reinforced=reinforced,
                           kd_teacher=kd_teacher, recipe=recipe, image_size=image_size, epochs=epochs,
                           batch_size=batch_size, lr=lr, opt=opt, weight_decay=weight_decay,
                           warmup_epochs=warmup_epochs, label_smoothing=label_smoothing, temperature=temperature,
                           views_per_image=views_per_image, plain_fraction=plain_fraction, ema=ema, workers=workers,
                           device=device, amp=amp, channels_last=channels_last, seed=seed, resume=resume, init=init,
                           limit_batches=limit_batches, quiet=quiet, split=split, download=download,
                           command=command, model_kwargs=model_kwargs, soften_targets=soften_targets)
    env = dist_env()
    dev_name = resolve_device(device, env)
    if dev_name.startswith("cuda") and not torch.cuda.is_available():
        raise DrkitError(f"--device {device} requested but CUDA is not available")
    started_pg = init_process_group(dev_name) if env.is_distributed else False
    torch_device = torch.device(dev_name)
    forked = [torch_device.index or 0] if torch_device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=forked):
            return _train(data=data, out=out, val=val, model=model, reinforced=reinforced, kd_teacher=kd_teacher,
                          recipe=recipe, image_size=image_size, epochs=epochs, batch_size=batch_size, lr=lr,
                          opt=opt, weight_decay=weight_decay, warmup_epochs=warmup_epochs,
                          label_smoothing=label_smoothing, temperature=temperature,
                          views_per_image=views_per_image, plain_fraction=plain_fraction, ema=ema,
                          workers=workers, device=torch_device, amp=amp, channels_last=channels_last, seed=seed,
                          resume=resume, init=init, limit_batches=limit_batches, quiet=quiet, split=split,
                          download=download, command=command, model_kwargs=model_kwargs,
                          soften_targets=soften_targets, env=env)
    finally:
        if started_pg:
            import torch.distributed as dist

            dist.destroy_process_group()


def _train(data: Any, out: Path, val: Any, model: str, reinforced: Any, kd_teacher: Any, recipe: str | None,
           image_size: int | None, epochs: int, batch_size: int, lr: float | None, opt: str,
           weight_decay: float | None, warmup_epochs: float, label_smoothing: float, temperature: float,
           views_per_image: int, plain_fraction: float, ema: float | None, workers: int, device: torch.device,
           amp: str, channels_last: bool, seed: int, resume: bool, init: str | None, limit_batches: int | None,
           quiet: bool, split: str | None, download: bool, command: Sequence[str] | None,
           model_kwargs: Any, soften_targets: bool, env: DistEnv) -> dict[str, Any]:
    t_start = time.perf_counter()
    kd_specs = [kd_teacher] if isinstance(kd_teacher, str) else list(kd_teacher or [])
    check_options(epochs, batch_size, env.world_size, views_per_image, plain_fraction, label_smoothing,
                   temperature, opt, limit_batches, warmup_epochs, reinforced, kd_specs, resume, out)
    run = build_run(data, val, model, reinforced, kd_specs, recipe, image_size, views_per_image, plain_fraction,
                 label_smoothing, temperature, soften_targets, device, amp, channels_last, seed, init, split, download,
                 parse_model_kwargs(model_kwargs), env, quiet)
    lr = float(lr if lr is not None else default_lr(opt, batch_size))
    weight_decay = float(weight_decay if weight_decay is not None else DEFAULTS[opt]["weight_decay"])
    run.config.update(epochs=epochs, batch_size=batch_size, lr=lr, opt=opt, weight_decay=weight_decay,
                      warmup_epochs=warmup_epochs, label_smoothing=label_smoothing, temperature=temperature,
                      soften_targets=soften_targets, ema=ema, seed=seed, limit_batches=limit_batches, world_size=env.world_size,
                      amp=str(run.amp_dtype).replace("torch.", "") if run.amp_dtype else "off",
                      channels_last=channels_last, init=init)
    optimizer = create_optimizer(run.model, opt, lr, weight_decay)
    scaler = torch.amp.GradScaler("cuda") if run.amp_dtype == torch.float16 else None
    ema_model = EMA(run.model, ema) if ema else None

    per_rank_items = batch_size // env.world_size // views_per_image
    n_items = len(run.dataset)
    steps = len(epoch_batches(n_items, seed, 0, per_rank_items, env.rank, env.world_size))
    steps = min(steps, limit_batches) if limit_batches else steps
    schedule = {"peak": lr, "total": steps * epochs, "warmup": int(round(warmup_epochs * steps))}

    rows: list[dict[str, Any]] = []
    start_epoch, step = 0, 0
    if resume:
        doc = _restore(run, optimizer, scaler, ema_model, out)
        rows, start_epoch, step = list(doc["rows"]), int(doc["epoch"]), int(doc["step"])
        note(f"resuming {out} after epoch {start_epoch}/{epochs}", env.rank, quiet)
    ddp_model: nn.Module = run.model
    if env.is_distributed:
        from torch.nn.parallel import DistributedDataParallel

        ddp_model = DistributedDataParallel(run.model, device_ids=[device.index] if device.type == "cuda" else None)
    if env.is_main:
        out.mkdir(parents=True, exist_ok=True)
    title = f"{run.mode} {run.config['model']}"
    last_plot = time.perf_counter()
    for epoch in range(start_epoch, epochs):
        torch.manual_seed(_epoch_seed(seed, epoch, env.rank))
        run.dataset.set_epoch(epoch)
        batches = epoch_batches(n_items, seed, epoch, per_rank_items, env.rank, env.world_size)[:steps]
        metrics, step = _train_epoch(run, ddp_model, optimizer, scaler, ema_model, batches, workers, step,
                                     schedule, epoch, epochs, quiet)
        row: dict[str, Any] = {"epoch": epoch + 1, "step": step, **metrics}
        if run.val_src is not None:
            v0 = time.perf_counter()
            row.update({f"val_{k}": v for k, v in _validate(run, run.model, batch_size, workers).items()})
            if ema_model is not None:
                row.update({f"val_ema_{k}": v for k, v in _validate(run, ema_model.module, batch_size, workers).items()})
            row["val_seconds"] = time.perf_counter() - v0
        rows.append(row)
        if env.is_main:
            log_row(row, epochs, quiet)
            write_metrics(out, rows)
            tensors, opt_meta = _state_tensors(run, optimizer, ema_model)
            save_state(out, tensors, {"epoch": epoch + 1, "step": step, "rows": rows, "run": run.config,
                                      "optimizer": opt_meta, "scaler": scaler.state_dict() if scaler else None})
            if epoch + 1 == epochs or time.perf_counter() - last_plot > 60:
                write_curves(out, rows, title)
                last_plot = time.perf_counter()
    return finish(run, rows, ema_model, out, epochs, seed, command, time.perf_counter() - t_start)


