"""The architecture, enforced: every import (at module level or inside a function) goes to the same layer or a
lower one, and no two modules import each other, directly or round a longer loop.

Layers, low to high: the base modules beside the package (``hyperfusion``, ``errors``, ``files``, ``lazy``, ``runtime``) → data →
models → training → inference → explain → the interfaces (``evaluation``, ``bench``, ``report``, ``demo``,
``cli``) → the dashboard (``app/``). Imports under ``if TYPE_CHECKING:`` are for annotations only and do not
count. The imports are read from the source with :mod:`ast`; nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["base", "data", "models", "training", "inference", "explain", "interface", "app"]
BASE = {"hyperfusion", "hyperfusion.errors", "hyperfusion.files", "hyperfusion.lazy", "hyperfusion.runtime"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[0] == "app":
        return "app." + parts[-1]  # pages and helpers: Streamlit puts app/ on the path
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    files = list((ROOT / "hyperfusion").rglob("*.py")) + list((ROOT / "app").rglob("*.py"))
    return {_module_name(p): p for p in files}


def layer(module: str) -> str:
    if module.startswith("app."):
        return "app"
    if module in BASE:
        return "base"
    second = module.split(".")[1]
    return second if second in LAYERS else "interface"


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(module: str, path: Path, known: dict[str, Path]) -> dict[str, int]:
    """{imported project module: line} of one file (hyperfusion modules and app siblings only)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_lines(tree)
    found: dict[str, int] = {}

    def add(name: str, line: int) -> None:
        # the longest known module the name starts with (``from pkg import mod`` names the module itself)
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name and name != module:
            found.setdefault(name, line)

    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                name = alias.name if alias.name.startswith("hyperfusion") else f"app.{alias.name}"
                if name.startswith("hyperfusion") or (module.startswith("app.") and name in known):
                    add(name, node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("hyperfusion"):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    add(full if full in known else node.module, node.lineno)
            elif module.startswith("app.") and f"app.{node.module}" in known:
                add(f"app.{node.module}", node.lineno)
    return found


def _graph() -> dict[str, dict[str, int]]:
    known = _modules()
    return {m: imports_of(m, p, known) for m, p in known.items()}


def test_every_import_goes_down_the_layers():
    order = {name: i for i, name in enumerate(LAYERS)}
    upward = [
        f"{module} ({layer(module)}) imports {target} ({layer(target)}) at line {line}"
        for module, targets in _graph().items()
        for target, line in targets.items()
        if order[layer(target)] > order[layer(module)]
    ]
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)


def test_no_import_cycles():
    graph = _graph()
    # packages import their own modules in __init__; a module importing its package's name is not a cycle
    edges = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def strongconnect(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            strongconnect(v)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_dashboard_imports_no_torch():
    offenders = []
    for path in (ROOT / "app").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == "torch" or n.startswith("torch.") for n in names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, f"app/ must reach torch only through the library: {offenders}"


def test_the_checker_sees_an_upward_import(tmp_path):
    """The check itself works: a data module importing inference is caught."""
    known = {"hyperfusion.data.x": tmp_path / "x.py", "hyperfusion.inference.predictor": Path()}
    (tmp_path / "x.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from hyperfusion.inference import predictor as p\n"
        "def f():\n    from hyperfusion.inference.predictor import Predictor\n"
    )
    found = imports_of("hyperfusion.data.x", tmp_path / "x.py", known)
    assert found == {"hyperfusion.inference.predictor": 5}
    assert layer("hyperfusion.data.x") == "data" and layer("hyperfusion.inference.predictor") == "inference"


def test_the_dashboard_stays_small():
    """app/ only lays out widgets (every computation is a library call), so it stays small: at most 1,500
    lines of Python in all, no page (app/views) over 150 lines and no module over 200."""
    sizes = {
        p.relative_to(ROOT).as_posix(): len(p.read_text(encoding="utf-8").splitlines()) for p in _app_files()
    }
    too_big = {p: n for p, n in sizes.items() if n > (150 if p.startswith("app/views/") else 200)}
    assert not too_big, f"split these or move their computations into hyperfusion/pages: {too_big}"
    assert sum(sizes.values()) <= 1500, f"app/ holds {sum(sizes.values())} lines of Python (at most 1,500)"


def _app_files() -> list[Path]:
    return sorted((ROOT / "app").glob("*.py")) + sorted((ROOT / "app" / "views").glob("*.py"))
