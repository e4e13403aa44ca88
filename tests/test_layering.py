"""The package's structure, checked from its source: layers that import only downwards, no
circles, no reach-ins into another module's private names, public names written once.

The graph is built from every import statement (module level, ``TYPE_CHECKING`` blocks
and function bodies) of ``sevis/`` (the dashboard's pages included) and ``app.py``, by reading the code
(nothing is imported to build it), so a lazy import cannot hide an arrow.
"""

from __future__ import annotations

import ast
import importlib
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ROOT

import sevis

# Lowest first. A module may import its own subpackage's modules and anything on a lower
# layer, never a layer above or beside it (the top layer holds the entry points and the
# old flat paths, which nothing inside the package imports).
LAYERS: list[set[str]] = [
    {"_version", "errors", "limits", "provenance", "_threads", "_moved", "_files"},
    {"data", "stats"},  # what users bring; accumulators and measures
    {"attention"},  # kinds, the module registry, layer names, the SGE module, geometry
    {"models"},  # the model registry, weights, checkpoints, the self-check
    {"hooks"},  # capture, the forward step, knock-outs, Grad-CAM
    {"runs"},  # schema, writer, reader, cache, row samples
    {"analysis"},  # images in memory, channels and maps of runs
    {"figures", "export"},
    {"jobs", "report"},  # extract (local, Ray), ablate; the HTML report
    {"reproduce"},  # a paper's findings: extract, ablate and the report in one command
    {"__init__"},  # the public face: every public name, imported on first use
    {"app"},  # the dashboard: services, widgets, the entry script, the pages
    {"cli"},  # `sevis dashboard` finds the dashboard's entry script
]
# The flat module paths before the subpackages: re-exports kept for one release.
SHIMS = {
    "archive": ["sevis.data.archive"],
    "explore": ["sevis.analysis.explore"],
    "extract": ["sevis.jobs.extraction", "sevis.data.files"],
    "geometry": ["sevis.attention.geometry"],
    "gradcam": ["sevis.hooks.gradcam"],
    "images": ["sevis.data.images"],
    "kinds": ["sevis.attention.kinds"],
    "layers": ["sevis.attention.layers"],
    "pipeline": ["sevis.hooks.forward", "sevis.data.images"],
    "ray_engine": ["sevis.jobs.ray_engine"],
    "runwriter": ["sevis.runs.writer"],
    "selfcheck": ["sevis.models.selfcheck"],
    "sge": ["sevis.attention.sge"],
    "weights": ["sevis.models.weights"],
    "whatif": ["sevis.hooks.knockouts", "sevis.jobs.ablation", "sevis.models.classes"],
}
LAYERS[-1] |= set(SHIMS)

# First-party imports inside functions, each with its reason (cli.py and the package
# roots' lazy exports keep `sevis --help` and `import sevis` from importing torch).
FUNCTION_IMPORTS = {
    ("sevis.app.services", "sevis.hooks.gradcam"): "captum is imported when Grad-CAM is first asked for",
}
SNAPSHOT = ROOT / "tests" / "public_api.txt"


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name
    target: str  # dotted module name of what is imported from
    names: tuple[str, ...]  # names taken from it (empty for `import x`)
    in_function: bool
    line: int


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources() -> list[Path]:
    return [*sorted((ROOT / "sevis").rglob("*.py")), ROOT / "app.py"]


