"""The documentation says what the code does: make targets, settings, runbook anchors, links.

Fast and offline: parses README.md, docs/*.md, the Makefile, values.yaml and the alert rules, and
imports the three services' Settings classes (no server, no cluster).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

import pytest
import yaml
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
MAKEFILE = REPO / "Makefile"
VALUES = REPO / "charts" / "mlops" / "values.yaml"
ALERT_RULES = REPO / "charts" / "mlops" / "rules" / "alerts.yaml"
RUNBOOK = REPO / "docs" / "runbook.md"

# Read by each service's logging.py rather than its Settings (docs/interfaces.md, "Names").
LOGGING_VARIABLES = {"LOG_LEVEL": "INFO", "LOG_FORMAT": "auto"}

FENCE = re.compile(r"^(```|~~~)[^\n]*\n(.*?)^\1[ \t]*$", re.S | re.M)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$", re.M)
TARGET_TOKEN = re.compile(r"^[a-z][a-z0-9_-]*$")


# ----------------------------------------------------------------------------------- helpers
def markdown_files() -> list[Path]:
    return [README, *DOCS]


def code_snippets(text: str) -> list[str]:
    """Fenced blocks (line by line) and inline code spans: where commands are written."""
    snippets = []
    for match in FENCE.finditer(text):
        snippets.extend(match.group(2).splitlines())
    snippets.extend(INLINE_CODE.findall(FENCE.sub("", text)))
    return snippets


def make_invocations(text: str) -> list[list[str]]:
    """Targets of every `make ...` command in the code of a markdown text (`make load HOST=x` -> [load])."""
    invocations = []
    for snippet in code_snippets(text):
        for match in re.finditer(r"(?:^|[\s;&|($])make((?:\s+[^\s;&|)#]+)*)", snippet):
            targets = []
            for token in match.group(1).split():
                if "=" in token or token.startswith("-"):
                    continue  # VAR=value or a flag
                if not TARGET_TOKEN.match(token):
                    break
                targets.append(token)
            if targets:
                invocations.append(targets)
    return invocations


def makefile_targets() -> set[str]:
    targets = set()
    for line in MAKEFILE.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+(?:[ \t]+[A-Za-z0-9_.-]+)*)[ \t]*:(?!=)", line)
        if match:
            targets.update(match.group(1).split())
    return targets - {".PHONY", ".DEFAULT_GOAL"}


def github_slugs(text: str) -> set[str]:
    """Anchors GitHub generates for the headings of a markdown text (duplicates get -1, -2, ...)."""
    slugs: set[str] = set()
    seen: Counter[str] = Counter()
    for match in HEADING.finditer(FENCE.sub("", text)):
        title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", match.group(2))  # [text](url) -> text
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        slugs.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
        seen[slug] += 1
    return slugs


def section(text: str, title: str) -> str:
    """The body of the first `## ...` heading that contains `title`, up to the next `## ` heading."""
    match = re.search(rf"^##\s+[^\n]*{re.escape(title)}[^\n]*$(.*?)(?=^##\s|\Z)", text, re.M | re.S)
    assert match, f"README.md has no '## ...{title}...' section"
    return match.group(1)


def table_rows(text: str) -> list[dict[str, str]]:
    """Rows of every markdown table in `text`, as {lower-cased header: cell}."""
    rows: list[dict[str, str]] = []
    header: list[str] | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip("|"))]
        if header is None:
            header = [c.lower() for c in cells]
        elif not all(re.fullmatch(r":?-+:?", c) for c in cells):
            rows.append(dict(zip(header, cells, strict=False)))
    return rows


def column(row: dict[str, str], word: str) -> str:
    keys = [k for k in row if word in k]
    assert keys, f"configuration table has no column containing {word!r}: {list(row)}"
    return row[keys[0]]


def settings_variables() -> dict[str, list[FieldInfo | None]]:
    """Every environment variable a service reads, with the Settings field(s) behind it.

    MLFLOW_TRACKING_URI is a field of all three (with different defaults); LOG_LEVEL and LOG_FORMAT
    are read by the logging setup, so they carry no field.
    """
    from drift_monitor.config import Settings as DriftMonitorSettings
    from predictor.config import Settings as PredictorSettings
    from trainer.config import Settings as TrainerSettings

    variables: dict[str, list[FieldInfo | None]] = {name: [None] for name in LOGGING_VARIABLES}
    for cls in (TrainerSettings, PredictorSettings, DriftMonitorSettings):
        prefix = cls.model_config.get("env_prefix", "")
        for name, field in cls.model_fields.items():
            alias = field.validation_alias
            env = alias if isinstance(alias, str) else f"{prefix}{name}".upper()
            variables.setdefault(env, []).append(field)
    return variables


def rendered_default(field: FieldInfo) -> str | None:
    """The default as the README should show it, or None when it is not a plain value."""
    default = field.default
    if default is PydanticUndefined:
        return None
    if default is None:
        return "unset"
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, float) and default.is_integer():
        return str(int(default))
    if isinstance(default, str | int | float):
        return str(default)
    if isinstance(default, list | tuple):
        return ",".join(rendered_default(FieldInfo(default=v)) or "" for v in default)
    return None


def config_rows() -> list[dict[str, str]]:
    rows = [r for r in table_rows(section(README.read_text(), "Configuration")) if "variable" in " ".join(r)]
    assert rows, "README.md's Configuration section has no table with a 'variable' column"
    return rows


def variables_in(cell: str) -> list[str]:
    return re.findall(r"`([A-Z][A-Z0-9_]+)`", cell)


# ------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("doc", markdown_files(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_make_targets_in_docs_exist(doc: Path) -> None:
    targets = makefile_targets()
    named = {t for invocation in make_invocations(doc.read_text()) for t in invocation}
    assert named - targets == set(), f"{doc.name} names make targets the Makefile lacks"


def test_readme_quickstart_is_make_demo_and_make_test() -> None:
    invocations = make_invocations(README.read_text())
    assert ["demo"] in invocations
    assert ["test"] in invocations


def test_readme_configuration_table_lists_every_setting() -> None:
    documented = {v for row in config_rows() for v in variables_in(column(row, "variable"))}
    expected = set(settings_variables())
    assert expected - documented == set(), "settings missing from README's configuration table"
    assert documented - expected == set(), "README documents variables no service reads"


def test_readme_configuration_defaults_match_settings() -> None:
    variables = settings_variables()
    wrong = {}
    for row in config_rows():
        cell = column(row, "default").replace("`", "").replace("\\|", "|")
        for name in variables_in(column(row, "variable")):
            for field in variables.get(name, []):
                if field is None:
                    expected = LOGGING_VARIABLES[name]
                elif field.is_required():
                    expected = "required"
                else:
                    expected = rendered_default(field)
                if expected is not None and expected not in cell:
                    wrong[name] = (cell, expected)
    assert wrong == {}, "README default differs from the Settings default: {name: (README, code)}"


def test_readme_configuration_chart_values_exist() -> None:
    values = yaml.safe_load(VALUES.read_text())
    missing = []
    for row in config_rows():
        for path in re.findall(r"`([a-z][A-Za-z]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+)`", column(row, "chart")):
            node = values
            for key in path.split("."):
                if not isinstance(node, dict) or key not in node:
                    missing.append(path)
                    break
                node = node[key]
    assert missing == [], "README names chart values that charts/mlops/values.yaml lacks"


def test_runbook_anchors_of_alert_rules_exist() -> None:
    rules = yaml.safe_load(ALERT_RULES.read_text())
    slugs = github_slugs(RUNBOOK.read_text())
    missing = {}
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            url = rule.get("annotations", {}).get("runbook_url", "")
            path, _, anchor = url.partition("#")
            assert path.endswith("/docs/runbook.md"), f"{rule['alert']}: runbook_url {url!r}"
            if anchor not in slugs:
                missing[rule["alert"]] = anchor
    assert missing == {}, "alert rules link to runbook sections that do not exist"


@pytest.mark.parametrize("doc", markdown_files(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_relative_links_resolve(doc: Path) -> None:
    text = doc.read_text()
    broken = []
    for target in LINK.findall(FENCE.sub("", text)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = unquote(target).partition("#")
        file = (doc.parent / path).resolve() if path else doc
        missing_anchor = (
            file.is_file()
            and file.suffix == ".md"
            and anchor
            and anchor not in github_slugs(file.read_text())
        )
        if not file.exists() or missing_anchor:
            broken.append(target)
    assert broken == [], f"{doc.name} has links to missing files or headings"
