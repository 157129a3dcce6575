"""The package's module graph: no import cycle anywhere (type-only and deferred imports
count too, since each one is a dependency a reader has to follow)."""

import ast
from pathlib import Path

import rfengine

ROOT = Path(rfengine.__file__).parent
KERNELS = Path(rfengine.kernels.__file__).parent


def _modules() -> dict[str, Path]:
    mods = {}
    for base, prefix in ((ROOT, "rfengine"), (KERNELS, "rfengine.kernels")):
        for f in base.rglob("*.py"):
            parts = list(f.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join([prefix, *parts])] = f
    return mods


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the module's package, up level - 1 floors
                    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        package = package.rpartition(".")[0]
                    base = ".".join(p for p in (package, node.module) if p)
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            for t in targets:
                # the deepest module the import names (``from pkg import mod`` names mod)
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                # a package's __init__ re-exporting its own submodules is not a dependency
                # of those submodules on the package
                if t and t != name and not t.startswith(name + "."):
                    graph[name].add(t)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    colour: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        colour[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if colour.get(d) == 1:
                return stack[stack.index(d) :] + [d]
            if d not in colour and (found := visit(d)):
                return found
        colour[m] = 2
        stack.pop()
        return None

    for m in sorted(graph):
        if m not in colour and (found := visit(m)):
            return found
    return None


def test_graph_sees_the_package():
    graph = _graph()
    assert "rfengine.store.targets" in graph["rfengine.store.load"]
    assert "rfengine.kernels.peaks" in graph["rfengine.kernels.splat"]  # a relative import


def test_no_import_cycle():
    assert _cycle(_graph()) is None


def test_a_planted_cycle_is_found():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
