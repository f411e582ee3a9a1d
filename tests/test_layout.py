"""The package layout: no import cycle among relook's modules, and the flat modules that became packages
are gone (``relook/cli_*.py`` -> ``relook/cli/``, ``relook/models/rrt_*.py`` -> ``relook/models/rrt/``).

The import graph is read from the source with ``ast``, without importing anything. Edges: every import of
a relook module anywhere in a module, at module level and inside functions and classes alike (a lazy
import inside a function still ties the two modules together: the cli <-> demo circle was one), and the
``__import__`` / ``importlib.import_module`` calls with a literal name. Left out: imports under
``if TYPE_CHECKING:`` (never run).

Resolution: relative imports against the importing module's package; ``from relook.a import x`` is an
edge to ``relook.a.x`` when that is a module, else to ``relook.a`` (its ``__init__``); ``import relook.a.b``
is an edge to ``relook.a.b`` only. So a package whose ``__init__`` imports its own submodules is no cycle
with them, unless a submodule imports the package itself (``from relook.a import name_defined_there``).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def module_files(src: Path, package: str = "relook") -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under ``src/<package>`` (a package's name -> its __init__)."""
    out = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _nodes(tree: ast.AST):
    """Every node of ``tree`` except the bodies of ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def imported_names(name: str, path: Path) -> list[tuple[str, int]]:
    """(absolute dotted name, line) of everything module ``name`` (file ``path``) imports, relative imports
    resolved; ``from a import x`` gives ``a.x`` (a module or a name: ``resolve`` decides)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in _nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found += [(f"{mod}.{a.name}" if a.name != "*" else mod, node.lineno) for a in node.names]
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            f = node.func
            called = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            if called in ("__import__", "import_module"):
                found.append((node.args[0].value, node.lineno))
    return found


def resolve(target: str, modules: dict[str, Path]) -> str | None:
    """The module an imported dotted name lands in: itself if a module, else the longest module prefix
    (``relook.a.some_function`` -> ``relook.a``); None outside the modules."""
    parts = target.split(".")
    while parts:
        if ".".join(parts) in modules:
            return ".".join(parts)
        parts.pop()
    return None


def import_graph(src: Path, package: str = "relook") -> dict[str, dict[str, int]]:
    """module -> {imported module: line of its first import there} over the package's modules."""
    modules = module_files(src, package)
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        edges = graph.setdefault(name, {})
        for target, line in imported_names(name, path):
            dst = resolve(target, modules)
            if dst is not None and dst != name:
                edges[dst] = min(line, edges.get(dst, line))
    return graph


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    comps: list[list[str]] = []

    def strongconnect(v: str) -> None:  # recursion depth is bounded by the module count (~150)
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(comp)

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return [_cycle_in(sorted(comp), graph) for comp in comps]


def _cycle_in(comp: list[str], graph: dict[str, dict[str, int]]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first inside the component)."""
    start, members = comp[0], set(comp)
    prev: dict[str, str | None] = {start: None}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v]):
                if w == start:
                    path = [v]
                    while prev[path[-1]] is not None:
                        path.append(prev[path[-1]])
                    return [*reversed(path), start]
                if w in members and w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"{comp} is not strongly connected")


def describe(cycle: list[str], graph: dict[str, dict[str, int]]) -> str:
    return " -> ".join(f"{a} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:])) + f" -> {cycle[-1]}"


def test_no_import_cycle():
    graph = import_graph(SRC)
    assert len(graph) > 50 and "relook.cli" in graph["relook.cli.__main__"]  # the scan sees the package
    cycles = find_cycles(graph)
    assert not cycles, "import cycles among relook's modules:\n" + "\n".join(describe(c, graph) for c in cycles)


def test_cycle_detector_sees_function_level_and_package_cycles(tmp_path):
    """The check is not a formality: a lazy import inside a function, a relative import and a package whose
    submodule imports the package's __init__ are all found; a package importing its children is not."""

    def write(rel: str, text: str) -> None:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)

    write("relook/__init__.py", "")
    write("relook/demo.py", "def run():\n    from relook.cli import main\n    return main\n")
    write("relook/cli/__init__.py", "from relook.cli import stages\nfrom .common import helper\n")
    write("relook/cli/common.py", "def helper():\n    pass\n")
    write("relook/cli/stages.py", "from relook.cli.common import helper\n\n\ndef demo():\n    from .. import demo\n")
    write("relook/pkg/__init__.py", "from relook.pkg import child\nVALUE = 1\n")
    write("relook/pkg/child.py", "def f():\n    from relook.pkg import VALUE\n    return VALUE\n")
    write("relook/fine/__init__.py", "from relook.fine import a, b\n")
    write("relook/fine/a.py", "from relook.fine import b\n")
    write("relook/fine/b.py", "x = 1\n")
    graph = import_graph(tmp_path)
    cycles = sorted(find_cycles(graph))
    assert cycles == [
        ["relook.cli", "relook.cli.stages", "relook.demo", "relook.cli"],
        ["relook.pkg", "relook.pkg.child", "relook.pkg"],
    ], cycles
    assert "line 5" in describe(cycles[0], graph)  # names where the lazy import is


def test_flat_modules_became_packages():
    relook = SRC / "relook"
    assert sorted(p.name for p in relook.glob("cli_*.py")) == []
    assert sorted(p.name for p in (relook / "models").glob("rrt_*.py")) == []
    assert (relook / "cli" / "__init__.py").exists() and (relook / "models" / "rrt" / "__init__.py").exists()
