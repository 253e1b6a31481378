"""The package's shape, checked: imports flow one way, no cycles, no borrowed private names,
small functions. A newcomer should be able to trust the layout sketched in the README."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "drkit"

#: lower layers first; a module may import from its own layer or any layer below it
LAYERS = [
    {"drkit", "errors", "fileio", "hashing", "textspec", "configs", "defaults", "distributed", "device", "plots",
     "models", "checkpoint"},
    {"sources"},
    {"folds"},
    {"augment"},
    {"teachers"},
    {"store"},
    {"reinforce", "importers"},
    {"train"},
    {"evaluate", "inspect", "export"},
    {"demo", "cli", "__main__"},
]
RANK = {name: r for r, layer in enumerate(LAYERS) for name in layer}
MAX_LINES, MAX_PARAMS = 60, 8


def _module_name(path: Path) -> str:
    parts = ["drkit", *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, tuple[Path, ast.Module]]:
    return {_module_name(p): (p, ast.parse(p.read_text())) for p in sorted(SRC.rglob("*.py"))}


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(name: str, path: Path, tree: ast.Module, top_level_only: bool = False) -> list[tuple[str, ast.ImportFrom | ast.Import]]:
    """(imported drkit module, node) for runtime imports (``if TYPE_CHECKING:`` blocks excluded)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []

    def visit(node: ast.AST, depth: int) -> None:
        for child in ast.iter_child_nodes(node):
            if _is_type_checking(child):
                continue
            if isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                if target.split(".")[0] == "drkit":
                    out.append((target, child))
            elif isinstance(child, ast.Import):
                out.extend((a.name, child) for a in child.names if a.name.split(".")[0] == "drkit")
            is_scope = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            if not (top_level_only and is_scope):
                visit(child, depth + is_scope)

    visit(tree, 0)
    return out


