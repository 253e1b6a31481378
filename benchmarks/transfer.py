"""Transfer: does a backbone pretrained on a reinforced dataset fine-tune better? Fashion-MNIST -> digits.

    .venv/bin/python benchmarks/transfer.py                           # ~15 min on 2 cores, resumable
    .venv/bin/python benchmarks/transfer.py --report                  # table, PNG, README block from the archive
    .venv/bin/python benchmarks/transfer.py --smoke --out /tmp/tr     # the real path on tiny data, ~2 min

The reference work's second half: ImageNet+ backbones fine-tuned on CIFAR-100+ and others gain up
to +3.4 top-1. Here, offline and on a CPU, the same four chains X -> Y, per student family and seed:

1. pretrain on the first 10,000 Fashion-MNIST training images (28 px): ERM (padcrop, label
   smoothing 0.1: ``drkit train``'s defaults) or DR on a padcrop store (NS 10, top-5) labelled by
   the shipped out-of-fold teachers (``drkit.demo.teacher_dirs()``), made once under ``--out``;
2. target teachers: scikit-learn's digits at the student's resolution (``digits:28``), 3
   out-of-fold members (``drkit train --folds 3``), and a digits store (NS 10, top-5) labelled
   by them, each image only by the member that never saw it;
3. fine-tune every pretrained student on ``digits:28:train`` (1,500 images) from its weights
   (``--init ckpt:RUN``, head re-initialised: 10 new classes) with ERM or DR on the digits store, the
   same epochs and optimiser for all four chains ERM->ERM, DR->ERM, ERM->DR, DR->DR; no horizontal
   flip on digits (``padcrop@flip=0`` for the ERM views, the teachers and the store);
4. evaluate on ``digits:28:test`` (297 images: one image is 0.34 points): top-1, NLL, ECE.

Seeds 0, 1, 2: seed s pretrains and fine-tunes chain s. The table gives, per family and chain,
mean ± std over seeds, and DR->DR − ERM->ERM as mean ± std of the per-seed differences: "ahead"
when the mean difference exceeds its std, "behind" when below minus the std, else "no difference".
Expected (the issue's goal): DR->DR ahead by >= 1.0 top-1.

Runs live in ``OUT/runs/<key>``; each finished run writes ``result.json``, copied to
``benchmarks/results/transfer_runs/<key>.json`` (committed): a later call skips archived runs and
trains a pretraining run again only when a fine-tune still needs its weights. Each finished run
rewrites ``benchmarks/results/transfer.md``; the call's end writes ``transfer.png`` and the README
block ``transfer``. ``benchmarks/downstream_seg.py`` reuses the pretraining runs under the same ``--out``.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from provenance import commit_id  # noqa: E402
from run_archive import archive, finished  # noqa: E402
from readme_block import replace_block  # noqa: E402

TARGET_TRAIN = "digits:28:train"
TARGET_TEST = "digits:28:test"
#: digits are not mirror-symmetric: every digits view (ERM, teachers, store) is padcrop without the flip
TARGET_RECIPE = "padcrop@flip=0"
CHAINS = (("erm", "erm"), ("dr", "erm"), ("erm", "dr"), ("dr", "dr"))
METHOD = {"erm": "ERM", "dr": "DR"}


@dataclass(frozen=True)
class Family:
    """A student family: model, SGD learning rate and epochs (pretraining, fine-tuning). The
    epochs are what a contended 2-core CPU affords (resnet10t trains ~4x slower than the drkit CNN),
    the same for every chain of the family."""

    model: str
    lr: float
    pre_epochs: int
    ft_epochs: int


FAMILIES: dict[str, Family] = {"drkit CNN": Family("drkit_cnn_tiny", 0.1, 5, 10),
                               "ResNet": Family("resnet10t", 0.1, 5, 6)}


@dataclass(frozen=True)
class Plan:
    """Sizes of one benchmark call (``--smoke`` shrinks them; keys name what changes results)."""

    source_n: int = 10_000
    source_test_n: int | None = None
    target_n: int | None = None
    target_test_n: int | None = None
    pre_epochs: int | None = None  # None: the family's
    ft_epochs: int | None = None
    ft_batch: int = 64
    ft_lr_scale: float = 0.5  # fine-tuning: half the pretraining lr, at half the batch
    teacher_model: str = "drkit_cnn_small"  # the FMNIST teachers' model: ~97 % on digits in minutes on a CPU
    teacher_epochs: int = 30
    samples: int = 10
    topk: int = 5
    data_dir: str | None = None  # the Fashion-MNIST IDX folder (None: Debian's); names no result, so no key


def chain_name(pre: str, ft: str) -> str:
    return f"{METHOD[pre]}→{METHOD[ft]}"


# ----------------------------------------------------------------------------------------------
# paths and keys (downstream_seg.py uses these)
# ----------------------------------------------------------------------------------------------
def epochs(fam: Family, plan: Plan) -> tuple[int, int]:
    """(pretraining, fine-tuning) epochs: the plan's override, else the family's."""
    return plan.pre_epochs or fam.pre_epochs, plan.ft_epochs or fam.ft_epochs


def pre_key(fam: Family, method: str, plan: Plan, seed: int) -> str:
    return f"pre-{fam.model}-{method}-e{epochs(fam, plan)[0]}-n{plan.source_n}-s{seed}"


def ft_key(fam: Family, pre: str, ft: str, plan: Plan, seed: int) -> str:
    pe, fe = epochs(fam, plan)
    return f"ft-{fam.model}-{pre}-{ft}-pe{pe}-e{fe}-s{seed}"


def source_store(out: Path, plan: Plan) -> Path:
    return out / "stores" / f"fmnist{plan.source_n}-oof-padcrop-ns{plan.samples}"


def target_teachers(out: Path, plan: Plan) -> Path:
    return out / "teachers" / f"digits28-{plan.teacher_model}-e{plan.teacher_epochs}-f3"


def target_store(out: Path, plan: Plan) -> Path:
    return out / "stores" / f"digits28-{plan.teacher_model}-oof-ns{plan.samples}"


def specs(plan: Plan) -> dict[str, str]:
    """The four data specs of a plan (``?n=`` prefixes in smoke runs)."""
    n = lambda spec, k: spec if k is None else f"{spec}?n={k}"  # noqa: E731
    fmnist = f"fashion-mnist:{plan.data_dir}" if plan.data_dir else "fashion-mnist"
    return {"source": f"{fmnist}:train?n={plan.source_n}", "source_test": n(f"{fmnist}:test", plan.source_test_n),
            "target": n(TARGET_TRAIN, plan.target_n), "target_test": n(TARGET_TEST, plan.target_test_n)}


# ----------------------------------------------------------------------------------------------
# the steps
# ----------------------------------------------------------------------------------------------
def _say(msg: str) -> float:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)
    return time.perf_counter()


def ensure_store(data: str, teachers: list[str], root: Path, recipe: str, plan: Plan, args: argparse.Namespace) -> Path:
    """A reinforced store, made once (resumed when a call was cut short)."""
    from drkit.reinforce import ReinforceConfig, reinforce

    with _locked(root):
        if not (root / "manifest.json").exists():
            t = _say(f"reinforce {root.name}: {data}, {recipe}, NS {plan.samples}, top-{plan.topk}")
            reinforce(ReinforceConfig(data=data, teacher=teachers, out=root, recipe=recipe, views=plan.samples,
                                      topk=plan.topk, seed=0, batch_size=512, workers=0, device=args.device,
                                      resume=root.exists(), progress=False,
                                      command=["benchmarks/transfer.py", *sys.argv[1:]]))
            _say(f"  done in {time.perf_counter() - t:.0f} s")
    return root


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock beside ``path``: two calls (one per family) never write the same store or teachers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_target_teachers(out: Path, plan: Plan, args: argparse.Namespace) -> Path:
    """3 out-of-fold digits:28 teachers (``drkit train --folds 3``, no label smoothing: the folds default)."""
    from drkit.train import TrainConfig, train

    root = target_teachers(out, plan)
    with _locked(root):
        if not (root / "folds.json").exists():
            t = _say(f"digits teachers: {plan.teacher_model} --folds 3, {plan.teacher_epochs} epochs -> {root}")
            train(TrainConfig.build(data=specs(plan)["target"], model=plan.teacher_model, recipe=TARGET_RECIPE,
                              epochs=plan.teacher_epochs, batch_size=64, lr=0.05, opt="sgd", folds=3, out=str(root),
                              seed=0, device=args.device, workers=args.workers, quiet=True, resume=root.exists(),
                              command=["benchmarks/transfer.py"]))
            _say(f"  done in {time.perf_counter() - t:.0f} s")
    return root


def _finish(key: str, run: Path, test: str, args: argparse.Namespace, extra: dict[str, Any]) -> dict[str, Any]:
    """Evaluate a trained run once; its result row (with the commit that trained it)."""
    from drkit.evaluate import EvalConfig, evaluate
    from drkit.train import read_metrics

    r = evaluate(EvalConfig(checkpoint=run, data=test, device=args.device, workers=0, progress=False))
    rows = read_metrics(run)
    cfg = json.loads((run / "config.json").read_text())
    result = {"key": key, "commit": args.commit, "top1": r["top1"], "nll": r["nll"], "ece": r["ece"],
              "images": r["images"], "test": test, "wall_s": sum(row["epoch_seconds"] for row in rows),
              "weights_sha256": cfg.get("weights_sha256"), **extra}
    (run / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def ensure_pretrain(out: Path, fam: Family, method: str, seed: int, plan: Plan, args: argparse.Namespace) -> Path:
    """A pretraining run's checkpoint (trained or resumed here when missing); archived on finishing."""
    from drkit.train import TrainConfig, train

    key = pre_key(fam, method, plan, seed)
    pe = epochs(fam, plan)[0]
    run = out / "runs" / key
    if (run / "result.json").exists():
        return run
    data = specs(plan)
    if not (run / "config.json").exists():
        kw: dict[str, Any] = ({"reinforced": str(ensure_store(data["source"], _oof_teachers(), source_store(out, plan),
                                                              "padcrop", plan, args))}
                              if method == "dr" else {"recipe": "padcrop", "label_smoothing": 0.1})
        t = _say(f"pretrain {key}: {fam.model} {METHOD[method]} on {data['source']}, {pe} epochs")
        train(TrainConfig.build(data=data["source"], model=fam.model, epochs=pe, batch_size=128, lr=fam.lr, opt="sgd",
                          out=str(run), seed=seed, device=args.device, workers=args.workers, quiet=True,
                          resume=(run / "state").exists(), command=["benchmarks/transfer.py"], **kw))
        _say(f"  trained in {time.perf_counter() - t:.0f} s")
    r = _finish(key, run, data["source_test"], args, {"stage": "pretrain", "model": fam.model, "method": method,
                                                      "seed": seed, "epochs": pe})
    archive(args, r)
    _say(f"  {key}: Fashion-MNIST test top-1 {100 * r['top1']:.2f} %")
    return run


