"""Hub tasks as a CRM receives them, for connectors with ``can_write_tasks``.

:class:`TaskOp` is a task to create on a lead's record (:meth:`hub.connector.Connector.write_tasks`,
and the look for earlier pushes, :meth:`~hub.connector.Connector.find_tasks`); :class:`TaskClose` a
pushed task to close (:meth:`~hub.connector.Connector.close_tasks`); :class:`TaskResult` the answer,
one per op. :mod:`hub.tasks_push` builds the ops and records the results; connectors import these
from :mod:`hub.connector`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["TaskOp", "TaskClose", "TaskResult"]


@dataclass(frozen=True, slots=True)
class TaskOp:
    """A hub task (SLA breach, escalation, review…) to create in the CRM, on the lead's record.

    ``owner_remote`` is the CRM user id of the assignee (see :meth:`~hub.connector.Connector.remote_owner`), or
    ``None`` for the CRM's default. The task carries :attr:`marker` in its body, so it can be found
    again: ``maybe_exists`` says an earlier push of it may have reached the CRM (it was sent, and the
    hub never recorded the answer), so a connector without an upsert looks for the marker first.
    """

    task_id: int
    lead_remote_id: str
    owner_remote: str | None
    title: str
    due_at: datetime | None
    kind: str
    note: str = ""  # more text for the body (e.g. the rule that made the task)
    maybe_exists: bool = False

    @property
    def marker(self) -> str:
        return f"leadhub-task:{self.task_id}"

    @property
    def urgent(self) -> bool:
        """An SLA breach, escalation or violation: sent at high priority where the CRM has one."""
        return self.kind in ("breach", "escalation", "violation")

    @property
    def body(self) -> str:
        return f"{self.note}\n\n{self.marker}" if self.note else self.marker

    def marked(self, text: Any) -> bool:
        """True if ``text`` (a task body read back from the CRM) carries this task's marker."""
        return bool(text) and re.search(rf"{re.escape(self.marker)}(?!\d)", str(text)) is not None


@dataclass(frozen=True, slots=True)
class TaskClose:
    """A task the hub pushed (``remote_id``: the CRM's task) and has since closed: to close in the CRM.

    ``dismissed``: the hub dismissed it rather than did it — "canceled" where the CRM has such a state
    (Dynamics 365), completed elsewhere. Closing is idempotent: a task already closed stays closed.
    """

    task_id: int
    remote_id: str
    dismissed: bool = False


@dataclass(slots=True)
class TaskResult:
    task_id: int
    ok: bool
    remote_id: str | None = None
    error: str | None = None  # the vendor's verbatim message when not ok
    retryable: bool = False
    gone: bool = False  # closing: the CRM no longer has the task (deleted there); ``error`` says so in its words
