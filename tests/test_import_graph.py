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
    bad = [m for _, m in imported_modules(REPO / "api" / "client.py") if m.split(".")[0] not in allowed]
    assert bad == []
    code = ("import sys, api.client; print(sorted({m.split('.')[0] for m in sys.modules} "
            "& {'zmq', 'multiprocess', 'falcon', 'psutil', 'supervisor', 'model_procs', 'torch'}))")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"


def test_the_checker_sees_an_import_against_the_graph(tmp_path):
    upward = tmp_path / "upward.py"
    upward.write_text("def later():\n    from api.app import create_app\n")
    assert imported_modules(upward) == [(2, "api.app")]
