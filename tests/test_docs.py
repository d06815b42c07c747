"""The docs stay walkable: every page the code or the docs name exists, and so does every source
file the docs name; links between pages resolve; every environment variable the code reads is in
docs/configuration.md; README.md stays a first read.

Reads files, and asks git which files are tracked or ignored: no database, no network.
"""

from __future__ import annotations

import ast
import re
import subprocess
import unicodedata
from pathlib import Path

import pytest

pytestmark = pytest.mark.nodb

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
CONFIGURATION = DOCS / "configuration.md"
README_MAX_LINES = 260

# Where a docs/ path may be named: code, scripts, CI and the files that configure them.
CODE_SUFFIXES = {".py", ".sh", ".json", ".toml", ".ini", ".yml", ".yaml", ".cfg"}
CODE_NAMES = {"Dockerfile", "docker-compose.yml", "Makefile", "manage.py", "pytest.ini"}
CODE_DIRS = ("scripts", ".ci")
# A docs/ path, not the tail of a URL or of another path (`https://x.example/docs/relative`).
DOCS_PATH = re.compile(r"(?<![\w./-])docs/[\w./-]*")
# Modules besides the settings that may read the environment.
ENV_MODULE_DIRS = ("pipeline", "ingest", "functions_app")


def _tracked_files() -> list[Path]:
    """The files git would commit (so var/, .venv and caches are never read); every file of the
    tree when git is not there (an exported copy)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             check=True, capture_output=True).stdout
        return [ROOT / name for name in out.decode().split("\0") if name and (ROOT / name).is_file()]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "var", "__pycache__", ".pytest_cache", ".hypothesis", "node_modules"}
        return [p for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.relative_to(ROOT).parts)]


def _code_files() -> list[Path]:
    files = []
    for path in _tracked_files():
        rel = path.relative_to(ROOT)
        if rel.parts[0] in ("docs",) or rel.parts[:2] == ("tests", "data"):
            continue
        if path.suffix in CODE_SUFFIXES or path.name in CODE_NAMES or rel.parts[0] in CODE_DIRS:
            files.append(path)
    return files


def _markdown_pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def _docs_paths(text: str) -> set[str]:
    return {match.rstrip(".") for match in DOCS_PATH.findall(text)}


def test_every_docs_path_named_in_code_exists():
    missing = []
    for path in _code_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for named in sorted(_docs_paths(text)):
            if not (ROOT / named).exists():
                missing.append(f"{path.relative_to(ROOT)} names {named}")
    assert not missing, "docs paths named in code that do not exist:\n" + "\n".join(missing)


def test_every_docs_path_named_in_the_docs_exists():
    missing = []
    for page in _markdown_pages():
        for named in sorted(_docs_paths(page.read_text(encoding="utf-8"))):
            if not (ROOT / named).exists():
                missing.append(f"{page.relative_to(ROOT)} names {named}")
    assert not missing, "docs paths named in the docs that do not exist:\n" + "\n".join(missing)


# Source folders whose files the docs name in backticks (`ingest/parse.py`); a rename must update the docs.
SOURCE_PATH = re.compile(r"`((?:ingest|pipeline|functions_app|tests|bench|samples|scripts)/[\w./-]*)`")


def _ignored_by_git(name: str) -> bool:
    """Generated output (``bench/results/latest.json``) is named but never committed."""
    try:
        return subprocess.run(["git", "check-ignore", "-q", name], cwd=ROOT).returncode == 0
    except OSError:
        return False


def test_every_source_path_named_in_the_docs_exists():
    missing = []
    for page in _markdown_pages():
        for named in sorted(set(SOURCE_PATH.findall(page.read_text(encoding="utf-8")))):
            if not (ROOT / named).exists() and not _ignored_by_git(named):
                missing.append(f"{page.relative_to(ROOT)} names {named}")
    assert not missing, "files named in the docs that do not exist (renamed or moved?):\n" + "\n".join(missing)


# --- links between pages --------------------------------------------------------------------------

LINK = re.compile(r"(?<!!)\[(?:[^\]\\]|\\.)*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)
HTML_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.replace("`", "").lower()
    kept = "".join(ch for ch in text if ch in " -_" or unicodedata.category(ch)[0] in "LNM")
    return kept.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    anchors, seen = set(HTML_ANCHOR.findall(text)), {}
    for heading in HEADING.findall(text):
        slug = _slug(heading)
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def test_slug_is_githubs():
    assert _slug("`ingest_feeds`") == "ingest_feeds"
    assert _slug("Containment: one feed fails alone") == "containment-one-feed-fails-alone"
    assert _slug("Smoke test of the production install, read-only") == "smoke-test-of-the-production-install-read-only"
    assert _slug("`DATABASE_URL`") == "database_url"
    assert _slug("Entra ID (Azure AD) authentication") == "entra-id-azure-ad-authentication"


def test_relative_links_between_pages_resolve():
    broken = []
    for page in _markdown_pages():
        text = FENCE.sub("", page.read_text(encoding="utf-8"))
        for target in LINK.findall(text):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                continue
            path_part, _, anchor = target.partition("#")
            linked = (page.parent / path_part).resolve() if path_part else page
            where = f"{page.relative_to(ROOT)} -> {target}"
            if not linked.exists():
                broken.append(f"{where}: no such file")
            elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
                broken.append(f"{where}: no such heading")
    assert not broken, "broken links:\n" + "\n".join(broken)


# --- environment variables ----------------------------------------------------------------------

def _is_environ(node: ast.AST, aliases: set[str]) -> bool:
    """``os.environ``, or a module-level name bound to it (``env = os.environ``)."""
    if isinstance(node, ast.Attribute) and node.attr == "environ" and isinstance(node.value, ast.Name):
        return node.value.id == "os"
    return isinstance(node, ast.Name) and node.id in aliases


def _environ_aliases(tree: ast.Module) -> set[str]:
    return {target.id for stmt in tree.body if isinstance(stmt, ast.Assign) and _is_environ(stmt.value, set())
            for target in stmt.targets if isinstance(target, ast.Name)}


def _const(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _direct_reads(tree: ast.AST, aliases: set[str]) -> set[str]:
    """Names read straight from the environment: ``env.get("X")``, ``env["X"]``, ``"X" in env``,
    ``os.environ.setdefault("X", ...)``, ``os.getenv("X")``."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            func = node.func
            if func.attr in ("get", "setdefault", "pop") and _is_environ(func.value, aliases) and node.args:
                names.add(_const(node.args[0]))
            elif func.attr == "getenv" and isinstance(func.value, ast.Name) and func.value.id == "os" and node.args:
                names.add(_const(node.args[0]))
        elif isinstance(node, ast.Subscript) and _is_environ(node.value, aliases):
            names.add(_const(node.slice))
        elif isinstance(node, ast.Compare) and any(_is_environ(c, aliases) for c in node.comparators):
            names.add(_const(node.left))
    names.discard(None)
    return names


