"""The rule engine: rules (plugins) evaluate leads and return actions; the engine applies them.

Writing a rule (the interface every rule, built-in or third-party, uses)::

    from hub.actions import Action
    from hub.conditions import Condition          # a CEL expression, compiled when the config loads
    from hub.engine import LeadChange, Rule, RuleConfig, RuleContext

    class Routing(Rule):
        name = "routing"          # its section under ``rules:`` in the process file; unique
        order = 30                # lower runs first (ties: by name); ``rules.<name>.order`` overrides

        class Config(RuleConfig):  # validated from ``rules.routing``; unknown keys are errors
            only_if: Condition | None = None       # e.g. 'lead.country in ["DE", "AT"]'

        def wants(self, change: LeadChange) -> bool:       # optional; default: every lead
            return change.new or change.changed

        def evaluate(self, ctx: RuleContext, lead: Lead) -> Iterable[Action]:
            if lead.owner is None and (self.config.only_if is None or ctx.test(self.config.only_if, lead)):
                yield Action.assign_owner("jonas@x.example", reason="DE territory → Jonas",
                                          inputs={"country": lead.country})

        def next_due(self, ctx, lead) -> datetime | None:  # optional: wake this lead again then
            return None

        def describe(self, ctx, lead) -> list[str]:        # optional: state lines for ``explain``
            return []

        def check(self) -> list[tuple[Loc, str]]:          # optional: cross-checks with self.process
            return []                                      # (loc inside rules.<name>, message)

    # a constructor that cannot set up from a valid config (a file it names is missing…) raises
    # RuleSetupError([(loc inside rules.<name>, message), …]); it is reported like check()'s problems

    @hookimpl                                              # registration, in the rule's plugin
    def hub_register_rules(register):
        register(Routing)

Built-in rules live in ``rules/<name>.py`` (or a package) and expose ``RULES = (RuleClass, …)``;
``rules/__init__.py`` registers every module of :data:`rules.RULE_MODULES` (one not written yet is skipped).

A rule instance has ``self.config`` (its validated ``Config``), ``self.process`` and ``self.name``.
``evaluate`` never performs I/O: it reads the lead and ``ctx`` and returns actions. ``ctx`` is a
:class:`RuleContext`: ``now``, ``process``, ``calendar_for(lead)`` / ``clock_for(lead, status)``
(:class:`hub.calendar.BusinessClock`), read-only queries prefetched per batch (``history``, ``links``,
``flags``, ``relations``, ``past_actions``), ``open_leads_by_owner()`` (kept current as the run assigns
owners), ``leads(*where, limit=)`` (a read-only SELECT on ``leads``), ``test(condition, lead)`` /
``env(lead)`` for CEL, and the rule's own small memory ``state(lead)`` / ``keep(lead, data)`` (saved
with the lead's actions, dropped in a dry run) — the one thing a rule may write.

Actions (:mod:`hub.actions`) and how the engine applies them:

==============  ================================================================================
assign_owner    ``lead.owner``; queued to every linked CRM through the outbox
set_status      checked against the process's transitions (a final status is left only with
                ``reopen=True``); history row ``by="rule:<name>"`` with ``incomplete`` fields; outbox
set_fields      other canonical or custom fields (``score``…); outbox
create_task     a row in ``tasks`` (pushed to CRMs that can create tasks: later)
close_tasks     marks the rule's open tasks on the lead done (optionally one ``task_kind``)
escalate        a task for the manager (``kind="escalation"``)
flag / unflag   ``lead_flags`` (``stalled``, ``stale``, ``incomplete``…), shown by ``explain``
link / merge    ``lead_relations``; ``merge`` also moves the lead's CRM links to the survivor
==============  ================================================================================

Order and idempotence. Each run takes the leads that are new to the engine, changed since it last
looked (``leads.updated_at`` against ``rule_leads.seen_at``), or whose timer fell due (the earliest
``next_due`` of its rules, ``rule_leads.due_at``) — or the leads asked for, or all of them when the
rules' configuration changed — in pages of ``batch_size``; for each lead every enabled rule runs in
order (``wants`` first), each seeing the earlier rules' changes. Timers replace a per-rule ``due``
query: the engine keeps them, so a rule never scans the store to find its work.
Every action is stored in ``rule_actions`` with its rule, inputs, one-line reason, the run's ``now``
and whether it was applied (a refused one carries why). An action with a ``key`` fires once per
(rule, lead, key) — an SLA reminder is keyed by status, clock start and step; a task or escalation
without one is keyed by its content and the lead's status episode; a state action that would change
nothing is dropped. So running twice at the same ``now`` with nothing changed makes no new actions.
One transaction per batch; a dry run does all the same work and rolls it back. A lead row is only
written back if no one changed it since the batch read it; otherwise the batch is rolled back and
redone (:class:`hub.apply.LeadMoved`), so a concurrent sync never loses a change. A rule that
raises is logged in ``EngineOutcome.errors`` and skipped for that lead; the run goes on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, ValidationError
from sqlmodel import Session

from hub.actions import STATE_KINDS, Action, ActionRecord, EngineOutcome, RuleAction, RuleLead, RuleRun
from hub.apply import Applier, LeadMoved
from hub.context import RuleContext
from hub.errors import ConfigError, PluginError, Problem
from hub.model import Lead, utcnow
from hub.process import Loc, Process, YamlSource, hint, problems_from_error, read_yaml
from hub.store import LeadRow, Store, lead_from_row
from hub.yamlsource import format_loc

__all__ = ["RuleConfig", "Rule", "RuleSetupError", "LeadChange", "RuleContext", "ActionRecord", "EngineOutcome",
           "Engine", "build_rules", "rule_problems"]

log = logging.getLogger(__name__)


class RuleConfig(BaseModel):
    """Keys every rule's section accepts; a rule's ``Config`` adds its own. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    order: int | None = None  # overrides the rule's built-in order


