"""The import rules of the house, read from the source with `ast` (imports at
module level and inside functions alike):

- no import cycle among the modules of executions/, nor among its packages
  (sync/, history/, actions/, ... and each top-level module counts as one);
- domain code never imports a view: only executions/views/, executions/urls.py
  and sfnui/urls.py import executions.views;
- no view module imports another view module;
- executions/aws.py is the only module of executions/ and sfnui/ that imports
  boto3 or botocore;
- each package or top-level module imports only those of lower layers
  (LAYERS, below);
- template tags neither import executions.models nor run queries (no
  `.objects`): a tag renders what the view put in its context.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIP = {"migrations"}


def _modules(*packages: str) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            if SKIP & set(rel.parts):
                continue
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            found[".".join(parts)] = path
    return found


MODULES = _modules("executions", "sfnui")


def _imported(name: str, path: Path) -> Iterator[tuple[str, int]]:
    """Every dotted name `name` imports (a module, or a module's attribute),
    with its line; relative imports resolved."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name if is_package else name.rpartition(".")[0]
                parts = base.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            yield target, node.lineno
            for alias in node.names:
                yield f"{target}.{alias.name}", node.lineno


def _graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules of `modules` it imports. A package's __init__
    importing its own modules (its face), and a module importing its own
    package, are not edges."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = {t for t, _ in _imported(name, path) if t in modules and t != name}
        if path.name == "__init__.py":
            targets = {t for t in targets if not t.startswith(name + ".")}
        graph[name] = {
            t
            for t in targets
            if not (name.startswith(t + ".") and modules[t].name == "__init__.py")
        }
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
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
            visit(v)
    return found


def _unit(module: str) -> str:
    """The package a module belongs to (executions.sync.flows ->
    executions.sync); a top-level module is its own unit."""
    parts = module.split(".")
    return ".".join(parts[:2])


def executions_graph() -> dict[str, set[str]]:
    return _graph({n: p for n, p in MODULES.items() if n.split(".")[0] == "executions"})


def test_no_import_cycle_among_modules() -> None:
    assert _cycles(executions_graph()) == []


def test_no_import_cycle_among_packages() -> None:
    units: dict[str, set[str]] = {}
    for module, targets in executions_graph().items():
        # The app's own __init__ is no unit of its own.
        if module == "executions":
            continue
        edges = units.setdefault(_unit(module), set())
        edges.update(_unit(t) for t in targets if t != "executions" and _unit(t) != _unit(module))
    assert _cycles(units) == []


def _is_view(module: str) -> bool:
    return module == "executions.views" or module.startswith("executions.views.")


def test_domain_code_never_imports_a_view() -> None:
    allowed = {"executions.urls", "sfnui.urls"}
    offenders = [
        f"{module}:{line} imports {target}"
        for module, path in MODULES.items()
        if not _is_view(module) and module not in allowed
        for target, line in _imported(module, path)
        if _is_view(target)
    ]
    assert offenders == []


def test_no_view_imports_another_view() -> None:
    offenders = []
    for module, path in MODULES.items():
        if not _is_view(module) or module == "executions.views":
            continue
        for target, line in _imported(module, path):
            # `from executions.views import x` names the module x: that is x.
            if _is_view(target) and target not in {module, "executions.views"}:
                offenders.append(f"{module}:{line} imports {target}")
    assert offenders == []


def test_aws_py_is_the_only_boto3_importer() -> None:
    offenders = [
        f"{module}:{line} imports {target}"
        for module, path in MODULES.items()
        if module != "executions.aws"
        for target, line in _imported(module, path)
        if target.split(".")[0] in {"boto3", "botocore"}
    ]
    assert offenders == []


def test_template_tags_run_no_queries() -> None:
    offenders = []
    for module, path in MODULES.items():
        if not module.startswith("executions.templatetags."):
            continue
        for target, line in _imported(module, path):
            if target == "executions.models" or target.startswith("executions.models."):
                offenders.append(f"{module}:{line} imports {target}")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "objects":
                offenders.append(f"{module}:{node.lineno} uses .objects")
    assert offenders == []


# The layers of executions/, lowest first (docs/architecture.md draws them).
# A unit (a package, or a top-level module) imports only units of lower
# layers: never one of its own layer, never one above. A new module must be
# placed here, in the layer its imports put it.
LAYERS: list[set[str]] = [
    # Foundations: import nothing of executions.
    {
        "models",
        "arns",
        "asl",
        "event_types",
        "signals",
        "links",
        "times",
        "redaction",
        "database",
    },
    # Read the cache's rows, or the API budget kept in it.
    {"budget", "history", "seed", "graph"},
    # The edges to AWS and to the services.
    {"aws", "probes"},
    # What the pages read, the sync, and executions in words.
    {"reads", "sync", "text"},
    # What people do to executions.
    {"actions"},
    # The ways in: tasks (the only enqueuer), the HTTP edge, the admin,
    # manage.py's commands, template tags.
    {"tasks", "web", "admin", "management", "templatetags"},
    # Pages, and the app's start (it connects tasks' receivers).
    {"views", "apps"},
    {"urls"},
]


def test_every_unit_has_a_layer() -> None:
    placed = set().union(*LAYERS)
    units = {_unit(m).removeprefix("executions.") for m in executions_graph()}
    assert units - {"executions"} - placed == set()
    assert placed - units == set()


def test_each_unit_imports_only_lower_layers() -> None:
    layer = {unit: i for i, units in enumerate(LAYERS) for unit in units}
    offenders = []
    for module, path in MODULES.items():
        if module.split(".")[0] != "executions" or module == "executions":
            continue
        mine = _unit(module).removeprefix("executions.")
        for target, line in _imported(module, path):
            if target not in MODULES or target == "executions":
                continue
            theirs = _unit(target).removeprefix("executions.")
            if theirs != mine and layer.get(theirs, -1) >= layer.get(mine, -1):
                offenders.append(f"{module}:{line} imports {target} ({mine} -> {theirs})")
    assert offenders == []
