"""A custom rule as a plugin: Closed Won hands the customer over to customer success.

process.md's fifth automation — "Closed Won creates a kickoff task in the delivery system,
notifies customer success" — written the way any third-party rule is: a :class:`hub.engine.Rule`
subclass registered through the ``hub_register_rules`` hook, configured under ``rules.handover``
in the process file, returning actions and doing no I/O itself::

    rules:
      handover:
        only_if: 'lead.value != null && lead.value >= 10000.0'   # CEL; leave out for every deal
        assignee_role: customer_success
        within: 2d

To load it, install a package whose ``pyproject.toml`` declares the entry point::

    [project.entry-points.leadhub]
    handover = "custom_rule"

then ``leadhub plugins`` lists it, and ``leadhub rules --dry-run`` shows what it would do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from hub.actions import Action
from hub.conditions import Condition
from hub.context import RuleContext
from hub.engine import LeadChange, Rule, RuleConfig
from hub.hookspecs import hookimpl
from hub.model import Lead
from hub.process import DurationField, Loc, parse_duration

__all__ = ["HandoverConfig", "Handover", "hub_register_rules"]


class HandoverConfig(RuleConfig):
    only_if: Condition | None = None
    assignee_role: str = "customer_success"
    within: DurationField = parse_duration("2d")


class Handover(Rule):
    """A kickoff task for customer success when a deal is won (once per win)."""

    name = "handover"
    order = 55  # after governance, before the SLA clocks
    Config = HandoverConfig

    def check(self) -> list[tuple[Loc, str]]:
        if self.process.roles and self.config.assignee_role not in self.process.roles:
            return [(("assignee_role",), f"unknown role {self.config.assignee_role!r}")]
        return []

    def wants(self, change: LeadChange) -> bool:
        return change.new or change.changed or change.asked

    def evaluate(self, ctx: RuleContext, lead: Lead) -> Iterable[Action]:
        if lead.status != "Closed Won" or lead.status_since is None:
            return []
        if self.config.only_if is not None and not ctx.test(self.config.only_if, lead):
            return []
        owner = ctx.person(lead.owner)
        if owner is not None and owner.role == self.config.assignee_role:
            assignee = owner.email
        else:
            assignee = next((p.email for p in self.process.team if p.role == self.config.assignee_role), None)
        value = f"{lead.value:,.0f} {lead.currency or ''}".strip() if lead.value is not None else "no value"
        return [Action.create_task(
            f"Kickoff with {lead.company or lead.last_name or lead.id} ({value})", assignee=assignee,
            task_kind="handover", due_at=lead.status_since + self.config.within.delta,
            key=f"won@{lead.status_since.isoformat()}",
            reason=f"won on {lead.status_since:%Y-%m-%d}: hand over to {self.config.assignee_role}",
            inputs={"value": lead.value, "owner": lead.owner, "assignee": assignee})]


@hookimpl
def hub_register_rules(register: Callable[[type], None]) -> None:
    register(Handover)