def wait_for(path: Path) -> None:
    """Block until ``path`` exists (a run finished by another call of this script)."""
    if not path.exists():
        _say(f"waiting for {path.parent.name}")
    while not path.exists():
        time.sleep(20)


def _oof_teachers() -> list[str]:
    from drkit.demo import teacher_dirs

    return [f"ckpt:{d}" for d in teacher_dirs()]


def fine_tune(out: Path, fam: Family, pre: str, ft: str, seed: int, plan: Plan,
              args: argparse.Namespace) -> dict[str, Any]:
    """One chain: fine-tune the pretrained run on digits:28 with ERM or DR, evaluate on its test split."""
    from drkit.train import TrainConfig, train

    key = ft_key(fam, pre, ft, plan, seed)
    pe, fe = epochs(fam, plan)
    run = out / "runs" / key
    if (run / "result.json").exists():
        return json.loads((run / "result.json").read_text())
    data = specs(plan)
    if args.wait_pretrain:
        wait_for(out / "runs" / pre_key(fam, pre, plan, seed) / "result.json")
    init = ensure_pretrain(out, fam, pre, seed, plan, args)
    if not (run / "config.json").exists():
        if ft == "dr":
            teachers = [f"ckpt:{ensure_target_teachers(out, plan, args)}"]
            kw: dict[str, Any] = {"reinforced": str(ensure_store(data["target"], teachers, target_store(out, plan),
                                                                 TARGET_RECIPE, plan, args))}
        else:
            kw = {"recipe": TARGET_RECIPE, "label_smoothing": 0.1}
        t = _say(f"fine-tune {key}: {chain_name(pre, ft)} on {data['target']}, {fe} epochs")
        train(TrainConfig.build(data=data["target"], model=fam.model, epochs=fe, batch_size=plan.ft_batch,
                          lr=fam.lr * plan.ft_lr_scale, opt="sgd", out=str(run), seed=seed, device=args.device,
                          workers=args.workers, quiet=True, resume=(run / "state").exists(), init=f"ckpt:{init}",
                          command=["benchmarks/transfer.py"], **kw))
        _say(f"  trained in {time.perf_counter() - t:.0f} s")
    init_from = json.loads((run / "config.json").read_text()).get("init_from", {})
    r = _finish(key, run, data["target_test"], args, {
        "stage": "finetune", "model": fam.model, "pre": pre, "ft": ft, "seed": seed, "epochs": fe,
        "pre_epochs": pe, "init_weights_sha256": init_from.get("weights_sha256")})
    _say(f"  {key}: digits test top-1 {100 * r['top1']:.2f} %  NLL {r['nll']:.4f}  ECE {100 * r['ece']:.2f} %")
    return r


