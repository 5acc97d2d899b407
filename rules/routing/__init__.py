"""The routing rule: every open lead gets an owner (or a named queue), and a missed SAL gets a new one.

What it does, per lead the engine evaluates:

* **Route.** A lead with no owner in one of ``statuses`` (default: every
  non-final status), or one that has just entered a status in ``reroute_on``
  (e.g. ``[SAL]`` for the marketing → sales handover), is routed by
  :class:`rules.routing.router.Router`: ordered rules (account match,
  territory, round robin, least loaded, a named owner; CEL ``when`` filters and
  ZEN decision tables), caps, availability, a fallback owner or queue. The
  result is an ``assign_owner`` action carrying the owner's email — the engine
  writes it to every CRM the lead lives in through the outbox — or, for a queue,
  an ``unrouted`` flag naming the queue; a queued lead is tried again after
  ``retry_after``.
* **Reassign on a missed SLA.** A lead still in ``reassign_on_sla`` (default
  ``SAL``) when that status's ``due`` has passed — counted from when it entered
  the status or was last given to its owner, in business time if the status
  says so — is routed again, excluding everyone who has had it before;
  at most ``max_reassignments`` times per status episode.

Every decision — the rule that matched, each rule tried and why it did not
decide, each candidate and why they were skipped — is a ``routing_decisions``
row; the action's reason is its one-line summary.

Routing keeps the hub's own rotation state and takes a lock, so unlike most
rules it writes inside the engine's batch transaction (rolled back with it in a
dry run).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pydantic import Field
from sqlmodel import Session

from hub.actions import Action
from hub.context import RuleContext
from hub.engine import LeadChange, Rule, RuleConfig, RuleSetupError
from hub.model import Lead
from hub.process import Duration, DurationField, Loc
from rules.routing.config import RoutingSettings
from rules.routing.decision_table import DecisionTable
from rules.routing.router import Decision, Router

__all__ = ["Routing", "RULES", "Decision", "Router", "RoutingSettings"]


def session_of(ctx: RuleContext) -> Session:
    """The engine's batch session. Routing and dedup keep shared state (rotation, caps, the
    blocking-key index) that must be read and written under one lock in the batch's transaction."""
    return ctx.state_session


