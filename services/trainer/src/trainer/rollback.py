"""Rolling back a promotion: by hand (`trainer rollback`) or when live labels say the new champion is worse.

A promotion leaves the old champion under the `previous` alias (gate.promote). `rollback` moves the
champion alias back to it and marks the demoted version; `auto_rollback` decides whether to: once enough
labels have matured for the new champion, its live MAE since the promotion is compared with the previous
champion's live MAE over the window before the switch. The retrain controller calls it periodically.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from trainer.config import Settings
from trainer.errors import TrainerError
from trainer.gate import PREVIOUS_ALIAS, ROLLBACK_CHECK_TAG, current_version, iso_utc
from trainer.ledger import version_mae

log = logging.getLogger(__name__)

Action = Literal["rolled_back", "kept", "waiting", "skipped"]


@dataclass(frozen=True)
class RollbackOutcome:
    """What `trainer rollback` did; `summary()` is the JSON it prints."""

    model: str
    from_version: str | None
    to_version: str
    reason: str

    def summary(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class RollbackVerdict:
    """One automatic check: what it did and the numbers it decided on."""

    action: Action
    reason: str
    model_name: str
    from_version: str | None
    """The champion when the check ran."""
    to_version: str | None
    """The previous champion (where a rollback goes, or went)."""
    new_mae: float | None
    previous_mae: float | None
    labelled_rows: int
    """Matured labels of the champion since its promotion."""

    def summary(self) -> dict[str, object]:
        return asdict(self)


class AliasesMoved(TrainerError):
    """The aliases are no longer those a rollback was decided on (a promotion landed meanwhile)."""


def rollback(
    client: MlflowClient,
    model_name: str,
    alias: str,
    reason: str,
    *,
    now: datetime | None = None,
    expected: tuple[str, str] | None = None,
) -> RollbackOutcome:
    """Champion ← the version under `previous`; the demoted version is tagged with why; `previous` is gone
    afterwards (one step back, never a ping-pong). TrainerError when there is no `previous`;
    AliasesMoved when `expected` (champion, previous) is given and the aliases are no longer those."""
    previous = current_version(client, model_name, PREVIOUS_ALIAS)
    if previous is None:
        raise TrainerError(
            f"model {model_name!r} has no {PREVIOUS_ALIAS!r} alias: nothing to roll back to "
            f"(use `trainer promote --version N` to choose a version)"
        )
    restored = _version(previous)
    champion = current_version(client, model_name, alias)
    demoted = _version(champion) if champion is not None else None
    if expected is not None and (demoted, restored) != expected:
        raise AliasesMoved(
            f"{alias} is v{demoted} and {PREVIOUS_ALIAS} v{restored}, not v{expected[0]} and v{expected[1]} "
            "as when the rollback was decided"
        )
    client.set_registered_model_alias(model_name, alias, restored)
    client.set_model_version_tag(model_name, restored, "promoted_at", iso_utc(now))
    if demoted is not None and demoted != restored:
        client.set_model_version_tag(model_name, demoted, "rolled_back", "true")
        client.set_model_version_tag(model_name, demoted, "rollback_reason", reason)
        client.set_model_version_tag(model_name, demoted, "promoted", "false")
    client.delete_registered_model_alias(model_name, PREVIOUS_ALIAS)
    outcome = RollbackOutcome(model_name, demoted, restored, reason)
    log.warning("model rolled back", extra=outcome.summary())
    return outcome


def auto_rollback(settings: Settings, now: datetime | None = None) -> RollbackVerdict:
    """Check the current champion against its predecessor on live labels, and roll back if it is worse.

    skipped: no ledger, no champion, no `previous`, no promotion time, already judged, or no baseline;
    waiting: fewer than TRAINER_ROLLBACK_MIN_LABELS matured labels since the promotion; otherwise
    rolled_back (live MAE > previous × (1 + TRAINER_ROLLBACK_MARGIN)) or kept, and the verdict is tagged
    so a version is judged once. Registry or ledger problems raise TrainerError.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    name = settings.model_name
    client = MlflowClient(settings.mlflow_tracking_uri)

    def verdict(
        action: Action,
        reason: str,
        new_mae: float | None = None,
        previous_mae: float | None = None,
        rows: int = 0,
    ) -> RollbackVerdict:
        result = RollbackVerdict(
            action=action,
            reason=reason,
            model_name=name,
            from_version=_version(champion) if champion is not None else None,
            to_version=_version(previous) if previous is not None else None,
            new_mae=new_mae,
            previous_mae=previous_mae,
            labelled_rows=rows,
        )
        # The controller checks every few seconds: only a decision is worth an INFO line.
        level = logging.INFO if action in ("kept", "rolled_back") else logging.DEBUG
        log.log(level, "rollback check", extra=result.summary())
        return result

    champion = current_version(client, name, settings.champion_alias)
    previous = current_version(client, name, PREVIOUS_ALIAS) if champion is not None else None
    if settings.ledger_database_url is None:
        return verdict("skipped", "no ledger (TRAINER_LEDGER_DATABASE_URL unset)")
    if champion is None:
        return verdict("skipped", f"no model holds alias {settings.champion_alias!r}")
    if previous is None:
        return verdict("skipped", f"no {PREVIOUS_ALIAS!r} version to compare with")
    if champion.tags.get(ROLLBACK_CHECK_TAG) in ("kept", "rolled_back"):
        return verdict("skipped", f"already checked: {champion.tags[ROLLBACK_CHECK_TAG]}")
    promoted_at = _parse_time(champion.tags.get("promoted_at"))
    if promoted_at is None:
        return verdict("skipped", f"champion v{champion.version} has no valid promoted_at tag")

    matured = now - timedelta(seconds=settings.label_delay_seconds)
    url = settings.ledger_database_url
    new_mae, rows = version_mae(url, name, _version(champion), promoted_at, now, matured)
    if new_mae is None or rows < settings.rollback_min_labels:
        return verdict(
            "waiting",
            f"{rows} of {settings.rollback_min_labels} matured labels for v{champion.version} since its promotion",
            new_mae,
            rows=rows,
        )
    baseline_start = promoted_at - timedelta(seconds=settings.rollback_window_seconds)
    previous_mae, previous_rows = version_mae(
        url, name, _version(previous), baseline_start, promoted_at, matured
    )
    if previous_mae is None:
        return verdict(
            "skipped",
            f"no baseline: previous v{previous.version} has no labelled predictions in the "
            f"{settings.rollback_window_seconds:g} s before the promotion",
            new_mae,
            rows=rows,
        )
    limit = previous_mae * (1 + settings.rollback_margin)
    if new_mae > limit:
        reason = (
            f"live MAE of v{champion.version} {new_mae:.3f} ({rows} labels since promotion) > "
            f"previous v{previous.version} {previous_mae:.3f} ({previous_rows} labels) × (1 + {settings.rollback_margin:g})"
        )
        try:
            rollback(
                client, name, settings.champion_alias, reason, now=now,
                expected=(_version(champion), _version(previous)),
            )  # fmt: skip
        except AliasesMoved as exc:  # a retrain promoted meanwhile: judge the new champion next time
            return verdict("skipped", f"aliases moved during the check: {exc}", new_mae, previous_mae, rows)
        client.set_model_version_tag(name, _version(champion), ROLLBACK_CHECK_TAG, "rolled_back")
        return verdict("rolled_back", reason, new_mae, previous_mae, rows)
    reason = (
        f"live MAE of v{champion.version} {new_mae:.3f} ({rows} labels since promotion) <= "
        f"previous v{previous.version} {previous_mae:.3f} ({previous_rows} labels) × (1 + {settings.rollback_margin:g})"
    )
    client.set_model_version_tag(name, _version(champion), ROLLBACK_CHECK_TAG, "kept")
    return verdict("kept", reason, new_mae, previous_mae, rows)


def _version(model_version: ModelVersion) -> str:
    # MLflow's SQL stores (sqlite:///, postgresql://) answer the version as an int, its REST store as a
    # string: the ledger's model_version column is text (an int fails the PostgreSQL query), and the
    # summaries promise strings.
    return str(model_version.version)


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
