"""Stale leads and the nurture cycle.

* **Review** — a lead in a status with a ``review`` step (Nurture: ``review: 60d``) gets a review
  task every period, for its owner if they hold ``review_role`` (marketing), else for the first
  team member who does.
* **Requalify** — after the status's ``requalify`` step (Nurture: ``requalify: 90d``), a lead
  whose ``requalify_fields`` (budget, timeline) changed since it entered the status goes back to
  ``requalify_to`` (SAL: "back to sales as a hot lead") with a task for its owner. The values at
  entry are remembered when the rule first sees the lead in the status.
* **Untouched** — a lead not touched for longer than its status's limit (``untouched``) is
  flagged ``stale``; touching it clears the flag. A touch is a change to any field other than
  ``ignore_fields`` (the engine's own score keeps nothing fresh), seen by the engine, or a later
  timestamp in one of ``activity_fields`` (e.g. a CRM's last-activity date mapped to ``last_activity``).
* **Not now** — a Closed Lost whose ``loss_reason`` is one of ``not_now_reasons`` is moved to
  Nurture instead (a reopening move, which this rule is allowed to make), within ``not_now_within``
  of the loss.

Config (``rules.stale``; the defaults shown)::

    review_role: marketing
    requalify_to: SAL
    requalify_fields: [budget, timeline]
    untouched: {Lead: 30d, MQL: 30d, SAL: 14d, SQL: 30d, Opportunity: 30d, Negotiation: 14d}
    activity_fields: [last_activity]
    ignore_fields: [score, score_band]
    not_now_reasons: [Timing, Not now, No decision]
    not_now_to: Nurture
    not_now_within: 30d
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

from pydantic import Field

from hub.actions import Action
from hub.engine import Rule, RuleConfig, RuleContext
from hub.model import Lead
from hub.process import DurationField, Loc, parse_duration

__all__ = ["StaleConfig", "StaleRule", "RULES"]

_d = parse_duration


class StaleConfig(RuleConfig):
    review_role: str | None = "marketing"
    requalify_to: str = "SAL"
    requalify_fields: list[str] = Field(default_factory=lambda: ["budget", "timeline"])
    untouched: dict[str, DurationField] = Field(default_factory=lambda: {
        "Lead": _d("30d"), "MQL": _d("30d"), "SAL": _d("14d"), "SQL": _d("30d"), "Opportunity": _d("30d"),
        "Negotiation": _d("14d")})
    activity_fields: list[str] = Field(default_factory=lambda: ["last_activity"])
    ignore_fields: list[str] = Field(default_factory=lambda: ["score", "score_band"])
    not_now_reasons: list[str] = Field(default_factory=lambda: ["Timing", "Not now", "No decision"])
    not_now_to: str = "Nurture"
    not_now_within: DurationField = _d("30d")


def _iso(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat()


def _stamp(value: Any) -> datetime | None:
    if isinstance(value, str) and "T" in value:
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return None


class StaleRule(Rule):
    """Reviews and requalifies nurtured leads, flags untouched ones, nurtures "not now" losses."""

    name = "stale"
    order = 40
    Config = StaleConfig

    def __init__(self, *args: Any, **kw: Any):
        super().__init__(*args, **kw)
        self._wake: tuple[str, datetime | None] = ("", None)
        self._reasons = {r.strip().lower() for r in self.config.not_now_reasons}

    def check(self) -> list[tuple[Loc, str]]:
        names, out = set(self.process.status_names), []
        for key in ("requalify_to", "not_now_to"):
            if getattr(self.config, key) not in names:
                out.append(((key,), f"unknown status {getattr(self.config, key)!r}"))
        for status in self.config.untouched:
            if status not in names:
                out.append((("untouched", status), f"unknown status {status!r}"))
        role = self.config.review_role
        if role is not None and self.process.roles and role not in self.process.roles:
            out.append((("review_role",), f"unknown role {role!r}"))
        return out

    def _touch_hash(self, lead: Lead) -> str:
        data = {k: v for k, v in lead.canonical().items() if k not in self.config.ignore_fields}
        data["custom"] = {k: v for k, v in lead.custom.items() if k not in self.config.ignore_fields}
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:20]

    def evaluate(self, ctx: RuleContext, lead: Lead) -> Iterable[Action]:
        self._wake = (lead.id, None)
        if lead.status_since is None:
            return []
        now, since, actions, wakes = ctx.now, lead.status_since, [], []
        state = ctx.state(lead)
        episode = f"{lead.status}@{_iso(since)}"
        if state.get("episode") != episode:
            entry = {f: _plain(lead.get(f)) for f in self.config.requalify_fields}
            state = {"episode": episode, "entry": entry}
        actions += self._not_now(ctx, lead)
        try:
            sla = self.process.status(lead.status).sla
        except KeyError:
            sla = {}
        if "review" in sla:
            period = sla["review"].delta
            count = int((now - since) / period)
            if count >= 1:
                actions.append(self._review(ctx, lead, count, period))
            wakes.append(since + (count + 1) * period)
        if "requalify" in sla:
            at = since + sla["requalify"].delta
            changed = [f for f in self.config.requalify_fields
                       if _plain(lead.get(f)) != state["entry"].get(f)]
            if now >= at and changed:
                actions += self._requalify(lead, changed, state["entry"])
            elif now < at:
                wakes.append(at)
        limit = self.config.untouched.get(lead.status)
        if limit is not None:
            digest = self._touch_hash(lead)
            stamps = [t for t in (_stamp(lead.get(f)) for f in self.config.activity_fields) if t and t <= now]
            known = [datetime.fromisoformat(state["touched"])] if "touched" in state else []
            touched = max([since, *stamps, *known])
            if state.get("hash") not in (None, digest):
                touched = now
            state.update(hash=digest, touched=_iso(touched))
            stale = now - touched > limit.delta
            if stale and "stale" not in ctx.flags(lead.id):
                actions.append(Action.flag("stale", note=f"untouched since {touched:%Y-%m-%d}",
                                           reason=f"{lead.status} untouched for more than {limit} "
                                                  f"(last touch {touched:%Y-%m-%d %H:%M} UTC)",
                                           inputs={"status": lead.status, "touched": _iso(touched),
                                                   "limit": str(limit)}))
            elif not stale:
                wakes.append(touched + limit.delta + timedelta(seconds=1))
        if "stale" in ctx.flags(lead.id) and (limit is None or now - datetime.fromisoformat(
                state.get("touched", _iso(now))) <= limit.delta):
            why = f"{lead.status}: touched again or no longer limited"
            actions.append(Action.unflag("stale", reason=why))
        ctx.keep(lead, state)
        self._wake = (lead.id, min(wakes, default=None))
        return actions

    def _not_now(self, ctx: RuleContext, lead: Lead) -> list[Action]:
        if lead.status not in self.process.final_statuses or not lead.loss_reason:
            return []
        if lead.loss_reason.strip().lower() not in self._reasons:
            return []
        if ctx.now - lead.status_since > self.config.not_now_within.delta:
            return []
        target = self.config.not_now_to
        return [Action.set_status(target, reopen=True, key=f"not-now@{_iso(lead.status_since)}",
                                  reason=f"lost for {lead.loss_reason!r}: not now, so {target}, not lost",
                                  inputs={"loss_reason": lead.loss_reason, "from": lead.status})]

    def _review(self, ctx: RuleContext, lead: Lead, count: int, period: timedelta) -> Action:
        role = self.config.review_role
        owner = ctx.person(lead.owner)
        assignee = lead.owner if owner is None or role is None or owner.role == role else None
        if assignee is None and role is not None:
            assignee = next((p.email for p in self.process.team if p.role == role), lead.owner)
        who = lead.company or lead.email or lead.last_name or lead.id
        key = f"{lead.status}@{_iso(lead.status_since)}:review:{count}"
        return Action.create_task(f"Review {who} ({lead.status}, review {count})", assignee=assignee,
                                  task_kind="review", key=key,
                                  reason=f"{lead.status} for {(ctx.now - lead.status_since).days} days: "
                                         f"review every {period.days} days",
                                  inputs={"status": lead.status, "review": count, "assignee": assignee})

    def _requalify(self, lead: Lead, changed: list[str], entry: dict[str, Any]) -> list[Action]:
        target = self.config.requalify_to
        what = ", ".join(f"{f} {entry.get(f)!r} → {_plain(lead.get(f))!r}" for f in changed)
        inputs = {"changed": {f: [entry.get(f), _plain(lead.get(f))] for f in changed}}
        reason = f"requalified after {lead.status}: {what}"
        return [Action.set_status(target, reason=reason, inputs=inputs),
                Action.create_task(f"Requalified from {lead.status}: {what}", assignee=lead.owner,
                                   task_kind="requalified", reason=reason, inputs=inputs)]

    def next_due(self, ctx: RuleContext, lead: Lead) -> datetime | None:
        lead_id, wake = self._wake
        return wake if lead_id == lead.id else None


def _plain(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


RULES = (StaleRule,)
