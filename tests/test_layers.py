"""The package's import graph: layers import downward only, and there is no cycle (STYLE.md 12).

Every ``edgetrgl`` import in the source is read with ``ast`` (module level and inside functions;
``if TYPE_CHECKING:`` blocks are type hints, not imports). A new package must be given a layer here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import edgetrgl

ROOT = Path(edgetrgl.__file__).parent

# lowest first; a module may import its own layer and the ones before it
LAYERS = [
    ["edgetrgl.errors", "edgetrgl._faults", "edgetrgl.config"],
    ["edgetrgl.models", "edgetrgl.blocks", "edgetrgl.losses", "edgetrgl.heads", "edgetrgl.data",
     "edgetrgl.transport", "edgetrgl.precision"],
    ["edgetrgl.modular", "edgetrgl.block_checkpoint", "edgetrgl.step", "edgetrgl.cache", "edgetrgl.metrics", "edgetrgl.tables", "edgetrgl.plots"],
    ["edgetrgl.memory", "edgetrgl.network", "edgetrgl.devices"],
    ["edgetrgl.training.inputs", "edgetrgl.training.offload", "edgetrgl.training.epoch",
     "edgetrgl.training.evaluation", "edgetrgl.training.checkpoint", "edgetrgl.training.run_dir",
     "edgetrgl.training.run_lock"],
    ["edgetrgl.distributed"],  # torchrun's process group, the pipeline's links, checkpoint parts, shards
    ["edgetrgl.training.regimes"],
    ["edgetrgl.planning", "edgetrgl.finetune"],
    ["edgetrgl.training.trainer", "edgetrgl.training.api", "edgetrgl.training.auto_resume", "edgetrgl.training",
     "edgetrgl.distributed.trainer", "edgetrgl.distributed.run"],
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


def module_name(path: Path) -> str:
    parts = ["edgetrgl", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, bool]]:
    """``(imported module, at module level)`` for every edgetrgl import outside TYPE_CHECKING."""
    tree = ast.parse(path.read_text())
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return
        if isinstance(node, ast.Import):
            found.extend((a.name, top) for a in node.names if a.name.startswith("edgetrgl"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("edgetrgl") and node.level == 0:
            found.append((node.module, top))
        inner = top and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(tree, True)
    return found


SOURCES = {module_name(p): p for p in ROOT.rglob("*.py")}


def test_layers_import_downward_only():
    upward = [f"{name} (layer {layer_of(name)}) imports {target} (layer {layer_of(target)})"
              for name, path in SOURCES.items() for target, _ in imports(path)
              if layer_of(target) > layer_of(name)]
    assert not upward, "\n".join(upward)


def test_no_private_names_cross_packages():
    crossing = []
    for name, path in SOURCES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("edgetrgl"):
                package = ".".join(node.module.split(".")[:2])
                for alias in node.names:
                    if alias.name.startswith("_") and not name.startswith(package):
                        crossing.append(f"{name} imports {node.module}.{alias.name}")
    assert not crossing, "\n".join(crossing)


def test_no_import_cycles():
    graph = {name: {t for t, top in imports(path) if top and t in SOURCES and t != name} for name, path in SOURCES.items()}
    for name, path in SOURCES.items():  # "from edgetrgl.x import y" may name the submodule edgetrgl.x.y
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("edgetrgl"):
                graph[name] |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in SOURCES}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
