"""Config-first verbs: one frozen config per verb, one validate() that refuses before any file is
written, the CLI and the library building the same object, resume compared config to config."""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from drkit.errors import DrkitError
from drkit.evaluate import EvalConfig
from drkit.reinforce import ReinforceConfig
from drkit.train import TrainConfig


def test_configs_are_frozen_and_replace_refuses_unknown_fields():
    cfg = TrainConfig.build(data="digits:train", out="runs/x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 3  # type: ignore[misc]
    assert cfg.replace(epochs=3).optim.epochs == 3 and cfg.optim.epochs == 10 and cfg.replace(seed=2).optim == cfg.optim
    with pytest.raises(DrkitError, match="no option epoch"):
        cfg.replace(epoch=3)
    with pytest.raises(DrkitError, match="no option lr_max"):
        TrainConfig.build(data="digits:train", out="x", lr_max=1.0)
    with pytest.raises(DrkitError, match="needs data"):
        TrainConfig.build(out="x")


@pytest.mark.parametrize("options, message", [
    (dict(epochs=0), "--epochs and --batch-size must be positive"),
    (dict(opt="lamb"), "--opt must be one of"),
    (dict(amp="fp8"), "--amp must be one of"),
    (dict(batch_size=30, views_per_image=4, reinforced="s"), "a multiple of ranks x it"),
    (dict(views_per_image=0, reinforced="s"), "--views-per-image must be positive"),
    (dict(lr=-1.0), "--lr > 0"),
    (dict(lr=float("nan")), "--lr > 0"),
    (dict(weight_decay=-0.1), "--weight-decay >= 0"),
    (dict(seed=-1), "--seed must be in 0..2"),
    (dict(seed=2**64), "--seed must be in 0..2"),
    (dict(plain_fraction=0.5), "apply to DR"),
    (dict(temperature=0.0, reinforced="s"), "--temperature > 0"),
    (dict(temperature=2.0), r"--temperature and --soften-targets apply to DR \(--reinforced\) and KD"),
    (dict(soften_targets=False), "apply to DR"),
    (dict(reinforced="s", label_smoothing=0.1), "--label-smoothing applies to ERM only"),
    (dict(kd_teacher="ckpt:t", label_smoothing=0.0), "--label-smoothing applies to ERM only"),
    (dict(limit_batches=0), "--limit-batches must be positive"),
    (dict(image_size=0), "--image-size must be positive"),
    (dict(folds=1), "--folds must be at least 2"),
    (dict(model_kwargs="{depth: 1}"), "--model-kwargs is not valid JSON"),
    (dict(model_kwargs="[1]"), "must be a JSON object"),
    (dict(model_kwargs='{"num_classes": 5}'), "without num_classes"),
    (dict(model_kwargs='{"drop_rate": NaN}'), "--model-kwargs has NaN"),
    (dict(reinforced="s", kd_teacher="ckpt:t"), "exclude each other"),
])
def test_train_config_validate_refuses(tmp_path, options, message):
    with pytest.raises(DrkitError, match=message):
        TrainConfig.build(data="digits:train", out=tmp_path / "run", **options).validate()
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("options, message", [
    (dict(views=0), r"--samples \(views per image\) must be in 1..65535"),
    (dict(topk=0), "--topk must be positive"),
    (dict(batch_size=0), "must be positive"),
    (dict(image_size=0), "--image-size must be positive"),
    (dict(workers=-1), "--workers must be 0 or more"),
    (dict(shard="3/2"), "need 0 <= i < n"),
    (dict(shard="a/b"), "--shard expects i/n"),
    (dict(teacher=[]), "no teacher given"),
    (dict(seed=-1), "--seed must be in 0..2"),
])
def test_reinforce_config_validate_refuses(tmp_path, options, message):
    base = dict(data="digits:train", teacher="ckpt:t", out=tmp_path / "store")
    with pytest.raises(DrkitError, match=message):
        ReinforceConfig(**{**base, **options}).validate()
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize("options, message", [
    (dict(severities=(9,)), "--severities must be among"),
    (dict(families=("rain",)), "unknown corruption families"),
    (dict(limit=0), "--limit must be positive"),
    (dict(batch_size=0), "--batch-size must be positive"),
    (dict(seed=-3), "--seed must be in 0..2"),
])
def test_eval_config_validate_refuses(options, message):
    with pytest.raises(DrkitError, match=message):
        EvalConfig(checkpoint="runs/x", data="digits:test", **options).validate()


def test_eval_json_under_a_file_is_refused_before_evaluating(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DrkitError, match="is not a directory"):
        EvalConfig(checkpoint="runs/x", data="digits:test", json_path=blocker / "r.json").validate()


def test_cli_builds_the_library_config():
    from drkit.cli import build_parser

    args = build_parser().parse_args(["train", "--data", "digits:train", "--model", "drkit_cnn_tiny", "--out", "runs/x", "--epochs", "3",
                                      "--kd-teacher", "ckpt:t", "--no-channels-last", "--quiet"])
    cfg = TrainConfig.from_args(args)
    assert cfg == TrainConfig.build(data="digits:train", out="runs/x", epochs=3, kd_teacher=["ckpt:t"],
                              channels_last=False, quiet=True)
    assert cfg.mode == "kd" and cfg.kd_teacher == ("ckpt:t",)
    args = build_parser().parse_args(["eval", "--checkpoint", "c", "--data", "d", "--json", "r.json", "--quiet"])
    ecfg = EvalConfig.from_args(args)
    assert ecfg.json_path == "r.json" and ecfg.progress is False
    args = build_parser().parse_args(["reinforce", "--data", "d", "--teacher", "t1", "--teacher", "t2", "--out", "o",
                                      "--samples", "3", "--samples-per-shard", "7", "--quiet"])
    rcfg = ReinforceConfig.from_args(args)
    assert rcfg.teacher_specs == ["t1", "t2"] and (rcfg.views, rcfg.images_per_shard, rcfg.progress) == (3, 7, False)


#: fields without a flag: what the CLI fills in itself (the command line) or resolves (the mode)
INTERNAL = {"train": {"command", "mode"}, "reinforce": {"command"}, "eval": set()}
VERB_CONFIGS = [("train", TrainConfig), ("reinforce", ReinforceConfig), ("eval", EvalConfig)]


def _leaf_fields(cls):
    return [g for f in dataclasses.fields(cls)
            for g in (_leaf_fields(f.metadata["section"]) if "section" in f.metadata else [f])]


def _verb_parser(verb):
    from drkit.cli import build_parser

    return next(a for a in build_parser()._actions if a.choices and verb in a.choices).choices[verb]


@pytest.mark.parametrize("verb, cls", VERB_CONFIGS)
def test_every_config_field_has_its_flag_with_the_config_default(verb, cls):
    """The flags are generated from the config: each field (but the internal ones) is a flag whose
    default, choices and help come from the field, so they cannot drift apart."""
    parser = _verb_parser(verb)
    text = parser.format_help()
    actions = {a.dest: a for a in parser._actions}
    fields = _leaf_fields(cls)
    for f in dataclasses.fields(cls):  # a section is a titled group of its flags in --help
        if "section" in f.metadata:
            assert f"\n{f.name}:\n  {f.metadata['section'].__doc__.splitlines()[0]}" in text
    assert {f.name for f in fields if f.metadata["internal"]} == INTERNAL[verb]
    for f in fields:
        if f.metadata["internal"]:
            assert f.name not in actions
            continue
        action, cli = actions[f.name], f.metadata["cli"]
        assert action.required or action.default == f.default, f.name
        assert action.option_strings[0] == cli.get("flag", "--" + f.name.replace("_", "-"))
        assert action.help == cli.get("help", action.help) and action.metavar == cli.get("metavar")
        if "choices" in cli:
            assert tuple(action.choices) == tuple(cli["choices"])
            assert "{" + ",".join(cli["choices"]) + "}" in text
    assert set(actions) - {f.name for f in fields} == {"help"}


@pytest.mark.parametrize("verb, required, config", [
    ("train", ["--data", "d", "--model", "drkit_cnn_tiny", "--out", "o"], TrainConfig.build(data="d", out="o")),
    ("reinforce", ["--data", "d", "--teacher", "t", "--out", "o"], ReinforceConfig(data="d", teacher=["t"], out="o")),
    ("eval", ["--checkpoint", "c", "--data", "d"], EvalConfig(checkpoint="c", data="d")),
])
def test_the_cli_defaults_are_the_library_defaults(verb, required, config):
    from drkit.cli import build_parser

    args = build_parser().parse_args([verb, *required])
    assert type(config).from_args(args) == config


def test_train_mode_is_explicit_and_checked():
    assert TrainConfig.build(data="d").mode == "erm" and TrainConfig.build(data="d", reinforced="s").mode == "dr"
    kd = TrainConfig.build(data="d", kd_teacher="ckpt:t")
    assert kd.mode == "kd" and kd.kd_teacher == ("ckpt:t",)
    with pytest.raises(DrkitError, match="mode 'dr' does not match"):
        TrainConfig.build(data="d", out="o", mode="dr").validate()
    # a run saved before the mode was a field resumes: its saved config is upgraded when compared
    saved = {k: v for k, v in kd.to_dict().items() if k != "mode"} | {"kd_teacher": "ckpt:t"}
    assert kd.diff(saved) == [] and kd.replace(seed=1).diff(saved) == ["seed"]


def test_each_verb_takes_its_config_only():
    import drkit

    for verb, name in (("train", "TrainConfig"), ("reinforce", "ReinforceConfig"), ("evaluate", "EvalConfig")):
        with pytest.raises(DrkitError, match=f"takes one {name}"):
            getattr(drkit, verb)("digits:train")
        with pytest.raises(TypeError):
            getattr(drkit, verb)("digits:train", "out")


def test_top_level_help_imports_no_torch():
    code = "import sys; from drkit.cli import build_parser; build_parser().format_help(); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


def test_diff_ignores_options_that_do_not_change_results():
    cfg = TrainConfig.build(data="digits:train", out="runs/x", workers=2, device="cpu", quiet=False)
    saved = cfg.to_dict()
    assert cfg.replace(workers=0, device="cuda", quiet=True, resume=True, command=["x"]).diff(saved) == []
    assert cfg.replace(seed=1, lr=0.5).diff(saved) == ["lr", "seed"]


def test_bad_option_on_the_command_line_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "drkit", "train", "--data", "digits:train", "--out", str(tmp_path / "r"),
                        "--model", "drkit_cnn_tiny", "--temperature", "0"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("drkit: error:") and len(r.stderr.strip().splitlines()) == 1
    assert "--temperature" in r.stderr and not (tmp_path / "r").exists()


@pytest.mark.parametrize("argv, words", [
    (["train", "--data", "digits:train", "--model", "m", "--out", "r", "--epochs", "abc"], "--epochs"),
    (["train", "--data", "digits:train", "--out", "r"], "--model"),
    (["train", "--data", "digits:train", "--model", "m", "--out", "r", "--no-such-flag"], "--no-such-flag"),
    (["no-such-verb"], "no-such-verb"),
])
def test_a_flag_the_parser_refuses_is_one_line_too(argv, words, capsys):
    from drkit.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith("drkit: error:") and len(err.strip().splitlines()) == 1, err
    assert words in err and "--help" in err


def test_flat_options_beside_a_section_are_kept_and_replace_lets_a_section_win():
    from drkit.train.config import Optim

    cfg = TrainConfig.build(data="digits:train", out="x", optim=Optim(lr=0.1), epochs=15)
    assert cfg.optim == Optim(lr=0.1, epochs=15)
    assert cfg.replace(optim=Optim(epochs=3), lr=0.5).optim == Optim(epochs=3, lr=0.5)
    assert cfg.replace(optim=Optim(epochs=3)).optim == Optim(epochs=3)


def test_options_a_mode_ignored_do_not_block_a_resume():
    """Runs saved before --label-smoothing (DR/KD) and --temperature (ERM) were refused recorded them
    though they changed nothing: a resume compares them as unset; the options a mode uses still count."""
    flat = lambda cfg: TrainConfig.flat_dict(cfg.to_dict())  # noqa: E731
    dr, erm = TrainConfig.build(data="d", out="o", reinforced="s"), TrainConfig.build(data="d", out="o")
    assert dr.diff({**flat(dr), "label_smoothing": 0.1}) == [] and dr.diff({**flat(dr), "temperature": 3.0})
    assert erm.diff({**flat(erm), "temperature": 2.0, "soften_targets": True}) == []
    assert erm.diff({**flat(erm), "label_smoothing": 0.3}) == ["label_smoothing"]


def test_train_config_sections_are_typed_and_flat_keywords_route_to_them():
    """The typed sections and the flat keywords (the CLI's) give the same config; its saved form is
    nested, and a flat one saved by an earlier release compares equal (so that run resumes)."""
    from drkit.train import Distill, Optim, Runtime

    typed = TrainConfig(data="d", out="o", reinforced="s", optim=Optim(epochs=3, lr=0.05),
                        distill=Distill(temperature=1.0), runtime=Runtime(workers=0))
    flat = TrainConfig.build(data="d", out="o", reinforced="s", epochs=3, lr=0.05, temperature=1.0, workers=0)
    assert typed == flat and flat.optim.peak_lr == 0.05 and flat.distill.resolved["soften_targets"] is False
    saved = flat.to_dict()
    assert saved["optim"]["epochs"] == 3 and "epochs" not in saved and saved["runtime"]["workers"] == 0
    assert flat.diff(saved) == [] and flat.diff(TrainConfig.flat_dict(saved)) == []
    assert flat.diff({**TrainConfig.flat_dict(saved), "epochs": 4}) == ["epochs"]
    assert flat.replace(seed=1).optim == flat.optim and flat.replace(batch_size=64).optim.batch_size == 64
    with pytest.raises(DrkitError, match="has no option nope"):
        TrainConfig.build(data="d", nope=1)
