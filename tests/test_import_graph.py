"""The packages import one way: wire <- model_procs <- supervisor <- flows <- api <- cli.

Read from the source with `ast`, function-level imports included, so a lazy import against the graph fails too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ORDER = ["wire", "model_procs", "supervisor", "flows", "api", "cli"]   # each may import those before it, never after
OURS = set(ORDER) | {"scripts", "tests"}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def violations(package: str, allowed) -> list[str]:
    return [f"{path.relative_to(REPO)}:{line} imports {module}"
            for path in sorted((REPO / package).rglob("*.py"))
            for line, module in imported_modules(path) if not allowed(module.split(".")[0])]


@pytest.mark.parametrize("package", ORDER)
def test_a_package_imports_only_those_below_it(package):
    below = set(ORDER[:ORDER.index(package) + 1])
    assert violations(package, lambda top: top in below or top not in OURS) == []


def test_wire_is_a_leaf_of_msgspec_and_the_standard_library():
    assert violations("wire", lambda top: top in {"wire", "msgspec"} or top in sys.stdlib_module_names) == []


def test_the_http_client_needs_only_the_standard_library_msgspec_and_the_contract():
    allowed = {"api", "wire", "msgspec"} | set(sys.stdlib_module_names)
    bad = [m for _, m in imported_modules(REPO / "api" / "seed" / "client.py") if m.split(".")[0] not in allowed]
    assert bad == []
    code = ("import sys, api.seed.client; print(sorted({m.split('.')[0] for m in sys.modules} "
            "& {'zmq', 'multiprocess', 'falcon', 'psutil', 'supervisor', 'model_procs', 'torch'}))")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"


def test_the_checker_sees_an_import_against_the_graph(tmp_path):
    upward = tmp_path / "upward.py"
    upward.write_text("def later():\n    from api.app import create_app\n")
    assert imported_modules(upward) == [(2, "api.app")]


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_graph() -> dict[str, set[str]]:
    """Our modules and the modules of ours each imports (`from package import module` counts as the module)."""
    paths = [p for package in ORDER for p in (REPO / package).rglob("*.py")]
    known = {module_name(p) for p in paths}
    graph: dict[str, set[str]] = {}
    for path in paths:
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                edges |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                edges |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known else node.module
                          for alias in node.names}
        graph[module_name(path)] = {e for e in edges if e in known and e != module_name(path)}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each import cycle once, as the path that closes it (depth-first, three colours)."""
    found, state, stack = [], dict.fromkeys(graph, 0), []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for imported in sorted(graph[module]):
            if state.get(imported) == 1:
                found.append(stack[stack.index(imported):] + [imported])
            elif state.get(imported) == 0:
                visit(imported)
        stack.pop()
        state[module] = 2
    for module in sorted(graph):
        if state[module] == 0:
            visit(module)
    return found


def test_no_module_imports_itself_back_through_others():
    assert cycles(module_graph()) == []


def test_the_cycle_finder_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_only_the_facade_reaches_into_the_arbiter():
    """The arbiter's parts use the modules beside it in supervisor/; none of those may import the arbiter back."""
    graph = module_graph()
    reaching = {m for m, imported in graph.items() if m.startswith("supervisor.") and not
                m.startswith("supervisor.arbiter") and any(i.startswith("supervisor.arbiter") for i in imported)}
    assert reaching == {"supervisor.core"}


ADAPTERS = ("seed", "oip", "openai", "funasr")   # one protocol each
TRANSPORTS = {"ws": {"funasr", "openai"}}        # the WebSocket server hands a connection to its protocol


def test_protocol_adapters_never_import_each_other():
    """An adapter (and api/common) imports api/common and itself only; only the app, the route table and the
    WebSocket transport put adapters together."""
    bad = []
    for module, imported in module_graph().items():
        parts = module.split(".")
        if parts[0] != "api" or len(parts) < 3:
            continue
        allowed = {"common", parts[1]} | TRANSPORTS.get(parts[1], set())
        bad += [f"{module} imports {i}" for i in imported if i.startswith("api.") and i.split(".")[1] not in allowed]
    assert bad == []
    assert {p.name for p in (REPO / "api").iterdir() if p.is_dir() and p.name != "__pycache__"} == \
        {"common", "ws", *ADAPTERS}
