"""The ``drkit`` command line: parse, call the library, print. Nothing else lives here."""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from functools import partial
from typing import Any, Callable, Sequence

from . import __version__
from .configs import DOWNLOAD_HELP, SPLIT_HELP, add_options, check
from .sources.registry import scheme_help

EPILOG = {
    "reinforce": "example:\n  drkit reinforce --data fashion-mnist:train --teacher ckpt:runs/t1 --teacher ckpt:runs/t2 \\\n"
                 "      --recipe padcrop+ra+re --samples 10 --topk 5 --out data/fmnist+",
    "train": "examples:\n  drkit train --data fashion-mnist:train --val fashion-mnist:test --model drkit_cnn_tiny --out runs/erm\n"
             "  drkit train --data fashion-mnist:train --reinforced data/fmnist+ --model drkit_cnn_tiny --out runs/dr\n"
             "  drkit train --data fashion-mnist:train --kd-teacher ckpt:runs/t1 --model drkit_cnn_tiny --out runs/kd\n"
             "  drkit train --data fashion-mnist:train --model drkit_cnn_small --folds 2 --out runs/teachers  # out-of-fold",
    "eval": "example:\n  drkit eval --checkpoint runs/dr --data fashion-mnist:test --corruptions --json dr.json",
    "inspect": "example:\n  drkit inspect data/fmnist+ --grid grid.png --json stats.json",
    "verify": "example:\n  drkit verify data/fmnist+ --data fashion-mnist:train",
    "merge": "example:\n  drkit merge data/a+ data/b+ --out data/ab+",
    "import-mldr": "example:\n  drkit import-mldr rdata/imagenet_plus.tar.gz --data imagefolder:/data/imagenet:train "
                   "--out data/imagenet+",
    "demo": "example:\n  drkit demo --out demo-out",
    "export": "example:\n  drkit export runs/r18-dr --out exports/r18-dr\n"
              "then, in Python: drkit.export.load_features('exports/r18-dr')  (timm features_only), or\n"
              "  drkit.export.detection_backbone('exports/r18-dr')  (an FPN backbone for torchvision's detectors)",
}


def _common_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--split", default=None, help=SPLIT_HELP)
    p.add_argument("--download", action="store_true", help=DOWNLOAD_HELP)


def _cmd_reinforce(a: argparse.Namespace) -> Any:
    from .reinforce import ReinforceConfig, reinforce

    print(f"store: {reinforce(ReinforceConfig.from_args(a, command=['drkit', *sys.argv[1:]]))}")


def _cmd_train(a: argparse.Namespace) -> Any:
    from .train import TrainConfig, train

    print(json.dumps(train(TrainConfig.from_args(a, command=["drkit", *sys.argv[1:]])), indent=2))


def _cmd_eval(a: argparse.Namespace) -> Any:
    from .evaluate import EvalConfig, evaluate, format_report

    print(format_report(evaluate(EvalConfig.from_args(a))))


def _cmd_inspect(a: argparse.Namespace) -> Any:
    from .inspect import format_stats, inspect_store

    check(a.grid_samples >= 1 and a.max_records >= 1, "--grid-samples and --max-records must be positive")
    print(format_stats(inspect_store(a.store, data=a.data, grid=a.grid, json_path=a.json, samples=a.grid_samples,
                                     max_records=a.max_records)))


def _cmd_verify(a: argparse.Namespace) -> Any:
    from .sources import load_source
    from .store import open_store

    src = load_source(a.data, split=a.split, download=a.download) if a.data else None
    check(a.replay >= 0, f"--replay N must be 0 or more, got {a.replay}")
    check(not (a.content or a.replay) or src is not None,
          "--content and --replay compare the images with the store: give the data with --data SRC")
    store = open_store(a.store)
    report = store.verify(src, content=a.content, progress=sys.stderr.isatty())
    print(f"ok: {report['store']} ({report['shards']} shards, {report['samples']} samples x {report['views']} views)"
          + (f", matches {src.spec}" if src is not None else "")
          + (f", {report['content_checked']} images unchanged" if "content_checked" in report else "")
          + ("; views replay approximately (an imported store)" if report["replay"] != "exact" else ""))
    if a.replay:
        from .store.replay_check import replay_check

        r = replay_check(store, src, a.replay, teachers=a.teacher, device=a.device)
        print(f"replay: {r['views']} views labelled again: {r['reproduced']:.1%} reproduce their stored top-k, "
              f"{r['top1_agreement']:.1%} their top-1" + ("" if r["exact"] else " (approximate replay: reported only)"))


