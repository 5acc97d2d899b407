"""Deciding who owns a lead: ordered rules, candidates, skips with reasons, a fallback, the record.

:meth:`Router.route` runs inside the caller's transaction:

1. It takes the routing lock (:func:`lock`): ``SELECT … FOR UPDATE`` on the
   ``routing_lock`` row on PostgreSQL; on SQLite an ``UPDATE`` of that row as
   the transaction's first write, which opens SQLite's single write
   transaction and waits (``busy_timeout``) while another holds it. Every read
   after it — cap counts, rotation state — sees the previous decision's commit,
   so two leads routed at the same moment are decided one after the other and a
   cap is never overdrawn. The lock is held until the caller commits.
2. Rules are tried in order. A rule whose ``when`` is false, whose table has no
   row for the lead, or whose candidates are all skipped does not decide; the
   next one is tried. Each candidate is checked in this order and the first
   failing check is its recorded reason: had this lead before (reassignment),
   not in the team, away / off hours, at capacity, person cap, and — for the
   whole rule — the pool's own cap.
3. Eligible candidates are ordered by the rule's strategy (rotation, load) and
   the first is chosen; the others are recorded as "not next".
4. If no rule decides, the fallback owner takes the lead (caps do not apply to
   the last resort, a previous owner excepted), else the fallback queue does.
5. One ``routing_decisions`` row stores it all, and :class:`Decision` carries
   the same for the engine's ``assign_owner`` action (whose outbox writes carry
   the owner's email to every CRM the lead lives in).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlmodel import Session

from hub.conditions import env_values, lead_env
from hub.model import Lead
from hub.normalise import company_domain
from hub.process import Calendar, Person, Process
from hub.store import LeadRow
from rules.routing.books import books
from rules.routing.config import PoolDef, RouteRuleDef, RoutingSettings
from rules.routing.decision_table import DecisionTable
from rules.routing.eligibility import availability, cap_reason, specificity, territory_matches
from rules.routing.rotation import CatchUp
from rules.routing.tables import RoutingDecision, RoutingLock

__all__ = ["Decision", "Router", "lock", "LOCK_NAME"]

LOCK_NAME = "routing"


def lock(s: Session, name: str = LOCK_NAME) -> None:
    """Take the routing lock for the rest of ``s``'s transaction (see the module docstring)."""
    table = RoutingLock.__table__
    if s.get_bind().dialect.name == "postgresql":
        s.execute(pg_insert(table).values(name=name, seq=0).on_conflict_do_nothing())
        s.execute(sa.select(table.c.seq).where(table.c.name == name).with_for_update())
        return
    done = s.execute(sa.update(table).where(table.c.name == name).values(seq=table.c.seq + 1))
    if done.rowcount == 0:
        s.execute(sa.insert(table).values(name=name, seq=1))


def _account_owner_query(allowed: bool) -> sa.Select[Any]:
    t = LeadRow.__table__
    q = (sa.select(t.c.owner, sa.func.count().label("n"), sa.func.max(t.c.updated_at).label("last"))
         .where(t.c.domain.in_(sa.bindparam("domains", expanding=True)), t.c.owner.is_not(None),
                t.c.id != sa.bindparam("lead_id"))
         .group_by(t.c.owner).order_by(sa.desc("n"), sa.desc("last"), t.c.owner).limit(1))
    return q.where(t.c.owner.in_(sa.bindparam("allowed", expanding=True))) if allowed else q


# built once: building and keying a statement per lead cost more than running it
_ACCOUNT_OWNER = {False: _account_owner_query(False), True: _account_owner_query(True)}
_INSERT_DECISION = sa.insert(RoutingDecision.__table__)


@dataclass
class Decision:
    """Who gets the lead and why — everything stored in ``routing_decisions``."""

    lead_id: str
    owner: str | None
    queue: str | None
    rule: str
    reason: str
    strategy: str | None = None
    pool: str | None = None
    kind: str = "route"
    previous_owner: str | None = None
    rules: list[dict[str, Any]] = field(default_factory=list)
    candidates: list[dict[str, Any]] = field(default_factory=list)

    def skipped(self, email: str) -> str | None:
        """Why ``email`` was skipped (the last time it was considered), or ``None``."""
        reasons = [c.get("skipped") for c in self.candidates if c["email"] == email]
        return reasons[-1] if reasons else None


@dataclass(slots=True)
class _Candidate:
    email: str
    weight: float = 1.0
    tier: int = 0
    skipped: str | None = None
    load: float = 0.0