class Routing(Rule):
    name = "routing"
    order = 30

    class Config(RoutingSettings, RuleConfig):
        statuses: tuple[str, ...] | None = None  # route unowned leads in these (default: every non-final)
        reroute_on: tuple[str, ...] = ()  # entering one of these routes the lead again (e.g. [SAL])
        reassign_on_sla: str | None = "SAL"  # a status whose missed ``due`` reassigns the lead
        max_reassignments: int = Field(default=1, ge=0)
        retry_after: DurationField = Duration(1, "h")  # a queued (unrouted) lead is tried again after this

    config: Config

    def __init__(self, config: RuleConfig | None = None, process: Any = None):
        super().__init__(config, process)
        try:
            self.router = Router(self.config, self.process)
        except ValueError as exc:  # a decision table that cannot be read or compiled: name each one
            problems: list[tuple[Loc, str]] = []
            for i, r in enumerate(self.config.rules):
                try:
                    if r.table is not None:
                        DecisionTable(r.table)
                except ValueError as bad:
                    problems.append((("rules", i, "table"), str(bad)))
            # and the cross-checks, which need only the config: every problem in one report
            raise RuleSetupError((problems or [((), str(exc))]) + self.check()) from None

    # -- the engine's interface ------------------------------------------------------------
    def wants(self, change: LeadChange) -> bool:
        return True

    def evaluate(self, ctx: RuleContext, lead: Lead) -> Iterable[Action]:
        if lead.status in self.process.final_statuses:
            return
        state = ctx.state(lead)
        episode = self._episode(lead)
        if self._sla_missed(ctx, lead, state, episode):
            s = session_of(ctx)
            exclude = self.router.previous_owners(s, lead.id) | {lead.owner.lower()}
            decision = self.router.route(s, lead, ctx.now, exclude=exclude, kind="reassign",
                                         open_leads=ctx.open_leads_by_owner)
            count = state.get("reassigned", {}).get(episode, 0) + 1
            state.update(reassigned={episode: count}, assigned_at=ctx.now.isoformat(), episode=episode)
            ctx.keep(lead, state)
            yield from self._actions(decision, f"reassign:{episode}:{count}")
            return
        if not self._due_for_routing(ctx, lead, state, episode):
            return
        decision = self.router.route(session_of(ctx), lead, ctx.now, open_leads=ctx.open_leads_by_owner)
        state.update(episode=episode, routed=episode, assigned_at=ctx.now.isoformat())
        state.pop("queued_at", None)
        if decision.owner is None:
            state["queued_at"] = ctx.now.isoformat()
        ctx.keep(lead, state)
        yield from self._actions(decision, None)

    def next_due(self, ctx: RuleContext, lead: Lead) -> datetime | None:
        if lead.status in self.process.final_statuses:
            return None
        state = ctx.state(lead)
        if lead.owner is None and state.get("queued_at"):
            return datetime.fromisoformat(state["queued_at"]) + self.config.retry_after.delta
        return self._sla_due(ctx, lead, state, self._episode(lead))

    def describe(self, ctx: RuleContext, lead: Lead) -> list[str]:
        state = ctx.state(lead)
        lines = []
        if state.get("queued_at"):
            lines.append(f"routing: waiting in the fallback queue since {state['queued_at']}")
        due = self._sla_due(ctx, lead, state, self._episode(lead))
        if due is not None:
            lines.append(f"routing: reassigned if still {lead.status} at {due.isoformat()}")
        return lines

    def check(self) -> list[tuple[Loc, str]]:
        team = {p.email for p in self.process.team}
        problems: list[tuple[Loc, str]] = []
        if not team:
            return problems  # no team in the process: every decision goes to the fallback
        for name, pool in self.config.pools.items():
            for i, m in enumerate(pool.members):
                if m.email not in team:
                    problems.append((("pools", name, "members", i), f"{m.email} is not in the team"))
        for i, r in enumerate(self.config.rules):
            if r.owner and r.owner not in team:
                problems.append((("rules", i, "owner"), f"{r.owner} is not in the team"))
        if self.config.fallback.owner and self.config.fallback.owner not in team:
            problems.append((("fallback", "owner"), f"{self.config.fallback.owner} is not in the team"))
        statuses = set(self.process.status_names)
        for key in ("statuses", "reroute_on"):
            for i, name in enumerate(getattr(self.config, key) or ()):
                if name not in statuses:
                    problems.append(((key, i), f"unknown status {name!r}"))
        if self.config.reassign_on_sla and self.config.reassign_on_sla not in statuses:
            problems.append((("reassign_on_sla",), f"unknown status {self.config.reassign_on_sla!r}"))
        return problems

    # -- helpers ---------------------------------------------------------------------------
    @staticmethod
    def _episode(lead: Lead) -> str:
        return f"{lead.status}@{lead.status_since.isoformat() if lead.status_since else ''}"

    def _due_for_routing(self, ctx: RuleContext, lead: Lead, state: dict[str, Any], episode: str) -> bool:
        if lead.status in self.config.reroute_on and state.get("routed") != episode:
            return True
        statuses = self.config.statuses
        if lead.owner is not None or (statuses is not None and lead.status not in statuses):
            return False
        queued = state.get("queued_at")
        return not queued or ctx.now >= datetime.fromisoformat(queued) + self.config.retry_after.delta

    def _sla_due(self, ctx: RuleContext, lead: Lead, state: dict[str, Any], episode: str) -> datetime | None:
        status = self.config.reassign_on_sla
        if not status or lead.status != status or not lead.owner or not self.process.team:
            return None  # without a team there is no one else to give the lead to
        if state.get("reassigned", {}).get(episode, 0) >= self.config.max_reassignments:
            return None
        try:
            due = self.process.status(status).sla.get("due")
        except KeyError:
            return None
        starts = [t for t in (lead.status_since,) if t is not None]
        if state.get("assigned_at") and state.get("episode") == episode:
            starts.append(datetime.fromisoformat(state["assigned_at"]))
        if due is None or not starts:
            return None
        return ctx.clock_for(lead, status).add(max(starts), due)

    def _sla_missed(self, ctx: RuleContext, lead: Lead, state: dict[str, Any], episode: str) -> bool:
        due = self._sla_due(ctx, lead, state, episode)
        return due is not None and ctx.now >= due

    @staticmethod
    def _actions(d: Decision, key: str | None) -> Iterable[Action]:
        inputs = {"rule": d.rule, "strategy": d.strategy, "pool": d.pool, "kind": d.kind,
                  "previous_owner": d.previous_owner, "rules": d.rules, "candidates": d.candidates}
        if d.owner:
            yield Action.assign_owner(d.owner, reason=d.reason, inputs=inputs, key=key)
            yield Action.unflag("unrouted", reason="routed")
        else:
            yield Action.flag("unrouted", reason=d.reason, note=f"queue {d.queue}", inputs=inputs)


RULES = (Routing,)
