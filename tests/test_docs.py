"""The documentation says what the code does, and each topic has one home that a test checks.

Fast and offline: parses README.md, docs/*.md, k8s/README.md, services/*/README.md, the Makefile,
values.yaml, the alert rules and k8s/minikube-up.sh, imports the three services' Settings classes and
reads the default data with the trainer's own code (no server, no cluster). One test compares
docs/model.md's metric tables with a real training run (the session `champion`: integration).

Homes: settings → docs/interfaces.md; the drift method → services/drift-monitor/README.md; the
Minikube walkthrough → k8s/README.md (tests/cluster runs it); the data and the model → docs/model.md.
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

from tests.conftest import TrainedModel

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
INTERFACES = REPO / "docs" / "interfaces.md"
MODEL_DOC = REPO / "docs" / "model.md"
SECURITY_DOC = REPO / "docs" / "security.md"
RUNBOOK = REPO / "docs" / "runbook.md"
K8S_README = REPO / "k8s" / "README.md"
SERVICE_READMES = sorted((REPO / "services").glob("*/README.md"))
MAKEFILE = REPO / "Makefile"
CHART = REPO / "charts" / "mlops" / "Chart.yaml"
VALUES = REPO / "charts" / "mlops" / "values.yaml"
ALERT_RULES = REPO / "charts" / "mlops" / "rules" / "alerts.yaml"
MINIKUBE_UP = REPO / "k8s" / "minikube-up.sh"
README_MAX_LINES = 200

# Shared by the three services. Where a service's Settings has no field for one (it reads it in its
# logging setup), this is the default the docs show; where it has a field, the field's default wins.
LOGGING_VARIABLES = {"LOG_LEVEL": "INFO", "LOG_FORMAT": "auto"}

FENCE = re.compile(r"^(```|~~~)[^\n]*\n(.*?)^\1[ \t]*$", re.S | re.M)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$", re.M)
TARGET_TOKEN = re.compile(r"^[a-z][a-z0-9_-]*$")


# ----------------------------------------------------------------------------------- helpers
def markdown_files() -> list[Path]:
    """Every markdown file a reader reaches from the README."""
    return [README, *DOCS, K8S_README, *SERVICE_READMES]


def doc_id(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


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
    assert match, f"no '## ...{title}...' section"
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
    carry no field (None) for a service that reads them in its logging setup instead of its Settings.
    """
    from drift_monitor.config import Settings as DriftMonitorSettings
    from predictor.config import Settings as PredictorSettings
    from trainer.config import Settings as TrainerSettings

    variables: dict[str, list[FieldInfo | None]] = {}
    for cls in (TrainerSettings, PredictorSettings, DriftMonitorSettings):
        prefix = cls.model_config.get("env_prefix", "")
        fields = {}
        for name, field in cls.model_fields.items():
            alias = field.validation_alias
            fields[alias if isinstance(alias, str) else f"{prefix}{name}".upper()] = field
        for env in LOGGING_VARIABLES:
            fields.setdefault(env, None)
        for env, field in fields.items():
            variables.setdefault(env, []).append(field)
    return variables


def rendered_default(field: FieldInfo) -> str | None:
    """The default as the settings table should show it, or None when it is not a plain value."""
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
    rows = [r for r in table_rows(section(INTERFACES.read_text(), "Settings")) if "variable" in " ".join(r)]
    assert rows, "docs/interfaces.md's Settings section has no table with a 'variable' column"
    return rows


def variables_in(cell: str) -> list[str]:
    return re.findall(r"`([A-Z][A-Z0-9_]+)`", cell)


# ------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("doc", markdown_files(), ids=doc_id)
def test_make_targets_in_docs_exist(doc: Path) -> None:
    targets = makefile_targets()
    named = {t for invocation in make_invocations(doc.read_text()) for t in invocation}
    assert named - targets == set(), f"{doc.name} names make targets the Makefile lacks"


def test_readme_quickstart_is_make_demo_and_make_test() -> None:
    invocations = make_invocations(README.read_text())
    assert ["demo"] in invocations
    assert ["test"] in invocations
    assert ["test-unit"] in invocations or "make test-unit" in README.read_text()