def is_module(name: str) -> bool:
    path = ROOT / Path(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_of(path: Path) -> Iterator[Import]:
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    inside = {id(n) for f in functions for n in ast.walk(f) if n is not f}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if not target.startswith("sevis"):
                continue
            names = tuple(a.name for a in node.names)
            # `from . import figures`: each name that is a module is a target of its own.
            submodules = [n for n in names if is_module(f"{target}.{n}")]
            for sub in submodules:
                yield Import(name, f"{target}.{sub}", (), id(node) in inside, node.lineno)
            others = tuple(n for n in names if n not in submodules)
            if others or not submodules:
                yield Import(name, target, others, id(node) in inside, node.lineno)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("sevis"):
                    yield Import(name, alias.name, (), id(node) in inside, node.lineno)


ALL_IMPORTS = [i for path in sources() for i in imports_of(path)]


def unit(module: str) -> str | None:
    """The layer unit of a sevis module: its subpackage or top-level module name."""
    parts = module.split(".")
    if parts[0] != "sevis":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def rank(module: str) -> int:
    u = unit(module)
    for i, layer in enumerate(LAYERS):
        if u in layer:
            return i
    raise AssertionError(f"{module} is on no layer: add its unit {u!r} to LAYERS")


def package_imports() -> list[Import]:
    return [i for i in ALL_IMPORTS if i.importer.startswith("sevis") and i.target.startswith("sevis")]


def test_every_module_is_on_a_layer():
    for path in sorted((ROOT / "sevis").rglob("*.py")):
        rank(module_name(path))


def test_imports_run_down_the_layers():
    upward = [
        f"{i.importer} (line {i.line}) imports {i.target}"
        for i in package_imports()
        if unit(i.importer) != unit(i.target) and rank(i.importer) <= rank(i.target)
    ]
    assert upward == []


def test_the_import_graph_has_no_circles():
    graph: dict[str, set[str]] = {}
    for i in package_imports():
        if i.target != "sevis" and i.importer != i.target:
            graph.setdefault(i.importer, set()).add(i.target)
    # NOTE a module imported as `sevis.x.y` first runs `sevis/x/__init__.py`: for every
    # package, an arrow from each of its modules' importers to the package itself.
    for i in package_imports():
        parent = i.target.rpartition(".")[0]
        if parent not in ("", "sevis") and not i.importer.startswith(parent + ".") and i.importer != parent:
            graph.setdefault(i.importer, set()).add(parent)
    state: dict[str, int] = {}
    circles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                circles.append([*trail[trail.index(nxt) :], nxt] if nxt in trail else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert circles == []


def test_no_module_imports_another_modules_private_names():
    reach_ins = []
    for i in ALL_IMPORTS:
        private_module = any(part.startswith("_") and part != "__init__" for part in i.target.split(".")[1:])
        for name in i.names:
            if name.startswith("_") and not name.startswith("__") and not private_module:
                reach_ins.append(f"{i.importer} (line {i.line}) imports {name} from {i.target}")
    assert reach_ins == []


def test_no_private_attributes_of_first_party_modules():
    """`from sevis import runs` then `runs._matrix` is a reach-in too."""
    reach_ins = []
    for path in sources():
        tree = ast.parse(path.read_text())
        modules = {
            a.asname or a.name
            for n in ast.walk(tree)
            if (isinstance(n, ast.ImportFrom) and (n.module or "").startswith("sevis")) or isinstance(n, ast.Import)
            for a in n.names
            if is_module(f"{getattr(n, 'module', None) or ''}.{a.name}".strip(".")) or a.name.startswith("sevis")
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in modules
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                reach_ins.append(f"{module_name(path)} (line {node.lineno}): {node.value.id}.{node.attr}")
    assert reach_ins == []


def exported(module: str) -> set[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return set(importlib.import_module(module).__all__)


def test_every_name_taken_from_a_public_module_is_in_its_all():
    missing = []
    for i in ALL_IMPORTS:
        if not i.names or not i.target.startswith("sevis") or i.target.split(".")[-1].startswith("_"):
            continue
        if unit(i.importer) in SHIMS:
            continue  # `from new.home import *`
        public = exported(i.target)
        missing += [f"{i.importer} (line {i.line}) takes {n} from {i.target}" for n in i.names if n not in public]
    assert missing == []


def test_every_module_lists_what_it_defines_in_all():
    for path in sorted((ROOT / "sevis").rglob("*.py")):
        name = module_name(path)
        if unit(name) in SHIMS:
            continue
        tree = ast.parse(path.read_text())
        assert any(
            any(getattr(t, "id", None) == "__all__" for t in getattr(n, "targets", [getattr(n, "target", None)]))
            for n in tree.body
            if isinstance(n, ast.Assign | ast.AnnAssign)
        ), f"{name} has no __all__"


def test_each_subpackage_says_in_one_sentence_what_it_is():
    for init in sorted((ROOT / "sevis").glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and doc.count(". ") == 0 and doc.endswith("."), init.parent.name


def test_the_lazy_export_table_equals_the_type_checking_block_and_each_modules_all():
    tree = ast.parse((ROOT / "sevis" / "__init__.py").read_text())
    checked: dict[str, list[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom) and stmt.level == 1
                assert all(a.asname == a.name for a in stmt.names), "explicit re-exports (`X as X`)"
                checked[stmt.module or ""] = [a.name for a in stmt.names]
    from sevis import _EXPORTS

    assert {m: set(n) for m, n in checked.items()} == {m: set(n) for m, n in _EXPORTS.items()}
    for module, names in _EXPORTS.items():
        assert set(names) <= exported(f"sevis.{module}"), module
    assert sevis.__all__ == sorted({n for names in _EXPORTS.values() for n in names} | {"__version__"})


def test_the_public_api_is_the_snapshot():
    """A name added to or removed from `sevis.__all__` is a decision: update
    tests/public_api.txt with it."""
    assert sevis.__all__ == SNAPSHOT.read_text().split()


def test_no_first_party_import_inside_a_function_without_its_reason():
    found = {
        (i.importer, i.target)
        for i in ALL_IMPORTS
        if i.in_function and i.importer not in ("sevis.cli",) and not i.importer.endswith("__init__")
    }
    found = {(importer, target) for importer, target in found if importer.split(".")[-1] != "__init__"}
    assert found == set(FUNCTION_IMPORTS)


@pytest.mark.parametrize("old", sorted(SHIMS))
def test_the_old_module_paths_warn_and_give_the_same_objects(old):
    import sys

    sys.modules.pop(f"sevis.{old}", None)
    with pytest.warns(DeprecationWarning, match=f"sevis.{old} moved to"):
        shim = importlib.import_module(f"sevis.{old}")
    assert shim.__all__
    homes = [importlib.import_module(m) for m in SHIMS[old]]
    for name in shim.__all__:
        home = next(h for h in homes if name in getattr(h, "__all__", ()))
        assert getattr(shim, name) is getattr(home, name), name


def test_the_readme_and_the_docs_name_only_paths_that_exist():
    """Every `sevis.x.y` the README and the docs name is a module or an attribute that resolves."""
    import re

    text = "\n".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))])
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # the README names the new paths
        for dotted in sorted(set(re.findall(r"`(sevis(?:\.[A-Za-z_][A-Za-z0-9_]*)+)", text))):
            parts = dotted.split(".")
            for cut in range(len(parts), 0, -1):
                if is_module(".".join(parts[:cut])):
                    obj = importlib.import_module(".".join(parts[:cut]))
                    break
            for attr in parts[cut:]:
                assert hasattr(obj, attr), f"the docs name {dotted}, which does not resolve"
                obj = getattr(obj, attr)


SESSION_KEY = re.compile(r"""session_state(?:\[|\.get\(|\.setdefault\(|\.pop\()\s*(f?)["']([^"']*)["']""")


def test_each_session_key_of_the_dashboard_is_named_in_one_file():
    """What one page hands another goes through sevis/app/state.py's accessors: a session
    key written as a string in one file and read in another is a guess about another page."""
    where: dict[str, set[str]] = {}
    for path in sorted((ROOT / "sevis" / "app").rglob("*.py")):
        for is_f, key in SESSION_KEY.findall(path.read_text()):
            where.setdefault(f"f'{key.split('{')[0]}…'" if is_f else key, set()).add(path.name)
    assert where, "no session keys found: the pattern no longer matches the code"
    shared = {key: sorted(files) for key, files in where.items() if len(files) > 1}
    assert not shared, shared
