"""The numbers of the Overview page (no Streamlit): labelling pace, runs, API usage, health."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import ApiRequest, LabelEvent, Run, utcnow

LABEL_ACTIONS = ("label", "reject", "confirm")


def _day(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def labels_per_day(session: Session, days: int = 30, now: datetime | None = None) -> list[dict]:
    """Label, reject and confirm events per day and action over the last ``days`` (not undone)."""
    since = (now or utcnow()) - timedelta(days=days)
    day = func.date(LabelEvent.at)
    stmt = (
        select(day, LabelEvent.action, func.count())
        .where(LabelEvent.at >= since, LabelEvent.action.in_(LABEL_ACTIONS), ~LabelEvent.undone)
        .where(LabelEvent.how.not_in(("import", "demo")))
        .group_by(day, LabelEvent.action)
        .order_by(day)
    )
    return [{"day": _day(d), "action": a, "images": n} for d, a, n in session.execute(stmt)]


def labels_per_person(session: Session, days: int = 30, now: datetime | None = None) -> list[dict]:
    """Images labelled, rejected and confirmed per person over the last ``days``."""
    since = (now or utcnow()) - timedelta(days=days)
    stmt = (
        select(LabelEvent.user, LabelEvent.action, func.count())
        .where(LabelEvent.at >= since, LabelEvent.action.in_(LABEL_ACTIONS), ~LabelEvent.undone)
        .where(LabelEvent.how.not_in(("import", "demo")))
        .group_by(LabelEvent.user, LabelEvent.action)
        .order_by(func.count().desc())
    )
    return [{"person": u, "action": a, "images": n} for u, a, n in session.execute(stmt)]


def active_run(session: Session) -> Run | None:
    return session.scalar(select(Run).where(Run.active).order_by(Run.id.desc()).limit(1))


def headline_metrics(metrics: Mapping[str, Any] | None, limit: int = 6) -> dict[str, float]:
    """The scalar numbers of a run's metrics, nested keys joined with '.', test ones first."""
    flat: dict[str, float] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, bool):
            return
        if isinstance(value, int | float):
            flat[prefix] = float(value)
        elif isinstance(value, Mapping):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)

    walk("", metrics or {})

    def rank(key: str) -> tuple[int, int, str]:
        low = key.lower()
        split = 0 if "test" in low else 1 if "val" in low else 2
        kind = 0 if any(w in low for w in ("acc", "f1", "top")) else 1
        return (split, kind, key)

    return {k: flat[k] for k in sorted(flat, key=rank)[:limit]}


@dataclass(frozen=True)
class ApiUsage:
    requests: int
    errors: int
    p50_ms: float | None
    p95_ms: float | None
    per_day: list[dict]


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def api_usage(session: Session, days: int = 30, now: datetime | None = None) -> ApiUsage | None:
    """Requests to the prediction API over the last ``days``; None when there were none ever."""
    if session.scalar(select(ApiRequest.id).limit(1)) is None:
        return None
    since = (now or utcnow()) - timedelta(days=days)
    recent = ApiRequest.at >= since
    day = func.date(ApiRequest.at)
    per_day = [
        {"day": _day(d), "requests": n}
        for d, n in session.execute(
            select(day, func.count()).where(recent).group_by(day).order_by(day)
        )
    ]
    latencies = list(
        session.scalars(
            select(ApiRequest.latency_ms)
            .where(recent)
            .order_by(ApiRequest.id.desc())
            .limit(100_000)
        )
    )
    errors = session.scalar(select(func.count()).where(recent, ApiRequest.status_code >= 400)) or 0
    return ApiUsage(
        requests=sum(r["requests"] for r in per_day),
        errors=errors,
        p50_ms=_percentile(latencies, 0.5),
        p95_ms=_percentile(latencies, 0.95),
        per_day=per_day,
    )
