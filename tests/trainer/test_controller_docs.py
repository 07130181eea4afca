"""docs/interfaces.md's retrain controller section says what the code does: its settings table against
`ControllerSettings` and values.yaml, its metrics against metrics.py, its decisions against decide.py."""

from __future__ import annotations

import re

import yaml
from pydantic.fields import FieldInfo

from tests.test_docs import INLINE_CODE, INTERFACES, VALUES, rendered_default, table_rows, variables_in
from trainer.controller.config import ControllerSettings
from trainer.controller.decide import SKIP_REASONS, TRIGGER_REASONS


def subsection(title: str) -> str:
    text = INTERFACES.read_text()
    match = re.search(rf"^#{{2,3}} {re.escape(title)}\n(.*?)(?=^#{{2,3}} |\Z)", text, re.M | re.S)
    assert match, f"docs/interfaces.md has no heading {title!r}"
    return match.group(1)


def settings_rows() -> list[dict[str, str]]:
    rows = [r for r in table_rows(subsection("Retrain controller settings")) if "variable" in r]
    assert rows, "the retrain controller settings table is missing"
    return rows


def environment_names() -> dict[str, FieldInfo]:
    names = {}
    for name, field in ControllerSettings.model_fields.items():
        alias = field.validation_alias
        names[alias if isinstance(alias, str) else f"RETRAINING_{name}".upper()] = field
    return names


def test_every_controller_setting_is_documented_with_its_default() -> None:
    fields = environment_names()
    documented = {name: row for row in settings_rows() for name in variables_in(row["variable"])}
    assert set(documented) == set(fields)
    wrong = {}
    for name, field in fields.items():
        cell = documented[name]["default"].replace("`", "")
        expected = "required" if field.is_required() else rendered_default(field)
        if name == "LOG_FORMAT":
            expected = "auto"
        if expected is not None and expected not in cell:
            wrong[name] = (cell, expected)
    assert wrong == {}, "documented default differs from ControllerSettings: {name: (docs, code)}"


def test_chart_values_named_in_the_settings_table_exist() -> None:
    values = yaml.safe_load(VALUES.read_text())
    missing = []
    for row in settings_rows():
        for path in re.findall(r"`([a-z][A-Za-z]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+)`", row["chart"]):
            node = values
            for key in path.split("."):
                if not isinstance(node, dict) or key not in node:
                    missing.append(path)
                    break
                node = node[key]
    assert missing == []


def test_metrics_table_matches_the_code() -> None:
    source = (INTERFACES.parent.parent / "services/trainer/src/trainer/controller/metrics.py").read_text()
    defined = set(re.findall(r'"(trainer_controller_[a-z_]+)"', source))
    documented = {
        name.removesuffix("_total")
        for span in INLINE_CODE.findall(INTERFACES.read_text())
        for name in re.findall(r"\btrainer_controller_[a-z_]+\b", span)
    }
    assert documented == defined


def test_decisions_table_lists_every_reason() -> None:
    rows = [r for r in table_rows(subsection("Retrain controller")) if "reason" in r and "rule" in r]
    documented = {reason for row in rows for reason in re.findall(r"\b[a-z]+(?:_[a-z]+)*\b", row["reason"])}
    expected = set(SKIP_REASONS) | set(TRIGGER_REASONS)
    assert expected <= documented, expected - documented
