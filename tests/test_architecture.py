"""The import graph keeps its shape: layers that point one way, no cycles, a thin Orthanc plug-in.

The map is ``docs/architecture.md``. This test reads every Python file of the shared package, the plug-in
and the components with :mod:`ast` (nothing is imported), and fails on

* an import from a lower layer to a higher one, or between two packages of the same layer;
* an import cycle between modules (function-level and ``TYPE_CHECKING`` imports count: they are cycles
  the code only hides);
* a module of ``oncoflow/`` outside every declared package (new code must take a place on the map);
* ``oncoflow_plugin`` imported from anywhere but ``orthanc-plugins/`` and ``tests/``;
* an Orthanc plug-in of more than :data:`MAX_PLUGIN_LINES` lines.

The checker itself is shown to catch an upward import and a cycle on a small made-up tree.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# The packages and components, bottom layer first. A package may import packages of lower layers only.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"oncoflow", "oncoflow.core"}),  # "oncoflow": the package's __init__ (its version)
    frozenset({"oncoflow.pacs", "oncoflow.dicom", "oncoflow.phantoms",
               "oncoflow_registration", "oncoflow_rag", "oncoflow_inference"}),
    frozenset({"oncoflow.measure", "oncoflow.security", "oncoflow.report"}),
    frozenset({"oncoflow.pipeline"}),
    frozenset({"oncoflow.api"}),
    frozenset({"oncoflow.services"}),
    frozenset({"oncoflow_plugin"}),
)

SOURCE_ROOTS: dict[str, Path] = {
    "oncoflow": REPO / "oncoflow",
    "oncoflow_plugin": REPO / "orthanc-plugins" / "oncoflow_plugin",
    "oncoflow_inference": REPO / "inference" / "oncoflow_inference",
    "oncoflow_registration": REPO / "registration" / "oncoflow_registration",
    "oncoflow_rag": REPO / "rag" / "oncoflow_rag",
}

# Scripts that use the domain but are not part of it: they may import any layer but the plug-in.
CLIENT_DIRS = ("bench", "inference/training", "scripts")
MAX_PLUGIN_LINES = 2500


@dataclass(frozen=True)
class Violation:
    importer: str
    imported: str
    why: str

    def __str__(self) -> str:
        return f"{self.importer} -> {self.imported}: {self.why}"


def module_files(roots: Mapping[str, Path]) -> dict[str, Path]:
    """Every module under each root: ``{dotted name: file}`` (a package is its ``__init__.py``)."""
    modules: dict[str, Path] = {}
    for name, root in roots.items():
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((name, *parts))] = path
    return modules


def imported_modules(path: Path, module: str, known: Iterable[str]) -> set[str]:
    """The project modules ``module`` (in ``path``) imports anywhere in its body, relative imports resolved."""
    known = set(known)
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def add(name: str) -> None:
        while name and name not in known:  # a name inside a module: the module
            name = name.rpartition(".")[0]
        if name:
            found.add(name)

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                base = ".".join(package[: len(package) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                add(candidate if candidate in known else target)
    found.discard(module)
    return found


def import_graph(roots: Mapping[str, Path]) -> dict[str, set[str]]:
    files = module_files(roots)
    return {module: imported_modules(path, module, files) for module, path in files.items()}


def package_of(module: str, layers: tuple[frozenset[str], ...]) -> str | None:
    """The declared package (or component) holding ``module``: the longest declared prefix."""
    packages = [p for layer in layers for p in layer]
    declared = [p for p in packages if module == p or module.startswith(p + ".")]
    if not declared:
        return None
    best = max(declared, key=len)
    split_into_packages = any(p.startswith(best + ".") for p in packages)
    if module != best and split_into_packages:
        return None  # a module beside the declared packages of its root (``oncoflow.stray``): not on the map
    return best


def layer_violations(graph: Mapping[str, set[str]], layers: tuple[frozenset[str], ...]) -> list[Violation]:
    level = {package: i for i, layer in enumerate(layers) for package in layer}
    violations = []
    for importer, imported in sorted(graph.items()):
        source = package_of(importer, layers)
        if source is None:
            violations.append(Violation(importer, "-", "module outside every declared package"))
            continue
        for target_module in sorted(imported):
            target = package_of(target_module, layers)
            if target is None or target == source:
                continue
            if level[target] > level[source]:
                violations.append(Violation(importer, target_module, f"upward ({source} below {target})"))
            elif level[target] == level[source]:
                violations.append(Violation(importer, target_module, f"sideways ({source} and {target} are peers)"))
    return violations


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next((c for c in children if c in graph), None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(SOURCE_ROOTS)


def test_every_import_points_down(graph: dict[str, set[str]]) -> None:
    assert [str(v) for v in layer_violations(graph, LAYERS)] == []


def test_no_import_cycles(graph: dict[str, set[str]]) -> None:
    assert cycles(graph) == []


def test_every_declared_package_exists_and_is_on_the_map() -> None:
    documented = (REPO / "docs" / "architecture.md").read_text()
    for layer in LAYERS:
        for package in layer:
            root, _, sub = package.partition(".")
            directory = SOURCE_ROOTS[root] / sub if sub else SOURCE_ROOTS[root]
            assert (directory / "__init__.py").is_file(), package
            assert f"`{package}`" in documented or f"`{package.replace('.', '/')}/`" in documented, package


def test_only_the_plugin_and_tests_import_the_plugin() -> None:
    files = module_files(SOURCE_ROOTS)
    importers = []
    for directory in CLIENT_DIRS:
        for path in sorted((REPO / directory).rglob("*.py")):
            imported = imported_modules(path, f"client.{path.stem}", files)
            if any(m.split(".")[0] == "oncoflow_plugin" for m in imported):
                importers.append(str(path.relative_to(REPO)))
    assert importers == []


def test_the_orthanc_plugin_stays_thin() -> None:
    lines = sum(len(p.read_text().splitlines()) for p in (REPO / "orthanc-plugins").rglob("*.py"))
    assert lines <= MAX_PLUGIN_LINES


def _write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_checker_finds_an_upward_import_a_sideways_one_and_a_cycle(tmp_path: Path) -> None:
    for package in ("toy", "toy/low", "toy/mid", "toy/peer", "toy/high"):
        _write(tmp_path, f"{package}/__init__.py", "")
    _write(tmp_path, "toy/low/base.py", "def helper():\n    from toy.high.top import run  # upward\n")
    _write(tmp_path, "toy/mid/a.py", "from . import b\nimport toy.peer.other\n")
    _write(tmp_path, "toy/mid/b.py", "from toy.mid.a import x  # a cycle with a\nfrom toy.low import base\n")
    _write(tmp_path, "toy/peer/other.py", "")
    _write(tmp_path, "toy/high/top.py", "from toy.mid import a\n")
    _write(tmp_path, "toy/stray.py", "")
    layers = (frozenset({"toy", "toy.low"}), frozenset({"toy.mid", "toy.peer"}), frozenset({"toy.high"}))
    toy_graph = import_graph({"toy": tmp_path / "toy"})
    assert {str(v) for v in layer_violations(toy_graph, layers)} == {
        "toy.low.base -> toy.high.top: upward (toy.low below toy.high)",
        "toy.mid.a -> toy.peer.other: sideways (toy.mid and toy.peer are peers)",
        "toy.stray -> -: module outside every declared package",
    }
    assert cycles(toy_graph) == [["toy.high.top", "toy.low.base", "toy.mid.a", "toy.mid.b"]]
