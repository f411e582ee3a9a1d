"""The package layout: packages import in data-flow order (``LAYERS``, from the layout of
``DESIGN.md``), no import cycle among relook's modules or its packages, and the flat modules that became
packages are gone (``relook/cli_*.py`` -> ``relook/cli/``, ``relook/models/rrt_*.py`` -> ``relook/models/rrt/``).

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

#: relook's packages and top-level modules in data-flow order (DESIGN.md, "Layout"): a module may import
#: from its own row and the rows above it, never from a row below. ``relook`` is the package's own
#: ``__init__`` (the public API: ``relook.query``, the record types, the errors). A new top-level module or
#: package gets a row here (the test says which is missing).
LAYERS: list[set[str]] = [
    {"errors"},  # typed errors: imports nothing of relook
    {"checks", "config", "registry", "io", "images", "checkpoints", "environment", "sharding", "ondisk", "runlock"},
    {"runpaths"},  # the stored form of a run's paths (reads config)
    {"types", "geometry"},  # records; pure epipolar / robust geometry and pixel maps
    {"models", "store", "eval", "search", "asmk", "losses", "weights", "confidence", "merge"},  # nets, store, metrics
    {"datasets", "benchmark_sets"},  # readers for official layouts, builders (benchmark_sets: its real sets)
    {"features"},  # extractors that fill the store (rollout too)
    {"rerank"},  # rerankers read stores (a reranker never imports a training module)
    {"train"},  # training loops
    {
        "pipeline",
        "experiment",
        "distributed",
        "methods",
        "shards",
        "local_defaults",
    },  # stages: extract, index, search, rerank, ...
    {"query", "viz", "pairwise", "external"},  # what users look at
    {"report", "benchmark", "benchmark_report", "benchmark_costs"},
    {"demo"},
    {"relook"},  # the package's __init__: the public API
    {"cli"},  # thin: parse, call the library, print
]


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


def package_of(module: str) -> str:
    """``relook.rerank.gv`` -> ``rerank``; ``relook.store`` -> ``store``; ``relook`` (its __init__) -> ``relook``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def package_graph(graph: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """The module graph collapsed to packages (``package_of``): package -> {imported package: a line}."""
    out: dict[str, dict[str, int]] = {}
    for a, edges in graph.items():
        pa = out.setdefault(package_of(a), {})
        for b, line in edges.items():
            if package_of(b) != package_of(a):
                pa.setdefault(package_of(b), line)
    return out


def layer_violations(graph: dict[str, dict[str, int]], layers: list[set[str]]) -> tuple[list[str], list[str]]:
    """(packages in no layer, upward imports as ``"a (line n) -> b: row i imports row j"``)."""
    row = {p: i for i, names in enumerate(layers) for p in names}
    unplaced = sorted({package_of(m) for m in graph} - set(row))
    upward = [
        f"{a} (line {line}) -> {b}: {package_of(a)} (row {row[package_of(a)]}) imports "
        f"{package_of(b)} (row {row[package_of(b)]}), a later row"
        for a, edges in sorted(graph.items())
        for b, line in sorted(edges.items())
        if package_of(a) in row and package_of(b) in row and row[package_of(b)] > row[package_of(a)]
    ]
    return unplaced, upward


def test_packages_import_in_data_flow_order():
    """No module imports from a package of a later row of ``LAYERS`` (lazy imports inside functions count)."""
    graph = import_graph(SRC)
    unplaced, upward = layer_violations(graph, LAYERS)
    assert not unplaced, f"packages in no row of LAYERS (add them in data-flow order): {unplaced}"
    assert not upward, "imports up the layer order (DESIGN.md, Layout):\n" + "\n".join(upward)
    assert sum(len(r) for r in LAYERS) == len({p for r in LAYERS for p in r})  # each package in one row


def test_no_package_cycle():
    """Packages of one row may import each other, but never in a circle (``models`` <-> ``store``)."""
    pg = package_graph(import_graph(SRC))
    cycles = find_cycles(pg)
    assert not cycles, "package cycles:\n" + "\n".join(describe(c, pg) for c in cycles)


def test_layer_check_sees_upward_imports_and_package_cycles(tmp_path):
    """The order is not a formality: a lazy upward import inside a function, a relative one, and a circle
    between two packages of one row (with no module-level cycle) are all found; a package left out of the
    rows is named; downward imports pass."""

    def write(rel: str, text: str) -> None:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)

    write("relook/__init__.py", "from relook.rerank import gv\n")
    write("relook/errors.py", "")
    write("relook/features/__init__.py", "")
    write("relook/features/ext.py", "from relook.errors import x\n\n\ndef f():\n    from relook.rerank.gv import g\n")
    write("relook/features/rel.py", "from ..rerank import gv\n")
    write("relook/rerank/__init__.py", "")
    write("relook/rerank/gv.py", "from relook.errors import x\nfrom relook.models.net import y\n")  # downward: fine
    write("relook/models/__init__.py", "NET = 1\n")
    write("relook/models/net.py", "from relook.store import Store\n")
    write("relook/store.py", "def read():\n    from relook.models import NET\n")
    write("relook/extra.py", "")
    layers = [{"errors"}, {"models", "store"}, {"features"}, {"rerank"}, {"relook"}]
    graph = import_graph(tmp_path)
    unplaced, upward = layer_violations(graph, layers)
    assert unplaced == ["extra"]
    assert [u.split(":")[0] for u in upward] == [
        "relook.features.ext (line 5) -> relook.rerank.gv",
        "relook.features.rel (line 1) -> relook.rerank.gv",
    ], upward
    assert find_cycles(package_graph(graph)) == [["models", "store", "models"]]
    assert not find_cycles(graph)  # no module circle: models.net -> store -> models (__init__)


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
