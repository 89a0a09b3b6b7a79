"""The code's shape, as docs/explanation/architecture.md states it: no module over 500 lines, no
import cycle among the modules (imports made when a module loads; those under
``TYPE_CHECKING`` or inside functions run later), and no module outside ``brokers/`` asking which
broker it has."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "tandem"
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _load_time_imports(name: str, path: Path) -> set[str]:
    """The tandem modules ``name`` imports while it loads."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package
                    for _ in range(child.level - 1):
                        base = base.rpartition(".")[0]
                    target = f"{base}.{child.module}" if child.module else base
                else:
                    target = child.module or ""
                found.add(target)
                found.update(f"{target}.{a.name}" for a in child.names)
            visit(child)

    visit(ast.parse(path.read_text()))
    return {m for m in found if m in MODULES and m != name}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_no_module_is_over_500_lines() -> None:
    long = {
        name: n
        for name, path in MODULES.items()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_no_import_cycle() -> None:
    graph = {name: _load_time_imports(name, path) for name, path in MODULES.items()}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


#: Asking which broker (or which SQL database behind it) one has.
SNIFFING = re.compile(
    r"isinstance\([^)]*(Broker|DatabaseBroker|RedisBroker|MemoryBroker)\b"
    r"|getattr\([^)]*['\"]database['\"]"
    r"|\.vendor\s*(==|!=|in\b|not in\b)"
)
#: The one exception: a system check on Django's own DATABASES (the SQLite library's version),
#: which holds whichever broker runs.
ALLOWED = {"tandem.checks": 'connections[alias].vendor == "sqlite"'}


@pytest.mark.parametrize(
    "name", [n for n in MODULES if not n.startswith("tandem.brokers")], ids=str
)
def test_no_module_outside_brokers_asks_which_broker_it_has(name: str) -> None:
    text = MODULES[name].read_text()
    if name in ALLOWED:
        text = text.replace(ALLOWED[name], "")
    assert not SNIFFING.findall(text), [m.group(0) for m in SNIFFING.finditer(text)]
