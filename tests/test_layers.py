"""The package's import graph: layered, without cycles, every module importable on its own.

Layers, lowest first (a module imports only its own layer or lower ones):

    errors, files < audio < models, diffusion < config < modelio, plot < pipeline < data
           < training, evaluation < generator < bench < cli

training and evaluation share a layer but never import each other. Function-local imports of
the package are allowed only in the entry points (cli: ``audiox-jax --help`` stays fast;
``audiox_jax/__init__``: ``audiox_jax.load_pipeline`` without importing jax) and in bench's
torch worker; elsewhere they would only hide a cycle.
"""

import ast
import concurrent.futures
import os
import subprocess
import sys

import pytest

import audiox_jax

ROOT = os.path.dirname(audiox_jax.__file__)
LAYERS = {
    "errors": 0, "files": 0, "audio": 1, "models": 2, "diffusion": 2, "config": 3, "modelio": 4, "plot": 4,
    "pipeline": 5, "data": 6, "training": 7, "evaluation": 7, "generator": 8, "bench": 9, "cli": 10,
}
LOCAL_IMPORTS_ALLOWED = {"audiox_jax", "audiox_jax.cli", "audiox_jax.bench.dsp", "audiox_jax.bench.generate"}


def _modules() -> dict[str, str]:
    mods = {}
    for dirpath, _, files in os.walk(ROOT):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(dirpath, f)
                name = "audiox_jax." + os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                mods[name.removesuffix(".__init__")] = path
    return mods


MODULES = _modules()


def _imports(path: str) -> list[tuple[str, bool]]:
    """``(imported package module, inside a function)`` for every import of the package in a file."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    local = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
             for n in ast.walk(f)}
    out = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name:
                out.append((name, id(node) in local))
    return out


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_module_has_a_layer():
    assert {m for m in MODULES if m != "audiox_jax" and _layer(m) not in LAYERS} == set()


def test_no_module_imports_a_layer_above_it():
    bad = []
    for mod, path in MODULES.items():
        here = _layer(mod)
        for target, inside_function in _imports(path):
            there = _layer(target)
            if mod == "audiox_jax" or target == "audiox_jax" or here == there:
                continue
            if LAYERS[there] > LAYERS[here] or {here, there} == {"training", "evaluation"}:
                bad.append(f"{mod} imports {target}")
            if inside_function and mod not in LOCAL_IMPORTS_ALLOWED:
                bad.append(f"{mod} imports {target} inside a function")
    assert bad == []


def test_the_import_graph_has_no_cycles():
    graph = {m: {t for t, _ in _imports(p) if t != m} for m, p in MODULES.items()}
    state: dict[str, int] = {}  # 1 = on the path, 2 = done

    def visit(m, path):
        state[m] = 1
        for t in graph.get(m, ()):
            if state.get(t) == 1:
                pytest.fail("import cycle: " + " -> ".join(path[path.index(t):] + [t]))
            if t not in state:
                visit(t, path + [t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def _import_alone(module: str) -> tuple[str, int, str]:
    out = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=300)
    return module, out.returncode, out.stderr[-600:]


def test_each_module_imports_alone_in_a_fresh_interpreter():
    # torch_ref is torch code: it needs the optional torch extra (its tests say so under CI)
    mods = sorted(m for m in MODULES if not m.endswith("torch_ref"))
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        failed = [r for r in pool.map(_import_alone, mods) if r[1] != 0]
    assert failed == []


def test_importing_the_package_imports_neither_jax_nor_torch():
    code = "import sys, audiox_jax; print(sorted(m for m in ('jax', 'torch', 'flax') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr[-600:]