def teacher_rows(out: Path, plan: Plan, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The digits teachers' test accuracy (measured, archived once) and the store's held-out label accuracy."""
    from drkit.evaluate import EvalConfig, evaluate

    rows = []
    root = target_teachers(out, plan)
    for k in range(3):
        key = f"teacher-{root.name}-fold{k}"
        path = Path(args.archive) / f"{key}.json"
        if path.exists():
            rows.append(json.loads(path.read_text()))
        elif (root / f"fold{k}" / "config.json").exists():
            r = evaluate(EvalConfig(checkpoint=root / f"fold{k}", data=specs(plan)["target_test"], device=args.device,
                                    workers=0, progress=False))
            row = {"key": key, "commit": args.commit, "top1": r["top1"], "images": r["images"]}
            archive(args, row)
            rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------------
# archive, table, figure
# ----------------------------------------------------------------------------------------------
def _ms(values: list[float], scale: float = 100.0, fmt: str = ".2f") -> str:
    vals = [scale * v for v in values]
    if len(vals) == 1:
        return f"{vals[0]:{fmt}} (1 seed)"
    return f"{statistics.mean(vals):{fmt}} ± {statistics.stdev(vals):{fmt}}"


def verdict(diffs: list[float]) -> str:
    """The spread rule: a mean difference inside one std of the per-seed differences is none."""
    if len(diffs) < 2:
        return "one seed: no spread"
    m, sd = statistics.mean(diffs), statistics.stdev(diffs)
    return "ahead" if m > sd else "behind" if m < -sd else "no difference"


def summarise(results: dict[str, dict[str, Any]], plan: Plan, seeds: list[int]) -> list[dict[str, Any]]:
    """Per family: each chain over the seeds where all four chains finished, and the differences."""
    rows = []
    for name, fam in FAMILIES.items():
        keys = {s: {c: ft_key(fam, *c, plan, s) for c in CHAINS} for s in seeds}
        done = [s for s in seeds if all(k in results for k in keys[s].values())]
        if not done:
            continue
        chains = {c: [results[keys[s][c]] for s in done] for c in CHAINS}
        base = chains[("erm", "erm")]
        pre = {m: [results[k] for s in done if (k := pre_key(fam, m, plan, s)) in results] for m in METHOD}
        rows.append({"family": name, "model": fam.model, "seeds": done, "chains": chains, "pre": pre,
                     "diff": {c: [x["top1"] - b["top1"] for x, b in zip(chains[c], base)] for c in CHAINS},
                     "commits": sorted({x.get("commit", "?") for c in CHAINS for x in chains[c]}
                                       | {x.get("commit", "?") for m in METHOD for x in pre[m]})})
    return rows


def table(rows: list[dict[str, Any]], header: list[str], teachers: list[dict[str, Any]]) -> str:
    lines = header + ["", "| family | chain | seeds | digits top-1 % | Δ top-1 vs ERM→ERM (pp) | NLL | ECE % "
                      "| pretrained Fashion-MNIST top-1 % | commits |", "|---|---|---|---|---|---|---|---|---|"]
    summary = []
    for r in rows:
        for c in CHAINS:
            xs = r["chains"][c]
            d = "–" if c == ("erm", "erm") else _ms(r["diff"][c])
            pre = r["pre"][c[0]]
            lines.append(f"| {r['family']} ({r['model']}) | {chain_name(*c)} | {len(xs)} "
                         f"| {_ms([x['top1'] for x in xs])} "
                         f"| {d} | {_ms([x['nll'] for x in xs], 1, '.4f')} | {_ms([x['ece'] for x in xs])} "
                         f"| {_ms([x['top1'] for x in pre]) if pre else '–'} | {', '.join(r['commits'])} |")
        diffs = r["diff"][("dr", "dr")]
        summary.append(f"- {r['family']} ({r['model']}): DR→DR − ERM→ERM = {_ms(diffs)} pp over seeds "
                       f"{r['seeds']}: **{verdict(diffs)}** (goal: ahead by ≥ 1.0)")
    lines += ["", "DR→DR against ERM→ERM (mean ± std of the per-seed differences; inside one std = no "
              "difference):", *summary]
    if teachers:
        lines += ["", "digits teachers (out-of-fold members, each on 2/3 of digits:28:train): test top-1 " + ", ".join(
            f"{100 * t['top1']:.2f} %" for t in teachers) + f" on {teachers[0]['images']} images"]
    return "\n".join(lines)


def figure(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """Per family: the four chains' digits top-1 (mean ± std bars, seeds as dots)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rows), figsize=(3.6 * len(rows), 3.4), squeeze=False)
    for ax, r in zip(axes[0], rows):
        vals = [[100 * x["top1"] for x in r["chains"][c]] for c in CHAINS]
        means = [statistics.mean(v) for v in vals]
        errs = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in vals]
        ax.bar(range(4), means, yerr=errs, capsize=3, color=["tab:gray", "tab:blue", "tab:orange", "tab:green"])
        for i, v in enumerate(vals):
            ax.plot([i] * len(v), v, "k.", ms=4)
        lo = min(min(v) for v in vals)
        ax.set_ylim(max(0.0, lo - 2.0), min(100.0, max(max(v) for v in vals) + 1.0))
        ax.set_xticks(range(4), [chain_name(*c) for c in CHAINS], fontsize=8)
        ax.set_title(f"{r['family']} ({r['model']}), {len(r['seeds'])} seeds", fontsize=9)
        ax.set_ylabel("digits:28 test top-1 %", fontsize=8)
    fig.suptitle(title, fontsize=8, wrap=True)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(out: Path, plan: Plan, args: argparse.Namespace, figures: bool = True, quiet: bool = False) -> str:
    """Table (+ PNG, README block) from every finished run, not only this call's."""
    results = finished(out, args)
    rows = summarise(results, plan, args.seeds)
    teachers = [results[k] for k in sorted(results) if k.startswith(f"teacher-{target_teachers(out, plan).name}")]
    device = (f"{args.device} ({platform.processor() or platform.machine()}, {os.cpu_count()} cores), "
              f"{args.threads} thread(s) per process")
    per_family = ", ".join(f"{f.model} {f.lr:g}; {epochs(f, plan)[0]}, {epochs(f, plan)[1]}" for f in FAMILIES.values())
    header = [
        f"command: `benchmarks/transfer.py --out {out}{' --smoke' if args.smoke else ''}` (resumable: runs "
        f"accumulate across calls, here one per family with --threads 1, and each row names the commits that "
        f"trained its runs); this file written by `{' '.join(['benchmarks/transfer.py', *sys.argv[1:]])}` at "
        f"commit {commit_id()}; device {device}; seeds {args.seeds}",
        "",
        f"pretrain: first {plan.source_n} Fashion-MNIST training images, batch 128, SGD (lr; pretraining, "
        f"fine-tuning epochs per family: {per_family}); ERM padcrop + label "
        f"smoothing 0.1; DR on a padcrop store (NS {plan.samples}, top-{plan.topk}) labelled by the shipped "
        f"out-of-fold teachers, drkit train's default distillation. fine-tune: {TARGET_TRAIN} "
        f"({plan.target_n or 1500} images, 8x8 digits upsampled bilinearly), batch "
        f"{plan.ft_batch}, SGD at {plan.ft_lr_scale:g} x the family's lr, head re-initialised; ERM "
        f"{TARGET_RECIPE} + label smoothing 0.1; DR on a {TARGET_RECIPE} store (NS {plan.samples}, top-{plan.topk}) "
        f"labelled by 3 out-of-fold {plan.teacher_model} teachers ({plan.teacher_epochs} epochs). Test: "
        f"{specs(plan)['target_test']} ({plan.target_test_n or 297} images; one image = "
        f"{100 / (plan.target_test_n or 297):.2f} pp). Mean ± std over seeds.",
    ]
    text = table(rows, header, teachers)
    md = Path(args.results + ".md")
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(text + "\n")
    if rows and figures:
        figure(rows, Path(args.results + ".png"),
               f"Fashion-MNIST -> digits:28 fine-tuning, four chains (mean ± std, seeds as dots), {commit_id()}")
        if args.readme:
            replace_block(Path(args.readme), "transfer", text)
    if not quiet:
        print(text, flush=True)
    return text


