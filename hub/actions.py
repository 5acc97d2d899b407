"""What rules return (:class:`Action`), what a run reports, and where the engine keeps the record.

An action is a value: a ``kind``, its ``params``, the ``inputs`` the rule looked at, a one-line
``reason`` and, for things that must happen once, a ``key``. Rules build them with the
constructors below and never apply them; :mod:`hub.engine` does, and stores every one.

Tables (listed in ``hub.store.TABLE_MODULES``; revision ``0002``):

* ``rule_actions`` — every action taken or refused: rule, lead, kind, params, inputs, reason,
  the run's ``now``, ``applied`` and, when refused, ``outcome``. ``(rule, lead_id, key)`` is
  unique, which is what makes a keyed action fire once.
* ``tasks`` — work for a person (reminders, SLA breaches, escalations, reviews, missing fields),
  ``open`` until done or dismissed; pushed as a task into the CRM where the lead's owner works
  (:mod:`hub.tasks_push`, revision ``0005``: ``connection``, ``remote_id``, ``pushed_at``…), and
  closed there once closed here (revision ``0007``: ``remote_closed_at``, ``close_error``).
* ``lead_flags`` — markers on a lead (``stalled``, ``stale``, ``incomplete``…), one per name.
* ``lead_relations`` — ``duplicate`` links and ``merged_into`` between two leads.
* ``rule_leads`` — the engine's book per lead: when it last looked, when to look again
  (``due_at``, the earliest rule timer), each rule's timer and small private state.
* ``rule_runs`` — the run log, with a hash of the rules' configuration (a change re-checks all).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from hub.store import UTCDateTime

__all__ = [
    "ACTION_KINDS",
    "STATE_KINDS",
    "Action",
    "ActionRecord",
    "EngineOutcome",
    "RuleAction",
    "Task",
    "LeadFlag",
    "LeadRelation",
    "RuleLead",
    "RuleRun",
    "open_tasks",
]

#: Every kind of action, in the words of the issue.
ACTION_KINDS = ("assign_owner", "set_status", "set_fields", "create_task", "close_tasks", "escalate", "flag",
                "unflag", "link", "merge")
#: Kinds that set state: applied only when they change something (so they need no key).
STATE_KINDS = frozenset({"assign_owner", "set_status", "set_fields", "close_tasks", "flag", "unflag", "link",
                         "merge"})


@dataclass(frozen=True, slots=True)
class Action:
    """One thing a rule wants done to the lead it is evaluating. Build with the constructors."""

    kind: str
    reason: str
    params: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    key: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ACTION_KINDS:
            raise ValueError(f"unknown action kind {self.kind!r}; known: {', '.join(ACTION_KINDS)}")
        if not self.reason or "\n" in self.reason:
            raise ValueError("an action's reason is one non-empty line")

    @classmethod
    def assign_owner(cls, owner: str, *, reason: str, inputs: dict[str, Any] | None = None,
                     key: str | None = None) -> Action:
        """Make ``owner`` (a team member's email) the lead's owner."""
        return cls("assign_owner", reason, {"owner": owner.lower()}, inputs or {}, key)

    @classmethod
    def set_status(cls, status: str, *, reason: str, reopen: bool = False,
                   inputs: dict[str, Any] | None = None, key: str | None = None) -> Action:
        """Move the lead to ``status`` along an allowed transition; ``reopen`` to leave a final one."""
        return cls("set_status", reason, {"status": status, "reopen": reopen}, inputs or {}, key)

    @classmethod
    def set_fields(cls, fields: dict[str, Any], *, reason: str, inputs: dict[str, Any] | None = None,
                   key: str | None = None) -> Action:
        """Set canonical or custom fields (not ``status``/``owner``: use their own actions)."""
        return cls("set_fields", reason, {"fields": dict(fields)}, inputs or {}, key)

    @classmethod
    def create_task(cls, title: str, *, assignee: str | None, reason: str, task_kind: str = "todo",
                    due_at: datetime | None = None, inputs: dict[str, Any] | None = None,
                    key: str | None = None) -> Action:
        """Work for ``assignee`` (an email; ``None``: the status's owning role picks it up)."""
        return cls("create_task", reason, {"title": title, "assignee": assignee and assignee.lower(),
                                           "task_kind": task_kind, "due_at": due_at and due_at.isoformat()},
                   inputs or {}, key)

    @classmethod
    def close_tasks(cls, *, reason: str, task_kind: str | None = None,
                    inputs: dict[str, Any] | None = None) -> Action:
        """Mark this rule's open tasks on the lead done (only those of ``task_kind`` if given)."""
        return cls("close_tasks", reason, {"task_kind": task_kind}, inputs or {})

    @classmethod
    def escalate(cls, to: str | None, title: str, *, reason: str, inputs: dict[str, Any] | None = None,
                 key: str | None = None) -> Action:
        """Tell ``to`` (usually the owner's manager) about the lead: a task of kind ``escalation``."""
        return cls("escalate", reason, {"to": to and to.lower(), "title": title}, inputs or {}, key)

    @classmethod
    def flag(cls, name: str, *, reason: str, note: str = "", inputs: dict[str, Any] | None = None,
             key: str | None = None) -> Action:
        """Mark the lead (``stalled``, ``stale``, ``incomplete``…); one flag per name."""
        return cls("flag", reason, {"flag": name, "note": note}, inputs or {}, key)

    @classmethod
    def unflag(cls, name: str, *, reason: str, inputs: dict[str, Any] | None = None) -> Action:
        """Clear a flag (nothing happens if the lead does not have it)."""
        return cls("unflag", reason, {"flag": name}, inputs or {})

    @classmethod
    def link(cls, other: str, *, reason: str, relation: str = "duplicate",
             inputs: dict[str, Any] | None = None) -> Action:
        """Relate the lead to ``other`` (a lead id), e.g. as a possible duplicate."""
        return cls("link", reason, {"other": other, "relation": relation}, inputs or {})

    @classmethod
    def merge(cls, into: str, *, reason: str, inputs: dict[str, Any] | None = None) -> Action:
        """Merge the lead into ``into`` (the survivor): see :mod:`hub.engine` for what moves."""
        return cls("merge", reason, {"into": into}, inputs or {})


@dataclass
class ActionRecord:
    """An action as the engine took (or, in a dry run, would take) it."""

    rule: str
    lead_id: str
    kind: str
    params: dict[str, Any]
    inputs: dict[str, Any]
    reason: str
    key: str | None
    applied: bool
    outcome: str | None
    at: datetime


@dataclass
class EngineOutcome:
    """What one run did. ``actions`` holds every action only when asked (dry runs, named leads)."""

    now: datetime
    dry_run: bool = False
    run_id: int | None = None
    evaluated: int = 0
    applied: int = 0
    refused: int = 0
    repeated: int = 0  # keyed actions already taken in an earlier run: not taken again
    counts: dict[str, int] = field(default_factory=dict)  # "rule.kind" → actions
    errors: list[str] = field(default_factory=list)
    actions: list[ActionRecord] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=str))

    def snapshot(self) -> tuple[Any, ...]:
        return (self.evaluated, self.applied, self.refused, self.repeated, dict(self.counts),
                len(self.errors), len(self.actions))

    def restore(self, snap: tuple[Any, ...]) -> None:
        """Forget what a rolled-back batch counted (it is about to be redone)."""
        self.evaluated, self.applied, self.refused, self.repeated, self.counts = snap[:4] + (dict(snap[4]),)
        del self.errors[snap[5]:], self.actions[snap[6]:]