def _env_helpers(tree: ast.Module, aliases: set[str]) -> dict[str, int]:
    """Functions of the module that read the environment with a name they are given: each helper
    mapped to the position of that parameter (``_number(name, default, ...)``: 0)."""
    helpers = {}
    for func in (n for n in tree.body if isinstance(n, ast.FunctionDef)):
        params = [a.arg for a in func.args.args]
        for node in ast.walk(func):
            reads = (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                     and _is_environ(node.func.value, aliases) and node.args
                     and isinstance(node.args[0], ast.Name) and node.args[0].id in params)
            if reads:
                helpers[func.name] = params.index(node.args[0].id)
    # A helper that hands its name to another helper (``_networks`` calls ``_list(name)``).
    changed = True
    while changed:
        changed = False
        for func in (n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name not in helpers):
            params = [a.arg for a in func.args.args]
            for node in ast.walk(func):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in helpers
                        and len(node.args) > helpers[node.func.id]
                        and isinstance(node.args[helpers[node.func.id]], ast.Name)
                        and node.args[helpers[node.func.id]].id in params):
                    helpers[func.name] = params.index(node.args[helpers[node.func.id]].id)
                    changed = True
                    break
    return helpers


def settings_variables() -> set[str]:
    tree = ast.parse((ROOT / "pipeline" / "settings.py").read_text(encoding="utf-8"))
    aliases = _environ_aliases(tree)
    helpers = _env_helpers(tree, aliases)
    names = _direct_reads(tree, aliases)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in helpers:
            position = helpers[node.func.id]
            if len(node.args) > position:
                names.add(_const(node.args[position]))
    names.discard(None)
    return names


def other_module_variables() -> dict[str, set[str]]:
    found = {}
    modules = [ROOT / "function_app.py", ROOT / "manage.py"]
    modules += [p for d in ENV_MODULE_DIRS for p in sorted((ROOT / d).rglob("*.py"))]
    for path in modules:
        if path.name == "settings.py" and path.parent.name == "pipeline":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = _direct_reads(tree, _environ_aliases(tree))
        if names:
            found[str(path.relative_to(ROOT))] = names
    return found


def configuration_table() -> set[str]:
    """The variables in the first cell of each row of docs/configuration.md's tables."""
    names = set()
    for line in CONFIGURATION.read_text(encoding="utf-8").splitlines():
        if line.startswith("|"):
            first = line.split("|")[1]
            names.update(re.findall(r"`([A-Za-z][A-Za-z0-9_]*)`", first))
    return names


def test_the_settings_walk_finds_what_settings_read():
    found = settings_variables()
    # One of each way settings.py reads: env.get, _bool, _number, _list, _networks, env[...].
    assert {"DATABASE_URL", "DJANGO_DEBUG", "INGEST_DEADLINE", "DJANGO_ALLOWED_HOSTS",
            "INGEST_ALLOWED_NETWORKS", "CELERY_BROKER_KEY_PREFIX", "TIME_ZONE"} <= found
    assert len(found) >= 40


def test_every_environment_variable_the_code_reads_is_in_the_configuration_table():
    documented = configuration_table()
    missing = {f"pipeline/settings.py: {name}" for name in settings_variables() - documented}
    for module, names in other_module_variables().items():
        missing |= {f"{module}: {name}" for name in names - documented}
    assert not missing, "not in the table of docs/configuration.md:\n" + "\n".join(sorted(missing))


# --- README ---------------------------------------------------------------------------------------

def test_readme_is_a_first_read():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) < README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


def test_readme_keeps_the_test_command():
    # .ci/run runs the README's test command; a newcomer runs the same one.
    text = README.read_text(encoding="utf-8")
    assert "./scripts/test" in text and "./scripts/run" in text
