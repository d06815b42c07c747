"""The contract checker's own test corpus: statements it must reject, and real ones it must accept.

    tests/mssql/corpus/invalid/*.sql   each starts with "-- reject: RULE [RULE...]" and "-- why: ...";
                                       ``check`` must reject it for (at least) those rules
    tests/mssql/corpus/valid/*.sql     real batches mssql-django 2.0.0 sent in a capture, one per
                                       distinct shape (the one with the most parameters); each
                                       starts with "-- accept: ..."; ``check`` must find nothing

Header lines are not part of the statement. Refresh the valid part after a change to the
pipeline's statements (the live capture is checked anyway, by tests/test_tsql_contract.py):

    python -m tests.mssql.capture > /tmp/capture.json
    python -m tests.mssql.corpus /tmp/capture.json

The data step of migration 0003 (phase ``migrate-data``) is left out of the frozen corpus: it is
still being written, and the live capture holds it to the contract.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus"
SKIP_PHASES = {"migrate-data"}


@dataclass(frozen=True)
class Case:
    name: str
    sql: str
    rules: tuple[str, ...]  # invalid: the rules it must be rejected for
    note: str


def load(kind: str) -> list[Case]:
    cases = []
    for path in sorted((CORPUS / kind).glob("*.sql")):
        lines = path.read_text(encoding="utf-8").split("\n")
        header = []
        while lines and lines[0].startswith("-- "):
            header.append(lines.pop(0)[3:])
        fields = dict(line.split(": ", 1) for line in header)
        rules = tuple(fields.get("reject", "").split())
        cases.append(Case(path.stem, "\n".join(lines).rstrip("\n"), rules, fields.get("why") or fields.get("accept", "")))
    return cases


def _slug(sql: str) -> str:
    """select-ingest_entry, insert-ingest_comment, save-transaction, ...: a file name that says what it is."""
    body = re.sub(r"^(?:\s*(?:SET\s+NOCOUNT\s+(?:ON|OFF);?|DECLARE\s[^\n]*\n))+", "", sql, flags=re.I)
    verb = re.match(r"\s*(\w+(?:\s+(?:INTO|FROM|TABLE|TRANSACTION|UNIQUE INDEX|INDEX))?)", body)
    table = re.search(r"\b(?:INTO|UPDATE|FROM|TABLE|ON)\s+(\[[^\]]+\]|[\w.]+)", body, re.I)
    words = [verb.group(1).split()[0] if verb else "sql"]
    if verb and verb.group(1).upper().startswith("SAVE"):
        words.append("transaction")
    elif table:
        words.append(table.group(1).strip("[]"))
    return re.sub(r"[^a-z0-9_]+", "-", "-".join(words).lower()).strip("-")


def refresh(capture: dict) -> int:
    """Rewrite valid/ from a capture: per distinct shape, the real batch with the most parameters."""
    from tests.mssql.contract import shape

    best: dict[str, tuple[int, str, str, str]] = {}
    for target, result in capture["targets"].items():
        for statement in result["statements"]:
            if statement["phase"] in SKIP_PHASES:
                continue
            sql = capture["sql"][statement["sql"]]
            key = shape(sql)
            if key not in best or statement["params"] > best[key][0]:
                best[key] = (statement["params"], sql, statement["phase"], target)
    directory = CORPUS / "valid"
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.sql"):
        old.unlink()
    ordered = sorted(best.values(), key=lambda item: (item[2], _slug(item[1]), -item[0]))
    for number, (params, sql, phase, target) in enumerate(ordered, 1):
        name = f"{number:03d}-{phase}-{_slug(sql)}"[:80]
        (directory / f"{name}.sql").write_text(
            f"-- accept: captured from mssql-django 2.0.0 ({target}, phase {phase}), {params:,} parameters\n{sql}\n",
            encoding="utf-8")
    return len(ordered)


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as stream:
        print(f"{refresh(json.load(stream))} statements written to {CORPUS / 'valid'}")