def _ts(**kw: Any) -> Any:
    return Field(default=None, sa_type=UTCDateTime, **kw)


class RuleRun(SQLModel, table=True):
    __tablename__ = "rule_runs"

    id: int | None = Field(default=None, primary_key=True)
    now: datetime | None = _ts()
    started_at: datetime | None = _ts()
    finished_at: datetime | None = _ts()
    config_hash: str = Field(max_length=64)
    counts: dict = Field(default_factory=dict, sa_type=sa.JSON)
    errors: int = 0


class RuleAction(SQLModel, table=True):
    __tablename__ = "rule_actions"
    __table_args__ = (sa.UniqueConstraint("rule", "lead_id", "key", name="uq_rule_actions_key"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int | None = Field(default=None, foreign_key="rule_runs.id")
    rule: str = Field(max_length=100)
    lead_id: str = Field(foreign_key="leads.id", index=True, max_length=64)
    kind: str = Field(max_length=30)
    key: str | None = Field(default=None, max_length=255)
    params: dict = Field(default_factory=dict, sa_type=sa.JSON)
    inputs: dict = Field(default_factory=dict, sa_type=sa.JSON)
    reason: str
    at: datetime | None = _ts()
    applied: bool = True
    outcome: str | None = None


class Task(SQLModel, table=True):
    __tablename__ = "tasks"
    __table_args__ = (sa.Index("ix_tasks_unpushed", "state", "remote_id"),
                      sa.Index("ix_tasks_unclosed", "connection", "remote_closed_at"))

    id: int | None = Field(default=None, primary_key=True)
    lead_id: str = Field(foreign_key="leads.id", index=True, max_length=64)
    rule: str = Field(max_length=100)
    kind: str = Field(max_length=30)  # reminder | breach | escalation | review | violation | todo …
    assignee: str | None = Field(default=None, index=True)
    title: str
    due_at: datetime | None = _ts()
    created_at: datetime | None = _ts()
    state: str = Field(default="open", max_length=20)  # open | done | dismissed
    closed_at: datetime | None = _ts()
    # pushed into one CRM (hub.tasks_push): the connection that took it, the CRM's task id once created
    connection: str | None = Field(default=None, max_length=100)
    remote_id: str | None = Field(default=None, max_length=255)
    pushed_at: datetime | None = _ts()
    push_error: str | None = None  # the CRM's last refusal, verbatim; retried every run
    push_attempts: int = 0
    # closed in the hub after it was pushed: closed in its CRM too (hub.tasks_push, revision 0007)
    remote_closed_at: datetime | None = _ts()  # when the CRM closed it (or was found not to have it any more)
    close_error: str | None = None  # the CRM's last refusal of the close, verbatim, or its word that the task is gone


class LeadFlag(SQLModel, table=True):
    __tablename__ = "lead_flags"

    lead_id: str = Field(foreign_key="leads.id", primary_key=True, max_length=64)
    flag: str = Field(primary_key=True, max_length=50)
    rule: str = Field(max_length=100)
    note: str = ""
    status: str | None = None  # the lead's status when flagged
    since: datetime | None = _ts()


class LeadRelation(SQLModel, table=True):
    __tablename__ = "lead_relations"
    __table_args__ = (sa.UniqueConstraint("lead_id", "other_id", "relation", name="uq_lead_relations"),)

    id: int | None = Field(default=None, primary_key=True)
    lead_id: str = Field(foreign_key="leads.id", index=True, max_length=64)
    other_id: str = Field(foreign_key="leads.id", index=True, max_length=64)
    relation: str = Field(max_length=30)  # duplicate | merged_into
    rule: str = Field(max_length=100)
    at: datetime | None = _ts()


class RuleLead(SQLModel, table=True):
    __tablename__ = "rule_leads"

    lead_id: str = Field(foreign_key="leads.id", primary_key=True, max_length=64)
    seen_at: datetime | None = _ts()  # wall clock when the engine last evaluated the lead
    due_at: datetime | None = _ts(index=True)  # the earliest rule timer
    timers: dict = Field(default_factory=dict, sa_type=sa.JSON)  # rule → ISO instant
    state: dict = Field(default_factory=dict, sa_type=sa.JSON)  # rule → its private memory


def open_tasks(session: Any, *, lead_id: str | None = None, assignee: str | None = None,
               kind: str | None = None) -> list[Task]:
    """Open tasks, oldest first, optionally for one lead, assignee or kind."""
    q = sa.select(Task).where(Task.state == "open")
    if lead_id is not None:
        q = q.where(Task.lead_id == lead_id)
    if assignee is not None:
        q = q.where(Task.assignee == assignee.lower())
    if kind is not None:
        q = q.where(Task.kind == kind)
    return list(session.exec(q.order_by(Task.created_at, Task.id)).scalars())
