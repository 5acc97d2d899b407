"""SLA clocks and the escalation ladder: one clock per lead and status.

The ladder of a status comes from the process file (``statuses[].sla``: ``remind``, ``due``,
``escalate``, ``stall``), counted in business time in the owner's calendar (else the process's
default calendar; the owner's days off count as closed) when the status says
``business_hours: true``, else in wall time. Each step fires once per clock:

* ``remind`` — a reminder task for the owner;
* ``due`` — the SLA is breached: a breach task for the owner;
* ``escalate`` — a task for the owner's manager (else the first person holding
  ``escalate_to_role``);
* ``stall`` — the lead is flagged ``stalled`` for the manager's review.

When a lead is first seen past several steps (an import, the engine was down) only the furthest
step fires (``catch_up: latest``; ``all`` fires every step passed). The clock starts when the lead
entered the status and restarts when a field under ``restart_on`` for that status changes
(Negotiation: a new ``next_action`` date is a new action); a field holding a past timestamp
(``last_activity``) restarts it at that instant. While a ``pause`` condition (CEL) holds, the
clock stops. A new status or a restarted clock closes this rule's open tasks and clears ``stalled``.

Config (``rules.sla``)::

    pause: {Negotiation: 'lead.custom.on_hold == true'}   # status (or "*") → CEL condition
    restart_on: {Negotiation: [next_action]}
    escalate_to_role: sales_manager
    catch_up: latest
    recheck: 1d            # how often a paused clock is looked at again
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta, timezone
from typing import Any, Literal

from pydantic import Field

from hub.actions import Action
from hub.calendar import Clock
from hub.conditions import Condition
from hub.engine import Rule, RuleConfig, RuleContext
from hub.model import Lead
from hub.process import Duration, DurationField, Loc, parse_duration

__all__ = ["SlaConfig", "SlaRule", "RULES", "LADDER"]

#: The steps this rule runs, in ladder order (``review``/``requalify`` belong to :mod:`rules.stale`).
LADDER = ("remind", "due", "escalate", "stall")


class SlaConfig(RuleConfig):
    pause: dict[str, Condition] = Field(default_factory=dict)
    restart_on: dict[str, list[str]] = Field(default_factory=lambda: {"Negotiation": ["next_action"]})
    escalate_to_role: str | None = "sales_manager"
    catch_up: Literal["latest", "all"] = "latest"
    recheck: DurationField = parse_duration("1d")


def _iso(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat()


def _instant(value: Any, now: datetime) -> datetime | None:
    """A past instant held by a field (a datetime or an ISO timestamp with a time), else ``None``."""
    if isinstance(value, str) and "T" in value:
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if isinstance(value, datetime):  # a bare date is a plan (next_action), not when something happened
        value = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return value if value <= now else None
    return None


def _span(d: Duration, business: bool) -> str:
    unit = {"m": "min", "h": "h", "d": " working days" if business else " days"}[d.unit]
    if d.unit == "d" and d.amount == 1:
        unit = " working day" if business else " day"
    return f"{d.amount}{unit}"


class SlaRule(Rule):
    """Reminds, escalates and stalls leads whose status SLA runs out; see the module docstring."""

    name = "sla"
    order = 60
    Config = SlaConfig

    def __init__(self, *args: Any, **kw: Any):
        super().__init__(*args, **kw)
        self._wake: tuple[str, datetime | None] = ("", None)

    def check(self) -> list[tuple[Loc, str]]:
        names, out = set(self.process.status_names), []
        for section in ("pause", "restart_on"):
            for status in getattr(self.config, section):
                if status != "*" and status not in names:
                    out.append(((section, status), f"unknown status {status!r}"))
        role = self.config.escalate_to_role
        if role is not None and self.process.roles and role not in self.process.roles:
            out.append((("escalate_to_role",), f"unknown role {role!r}"))
        return out

    # -- the clock ------------------------------------------------------------------------------
    def _ladder(self, lead: Lead) -> list[tuple[str, Duration]]:
        try:
            sla = self.process.status(lead.status).sla
        except KeyError:
            return []
        return [(step, sla[step]) for step in LADDER if step in sla]

    def _clock(self, ctx: RuleContext, lead: Lead, clock: Clock) -> tuple[dict[str, Any], list[Action]]:
        """This lead's clock state after what changed since last time, and the clean-up it calls for."""
        state, actions = ctx.state(lead), []
        watched = self.config.restart_on.get(lead.status, [])
        seen = {f: _jsonable(lead.get(f)) for f in watched}
        stamps = [t for t in (_instant(lead.get(f), ctx.now) for f in watched) if t is not None]
        episode = f"{lead.status}@{_iso(lead.status_since)}"
        if state.get("episode") != episode:
            if state.get("episode"):
                actions += self._clean(ctx, lead, f"{state['episode'].split('@')[0]} ended")
            start = max([lead.status_since, *stamps])
            return {"episode": episode, "start": _iso(start), "seen": seen, "paused": 0.0}, actions
        if seen != state.get("seen"):
            changed = [f for f in watched if seen.get(f) != state.get("seen", {}).get(f)]
            fresh = [t for f in changed if (t := _instant(lead.get(f), ctx.now)) is not None]
            start = max(fresh) if fresh else ctx.now
            actions += self._clean(ctx, lead, f"{', '.join(changed)} changed: the clock restarts")
            return {"episode": episode, "start": _iso(start), "seen": seen, "paused": 0.0}, actions
        return state, actions

    def _clean(self, ctx: RuleContext, lead: Lead, why: str) -> list[Action]:
        actions = [Action.close_tasks(reason=f"{why}; its SLA tasks are closed")]
        if "stalled" in ctx.flags(lead.id):
            actions.append(Action.unflag("stalled", reason=f"{why}; no longer stalled"))
        return actions

    def deadlines(self, ctx: RuleContext, lead: Lead, state: dict[str, Any],
                  clock: Clock) -> list[tuple[str, Duration, datetime]]:
        start = datetime.fromisoformat(state["start"])
        paused = timedelta(seconds=state.get("paused", 0.0))
        return [(step, d, clock.add(clock.add(start, d), paused) if paused else clock.add(start, d))
                for step, d in self._ladder(lead)]

    # -- the rule -------------------------------------------------------------------------------
    def evaluate(self, ctx: RuleContext, lead: Lead) -> Iterable[Action]:
        self._wake = (lead.id, None)
        ladder = self._ladder(lead)
        state = ctx.state(lead)
        if not ladder or lead.status_since is None:
            if state.get("episode"):
                ctx.keep(lead, {})
                return self._clean(ctx, lead, f"{state['episode'].split('@')[0]} ended")
            return []
        clock = ctx.clock_for(lead)
        state, actions = self._clock(ctx, lead, clock)
        pause = self.config.pause.get(lead.status) or self.config.pause.get("*")
        paused = pause is not None and ctx.test(pause, lead)
        if paused and not state.get("paused_at"):
            state["paused_at"] = _iso(ctx.now)
        elif not paused and state.get("paused_at"):
            since = datetime.fromisoformat(state.pop("paused_at"))
            paused_for = max(clock.elapsed(since, ctx.now).total_seconds(), 0.0)
            state["paused"] = state.get("paused", 0.0) + paused_for
        ctx.keep(lead, state)
        if paused:
            self._wake = (lead.id, ctx.now + self.config.recheck.delta)
            return actions
        steps = self.deadlines(ctx, lead, state, clock)
        passed = [s for s in steps if s[2] <= ctx.now]
        upcoming = [at for _, _, at in steps if at > ctx.now]
        self._wake = (lead.id, min(upcoming, default=None))
        if self.config.catch_up == "latest":
            passed = passed[-1:]
        return actions + [self._step(ctx, lead, state, clock, *s) for s in passed]

    def _step(self, ctx: RuleContext, lead: Lead, state: dict[str, Any], clock: Clock, step: str, d: Duration,
              deadline: datetime) -> Action:
        status, owner, business = lead.status, lead.owner, clock.business
        key = f"{status}@{state['start']}:{step}"
        who = lead.company or lead.email or lead.last_name or lead.id
        inputs = {"status": status, "clock_start": state["start"], "step": step, "threshold": str(d),
                  "deadline": _iso(deadline), "business_hours": business, "owner": owner,
                  "paused_seconds": state.get("paused", 0.0)}
        if business:
            inputs["calendar"] = clock.calendar.timezone
        reason = (f"{status} since {state['start'][:16].replace('T', ' ')} UTC: {step} after "
                  f"{_span(d, business)}, reached {deadline:%Y-%m-%d %H:%M} UTC")
        if step == "remind":
            return Action.create_task(f"Reminder: {who} has been in {status} for {_span(d, business)}",
                                      assignee=owner, task_kind="reminder", reason=reason, inputs=inputs,
                                      key=key)
        if step == "due":
            return Action.create_task(f"SLA breached: {who} in {status} for {_span(d, business)}",
                                      assignee=owner, task_kind="breach", reason=reason, inputs=inputs,
                                      key=key)
        if step == "escalate":
            to = self._escalation_target(ctx, owner)
            inputs["escalated_to"] = to
            title = f"Escalation: {who} in {status} for {_span(d, business)} (owner {owner or 'none'})"
            return Action.escalate(to, title, reason=reason, inputs=inputs, key=key)
        return Action.flag("stalled", note=f"{status} for {_span(d, business)} without action", reason=reason,
                           inputs=inputs, key=key)

    def _escalation_target(self, ctx: RuleContext, owner: str | None) -> str | None:
        manager = self.process.manager_of(owner) if owner else None
        if manager is not None:
            return manager.email
        role = self.config.escalate_to_role
        return next((p.email for p in self.process.team if p.role == role), None) if role else None

    def next_due(self, ctx: RuleContext, lead: Lead) -> datetime | None:
        lead_id, wake = self._wake
        return wake if lead_id == lead.id else None

    def describe(self, ctx: RuleContext, lead: Lead) -> list[str]:
        state = ctx.state(lead)
        if not self._ladder(lead) or not state.get("start"):
            return []
        clock = ctx.clock_for(lead)
        kind = f"business hours, {clock.calendar.timezone}" if clock.business else "wall clock"
        parts = [f"{step} {d} at {at:%Y-%m-%d %H:%M} UTC{' (passed)' if at <= ctx.now else ''}"
                 for step, d, at in self.deadlines(ctx, lead, state, clock)]
        paused = " — paused" if state.get("paused_at") else ""
        start = state["start"][:16].replace("T", " ")
        return [f"SLA clock for {lead.status} since {start} UTC ({kind}){paused}: " + "; ".join(parts)]


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, (date, datetime)) else value


RULES = (SlaRule,)
