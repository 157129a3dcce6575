"""The layout's measures (issue 26): folders in floors that import only downwards, the
kernels standing alone, no module over 400 lines, no function over 6 positional
parameters, and a docstring in every folder's __init__ saying what it holds."""

import ast
from pathlib import Path
from typing import get_args

import pytest
import rfengine.kernels
from test_imports import KERNELS, ROOT, _graph

import rfengine
import rfengine.options
import rfengine.schema

#: each top-level place of the package and its floor: an import may go to a lower floor
#: (or stay in its own place), never up or sideways
FLOORS = {
    "cli": 9,
    "sim": 8,
    "frontends": 7,
    "publish": 7,
    "render": 6,
    "run": 5,
    "adaptive": 5,
    "train": 5,
    "store": 4,
    "aggregation": 3,
    "ingest": 2,
    "kernels": 1,
    "options": 0,
    "schema": 0,
    "errors": 0,
}
MAX_LINES = 400
MAX_POSITIONAL = 6


def _place(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "rfengine"


def _files() -> list[Path]:
    return sorted(ROOT.rglob("*.py")) + sorted(KERNELS.rglob("*.py"))


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import from a place to one on its own floor or above (other than itself)."""
    bad = []
    for name, deps in graph.items():
        here = _place(name)
        if here == "rfengine":  # the package's own __init__ re-exports the public API
            continue
        for dep in deps:
            there = _place(dep)
            if there != here and FLOORS[there] >= FLOORS[here]:
                bad.append(f"{name} -> {dep}")
    return sorted(bad)


def test_every_place_has_a_floor():
    assert {_place(m) for m in _graph()} - {"rfengine"} == set(FLOORS)


def test_imports_only_go_down():
    assert upward_imports(_graph()) == []


def test_an_upward_import_is_found():
    graph = {"rfengine.store.load": {"rfengine.run.pipeline"}, "rfengine.run.pipeline": set()}
    assert upward_imports(graph) == ["rfengine.store.load -> rfengine.run.pipeline"]
    sideways = {"rfengine.train.metrics": {"rfengine.run.plan"}}
    assert upward_imports(sideways) == ["rfengine.train.metrics -> rfengine.run.plan"]


def test_the_kernels_import_nothing_of_rfengine():
    for path in sorted(KERNELS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            assert not [n for n in names if n.split(".")[0] == "rfengine"], path.name


def test_the_kernels_and_the_format_agree_on_their_shared_names():
    assert rfengine.kernels.MAX_POINTS == rfengine.schema.MAX_POINTS
    assert get_args(rfengine.kernels.Preset) == get_args(rfengine.options.Preset)


def long_modules() -> list[str]:
    return [
        f"{p.name}: {n}" for p in _files() if (n := len(p.read_text().splitlines())) > MAX_LINES
    ]


def many_positional(source: str) -> list[str]:
    """Functions of ``source`` with more than MAX_POSITIONAL positional parameters (a
    method's ``self`` or ``cls`` not counted)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = [*node.args.posonlyargs, *node.args.args]
            if args and args[0].arg in ("self", "cls"):
                args = args[1:]
            if len(args) > MAX_POSITIONAL:
                found.append(f"{node.name}: {len(args)}")
    return found


def test_no_module_is_over_400_lines():
    assert long_modules() == []


def test_no_function_takes_more_than_6_positional_parameters():
    assert [f for p in _files() for f in many_positional(p.read_text())] == []


def test_many_positional_counts_what_it_should():
    src = "def f(a, b, c, d, e, f, g): ...\nclass C:\n    def m(self, a, b, c, d, e, f): ...\n"
    src += "def k(a, b, c, d, e, f, *, g, h): ...\n"
    assert many_positional(src) == ["f: 7"]


@pytest.mark.parametrize(
    "folder", sorted(p.parent.name for p in ROOT.glob("*/__init__.py")) + ["kernels"]
)
def test_every_folder_says_what_it_holds(folder):
    init = (KERNELS if folder == "kernels" else ROOT / folder) / "__init__.py"
    doc = ast.get_docstring(ast.parse(init.read_text()))
    assert doc and len(doc.split()) >= 15, f"{folder}/__init__.py needs a docstring"


@pytest.mark.parametrize("old", sorted(rfengine.MOVED))
def test_a_moved_module_still_imports_under_its_old_name(old):
    import importlib
    import sys

    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {rfengine.MOVED[old]}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(rfengine.MOVED[old])
