"""The shape of the test tree: no test module imports another, and the demo imports no test code.

What two test modules share lives in tests/helpers.py (or an infrastructure module such as the
Celery harness); a test module imported by another would run its tests twice and hide where a
helper lives. ``samples/`` ships with the demo (``python -m samples.serve``), so it must not import
from tests/ or bench/, which the tests and benchmarks import from it instead.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import ROOT


def _imported_modules(path: Path, source: str | None = None) -> set[str]:
    """Every module a file (or ``source`` as if it were that file) imports, as absolute names:
    relative imports resolved against its package."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(source if source is not None else path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parent, *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # ``from tests import test_x``
    return found


def _is_test_module(name: str) -> bool:
    return name.startswith("tests.") and name.rsplit(".", 1)[-1].startswith("test_")


def test_no_module_imports_a_test_module():
    offenders = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / "tests").rglob("*.py"))
        for name in _imported_modules(path)
        if _is_test_module(name)
    }
    assert sorted(offenders) == []


def test_the_demo_imports_no_test_or_benchmark_code():
    offenders = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / "samples").rglob("*.py"))
        for name in _imported_modules(path)
        if name.split(".")[0] in ("tests", "bench")
    }
    assert sorted(offenders) == []


def test_the_check_sees_the_imports_it_forbids():
    module = ROOT / "tests" / "reliability" / "__init__.py"
    source = "from tests.test_parse import x\nfrom . import test_load\nimport tests.reliability.test_db_faults\nfrom .runner import y\n"
    assert {name for name in _imported_modules(module, source) if _is_test_module(name)} == {
        "tests.test_parse", "tests.reliability.test_load", "tests.reliability.test_db_faults"}
