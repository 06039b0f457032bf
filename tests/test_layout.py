"""The package's shape (issue 13): imports only point down, no import circle anywhere, small modules.

Imports are read from the source with ``ast`` — module-level ones and the lazy ones inside functions alike — so a
circle that only closes when a function runs is found too. Edges into the root package ``mimcl_hub`` are left out:
it is imported before anything else.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "mimcl_hub"

#: Which floors a subpackage may import (besides the shared helpers ``_safety``, ``_atomic``, ``_markdown``,
#: ``_progress``, ``errors`` and the root package). Lower floors never import upper ones; ``cli`` is imported by nobody.
ALLOWED = {
    "mi": set(),
    "models": set(),
    "objectives": {"mi", "models"},
    "data": {"mi"},
    "eval": {"data", "hub", "models"},
    "hub": {"models", "objectives"},
    "train": {"data", "eval", "hub", "models", "objectives", "mi"},
    "cli": {"data", "eval", "hub", "mi", "train"},
}
SHARED = {"_safety", "_atomic", "_markdown", "_progress", "errors", "<root>"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the mimcl_hub modules it imports (anywhere in its source)."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                candidates = [module] + [f"{module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                continue
            for target in candidates:
                while target not in modules and "." in target:
                    target = target.rpartition(".")[0]
                if target in modules and target not in (name, "mimcl_hub"):
                    targets.add(target)
        graph[name] = targets
    return graph


def _floor(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "<root>"


def test_no_import_circle_anywhere():
    graph = _imports(_modules())
    circles, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                circles.append(" -> ".join(path[path.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, path)
        path.pop()
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert not circles, circles


def test_imports_point_down():
    graph = _imports(_modules())
    wrong = sorted(f"{module} imports {target}" for module, targets in graph.items() for target in targets
                   if _floor(module) not in SHARED and _floor(target) not in SHARED
                   and _floor(target) != _floor(module) and _floor(target) not in ALLOWED[_floor(module)])
    assert not wrong, wrong


@pytest.mark.parametrize("module", ["mi", "models", "objectives", "data"])
def test_lower_floors_do_not_import_upper_floors(module):
    upper = {"train", "hub", "eval", "cli"}
    graph = _imports(_modules())
    found = sorted(f"{m} imports {t}" for m, ts in graph.items() if _floor(m) == module for t in ts
                   if _floor(t) in upper)
    assert not found, found


#: Modules over ~500 lines, each with the reason it stays one module.
LONG_MODULES = {
    "mimcl_hub/data/scenes.py": "one procedural-scene generator and the ground truth it renders; split, the two "
                                "halves would share every private helper",
    "mimcl_hub/models/backbones.py": "the timm factory and the small-image variants it registers: one registry",
    "mimcl_hub/data/sources.py": "the clip sources (files, folders, HF datasets, bundled clips) and their rows",
}


def test_modules_stay_small():
    long = {str(path.relative_to(ROOT.parent)): len(path.read_text(encoding="utf-8").splitlines())
            for path in ROOT.rglob("*.py")}
    over = {name: lines for name, lines in long.items() if lines > 520 and name not in LONG_MODULES}
    assert not over, over