# ----------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/transfer")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--families", nargs="+", choices=list(FAMILIES), default=list(FAMILIES))
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (1: two threads on a shared 2-core CPU "
                    "stall each other; run the families as two processes instead)")
    ap.add_argument("--workers", type=int, default=0, help="loader workers per training run")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data-dir", default=None, help="Fashion-MNIST IDX folder (default: Debian's), e.g. on a GPU box")
    ap.add_argument("--results", default=str(HERE / "results" / "transfer"), help="PATH.md and PATH.png")
    ap.add_argument("--readme", default=str(HERE.parent / "README.md"), help="README whose block is rewritten ('' off)")
    ap.add_argument("--archive", default=str(HERE / "results" / "transfer_runs"),
                    help="folder of finished runs' result rows, committed: runs found there are not run again")
    ap.add_argument("--pretrain-only", action="store_true", help="only the pretraining runs (downstream_seg's needs)")
    ap.add_argument("--wait-pretrain", action="store_true", help="wait for a --pretrain-only call running beside "
                    "this one to finish each pretraining run instead of training it here")
    ap.add_argument("--report", action="store_true", help="only rewrite the table, PNG and README block")
    ap.add_argument("--smoke", action="store_true", help="the real path on tiny data (256 images, 1 epoch, one seed); "
                    "results and runs go under --out, the README is left alone")
    args = ap.parse_args(argv)
    plan = Plan(data_dir=args.data_dir)
    if args.smoke:
        plan = Plan(source_n=256, source_test_n=256, target_n=150, target_test_n=64, pre_epochs=1, ft_epochs=1,
                    teacher_epochs=1, samples=2, data_dir=args.data_dir)
        args.seeds, args.readme = args.seeds[:1], ""
        args.results = str(Path(args.out) / "results" / "transfer")
        args.archive = str(Path(args.out) / "results" / "transfer_runs")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    args.commit = commit_id()
    out = Path(args.out)
    if args.report:
        report(out, plan, args)
        return
    fams = [FAMILIES[f] for f in args.families]
    done = finished(out, args)
    t0 = _say(f"transfer: families {[f.model for f in fams]}, seeds {args.seeds}, out {out}")
    if not args.pretrain_only:  # the shared inputs first: parallel calls (one per family) then find them made
        data = specs(plan)
        ensure_store(data["source"], _oof_teachers(), source_store(out, plan), "padcrop", plan, args)
        teachers = [f"ckpt:{ensure_target_teachers(out, plan, args)}"]
        ensure_store(data["target"], teachers, target_store(out, plan), TARGET_RECIPE, plan, args)
    for seed in args.seeds:  # seed-major: a call cut short leaves whole seeds, not one family
        for fam in fams:
            if args.pretrain_only:
                for m in METHOD:
                    ensure_pretrain(out, fam, m, seed, plan, args)
                continue
            for c in CHAINS:
                key = ft_key(fam, *c, plan, seed)
                if key in done:
                    continue
                archive(args, fine_tune(out, fam, *c, seed, plan, args))
                report(out, plan, args, figures=False, quiet=True)  # a call cut short still leaves its table
    teacher_rows(out, plan, args)
    report(out, plan, args)
    _say(f"transfer: {(time.perf_counter() - t0) / 60:.1f} min")


if __name__ == "__main__":
    main()
