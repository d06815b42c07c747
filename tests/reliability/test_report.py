"""docs/reliability.md stays true to the suite: every scenario names tests that exist, every
observation a test records belongs to a scenario, and the document carries the generated table."""

import re

import pytest

from tests.reliability.report import END, ROOT, SCENARIOS, START, render

pytestmark = pytest.mark.nodb


def test_every_scenario_names_tests_that_exist():
    assert SCENARIOS and all(scenario.tests for scenario in SCENARIOS)
    for scenario in SCENARIOS:
        for test in scenario.tests:
            path, name = test.split("::")
            source = (ROOT / path).read_text()
            assert re.search(rf"^def {re.escape(name)}\(", source, re.MULTILINE), test


def test_every_observation_belongs_to_a_scenario():
    keys = {key for scenario in SCENARIOS for key in scenario.observed}
    recorded = set()
    for module in (ROOT / "tests").rglob("test_*.py"):  # the reliability suite, and scenarios kept elsewhere
        recorded |= set(re.findall(r'observe\(\s*"([a-z0-9-]+)"', module.read_text()))
        for prefix in re.findall(r'observe\(\s*f"([a-z0-9-]+-)\{', module.read_text()):
            recorded |= {key for key in keys if key.startswith(prefix)}
    assert recorded - keys <= {"hostile-reasons"}, recorded - keys
    assert keys <= recorded | {"hostile-reasons"}, keys - recorded


def test_the_document_holds_the_generated_table():
    doc = (ROOT / "docs" / "reliability.md").read_text()
    assert START in doc and END in doc
    table = doc.split(START, 1)[1].split(END, 1)[0]
    assert table.count("\n| ") == len(SCENARIOS) + 1  # header + one row per scenario
    assert render({}).splitlines()[0] in table