def _component(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "drkit"


def test_every_component_has_a_layer():
    assert {_component(m) for m in _modules()} <= set(RANK)


def test_imports_flow_down_the_layers():
    bad = []
    for name, (path, tree) in _modules().items():
        for target, node in _imports(name, path, tree):
            src, dst = _component(name), _component(target)
            if src != dst and RANK[dst] > RANK[src]:
                bad.append(f"{path.relative_to(SRC)}:{node.lineno} {name} -> {target}")
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_no_import_cycles():
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, (path, tree) in mods.items():
        deps = set()
        for target, node in _imports(name, path, tree, top_level_only=True):
            if isinstance(node, ast.ImportFrom):  # `from pkg import sub` may name a submodule
                for alias in node.names:
                    if f"{target}.{alias.name}" in mods:
                        deps.add(f"{target}.{alias.name}")
            if target in mods:
                deps.add(target)
        graph[name] = deps - {name}
    # a package's __init__ importing its own submodules is how packages work; cycles among the rest are not
    for name in graph:
        graph[name] = {d for d in graph[name] if not (name.startswith(d + ".") and d in mods)}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def walk(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep] if dep in stack else [node, dep])
            elif dep not in state:
                walk(dep, stack + [dep])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name, [name])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_private_name_crosses_a_module_boundary():
    bad = []
    for name, (path, tree) in _modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("drkit")):
                bad += [f"{path.relative_to(SRC)}:{node.lineno} imports {a.name}" for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")]
                if (node.module or "").split(".")[-1].startswith("_"):
                    bad.append(f"{path.relative_to(SRC)}:{node.lineno} imports private module {node.module}")
    assert not bad, "\n".join(bad)


def _params(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    a = fn.args
    names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
    return len([n for n in names if n not in ("self", "cls")])


def test_functions_are_short_and_take_few_parameters():
    long, wide = [], []
    for name, (path, tree) in _modules().items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                where = f"{path.relative_to(SRC)}:{node.lineno} {node.name}"
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_LINES:
                    long.append(f"{where} ({lines} lines)")
                if _params(node) > MAX_PARAMS:
                    wide.append(f"{where} ({_params(node)} parameters)")
    assert not long and not wide, "\n".join(long + wide)


@pytest.mark.parametrize("verb", ["ReinforceConfig", "TrainConfig", "EvalConfig"])
def test_verb_configs_are_frozen_and_validate(verb):
    import dataclasses

    import drkit

    cls = getattr(drkit, verb)
    assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
    assert callable(getattr(cls, "validate"))


def test_benchmarks_import_only_names_that_exist():
    """Benchmarks are not run by the suite, so a moved or renamed name would break them silently:
    every ``from drkit... import ...`` in benchmarks/ (also inside functions) must resolve."""
    import importlib

    root = SRC.parents[1] / "benchmarks"
    missing = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "drkit":
                try:
                    module = importlib.import_module(node.module)
                except ImportError as e:
                    missing.append(f"{path.name}:{node.lineno} {node.module} ({e})")
                    continue
                missing += [f"{path.name}:{node.lineno} {node.module}.{a.name}" for a in node.names
                            if not hasattr(module, a.name)
                            and importlib.util.find_spec(f"{node.module}.{a.name}") is None]
    assert not missing, "\n".join(missing)


def test_readme_benchmark_table_is_the_one_the_results_files_give():
    """The README's benchmark table is written by benchmarks/summary.py from benchmarks/results/:
    a results file changed without rewriting the table (or a table edited by hand) fails here."""
    from conftest import bench_module

    summary = bench_module("summary")
    readme = (SRC.parents[1] / "README.md").read_text()
    block = readme.split("<!-- benchmarks:begin -->")[1].split("<!-- benchmarks:end -->")[0]
    # the last cell (status at writing) is read from git when the table is written: compared blank
    block = "\n".join(re.sub(r"\| [^|]*\|$", "|  |", ln) if ln.startswith("| `") else ln
                      for ln in block.splitlines())
    assert summary.table(status=False) in block


def test_gpu_checks_fits_one_device_command_and_names_real_flags():
    """The GPU script runs only on a lent machine, so nothing else catches its slips: its step limits must fit
    one device command (600 s, start-up included) and every flag it passes must exist in the script it runs."""
    bench = SRC.parents[1] / "benchmarks"
    text = (bench / "gpu_checks.sh").read_text().replace("\\\n", " ")
    limits = [int(x) for x in re.findall(r"^step (\d+) ", text, re.M)]
    assert limits and sum(limits) <= 560, limits
    calls = re.findall(r"(benchmarks/[\w/]+\.py)([^;|>\n]*)", text)
    assert len(calls) >= 5
    for script, args in calls:
        source = (SRC.parents[1] / script).read_text()
        missing = [f for f in re.findall(r"(--[a-z][\w-]*)", args) if f'"{f}"' not in source]
        assert not missing, (script, missing)


def test_benchmarks_call_each_others_functions_with_their_arguments():
    """A benchmark helper used from another script (``from render_speed import _sources``) takes the
    positional arguments its callers pass: gpu_diag.py once called a helper that had gained a parameter."""
    bench = SRC.parents[1] / "benchmarks"
    defs: dict[tuple[str, str], tuple[int, int]] = {}
    for path in bench.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef):
                a = node.args
                total = len(a.posonlyargs) + len(a.args)
                defs[path.stem, node.name] = (total - len(a.defaults), 10**6 if a.vararg else total)
    bad = []
    for path in bench.rglob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {a.asname or a.name: (n.module, a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                    for a in n.names if (n.module, a.name) in defs}
        for call in ast.walk(tree):
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in imported:
                lo, hi = defs[imported[call.func.id]]
                given = len(call.args) + len(call.keywords)
                if not any(isinstance(x, ast.Starred) for x in call.args) and not lo <= given <= hi + len(call.keywords):
                    bad.append(f"{path.name}:{call.lineno} {call.func.id} takes {lo}..{hi}, given {given}")
    assert not bad, bad
