"""The package's import graph: layers import downward only, and there is no cycle.

Every ``edgetrgl`` import in the source is read with ``ast``: import statements at module level,
inside functions (a lazy import is still an import: it runs, and a circle through it is a circle)
and inside ``if TYPE_CHECKING:`` (a type hint that needs a module above is a tie to it all the
same), and ``importlib.import_module("edgetrgl...")`` calls (an f-string counts as an import of
its literal prefix's package). ``from edgetrgl.x import y`` also imports the submodule
``edgetrgl.x.y`` where there is one, and importing ``edgetrgl.x.y`` runs ``edgetrgl/x/__init__.py``
first. A new package must be given a layer here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import edgetrgl

ROOT = Path(edgetrgl.__file__).parent

# lowest first; a module may import its own layer and the ones before it
LAYERS = [
    ["edgetrgl.errors", "edgetrgl.stop", "edgetrgl._faults", "edgetrgl._durable", "edgetrgl._version", "edgetrgl.config",
     "edgetrgl.registry", "edgetrgl.weights_file"],
    ["edgetrgl.models", "edgetrgl.blocks", "edgetrgl.losses", "edgetrgl.heads", "edgetrgl.data", "edgetrgl.data.image_check",
     "edgetrgl.transport", "edgetrgl.precision", "edgetrgl.objectives"],
    ["edgetrgl.modular", "edgetrgl.block_checkpoint", "edgetrgl.step", "edgetrgl.cache", "edgetrgl.metrics",
     "edgetrgl.tables", "edgetrgl.plots"],
    ["edgetrgl.memory", "edgetrgl.network", "edgetrgl.devices"],
    ["edgetrgl.planning", "edgetrgl.finetune"],  # the plan is data: it imports no training code
    ["edgetrgl.training.inputs", "edgetrgl.training.offload", "edgetrgl.training.epoch",
     "edgetrgl.training.evaluation", "edgetrgl.training.checkpoint", "edgetrgl.training.run_dir",
     "edgetrgl.training.run_lock", "edgetrgl.training.phases", "edgetrgl.training.loading",
     "edgetrgl.training.results", "edgetrgl.training.images", "edgetrgl.training.batchnorm",
     "edgetrgl.training"],
    ["edgetrgl.training.context"],  # what a loop may use: below both the loops and the trainer
    ["edgetrgl.training.regimes"],  # the loops (the pipeline's links are handed to it by its trainer)
    ["edgetrgl.training.trainer"],
    ["edgetrgl.training.run"],  # the one run body, and the single-process hooks
    ["edgetrgl.distributed"],  # torchrun: the process group, links, checkpoint parts, a rank's hooks
    ["edgetrgl.api"],  # the front door: train, resume, auto-resume, load_run
    ["edgetrgl.bench", "edgetrgl.export", "edgetrgl"],
    ["edgetrgl.cli", "edgetrgl.__main__"],
]


def layer_of(module: str) -> int:
    best, found = -1, None
    for index, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, found = len(name), index
    assert found is not None, f"{module} has no layer in tests/test_layers.py"
    return found


def module_names(root: Path, package: str) -> dict[str, Path]:
    """``{dotted name: path}`` of every module of the package in ``root``."""
    names = {}
    for path in root.rglob("*.py"):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imports(path: Path, package: str, known: set[str]) -> list[tuple[str, bool]]:
    """``(imported module, at module level)`` for every import of ``package`` (``TYPE_CHECKING`` blocks
    and ``importlib.import_module`` calls included), with the submodules that ``from package.x import y`` names."""
    found: list[tuple[str, bool]] = []
    own = lambda name: name == package or name.startswith(package + ".")  # noqa: E731

    def visit(node: ast.AST, top: bool) -> None:
        if isinstance(node, ast.Import):
            found.extend((a.name, top) for a in node.names if own(a.name))
        elif isinstance(node, ast.ImportFrom) and node.module and own(node.module) and node.level == 0:
            found.append((node.module, top))
            found.extend((f"{node.module}.{a.name}", top) for a in node.names if f"{node.module}.{a.name}" in known)
        elif isinstance(node, ast.Call) and (target := _import_module_target(node)) and own(target):
            found.append((target, top))
        inner = top and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(ast.parse(path.read_text()), True)
    return found


def _import_module_target(call: ast.Call) -> str | None:
    """The module an ``importlib.import_module(...)`` call loads: its string, or an f-string's
    literal prefix up to the last dot (the package whose submodule it loads)."""
    name = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", None)
    if name != "import_module" or not call.args:
        return None
    arg = call.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        return str(arg.values[0].value).rsplit(".", 1)[0]
    return None


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """``{module: modules it imports}``, lazy imports included, each import also running the
    ``__init__`` of every package above the imported module (not the top package's: every module is
    inside it, so the edge would say nothing)."""
    sources = module_names(root, package)
    graph: dict[str, set[str]] = {}
    for name, path in sources.items():
        targets = set()
        for target, _ in imports(path, package, set(sources)):
            parts = target.split(".")
            targets |= {".".join(parts[:i]) for i in range(2, len(parts) + 1)}  # parents' __init__, then itself
        graph[name] = {t for t in targets if t in sources and t != name and not name.startswith(t + ".")}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (``[a, b, ..., a]``), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


SOURCES = module_names(ROOT, "edgetrgl")


def test_layers_import_downward_only():
    upward = [f"{name} (layer {layer_of(name)}) imports {target} (layer {layer_of(target)})"
              for name, path in SOURCES.items() for target, _ in imports(path, "edgetrgl", set(SOURCES))
              if layer_of(target) > layer_of(name)]
    assert not upward, "\n".join(upward)


def test_no_private_names_cross_packages():
    crossing = []
    for name, path in SOURCES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("edgetrgl"):
                package = ".".join(node.module.split(".")[:2])
                for alias in node.names:
                    if alias.name.startswith("_") and not name.startswith(package) and alias.name != "__version__":
                        crossing.append(f"{name} imports {node.module}.{alias.name}")
    assert not crossing, "\n".join(crossing)


def test_no_import_cycles_lazy_imports_included():
    cycle = find_cycle(import_graph(ROOT, "edgetrgl"))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_graph_sees_the_run_body_shared_below_both_ways_of_running():
    graph = import_graph(ROOT, "edgetrgl")
    assert "edgetrgl.training.run" in graph["edgetrgl.distributed.run"]  # torchrun runs the one body
    assert "edgetrgl.training.run" in graph["edgetrgl.api"]
    assert not any(t.startswith(("edgetrgl.training", "edgetrgl.distributed")) for t in graph["edgetrgl.planning.run_plan"])
    assert not any(t.startswith("edgetrgl.distributed") for t in graph["edgetrgl.training.regimes.pipeline"])


def _fake_package(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "fakepkg"
    for name, text in {"__init__.py": "", **files}.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text)
    return pkg


@pytest.mark.parametrize("lazy_in", ["function", "method", "nested function"])
def test_a_lazy_import_circle_is_caught(tmp_path, lazy_in):
    """a imports b at module level; b imports a only inside a function: still a circle."""
    body = {
        "function": "def f():\n    from fakepkg.a import A\n    return A\n",
        "method": "class B:\n    def f(self):\n        import fakepkg.a\n        return fakepkg.a\n",
        "nested function": "def f():\n    def g():\n        from fakepkg import a\n        return a\n    return g\n",
    }[lazy_in]
    pkg = _fake_package(tmp_path, {"a.py": "from fakepkg.b import f\nA = 1\n", "b.py": body})
    graph = import_graph(pkg, "fakepkg")
    assert graph["fakepkg.b"] == {"fakepkg.a"} and graph["fakepkg.a"] == {"fakepkg.b"}
    assert find_cycle(graph) == ["fakepkg.a", "fakepkg.b", "fakepkg.a"]
    found = imports(pkg / "b.py", "fakepkg", set(module_names(pkg, "fakepkg")))
    assert found and not any(top for _, top in found)  # every import of b is lazy, and counted


def test_a_circle_through_a_package_init_is_caught_and_type_hints_count_as_imports(tmp_path):
    pkg = _fake_package(tmp_path, {
        "sub/__init__.py": "from fakepkg.sub.low import x\n",
        "sub/low.py": "x = 1\n",
        "top.py": "from fakepkg.sub.low import x\n",  # runs sub/__init__.py on the way
        "hints.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from fakepkg.top import x\n",
    })
    (pkg / "sub" / "low.py").write_text("def later():\n    import fakepkg.top\n")
    graph = import_graph(pkg, "fakepkg")
    assert graph["fakepkg.top"] == {"fakepkg.sub", "fakepkg.sub.low"} and graph["fakepkg.hints"] == {"fakepkg.top"}
    cycle = find_cycle(graph)
    assert cycle and cycle[0] == cycle[-1] and {"fakepkg.sub.low", "fakepkg.top"} <= set(cycle)


def test_importlib_loads_are_imports(tmp_path):
    pkg = _fake_package(tmp_path, {
        "low.py": "import importlib\ndef load(name):\n    return importlib.import_module(f'fakepkg.high.{name}')\n",
        "plain.py": "from importlib import import_module\nimport_module('fakepkg.low')\n",
        "high/__init__.py": "from fakepkg.high import x\n", "high/x.py": "from fakepkg.low import load\n",
    })
    graph = import_graph(pkg, "fakepkg")
    assert graph["fakepkg.low"] == {"fakepkg.high"} and graph["fakepkg.plain"] == {"fakepkg.low"}
    assert find_cycle(graph)  # low -> high (its __init__) ... and high.x -> low: a circle only through importlib


def test_the_regimes_see_only_their_context():
    """The loops import the contract from below, never the trainer that implements it."""
    graph = import_graph(ROOT, "edgetrgl")
    for name in (n for n in graph if n.startswith("edgetrgl.training.regimes")):
        assert not any(t.startswith("edgetrgl.training.trainer") for t in graph[name]), name
    assert not any(t.startswith(("edgetrgl.training.trainer", "edgetrgl.training.regimes"))
                   for t in graph["edgetrgl.training.context"])