class Router:
    """Routes leads by ``settings`` for the team of ``process``. Build once per configuration."""

    def __init__(self, settings: RoutingSettings, process: Process, *, base: Path | None = None):
        self.settings = settings
        self.process = process
        self.people: dict[str, Person] = {p.email: p for p in process.team}
        self.territories = settings.territory_defs()
        self.tables = {r.name: DecisionTable(r.table, base=base)
                       for r in settings.rules if r.table is not None}
        self.finals = tuple(process.final_statuses) or ("Closed Won", "Closed Lost")
        self._open_provider: Callable[[], Mapping[str, int]] | None = None

    # -- public --------------------------------------------------------------------------
    def route(self, s: Session, lead: Lead, now: datetime, *, exclude: Collection[str] = (),
              kind: str = "route", open_leads: Callable[[], Mapping[str, int]] | None = None) -> Decision:
        """Decide and record who owns ``lead`` (inside ``s``'s transaction; the caller commits).

        ``open_leads`` gives open leads per owner when the caller keeps that count (the engine does,
        current within its batch); otherwise the router counts them in ``leads``.
        """
        b = books(s)
        b.lock_once(s, lock)
        if b.transaction is None:  # the lock began the transaction: its books
            b = books(s)
            b.locked = True
        b.begin(s, now)
        self._open_provider = open_leads
        exclude = {e.lower() for e in exclude}
        env, values = lead_env(lead, now), env_values(lead)
        tried: list[dict[str, Any]] = []
        considered: list[dict[str, Any]] = []
        for rule in self.settings.rules:
            if rule.when is not None and not rule.when.test(env):
                tried.append({"rule": rule.name, "outcome": "condition false"})
                continue
            strategy, pool_name, owner = rule.strategy, rule.pool, rule.owner
            if rule.name in self.tables:
                answer = self.tables[rule.name].evaluate(values)
                if answer is None:
                    tried.append({"rule": rule.name, "outcome": "no table row matched"})
                    continue
                pool_name, owner = answer.get("pool", pool_name), answer.get("owner", owner)
                strategy = answer.get("strategy") or strategy or ("owner" if owner and not pool_name
                                                                  else "round_robin")
                if pool_name and pool_name not in self.settings.pools:
                    tried.append({"rule": rule.name, "outcome": f"table chose unknown pool {pool_name!r}"})
                    continue
            pool = self.settings.pools.get(pool_name) if pool_name else None
            candidates, note = self._candidates(s, lead, rule, strategy, pool, owner)
            if not candidates:
                tried.append({"rule": rule.name, "outcome": note})
                continue
            chosen, note = self._choose(s, lead, now, rule, strategy, pool_name, pool, candidates, exclude)
            considered += [{"rule": rule.name, "email": c.email,
                            **({"skipped": c.skipped} if c.skipped else {"chosen": True})}
                           for c in candidates]
            if chosen is None:
                tried.append({"rule": rule.name, "outcome": note})
                continue
            tried.append({"rule": rule.name, "outcome": f"matched: {chosen.email}"})
            reason = f"rule {rule.name!r} ({strategy}{f', pool {pool_name}' if pool_name else ''}): {note}"
            decision = Decision(lead.id, chosen.email, None, rule.name, reason, strategy, pool_name, kind,
                                lead.owner, tried, considered)
            return self._record(s, decision, now)
        return self._record(s, self._fallback(lead, exclude, kind, tried, considered), now)

    def previous_owners(self, s: Session, lead_id: str) -> set[str]:
        """Everyone routing ever gave ``lead_id`` to."""
        t = RoutingDecision.__table__
        rows = s.execute(sa.select(t.c.owner).where(t.c.lead_id == lead_id, t.c.owner.is_not(None))
                         .distinct())
        return {r[0] for r in rows}

    # -- candidates ------------------------------------------------------------------------
    def _candidates(self, s: Session, lead: Lead, rule: RouteRuleDef, strategy: str | None,
                    pool: PoolDef | None, owner: str | None) -> tuple[list[_Candidate], str]:
        if strategy == "owner":
            return ([_Candidate(owner.lower())], "") if owner else ([], "no owner named")
        if strategy == "account_match":
            domain = company_domain(lead.email, lead.domain)
            if domain is None:
                return [], "no company domain (none given, or free mail)"
            allowed = [p.email for p in self.process.team if p.role in rule.roles] if rule.roles else None
            found = self._account_owner(s, lead.id, domain, allowed)
            return ([_Candidate(found)], "") if found else ([], f"no owner yet for {domain}")
        if strategy == "territory":
            matches = territory_matches(lead, self.territories)
            where = " ".join(x for x in (lead.country, lead.get("postcode") or lead.get("postal_code")) if x)
            pool_members = {m.email: m.weight for m in pool.members} if pool else None
            out = []
            for person in self.process.team:
                if pool_members is not None and person.email not in pool_members:
                    continue
                wrong_role = bool(rule.roles) and person.role not in rule.roles
                if pool_members is None and (not person.territories or wrong_role):
                    continue
                tier = specificity(person, matches)
                weight = pool_members.get(person.email, 1) if pool_members else 1
                outside = f"not in territory (lead {where or 'has no country'})"
                out.append(_Candidate(person.email, weight, tier, None if tier else outside))
            if not any(c.tier for c in out):
                return [], f"nobody's territory holds the lead ({where or 'no country'})"
            return sorted(out, key=lambda c: -c.tier), ""
        if pool is None:
            return [], f"strategy {strategy} needs a pool"
        return [_Candidate(m.email, m.weight) for m in pool.members], ""

    def _account_owner(self, s: Session, lead_id: str, domain: str, allowed: list[str] | None) -> str | None:
        """The owner of most leads at ``domain`` (then the most recently active), among ``allowed``."""
        params: dict[str, Any] = {"domains": [domain, f"www.{domain}"], "lead_id": lead_id}
        if allowed is not None:
            params["allowed"] = allowed
        row = s.execute(_ACCOUNT_OWNER[allowed is not None], params).first()
        return row[0].lower() if row else None

    # -- choosing --------------------------------------------------------------------------
    def _choose(self, s: Session, lead: Lead, now: datetime, rule: RouteRuleDef, strategy: str | None,
                pool_name: str | None, pool: PoolDef | None, candidates: list[_Candidate],
                exclude: set[str]) -> tuple[_Candidate | None, str]:
        if pool_name and pool is not None:
            counts = books(s).pool_counts(s, pool_name, now, self._default_tz())
            full = cap_reason(counts, pool.caps.as_dict(), whose="pool cap")
            if full:
                for c in candidates:
                    c.skipped = c.skipped or full
                return None, full
        live = [c for c in candidates if c.skipped is None]
        members = {m.email: m for m in pool.members} if pool else {}
        working_hours_only = pool.working_hours_only if pool else False
        need_load = strategy == "least_loaded" or (self.settings.respect_capacity and any(
            self.people.get(c.email) and self.people[c.email].capacity is not None for c in live))
        loads = self._open_leads(s, [c.email for c in live]) if need_load else {}
        caps_of = {c.email: self._caps(pool, members.get(c.email)) for c in live}
        counts = self._person_counts(s, now, [c.email for c in live if any(caps_of[c.email].values())])
        for c in live:
            person = self.people.get(c.email)
            if c.email in exclude:
                c.skipped = "had this lead before"
            elif person is None:
                c.skipped = "not in the team"
            elif why := availability(person, self._calendar(person), now,
                                     working_hours_only=working_hours_only):
                c.skipped = why
            elif (self.settings.respect_capacity and person.capacity is not None
                  and loads.get(c.email, 0) >= person.capacity):
                c.skipped = f"at capacity: {loads.get(c.email, 0)}/{person.capacity} open leads"
            elif why := cap_reason(counts.get(c.email, {}), caps_of[c.email]):
                c.skipped = why
            c.load = loads.get(c.email, 0) / ((person.capacity if person else None) or
                                              self.settings.default_capacity)
        eligible = [c for c in candidates if c.skipped is None]
        if not eligible:
            return None, f"all {len(candidates)} candidate(s) skipped"
        if strategy in ("account_match", "owner"):
            return eligible[0], self._why(eligible[0], strategy)
        top = max(c.tier for c in eligible)
        tier = [c for c in eligible if c.tier == top]
        key = pool_name or f"rule:{rule.name}"
        rotation = books(s).rotation(s, key)
        pairs = [(c.email, c.weight) for c in tier]
        rotation.admit(pairs, pool.catch_up if pool else CatchUp.NONE, pool.max_catch_up if pool else 0)
        order = rotation.order(pairs)
        by_email = {c.email: c for c in tier}
        if strategy == "least_loaded" or (rule.pick == "least_loaded" and strategy == "territory"):
            order.sort(key=lambda e: round(by_email[e].load, 9))
        chosen = by_email[order[0]]
        for c in eligible:
            if c is not chosen:
                c.skipped = ("more specific territory match available" if c.tier < top
                             else f"more loaded ({c.load:.0%} of capacity)" if c.load > chosen.load
                             else "not next in rotation")
        rotation.assign(chosen.email, chosen.weight, now, pairs)
        books(s).save_rotation(s, key)
        return chosen, self._why(chosen, strategy, len(eligible), len(candidates))

    @staticmethod
    def _why(c: _Candidate, strategy: str | None, eligible: int = 1, total: int = 1) -> str:
        if strategy == "account_match":
            return f"{c.email} already owns the account"
        if strategy == "owner":
            return f"{c.email} is the rule's owner"
        basis = {"least_loaded": f"least loaded ({c.load:.0%} of capacity)",
                 "territory": "territory match, next in rotation"}.get(strategy or "", "next in rotation")
        return f"{c.email}: {basis}; {eligible} of {total} candidate(s) eligible"

    def _caps(self, pool: PoolDef | None, member: Any) -> dict[str, int | None]:
        caps = self.settings.person_caps
        if pool is not None:
            caps = caps.merged(pool.member_caps).merged(member.caps if member else None)
        return caps.as_dict()

    def _calendar(self, person: Person) -> Calendar | None:
        try:
            return self.process.calendar(person.calendar)
        except KeyError:
            return None

    def _default_tz(self) -> tzinfo:
        try:
            return self.process.calendar(None).tz
        except KeyError:
            return timezone.utc

    # -- counting --------------------------------------------------------------------------
    def _person_counts(self, s: Session, now: datetime, emails: Sequence[str]) -> dict[str, dict[str, int]]:
        by_tz: dict[Any, list[str]] = {}
        for email in emails:
            person = self.people.get(email)
            cal = self._calendar(person) if person else None
            by_tz.setdefault(cal.tz if cal else self._default_tz(), []).append(email)
        out: dict[str, dict[str, int]] = {}
        for tz, group in by_tz.items():
            out.update(books(s).person_counts(s, group, now, tz))
        return out

    def _open_leads(self, s: Session, emails: Sequence[str]) -> dict[str, int]:
        if not emails:
            return {}
        if self._open_provider is not None:
            known = self._open_provider()
            return {e: int(known.get(e, 0)) for e in emails}
        t = LeadRow.__table__
        rows = s.execute(sa.select(t.c.owner, sa.func.count()).where(
            t.c.owner.in_(emails), t.c.status.not_in(self.finals)).group_by(t.c.owner)).all()
        return {r[0]: int(r[1]) for r in rows}

    # -- fallback and record ----------------------------------------------------------------
    def _fallback(self, lead: Lead, exclude: set[str], kind: str, tried: list[dict[str, Any]],
                  considered: list[dict[str, Any]]) -> Decision:
        fb = self.settings.fallback
        summary = "; ".join(f"{t['rule']}: {t['outcome']}" for t in tried) or "no routing rules"
        if fb.owner and fb.owner.lower() not in exclude:
            return Decision(lead.id, fb.owner.lower(), None, "fallback",
                            f"fallback owner {fb.owner.lower()}: no rule decided ({summary})",
                            kind=kind, previous_owner=lead.owner, rules=tried, candidates=considered)
        if fb.queue:
            return Decision(lead.id, None, fb.queue, "fallback",
                            f"fallback queue {fb.queue!r}: no rule decided ({summary})",
                            kind=kind, previous_owner=lead.owner, rules=tried, candidates=considered)
        owner = fb.owner.lower() if fb.owner else None
        return Decision(lead.id, owner, None, "fallback",
                        f"fallback owner {owner} again (no queue, everyone had it): "
                        f"no rule decided ({summary})",
                        kind=kind, previous_owner=lead.owner, rules=tried, candidates=considered)

    @staticmethod
    def _record(s: Session, d: Decision, now: datetime) -> Decision:
        s.execute(_INSERT_DECISION, {
            "lead_id": d.lead_id, "at": now, "kind": d.kind, "rule": d.rule, "strategy": d.strategy, "pool": d.pool,
            "owner": d.owner, "previous_owner": d.previous_owner, "queue": d.queue, "reason": d.reason[:2000],
            "rules": d.rules, "candidates": d.candidates})
        books(s).counted(d.owner, d.pool, now)
        return d
