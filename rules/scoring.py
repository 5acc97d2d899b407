"""Lead scoring: fit points plus decaying intent points, bands, and the MQL threshold.

* **Fit** (who they are: segment, size, role, industry, country) — each entry of ``fit`` is a
  CEL condition and the points it is worth, e.g. ``{when: 'lead.country in ["DE","AT","CH"]',
  points: 20}``. Fit does not decay.
* **Intent** (what they did: form, pricing page, demo request, webinar) — each entry of
  ``intent`` names a lead field (usually a custom field mapped from the marketing CRM) holding
  when the event last happened: an ISO timestamp, or a list of them for repeated events (each
  counts, at most ``max_count``). Intent points halve every ``half_life`` after the event, so a
  lead with no new signals cools down. A field holding ``true`` or a number counts that many
  times, undecayed (the time is unknown).
* The score (rounded to whole points) goes to ``lead.score`` and its band (the highest band of
  ``bands`` whose minimum it reaches, else ``cold``) to the custom field ``band_field``; both are
  queued to the CRMs. A lead in one of ``mql_from`` reaching ``mql_threshold`` moves to MQL.

Config (``rules.scoring``)::

    fit:
      - {name: DACH, when: 'lead.country in ["DE", "AT", "CH"]', points: 20}
    intent:
      - {name: demo request, field: demo_request_at, points: 40}
    half_life: 30d
    bands: {hot: 100, warm: 50}
    mql_threshold: 100            # null: never move a lead
    mql_from: [Lead]
    band_field: score_band
    rescore_every: 1d             # decaying scores are recomputed this often
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hub.actions import Action
from hub.conditions import Condition
from hub.engine import Rule, RuleConfig, RuleContext
from hub.model import Lead
from hub.process import DurationField, Loc, parse_duration

__all__ = ["FitPoints", "IntentPoints", "ScoringConfig", "ScoringRule", "Score", "RULES"]


class FitPoints(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    when: Condition
    points: float
    name: str = ""


class IntentPoints(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str
    points: float
    name: str = ""
    max_count: int = Field(default=5, ge=1)


class ScoringConfig(RuleConfig):
    fit: list[FitPoints] = Field(default_factory=list)
    intent: list[IntentPoints] = Field(default_factory=list)
    half_life: DurationField = parse_duration("30d")
    bands: dict[str, float] = Field(default_factory=lambda: {"hot": 100.0, "warm": 50.0})
    cold: str = "cold"
    mql_threshold: float | None = 100.0
    mql_status: str = "MQL"
    mql_from: list[str] = Field(default_factory=lambda: ["Lead"])
    band_field: str = "score_band"
    rescore_every: DurationField = parse_duration("1d")

    @model_validator(mode="after")
    def _bands(self) -> ScoringConfig:
        if self.cold in self.bands:
            raise ValueError(f"band {self.cold!r} is the name for scores below every band; do not list it")
        return self


def _events(value: Any) -> list[datetime | None]:
    """The event times a field holds (``None`` for an event of unknown time)."""
    if value is None or value is False or value == "":
        return []
    if value is True:
        return [None]
    if isinstance(value, (int, float)):
        return [None] * max(int(value), 0)
    items = value if isinstance(value, list) else [value]
    out: list[datetime | None] = []
    for item in items:
        if isinstance(item, str):
            try:
                item = datetime.fromisoformat(item.replace("Z", "+00:00"))
            except ValueError:
                continue
        if isinstance(item, datetime):
            out.append(item if item.tzinfo else item.replace(tzinfo=timezone.utc))
    return out


class Score(BaseModel):
    """A computed score and where its points came from."""

    total: float
    band: str
    fit: dict[str, float]
    intent: dict[str, float]


class ScoringRule(Rule):
    """Scores leads from the process file's fit and intent points; see the module docstring."""

    name = "scoring"
    order = 20
    Config = ScoringConfig

    def __init__(self, *args: Any, **kw: Any):
        super().__init__(*args, **kw)
        self._bands = sorted(self.config.bands.items(), key=lambda kv: -kv[1])
        self._half_life = self.config.half_life.delta.total_seconds()

    def check(self) -> list[tuple[Loc, str]]:
        names, out = set(self.process.status_names), []
        if self.config.mql_status not in names:
            out.append((("mql_status",), f"unknown status {self.config.mql_status!r}"))
        for i, status in enumerate(self.config.mql_from):
            if status not in names:
                out.append((("mql_from", i), f"unknown status {status!r}"))
        return out

    def wants(self, change: Any) -> bool:
        return bool(self.config.fit or self.config.intent)

    def score(self, ctx: RuleContext, lead: Lead) -> Score:
        fit: dict[str, float] = {}
        for item in self.config.fit:
            if ctx.test(item.when, lead):
                name = item.name or str(item.when)
                fit[name] = fit.get(name, 0.0) + item.points
        intent: dict[str, float] = {}
        for item in self.config.intent:
            events = sorted(_events(lead.get(item.field)), key=lambda t: t or ctx.now, reverse=True)
            points = 0.0
            for at in events[:item.max_count]:
                age = max((ctx.now - at).total_seconds(), 0.0) if at else 0.0
                points += item.points * 0.5 ** (age / self._half_life)
            if points:
                intent[item.name or item.field] = round(points, 1)
        total = float(round(sum(fit.values()) + sum(intent.values())))
        band = next((name for name, minimum in self._bands if total >= minimum), self.config.cold)
        return Score(total=total, band=band, fit=fit, intent=intent)

    def evaluate(self, ctx: RuleContext, lead: Lead) -> Iterable[Action]:
        s = self.score(ctx, lead)
        parts = [f"{k} {v:+g}" for k, v in {**s.fit, **s.intent}.items()]
        why = f"score {s.total:g} ({s.band}): {', '.join(parts) or 'no points'}"
        inputs = {"fit": s.fit, "intent": s.intent, "score": s.total, "band": s.band}
        fields = {"score": s.total, self.config.band_field: s.band}
        actions = [Action.set_fields(fields, reason=why, inputs=inputs)]
        threshold = self.config.mql_threshold
        if threshold is not None and s.total >= threshold and lead.status in self.config.mql_from:
            reason = f"score {s.total:g} reached the MQL threshold {threshold:g}"
            actions.append(Action.set_status(self.config.mql_status, inputs=inputs, reason=reason))
        return actions

    def next_due(self, ctx: RuleContext, lead: Lead) -> datetime | None:
        horizon = 8 * self._half_life  # past eight half-lives an event is worth under 0.4 % of its points
        decaying = any(at is not None and (ctx.now - at).total_seconds() < horizon
                       for item in self.config.intent for at in _events(lead.get(item.field)))
        return ctx.now + self.config.rescore_every.delta if decaying else None

    def describe(self, ctx: RuleContext, lead: Lead) -> list[str]:
        s = self.score(ctx, lead)
        parts = [f"{k} {v:+g}" for k, v in {**s.fit, **s.intent}.items()]
        return [f"score now {s.total:g} ({s.band}): {', '.join(parts) or 'no points'}"]


RULES = (ScoringRule,)