def _cmd_import_mldr(a: argparse.Namespace) -> Any:
    from .importers import import_mldr
    from .sources import load_source

    src = load_source(a.data, split=a.split, download=a.download)
    root = import_mldr(a.path, src, a.out, images_per_shard=a.samples_per_shard, progress=not a.quiet,
                       command=["drkit", *sys.argv[1:]], digests=a.digests, resume=a.resume)
    print(f"imported {a.path} into {root} (views replay approximately: the reference rendered them its own way)")


def _cmd_merge(a: argparse.Namespace) -> Any:
    from .store import merge_stores

    print(f"store: {merge_stores(a.stores, a.out, provenance={'command': ['drkit', *sys.argv[1:]]})}")


def _cmd_demo(a: argparse.Namespace) -> Any:
    from .demo import run_demo

    run_demo(a.out, data_dir=a.data_dir, smoke=a.smoke, device=a.device)


def _config_args(module: str, name: str, p: argparse.ArgumentParser) -> None:
    """A verb's flags generated from its config class (defaults, choices and help live there)."""
    add_options(p, getattr(importlib.import_module(module), name), data=scheme_help())


def _inspect_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", metavar="DIR")
    p.add_argument("--data", default=None, metavar="SRC", help="the store's source (default: the one it records)")
    p.add_argument("--grid", default=None, metavar="PNG")
    p.add_argument("--grid-samples", type=int, default=6)
    p.add_argument("--max-records", type=int, default=200_000, help="records read for the statistics")
    p.add_argument("--json", default=None, metavar="PATH")


def _verify_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", metavar="DIR")
    p.add_argument("--data", default=None, metavar="SRC")
    p.add_argument("--content", action="store_true", help="with --data: also read every image and compare its "
                   "bytes with the content digest the store recorded (a full pass over the data; training checks "
                   "each image as it reads it anyway)")
    p.add_argument("--replay", type=int, default=0, metavar="N", help="with --data: replay N views, label them again "
                   "with the store's teachers and compare with the stored top-k (refused unless reproduced; an "
                   "imported store's agreement is only reported)")
    p.add_argument("--teacher", action="append", default=None, metavar="T", help="with --replay: these teachers "
                   "instead of the ones the manifest records (needed for an imported store)")
    p.add_argument("--device", default="cpu", help="with --replay: where the teachers run")
    _common_data(p)


def _import_mldr_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", metavar="REF", help="the reference's reinforcement directory ({index}.pth.tar files and "
                   "config.pth.tar) or a .tar.gz of it, read as a stream")
    p.add_argument("--data", required=True, metavar="SRC", help="the dataset it reinforced (same order)")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--samples-per-shard", type=int, default=1024)
    p.add_argument("--digests", action="store_true", help="also read every image once and record its content "
                   "digest, so that training refuses an image changed since (a full pass over the data)")
    p.add_argument("--resume", action="store_true", help="continue an import that was stopped, keeping its "
                   "finished shards")
    p.add_argument("--quiet", action="store_true")
    _common_data(p)


def _merge_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("stores", nargs="+", metavar="DIR")
    p.add_argument("--out", required=True, metavar="DIR")


def _cmd_export(a: argparse.Namespace) -> Any:
    from .export import export_backbone

    doc = export_backbone(a.checkpoint, a.out)
    maps = ", ".join(f"{f['num_chs']} ch /{f['reduction']}" for f in doc["feature_info"])
    print(f"exported {doc['model']} backbone to {a.out} (classifier {', '.join(doc['classifier_removed'])} removed; "
          f"feature maps: {maps})")