def test_readme_is_short() -> None:
    lines = len(README.read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail to its home (docs/, k8s/)"


def test_readme_links_every_doc() -> None:
    """Every docs page, k8s/README.md and each service README is one hop from the README's map."""
    text = README.read_text()
    linked = {unquote(t).partition("#")[0] for t in LINK.findall(FENCE.sub("", text))}
    pages = [*DOCS, K8S_README, *SERVICE_READMES]
    unlinked = [doc_id(p) for p in pages if doc_id(p) not in linked]
    assert unlinked == [], "pages the README does not link to"


@pytest.mark.parametrize("doc", [README, K8S_README, *DOCS], ids=doc_id)
def test_repository_paths_in_docs_exist(doc: Path) -> None:
    """A path the docs send a reader to (`services/...`, `charts/...`, `tests/...`) exists."""
    roots = ("services/", "charts/", "tests/", "scripts/", "docs/", "k8s/", ".github/")
    paths = {
        span.split()[0].rstrip(",.:;")
        for span in INLINE_CODE.findall(FENCE.sub("", doc.read_text()))
        if span.startswith(roots) and not re.search(r"[<>…*{}]", span.split()[0])
    }
    missing = sorted(p for p in paths if not (REPO / p).exists())
    assert missing == [], f"{doc_id(doc)} names paths that do not exist"


def test_settings_table_lists_every_setting() -> None:
    documented = {v for row in config_rows() for v in variables_in(column(row, "variable"))}
    expected = set(settings_variables())
    assert expected - documented == set(), "settings missing from docs/interfaces.md's table"
    assert documented - expected == set(), "docs/interfaces.md documents variables no service reads"


def test_settings_table_defaults_match_settings() -> None:
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
    assert wrong == {}, "documented default differs from the Settings default: {name: (docs, code)}"


def test_settings_table_chart_values_exist() -> None:
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
    assert missing == [], "docs/interfaces.md names chart values that charts/mlops/values.yaml lacks"


@pytest.mark.parametrize("doc", [d for d in markdown_files() if d != INTERFACES], ids=doc_id)
def test_settings_table_lives_only_in_interfaces(doc: Path) -> None:
    """No second settings table: no table with a variable and a default column, no row per variable."""
    variables = set(settings_variables())
    copies = []
    for row in table_rows(FENCE.sub("", doc.read_text())):
        header = " ".join(row)
        first = next(iter(row.values()), "")
        if "variable" in header and "default" in header:
            copies.append(first)
        elif set(re.split(r"[\s,`]+", first.strip(" `"))) <= variables:
            copies.append(first)  # the first cell is nothing but settings names: a settings row
    assert copies == [], f"{doc_id(doc)} repeats settings rows; they live in docs/interfaces.md"


def test_runbook_anchors_of_alert_rules_exist() -> None:
    slugs = github_slugs(RUNBOOK.read_text())
    missing = {}
    for rule in alert_rules():
        url = rule.get("annotations", {}).get("runbook_url", "")
        path, _, anchor = url.partition("#")
        assert path.endswith("/docs/runbook.md"), f"{rule['alert']}: runbook_url {url!r}"
        if anchor not in slugs:
            missing[rule["alert"]] = anchor
    assert missing == {}, "alert rules link to runbook sections that do not exist"


def alert_rules() -> list[dict]:
    rules = yaml.safe_load(ALERT_RULES.read_text())
    return [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]


def minutes(duration: str) -> float:
    match = re.fullmatch(r"(\d+)([smh])", duration)
    assert match, f"unexpected duration {duration!r}"
    return int(match.group(1)) * {"s": 1 / 60, "m": 1, "h": 60}[match.group(2)]


def what_paragraph(alert: str) -> str:
    body = section(RUNBOOK.read_text(), alert)
    match = re.search(r"\*\*What:\*\*(.*?)(?:\n\n|\Z)", body, re.S)
    assert match, f"runbook section {alert} has no **What:** paragraph"
    return " ".join(match.group(1).split())


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_runbook_quotes_the_rule_duration_and_thresholds(rule: dict) -> None:
    """The runbook's "for N minutes", "N%" and "N ms" are the rule's `for:` and thresholds."""
    what = what_paragraph(rule["alert"])
    durations = [float(n) for n in re.findall(r"\bfor (\d+) minutes?\b", what)]
    durations += [minutes(d) for d in re.findall(r"`for: (\d+[smh])`", what)]
    assert minutes(rule["for"]) in durations, f"{rule['alert']}: the runbook lacks `for: {rule['for']}`"
    numbers = {float(n) for n in re.findall(r"[<>=]\s*(\d+(?:\.\d+)?)", rule["expr"])}
    for percent in re.findall(r"(\d+(?:\.\d+)?)\s?%", what):
        assert float(percent) / 100 in numbers, f"{rule['alert']}: {percent}% is not in {rule['expr']!r}"
    for millis in re.findall(r"(\d+)\s?ms\b", what):
        assert float(millis) / 1000 in numbers, f"{rule['alert']}: {millis} ms is not in {rule['expr']!r}"
    for age in re.findall(r"over (\d+) minutes old", what):
        assert float(age) * 60 in numbers, f"{rule['alert']}: {age} minutes is not in {rule['expr']!r}"


@pytest.mark.parametrize("doc", markdown_files(), ids=doc_id)
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


@pytest.mark.parametrize("doc", markdown_files(), ids=doc_id)
def test_docs_do_not_spell_the_version(doc: Path) -> None:
    """The chart's appVersion is the one version; docs say "the chart's appVersion" instead."""
    version = str(yaml.safe_load(CHART.read_text())["appVersion"])
    assert not re.search(rf"(?<![\d.]){re.escape(version)}(?![\d.])", doc.read_text()), doc_id(doc)


# --------------------------------------------------------- numbers in prose, against their source
def test_minikube_size_matches_minikube_up() -> None:
    script = MINIKUBE_UP.read_text()
    cpus = re.search(r'CPUS="\$\{MINIKUBE_CPUS:-(\d+)\}"', script)
    memory = re.search(r'MEMORY="\$\{MINIKUBE_MEMORY:-(\d+)g\}"', script)
    assert cpus and memory, "k8s/minikube-up.sh no longer sets its defaults as CPUS=/MEMORY="
    stated = re.findall(r"(\d+) CPUs(?:,| and) (\d+) GiB", K8S_README.read_text())
    assert stated and set(stated) == {(cpus.group(1), memory.group(1))}, stated


def test_stated_uid_matches_the_chart() -> None:
    uids = set(re.findall(r"runAsUser: (\d+)", VALUES.read_text()))
    stated = {uid for doc in markdown_files() for uid in re.findall(r"\bUID (\d+)", doc.read_text())}
    assert re.search(r"\bUID \d+", SECURITY_DOC.read_text()), "docs/security.md names the pods' UID"
    assert stated <= uids, (stated, uids)


def parse_number(cell: str) -> float:
    return float(cell.replace("−", "-").replace(",", "").replace("*", "").strip())


def test_model_doc_data_figures_match_the_data() -> None:
    """Rows, dates, feature counts and the split windows of docs/model.md, from the trainer's code."""
    from scripts.traffic import default_split

    features, split = default_split()
    text = section(MODEL_DOC.read_text(), "The problem and the data")
    prose = " ".join(text.split())
    first, last = features.dates.min().date(), features.dates.max().date()
    n_numeric, n_categorical = len(features.numeric), len(features.categorical)
    assert f"**{len(features.X):,} bookings**, arrival dates **{first} → {last}**" in prose
    assert f"{n_numeric + n_categorical} features reach the model: {n_numeric} numeric" in prose
    assert f"and {n_categorical} categorical" in prose
    for name in features.categorical:
        assert f"`{name}`" in text, f"categorical feature {name} not listed"
    windows = {row["window"]: row for row in table_rows(text) if "window" in row}
    for window, rows in (("train", split.train), ("validation", split.validation), ("test", split.test)):
        dates = features.dates.iloc[rows]
        assert parse_number(windows[window]["rows"]) == len(rows), window
        span = f"{dates.min().date()} → {dates.max().date()}"
        assert windows[window]["arrival dates"].startswith(span), (window, span)


def test_model_doc_metrics_match_a_training_run(champion: TrainedModel) -> None:
    """The validation and test tables of docs/model.md are what `trainer train` prints today."""
    outcome = champion.outcome
    text = section(MODEL_DOC.read_text(), "Results")
    wrong = {}
    for row in table_rows(text):
        label = next(iter(row.values()))
        names = re.findall(r"`([a-z_]+)`", label)
        header = next(iter(row))
        if header.startswith("validation"):
            measured = outcome["validation"][names[0]]
        elif "baseline" in label:
            measured = outcome["baseline_test"]
        else:
            assert names[0] == outcome["winner"], ("the test table's model is not the winner", outcome)
            measured = outcome["test"]
        for key, metric in (("rmse", "rmse"), ("mae", "mae"), ("r²", "r2")):
            stated = row[key]
            decimals = len(stated.split(".")[1]) if "." in stated else 0
            if round(measured[metric], decimals) != parse_number(stated):
                wrong[f"{label} {key}"] = (stated, round(measured[metric], decimals))
    assert wrong == {}, "docs/model.md's metrics differ from a training run: {row: (docs, run)}"


# ----------------------------------------------------------------------------------- metrics
METRIC_NAME = re.compile(r'"((?:predictor|drift|model_quality)_[a-z_]+)"')
METRIC_SOURCES = [
    REPO / "services/predictor/src/predictor/metrics.py",
    REPO / "services/drift-monitor/src/drift_monitor/metrics.py",
]


def test_metrics_tables_match_the_code() -> None:
    """docs/interfaces.md lists every metric the services define, and no metric they don't."""
    defined = {name for source in METRIC_SOURCES for name in METRIC_NAME.findall(source.read_text())}
    text = (REPO / "docs" / "interfaces.md").read_text()
    documented = {
        name.removesuffix("_total")  # prometheus_client appends _total to a counter's name
        for span in INLINE_CODE.findall(text)
        for name in re.findall(r"\b(?:predictor|drift|model_quality)_[a-z_]+\b", span)
        if not name.endswith("_") and not name.startswith("drift_monitor")  # `drift_feature_*`, job names
    }
    assert sorted(defined - documented) == [], "metrics missing from docs/interfaces.md"
    assert sorted(documented - defined) == [], "docs/interfaces.md names metrics the code does not define"