class RuleSetupError(ValueError):
    """A rule's constructor could not set up from its (valid) config: a file it names is missing or
    unreadable, a table does not compile… ``problems`` are ``(loc inside rules.<name>, message)``,
    like :meth:`Rule.check`'s, and are reported the same way, with the process file's line."""

    def __init__(self, problems: Sequence[tuple[Loc, str]]):
        self.problems = list(problems)
        super().__init__("; ".join(f"{format_loc(loc)}: {msg}" if loc else msg for loc, msg in self.problems))


@dataclass(frozen=True, slots=True)
class LeadChange:
    """Why a lead is being evaluated: new to the engine, changed since, timers due, or asked for."""

    lead_id: str
    new: bool = False
    changed: bool = False
    due: frozenset[str] = frozenset()  # names of rules whose timer fell due
    asked: bool = False  # named explicitly, or a full pass (config changed, --all)


class Rule:
    """Base class of every rule; see the module docstring for the contract."""

    name: ClassVar[str] = ""
    order: ClassVar[int] = 100
    Config: ClassVar[type[RuleConfig]] = RuleConfig

    def __init__(self, config: RuleConfig | None = None, process: Process | None = None):
        from hub.process import default_process

        self.config = config if config is not None else self.Config()
        self.process = process if process is not None else default_process()

    @property
    def position(self) -> int:
        return self.config.order if self.config.order is not None else self.order

    def wants(self, change: LeadChange) -> bool:
        return True

    def evaluate(self, ctx: RuleContext, lead: Lead) -> Iterable[Action]:
        raise NotImplementedError

    def next_due(self, ctx: RuleContext, lead: Lead) -> datetime | None:
        return None

    def describe(self, ctx: RuleContext, lead: Lead) -> list[str]:
        return []

    def check(self) -> list[tuple[Loc, str]]:
        return []

    def __repr__(self) -> str:
        return f"<rule {self.name} order={self.position}>"


def build_rules(process: Process, classes: Mapping[str, type], *,
                source: Path | str | None = None) -> list[Rule]:
    """One instance per registered rule, its config validated from ``process.rules``.

    Every problem (an unknown rule name, an unknown key, a bad value, a failed cross-check) is
    reported at once as a :class:`ConfigError` with the process file's line when ``source`` is given.
    """
    rules, problems = _build_rules(process, classes, source)
    if problems:
        raise ConfigError(problems)
    return rules


def rule_problems(process: Process, classes: Mapping[str, type], *,
                  source: Path | str | YamlSource | None = None) -> list[Problem]:
    """What :func:`build_rules` would raise, as a list (empty: the rules load): ``leadhub validate``.

    No store and no network: the rules are built and checked exactly as an engine start builds them.
    ``source``: the process file, or that file already parsed.
    """
    return _build_rules(process, classes, source)[1]


def _build_rules(process: Process, classes: Mapping[str, type],
                 source: Path | str | YamlSource | None) -> tuple[list[Rule], list[Problem]]:
    if isinstance(source, YamlSource):
        src = source
    else:
        read = read_yaml(source)[0] if source is not None else None
        src = read or YamlSource(str(source or "<process>"), None, {})
    problems: list[Problem] = []
    for name in process.rules:
        if name not in classes:
            problems.append(src.problem(("rules", name), f"unknown rule {name!r}{hint(name, classes)}"))
    rules = []
    for name, cls in sorted(classes.items()):
        if not (isinstance(cls, type) and issubclass(cls, Rule)):
            raise PluginError(f"rule {name!r} ({cls.__module__}.{cls.__qualname__}) is not a hub.engine.Rule")
        try:
            config = cls.Config.model_validate(process.rules.get(name) or {})
        except ValidationError as exc:
            problems += problems_from_error(exc, src, prefix=("rules", name), model=cls.Config)
            continue
        try:
            rule = cls(config, process)
        except RuleSetupError as exc:
            problems += [src.problem(("rules", name, *loc), msg) for loc, msg in exc.problems]
            continue
        except ValueError as exc:  # a plugin's constructor refusing its config in its own words
            problems.append(src.problem(("rules", name), str(exc)))
            continue
        problems += [src.problem(("rules", name, *loc), msg) for loc, msg in rule.check()]
        rules.append(rule)
    return rules, sorted(problems, key=lambda p: p.line or 0)