def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CKPT", help="a drkit train output directory (timm model)")
    p.add_argument("--out", required=True, metavar="DIR")


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo-out", metavar="DIR")
    p.add_argument("--data-dir", default=None, metavar="DIR", help="Fashion-MNIST IDX folder")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks the path in about a minute")
    p.add_argument("--device", default="auto")


#: name, one-line help, handler, arguments: the table ``build_parser`` turns into subcommands
VERBS: list[tuple[str, str, Callable[[argparse.Namespace], Any], Callable[[argparse.ArgumentParser], None]]] = [
    ("reinforce", "write a reinforced store: NS teacher-labelled views per image", _cmd_reinforce,
     partial(_config_args, "drkit.reinforce", "ReinforceConfig")),
    ("train", "train a student: ERM, on a reinforced store (--reinforced) or with online KD", _cmd_train,
     partial(_config_args, "drkit.train", "TrainConfig")),
    ("eval", "top-1/5, NLL, ECE and corruption accuracy of a checkpoint", _cmd_eval,
     partial(_config_args, "drkit.evaluate", "EvalConfig")),
    ("inspect", "statistics of a store; --grid renders views with the teacher's top-3", _cmd_inspect, _inspect_args),
    ("verify", "check a store's checksums, schema and (with --data) source fingerprint", _cmd_verify, _verify_args),
    ("merge", "merge stores of the same data/recipe/teachers: NS adds up", _cmd_merge, _merge_args),
    ("import-mldr", "convert the reference work's (apple/ml-dr) reinforcement files into a store", _cmd_import_mldr,
     _import_mldr_args),
    ("export", "a student's backbone without its head, for timm features_only and torchvision detectors",
     _cmd_export, _export_args),
    ("demo", "the end-to-end Fashion-MNIST run (teachers, reinforce, ERM vs DR, eval)", _cmd_demo, _demo_args),
]


class _VerbParser(argparse.ArgumentParser):
    """A verb's parser that adds its arguments when first used (parsed, or its help shown): the
    verb configs' packages import torch, and ``drkit --help`` should not. Also the top-level parser."""

    add_arguments: Callable[[argparse.ArgumentParser], None]  # set by build_parser, called once

    def parse_known_args(self, *args: Any, **kwargs: Any) -> Any:
        self.format_help()  # adds the arguments
        return super().parse_known_args(*args, **kwargs)

    def format_help(self) -> str:
        self.__dict__.pop("add_arguments", lambda p: None)(self)
        return super().format_help()

    def error(self, message: str) -> Any:  # a bad flag: one line, as every refusal (the usage is in --help)
        self.exit(2, f"drkit: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = _VerbParser(prog="drkit", description="Dataset reinforcement: label augmented views once, "
                                     "train any student on them at ordinary cost.", formatter_class=fmt)
    parser.add_argument("--version", action="version", version=f"drkit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB", parser_class=_VerbParser)
    for name, help_, fn, add_args in VERBS:
        p = sub.add_parser(name, help=help_, description=help_, epilog=EPILOG[name], formatter_class=fmt)
        p.set_defaults(func=fn)
        p.add_arguments = add_args
    return parser


def _one_line(e: BaseException) -> str:
    """The error's own message on one line. A DataLoader worker's error arrives wrapped in the
    worker's traceback; its last line is the original message."""
    text = str(e).strip()
    if "Original Traceback" in text:
        last = text.splitlines()[-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    from .errors import DrkitError

    args = build_parser().parse_args(argv)
    from .device import tune_host_allocator

    tune_host_allocator()  # reuse freed host memory: a CPU teacher re-faults its activations otherwise
    try:
        args.func(args)
    except DrkitError as e:
        if args.debug:
            raise
        print(f"drkit: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:  # disk full, read-only folder, a file where a folder should be, ...
        if args.debug:
            raise
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        print(f"drkit: error: {e.strerror or _one_line(e)}{where}: free space, fix permissions or choose another "
              "path (--debug shows the traceback)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("drkit: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
