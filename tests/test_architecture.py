"""The import rule of docs/architecture.md, checked over the source with ``ast``.

Each module of ``ingest`` (and ``functions_app``) belongs to one tier; it may import only from
tiers to its left, plus its own package (``ingest.services.*`` among themselves, ``ingest.fetch.*``
...). The stage tiers import no ORM; interfaces do not reach past the services into the writers;
nothing imports a command or a Celery task.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.nodb

ROOT = Path(__file__).resolve().parent.parent

# Left to right, as drawn in docs/architecture.md. A name covers a module and, for a package, its
# submodules.
TIERS: list[set[str]] = [
    {"ingest.errors", "ingest.signals"},
    {"ingest.types"},
    {"ingest.links"},
    {"ingest.identity"},
    {"ingest.schedule"},
    {"ingest.decide", "ingest.health", "ingest.fetch", "ingest.parse", "ingest.opml", "ingest.parsepool"},
    {"ingest.models"},
    {"ingest.db"},
    {"ingest.retry", "ingest.counters"},
    {"ingest.upsert", "ingest.comments", "ingest.pingbacks"},
    {"ingest.selectors", "ingest.monitoring"},
    {"ingest.services"},
    {"ingest.cli"},
    {"ingest.management", "ingest.tasks", "ingest.views", "ingest.callbacks", "ingest.admin", "ingest.api"},
    {"functions_app"},
]
# The tiers that do no I/O on the database: no ORM, no models.
NO_ORM = {"ingest.errors", "ingest.signals", "ingest.types", "ingest.links", "ingest.identity", "ingest.schedule", "ingest.decide", "ingest.health",
          "ingest.fetch", "ingest.parse", "ingest.opml", "ingest.parsepool"}
# Interfaces call services and selectors; the writers and the stages are the services' business.
INTERFACES = {"ingest.management", "ingest.tasks", "ingest.views", "ingest.callbacks", "ingest.admin", "ingest.api",
              "functions_app"}
PAST_THE_SERVICES = {"ingest.db", "ingest.upsert", "ingest.comments", "ingest.pingbacks", "ingest.counters",
                     "ingest.fetch", "ingest.parse", "ingest.parsepool", "ingest.decide", "ingest.health",
                     "ingest.schedule"}
# Only the framework imports these (Django finds commands, Celery finds tasks).
ENTRY_POINTS = {"ingest.management.commands", "ingest.tasks"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, tuple[Path, str]]:
    files = [p for p in (ROOT / "ingest").rglob("*.py") if "migrations" not in p.parts]
    files += list((ROOT / "functions_app").rglob("*.py"))
    return {_module_name(p): (p, p.read_text()) for p in files}


def _imports(name: str, source: tuple[Path, str]) -> set[str]:
    path, text = source
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(text, str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from ingest import fetch`
    return found


def _owner(module: str, names: set[str]) -> str | None:
    for name in sorted(names, key=len, reverse=True):
        if module == name or module.startswith(name + "."):
            return name
    return None


def _tier(module: str) -> int | None:
    for index, tier in enumerate(TIERS):
        if _owner(module, tier):
            return index
    return None


def _known(imported: str, modules: dict[str, Path]) -> bool:
    return imported in modules or any(m.startswith(imported + ".") for m in modules)


def test_every_module_has_a_tier():
    assert [name for name in _sources() if name not in ("ingest", "ingest.apps") and _tier(name) is None] == []


def test_imports_point_one_way():
    assert _against_the_direction(_sources()) == [], "imports against the direction of docs/architecture.md"


def _against_the_direction(modules: dict[str, tuple[Path, str]]) -> list[str]:
    wrong = []
    for name, source in modules.items():
        mine = _tier(name)
        if mine is None:
            continue
        own_package = _owner(name, TIERS[mine])
        for imported in _imports(name, source):
            if not _known(imported, modules) or imported in ("ingest", "functions_app"):
                continue
            theirs = _tier(imported)
            if theirs is None or theirs < mine:
                continue
            if theirs == mine and _owner(imported, TIERS[mine]) == own_package:
                continue  # inside its own package
            wrong.append(f"{name} imports {imported}")
    return sorted(wrong)


def test_the_stages_do_not_touch_the_orm():
    wrong = []
    for name, source in _sources().items():
        if _owner(name, NO_ORM):
            wrong += [f"{name} imports {i}" for i in _imports(name, source)
                      if i.startswith(("django.db", "django.contrib", "ingest.models"))]
    assert wrong == []


def test_interfaces_go_through_the_services():
    wrong = []
    for name, source in _sources().items():
        if _owner(name, INTERFACES):
            wrong += [f"{name} imports {i}" for i in _imports(name, source) if _owner(i, PAST_THE_SERVICES)]
    assert wrong == []


def test_nothing_imports_a_command_or_a_task():
    wrong = []
    for name, source in _sources().items():
        wrong += [f"{name} imports {i}" for i in _imports(name, source)
                  if _owner(i, ENTRY_POINTS) and not _owner(name, ENTRY_POINTS)]
    assert wrong == []


def test_the_rule_catches_an_import_against_the_direction():
    """The checker itself: a stage that imports a service or a model is reported; an import to the left is not."""
    modules = _sources()
    before = set(_against_the_direction(modules))
    path, text = modules["ingest.decide"]
    modules["ingest.decide"] = (path, text + "\nfrom ingest.services.runs import run_start\n")
    path, text = modules["ingest.types"]
    modules["ingest.types"] = (path, text + "\nfrom ingest import models\n")
    path, text = modules["ingest.upsert"]
    modules["ingest.upsert"] = (path, text + "\nfrom ingest.retry import run_atomic\n")  # leftwards: fine
    assert set(_against_the_direction(modules)) - before == {"ingest.types imports ingest.models",
                                                             "ingest.decide imports ingest.services.runs"}