def _digest(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


class Engine:
    """Evaluates rules over leads and applies their actions. ``carried``: connection → fields it maps."""

    def __init__(self, store: Store, process: Process, rules: Sequence[Rule], *,
                 carried: Mapping[str, Iterable[str]] | None = None, batch_size: int = 500, hook: Any = None):
        self.store = store
        self.process = process
        self.all_rules = sorted(rules, key=lambda r: (r.position, r.name))
        self.rules = [r for r in self.all_rules if r.config.enabled]
        self._active = {r.name for r in self.rules}
        self.carried = {k: frozenset(v) for k, v in (carried or {}).items()}
        self.batch_size = batch_size
        self.hook = hook  # a pluggy hook relay: ``hub_lead_changed`` is called for each lead a run changed

    @classmethod
    def build(cls, store: Store, process: Process, classes: Mapping[str, type], *,
              source: Path | str | None = None, **kw: Any) -> Engine:
        return cls(store, process, build_rules(process, classes, source=source), **kw)

    def rule(self, name: str) -> Rule:
        return next(r for r in self.all_rules if r.name == name)

    @property
    def config_hash(self) -> str:
        rules = [(r.name, r.position, r.config.model_dump(mode="json")) for r in self.rules]
        return _digest(rules, self.process.model_dump(mode="json", by_alias=True))

    # -- a run ---------------------------------------------------------------------------
    def run(self, now: datetime | None = None, lead_ids: Iterable[str] | None = None, *,
            dry_run: bool = False, all_leads: bool = False,
            keep_actions: bool | None = None) -> EngineOutcome:
        """Evaluate the leads that need it (or ``lead_ids``, or all) at ``now`` and apply the actions."""
        t0 = time.monotonic()
        now = now or utcnow()
        out = EngineOutcome(now=now, dry_run=dry_run)
        keep = keep_actions if keep_actions is not None else (dry_run or lead_ids is not None)
        ids = sorted(set(lead_ids)) if lead_ids is not None else None
        full = all_leads or (ids is None and self._config_changed())
        if not dry_run:
            with self.store.session() as s:
                run = RuleRun(now=now, started_at=utcnow(), config_hash=self.config_hash)
                s.add(run)
                s.flush()
                out.run_id = run.id
        ctx = RuleContext(self.process, now, dry_run)
        last, retries, snapshot = "", 0, out.snapshot()
        while True:
            with Session(self.store.engine, expire_on_commit=False) as s:
                wall = utcnow()
                rows = self._page(s, now, last, ids, full)
                if not rows:
                    break
                try:
                    changes = self._batch(s, ctx, rows, out, wall, keep, asked=full or ids is not None)
                except LeadMoved:
                    s.rollback()
                    retries += 1
                    if retries > 3:
                        raise
                    out.restore(snapshot)
                    continue  # read the same page again, fresh
                except BaseException:
                    s.rollback()
                    raise
                s.rollback() if dry_run else s.commit()
                if self.hook is not None and not dry_run:
                    for lead, change in changes:
                        self.hook.hub_lead_changed(lead=lead, change=change)
                last, retries, snapshot = rows[-1].id, 0, out.snapshot()
        out.seconds = round(time.monotonic() - t0, 3)
        if not dry_run:
            with self.store.session() as s:
                run = s.get(RuleRun, out.run_id)
                run.finished_at, run.counts, run.errors = utcnow(), dict(out.counts), len(out.errors)
        return out

    def _config_changed(self) -> bool:
        with Session(self.store.engine) as s:
            last = s.execute(sa.select(RuleRun.config_hash).where(RuleRun.finished_at.is_not(None))
                             .order_by(RuleRun.id.desc()).limit(1)).scalar()
        return last is not None and last != self.config_hash

    def _page(self, s: Session, now: datetime, last: str, ids: list[str] | None, full: bool) -> list[Any]:
        L, R = LeadRow.__table__, RuleLead.__table__
        q = (sa.select(L, R.c.lead_id.label("_known"), R.c.seen_at.label("_seen"),
                       R.c.timers.label("_timers"), R.c.state.label("_state"))
             .select_from(L.outerjoin(R, R.c.lead_id == L.c.id)).where(L.c.id > last))
        if ids is not None:
            q = q.where(L.c.id.in_([i for i in ids if i > last][:self.batch_size]))
        elif not full:
            q = q.where(sa.or_(R.c.lead_id.is_(None), L.c.updated_at > R.c.seen_at, R.c.due_at <= now))
        return list(s.execute(q.order_by(L.c.id).limit(self.batch_size)).all())

    def _batch(self, s: Session, ctx: RuleContext, rows: list[Any], out: EngineOutcome, wall: datetime,
               keep: bool, asked: bool) -> list[tuple[Lead, dict[str, Any]]]:
        ids = [r.id for r in rows]
        ctx.begin_batch(s, ids)
        A = RuleAction.__table__
        fired = {tuple(k) for k in s.execute(sa.select(A.c.rule, A.c.lead_id, A.c.key).where(
            A.c.lead_id.in_(ids), A.c.key.is_not(None))).all()}
        merged = ctx.merged_leads()
        applier = Applier(self, s, ctx, out, wall)
        books = []
        for row in rows:
            if row.id in merged:
                continue
            lead = original = lead_from_row(row)
            # timers of rules disabled since are dropped, else their leads would stay due forever
            timers = {n: at for n, at in (row._timers or {}).items() if n in self._active}
            state = dict(row._state or {})
            due = frozenset(n for n, at in timers.items() if at and datetime.fromisoformat(at) <= ctx.now)
            seen = row._seen
            change = LeadChange(lead.id, new=row._known is None, due=due, asked=asked,
                                changed=bool(seen and row.updated_at and row.updated_at > seen))
            out.evaluated += 1
            ctx.state_book = state
            for rule in self.rules:
                if not rule.wants(change):
                    if rule.name in due:  # it had its turn; a kept timer would wake the lead every run
                        timers.pop(rule.name)
                    continue
                ctx.rule = rule
                try:
                    actions = list(rule.evaluate(ctx, lead) or ())
                    for action in actions:
                        lead = self._take(applier, rule, lead, action, fired, out, keep)
                        if applier.merged(lead.id):
                            break
                    wake = rule.next_due(ctx, lead)
                except Exception as exc:  # one broken rule never stops the run or the other rules
                    log.exception("rule %s failed on lead %s", rule.name, lead.id)
                    out.errors.append(f"{rule.name} on {lead.id}: {type(exc).__name__}: {exc}")
                    continue
                if applier.merged(lead.id):
                    break
                timers.pop(rule.name, None)
                if wake is not None:
                    timers[rule.name] = wake.isoformat()
            changed = applier.finish_lead(original, lead, row.updated_at)
            # a lead the engine changed itself is seen as written: its own change is no reason to look again
            books.append(dict(lead_id=lead.id, seen_at=applier.written_at if changed else wall, timers=timers,
                              state=state,
                              due_at=min((datetime.fromisoformat(t) for t in timers.values()), default=None)))
        applier.flush()
        R = RuleLead.__table__
        s.execute(sa.delete(R).where(R.c.lead_id.in_(ids)))
        if books:
            s.execute(sa.insert(R), books)
        return applier.changes

    def _take(self, applier: Any, rule: Rule, lead: Lead, action: Action, fired: set[tuple[str, str, str]],
              out: EngineOutcome, keep: bool) -> Lead:
        key = action.key
        if key is None and action.kind not in STATE_KINDS:  # once per status episode and content
            key = "auto:" + _digest(action.kind, action.params, lead.status, lead.status_since)
        if key is not None and (rule.name, lead.id, key) in fired:
            out.repeated += 1
            return lead
        applied, outcome, new_lead = applier.apply(rule, lead, action)
        if applied is None:  # would change nothing
            return lead
        if not applied and key is None:  # record a refusal once per status episode
            key = "refused:" + _digest(action.kind, action.params, lead.status, lead.status_since)
            if (rule.name, lead.id, key) in fired:
                return lead
        if key is not None:
            fired.add((rule.name, lead.id, key))
        applier.record(dict(rule=rule.name, lead_id=lead.id, kind=action.kind, key=key, params=action.params,
                            inputs=action.inputs, reason=action.reason, at=out.now, applied=applied,
                            outcome=outcome))
        out.applied += applied
        out.refused += not applied
        name = f"{rule.name}.{action.kind}"
        out.counts[name] = out.counts.get(name, 0) + 1
        if keep:
            out.actions.append(ActionRecord(rule.name, lead.id, action.kind, action.params, action.inputs,
                                            action.reason, key, applied, outcome, out.now))
        return new_lead
