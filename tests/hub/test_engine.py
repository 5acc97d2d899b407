"""The rule engine: config, order, idempotence, application through the outbox, dry runs, explain."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import ClassVar

import pytest
import sqlalchemy as sa
from sqlmodel import Session
from typer.testing import CliRunner

from hub import cli
from hub.actions import Action, LeadFlag, LeadRelation, RuleAction, RuleLead, Task
from hub.engine import Engine, LeadChange, Rule, RuleConfig, build_rules
from hub.errors import ConfigError, PluginError
from hub.explain import find_lead, format_story, story
from hub.model import Lead
from hub.process import default_process, load_process
from hub.store import LeadRow, Link, OutboxRow, StatusChange, Store, row_values

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
DEFAULT_YAML = Path(__file__).resolve().parents[2] / "hub" / "default_process.yaml"


def add(store: Store, *leads: Lead, links: dict[str, list[str]] | None = None) -> None:
    with store.session() as s:
        for lead in leads:
            s.add(LeadRow(**row_values(lead), created_at=T0, updated_at=T0))
        s.flush()
        for lead_id, conns in (links or {}).items():
            for c in conns:
                s.add(Link(lead_id=lead_id, connection=c, object="contacts", remote_id=f"{c}-{lead_id}"))


def touch(store: Store, lead_id: str, **fields) -> None:
    with store.session() as s:
        row = s.get(LeadRow, lead_id)
        for k, v in fields.items():
            setattr(row, k, v)
        row.updated_at = datetime.now(timezone.utc) + timedelta(seconds=1)


class Promote(Rule):
    """Test rule: a lead from DE moves Lead → MQL, and gets a welcome task."""

    name = "promote"
    order = 10

    class Config(RuleConfig):
        country: str = "DE"

    def evaluate(self, ctx, lead):
        if lead.country == self.config.country and lead.status == "Lead":
            yield Action.set_status("MQL", reason=f"from {lead.country}", inputs={"country": lead.country})
            yield Action.create_task("Say hello", assignee=lead.owner, reason="new MQL")


class Observe(Rule):
    """Test rule running after Promote: records the status it sees; wakes a day later."""

    name = "observe"
    order = 20
    seen: ClassVar[list[tuple[str, str]]] = []

    def evaluate(self, ctx, lead):
        Observe.seen.append((lead.id, lead.status))
        return [Action.set_fields({"seen_as": lead.status}, reason=f"saw {lead.status}")]

    def next_due(self, ctx, lead):
        return ctx.now + timedelta(days=1)


def engine(store, *rules, process=None, **kw) -> Engine:
    return Engine(store, process or default_process(), list(rules), **kw)


def test_rules_run_in_order_and_each_sees_the_changes_before_it(db):
    Observe.seen = []
    lead = Lead(last_name="A", country="DE", owner="a@x.io", status_since=T0)
    add(db, lead)
    out = engine(db, Observe(), Promote()).run(T0)
    assert Observe.seen == [(lead.id, "MQL")]
    assert db.get_lead(lead.id).custom["seen_as"] == "MQL"
    assert out.counts == {"promote.set_status": 1, "promote.create_task": 1, "observe.set_fields": 1}
    Observe.seen = []
    reordered = Observe(RuleConfig(order=1))
    lead2 = Lead(last_name="B", country="DE", status_since=T0)
    add(db, lead2)
    engine(db, reordered, Promote()).run(T0, [lead2.id])
    assert Observe.seen == [(lead2.id, "Lead")]


def test_a_status_action_is_checked_recorded_and_queued_to_every_linked_crm(db):
    lead = Lead(last_name="A", country="DE", status_since=T0)
    add(db, lead, links={lead.id: ["marketing", "sales"]})
    engine(db, Promote(), carried={"sales": ("status", "owner")}).run(T0)
    with Session(db.engine) as s:
        (h,) = s.exec(sa.select(StatusChange)).scalars().all()
        assert (h.from_status, h.to_status, h.by, h.at) == ("Lead", "MQL", "rule:promote", T0)
        assert h.incomplete == ["segment", "company_size", "industry", "role"]  # kept, marked incomplete
        rows = {r.connection: r.fields for r in s.exec(sa.select(OutboxRow)).scalars()}
        assert rows == {"marketing": {"status": "MQL"}, "sales": {"status": "MQL"}}
        action = s.exec(sa.select(RuleAction).where(RuleAction.kind == "set_status")).scalars().one()
        assert action.applied and action.inputs == {"country": "DE"} and action.reason == "from DE"
        assert action.outcome == "incomplete: segment, company_size, industry, role"
    assert db.get_lead(lead.id).status_since == T0


def test_running_twice_at_the_same_now_makes_no_new_actions(db):
    leads = [Lead(last_name=str(i), country="DE", status_since=T0) for i in range(3)]
    add(db, *leads)
    eng = engine(db, Promote(), Observe())
    first = eng.run(T0)
    assert first.applied == 9
    second = eng.run(T0, all_leads=True)
    assert second.evaluated == 3 and second.applied == 0 and second.refused == 0
    assert db.count(RuleAction) == 9 and db.count(Task) == 3


def test_only_new_changed_or_due_leads_are_evaluated(db):
    a, b = Lead(last_name="A", status_since=T0), Lead(last_name="B", status_since=T0)
    add(db, a, b)
    eng = engine(db, Observe())
    assert eng.run(T0).evaluated == 2
    assert eng.run(T0 + timedelta(hours=1)).evaluated == 0
    touch(db, a.id, company="Acme")
    assert eng.run(T0 + timedelta(hours=2)).evaluated == 1
    assert eng.run(T0 + timedelta(days=1, hours=3)).evaluated == 2  # the day-later timers fell due
    with Session(db.engine) as s:
        book = s.get(RuleLead, b.id)
        assert book.timers == {"observe": (T0 + timedelta(days=2, hours=3)).isoformat()}


def test_a_changed_rule_config_reevaluates_every_lead(db):
    add(db, Lead(last_name="A", country="FR", status_since=T0))
    engine(db, Promote()).run(T0)
    assert engine(db, Promote()).run(T0).evaluated == 0
    out = engine(db, Promote(Promote.Config(country="FR"))).run(T0)
    assert out.evaluated == 1 and out.counts == {"promote.set_status": 1, "promote.create_task": 1}


def test_a_dry_run_shows_every_action_and_changes_nothing(db):
    lead = Lead(last_name="A", country="DE", status_since=T0)
    add(db, lead, links={lead.id: ["marketing"]})
    tables = (RuleAction, Task, StatusChange, OutboxRow, RuleLead)
    dry = engine(db, Promote()).run(T0, dry_run=True)
    assert [(a.kind, a.applied) for a in dry.actions] == [("set_status", True), ("create_task", True)]
    assert dry.run_id is None
    assert [db.count(t) for t in tables] == [0] * len(tables)
    assert db.get_lead(lead.id).status == "Lead"
    real = engine(db, Promote()).run(T0, keep_actions=True)
    assert [(a.kind, a.reason) for a in real.actions] == [(a.kind, a.reason) for a in dry.actions]


class Reopen(Rule):
    name = "reopen"

    class Config(RuleConfig):
        reopen: bool = False

    def evaluate(self, ctx, lead):
        return [Action.set_status("Nurture", reopen=self.config.reopen, reason="try again later")]


def test_a_final_status_is_left_only_by_a_rule_that_says_it_reopens(db):
    lead = Lead(last_name="A", status="Closed Lost", loss_reason="Timing", status_since=T0)
    add(db, lead)
    out = engine(db, Reopen()).run(T0)
    assert out.refused == 1 and "only a reopening rule" in db_actions(db)[0].outcome
    assert engine(db, Reopen()).run(T0, all_leads=True).refused == 0  # a refusal is recorded once per status
    assert engine(db, Reopen(Reopen.Config(reopen=True))).run(T0).applied == 1
    assert db.get_lead(lead.id).status == "Nurture"


def db_actions(store: Store) -> list[RuleAction]:
    with Session(store.engine) as s:
        return list(s.exec(sa.select(RuleAction).order_by(RuleAction.id)).scalars())


class Boom(Rule):
    name = "boom"

    def evaluate(self, ctx, lead):
        if lead.last_name == "bad":
            raise ValueError("cannot score this")
        return [Action.flag("seen", reason="ok")]


def test_a_failing_rule_never_stops_the_run_or_other_leads(db):
    add(db, Lead(last_name="bad", country="DE"), Lead(last_name="good", country="DE"))
    out = engine(db, Boom(), Promote()).run(T0)
    assert len(out.errors) == 1 and "boom on" in out.errors[0] and "cannot score this" in out.errors[0]
    assert out.counts["boom.flag"] == 1 and out.counts["promote.set_status"] == 2


class Owner(Rule):
    name = "owner"

    class Config(RuleConfig):
        to: str = "jonas.keller@brightfield.example"

    def evaluate(self, ctx, lead):
        before = dict(ctx.open_leads_by_owner())
        lead.custom["load_before"] = before.get(self.config.to, 0)
        return [Action.assign_owner(self.config.to, reason="territory")]


def test_assign_owner_needs_a_team_member_and_keeps_workload_current(db):
    process = load_process(Path(__file__).resolve().parents[2] / "examples" / "process.yaml")
    a, b = Lead(last_name="A", status_since=T0), Lead(last_name="B", status_since=T0)
    add(db, a, b, links={a.id: ["sales"]})
    out = engine(db, Owner(Owner.Config(), process), process=process).run(T0)
    assert out.applied == 2 and db.get_lead(b.id).owner == "jonas.keller@brightfield.example"
    with Session(db.engine) as s:
        assert s.exec(sa.select(OutboxRow.fields)).scalars().one() == {"owner": "jonas.keller@brightfield.example"}
    c = Lead(last_name="C")
    add(db, c)
    refused = engine(db, Owner(Owner.Config(to="nobody@x.io"), process), process=process).run(T0, [c.id])
    assert refused.refused == 1 and refused.actions[0].outcome == "nobody@x.io is not in the process's team"


class Dedup(Rule):
    name = "dedup_test"

    def evaluate(self, ctx, lead):
        if lead.last_name == "Copy":
            (original,) = ctx.leads(LeadRow.last_name == "Original")
            return [Action.link(original.id, reason="same email"), Action.merge(original.id, reason="same person")]
        return []


def test_merge_moves_links_fills_blanks_and_stops_evaluating_the_merged_lead(db):
    original = Lead(last_name="Original", email="a@x.io")
    copy = Lead(last_name="Copy", email="a@x.io", phone="+49 30 1234567", custom={"industry": "Retail"})
    add(db, original, copy, links={original.id: ["marketing"], copy.id: ["marketing", "sales"]})
    out = engine(db, Dedup()).run(T0)
    assert out.counts == {"dedup_test.link": 1, "dedup_test.merge": 1}
    survivor = db.get_lead(original.id)
    assert survivor.phone == "+49 30 1234567" and survivor.custom["industry"] == "Retail"
    with Session(db.engine) as s:
        links = {(ln.connection, ln.lead_id) for ln in s.exec(sa.select(Link)).scalars()}
        assert links == {("marketing", original.id), ("marketing", copy.id), ("sales", original.id)}
        assert {r.relation for r in s.exec(sa.select(LeadRelation)).scalars()} == {"duplicate", "merged_into"}
    merge = next(a for a in db_actions(db) if a.kind == "merge")
    assert merge.outcome == "kept own links in marketing (survivor already linked there)"
    assert engine(db, Dedup()).run(T0, all_leads=True).evaluated == 1  # the merged lead is skipped


def test_rule_config_errors_name_the_file_line_and_key(tmp_path):
    path = tmp_path / "process.yaml"
    text = DEFAULT_YAML.read_text().split("\nrules:")[0]
    path.write_text(text + "\nrules:\n  promote:\n    countyr: FR\n  promte: {}\n  observe:\n    order: soon\n")
    process = load_process(path)
    with pytest.raises(ConfigError) as exc:
        build_rules(process, {"promote": Promote, "observe": Observe}, source=path)
    lines = text.count("\n") + 2
    messages = [str(p) for p in exc.value.problems]
    assert f"{path}:{lines + 2}: rules.promote.countyr: unknown key 'countyr' (did you mean 'country'?)" in messages
    assert f"{path}:{lines + 3}: rules.promte: unknown rule 'promte' (did you mean 'promote'?)" in messages
    assert any(m.startswith(f"{path}:{lines + 5}: rules.observe.order:") for m in messages)
    with pytest.raises(PluginError):
        build_rules(process, {"plain": type("Plain", (), {"name": "plain"})})


def test_the_built_in_rules_load_with_the_default_process():
    from hub.plugins import registry

    rules = build_rules(default_process(), registry().rules, source=DEFAULT_YAML)
    names = [r.name for r in sorted(rules, key=lambda r: r.position)]
    for name in ("scoring", "stale", "governance", "sla"):
        assert name in names
    assert names.index("scoring") < names.index("stale") < names.index("governance") < names.index("sla")


def test_explain_tells_the_story_in_order_with_the_clocks_now(db):
    from rules.sla import SlaRule

    lead = Lead(last_name="Weber", email="anna@nordwind.example", status="Negotiation", status_since=T0,
                next_action=T0.date())
    add(db, lead)
    with db.session() as s:
        s.add(StatusChange(lead_id=lead.id, from_status=None, to_status="Negotiation", at=T0, by="connection:crm"))
    eng = engine(db, SlaRule())
    eng.run(T0 + timedelta(days=5, hours=1))
    eng.run(T0 + timedelta(days=7, hours=1))
    assert find_lead(db, "ANNA@nordwind.example") == lead.id == find_lead(db, lead.id[:10])
    entries = story(db, lead.id)
    assert [e.what for e in entries] == ["created", "status", "rule", "rule"]
    assert entries[2].text.startswith("create_task Reminder:") and entries[3].text.startswith("escalate")
    assert "REFUSED: no one to escalate to" in entries[3].text  # the default process has no team
    text = "\n".join(format_story(db, lead.id, eng, T0 + timedelta(days=8)))
    assert "SLA clock for Negotiation since 2026-03-02 09:00 UTC (wall clock)" in text
    assert "stall 10d at 2026-03-12 09:00 UTC" in text and "open task [reminder]" in text


def test_leadhub_rules_dry_run_and_explain_from_the_cli(db, tmp_path):
    lead = Lead(last_name="Weber", email="anna@x.io", status_since=T0 - timedelta(days=2))
    add(db, lead)
    cfg = tmp_path / "leadhub.yaml"
    cfg.write_text(f"database: {db.url}\n")
    runner = CliRunner(env={"COLUMNS": "200"})
    dry = runner.invoke(cli.app, ["rules", "-c", str(cfg), "--dry-run", "--now", "2026-03-02T10:00:00Z"])
    assert dry.exit_code == 0, dry.output
    assert "Lead since 2026-02-28 09:00 UTC: due after 24h, reached 2026-03-01 09:00 UTC" in dry.output
    assert "would take" in dry.output
    assert db.count(Task) == 0
    real = runner.invoke(cli.app, ["rules", "-c", str(cfg), "--now", "2026-03-02T10:00:00Z"])
    assert real.exit_code == 0, real.output
    assert db.count(Task) >= 1
    told = runner.invoke(cli.app, ["explain", "anna@x.io", "-c", str(cfg), "--now", "2026-03-02T10:00:00Z"])
    assert told.exit_code == 0, told.output
    assert "[rule:sla] create_task SLA breached: anna@x.io in Lead for 24h" in told.output
    bad = runner.invoke(cli.app, ["rules", "-c", str(cfg), "--now", "yesterday"])
    assert bad.exit_code == 2 and "not an ISO date-time" in bad.output


def test_engine_flow_on_sqlite_and_postgresql(store):
    lead = Lead(last_name="A", country="DE", status_since=T0)
    add(store, lead, links={lead.id: ["marketing"]})
    eng = engine(store, Promote(), Observe())
    assert eng.run(T0).applied == 3
    assert eng.run(T0, all_leads=True).applied == 0
    assert eng.run(T0 + timedelta(days=1)).evaluated == 1  # timer due, compared in SQL
    assert store.count(OutboxRow) == 1 and store.count(LeadFlag) == 0
    assert LeadChange(lead.id).due == frozenset()


class Meddler(Rule):
    """Test rule: while it evaluates, someone else (a sync) changes the lead in the store."""

    name = "meddler"
    calls = 0

    def evaluate(self, ctx, lead):
        Meddler.calls += 1
        if Meddler.calls == 1:
            with Session(self.store.engine) as other:
                other.execute(sa.update(LeadRow).where(LeadRow.id == lead.id)
                              .values(company="Changed by a sync", updated_at=datetime.now(timezone.utc)))
                other.commit()
        return [Action.set_fields({"checked": lead.company}, reason="checked")]


def test_a_lead_changed_while_the_rules_ran_is_redone_not_overwritten(db):
    lead = Lead(last_name="A", company="Old")
    add(db, lead)
    Meddler.calls, Meddler.store = 0, db
    out = engine(db, Meddler()).run(T0)
    assert Meddler.calls == 2 and out.evaluated == 1 and out.applied == 1
    after = db.get_lead(lead.id)
    assert after.company == "Changed by a sync" and after.custom["checked"] == "Changed by a sync"
    assert db.count(RuleAction) == 1


class Picky(Rule):
    """Test rule: sets a timer once, then never wants the lead again."""

    name = "picky"

    def wants(self, change):
        return change.new

    def evaluate(self, ctx, lead):
        return []

    def next_due(self, ctx, lead):
        return ctx.now + timedelta(hours=1)


def test_a_timer_a_rule_passes_up_or_a_disabled_rule_left_does_not_wake_the_lead_forever(db):
    add(db, Lead(last_name="A"))
    assert engine(db, Picky(), Observe()).run(T0).evaluated == 1
    assert engine(db, Picky(), Observe()).run(T0 + timedelta(hours=2)).evaluated == 1  # both timers due
    assert engine(db, Picky(), Observe()).run(T0 + timedelta(hours=3)).evaluated == 0  # picky's timer is gone
    off = Observe(RuleConfig(enabled=False))
    assert engine(db, Picky(), off).run(T0 + timedelta(days=5)).evaluated == 1  # config changed: all leads
    assert engine(db, Picky(), off).run(T0 + timedelta(days=9)).evaluated == 0


def test_each_lead_a_run_changes_is_announced_through_hub_lead_changed(db):
    lead = Lead(last_name="A", country="DE", status_since=T0)
    add(db, lead)
    seen = []

    class Hook:
        def hub_lead_changed(self, lead, change):
            seen.append((lead.id, change))

    engine(db, Promote(), Observe(), hook=Hook()).run(T0, dry_run=True)
    assert seen == []
    engine(db, Promote(), Observe(), hook=Hook()).run(T0)
    assert seen == [(lead.id, {"fields": {"status": ("Lead", "MQL"), "seen_as": (None, "MQL")},
                               "connection": None, "by": "rule:promote,rule:observe"})]


def test_a_merge_into_a_lead_another_rule_changes_in_the_same_batch_keeps_both_changes(db):
    original = Lead(last_name="Original", email="a@x.io", country="DE", status="Lead", status_since=T0)
    copy = Lead(last_name="Copy", email="a@x.io", phone="+49 30 1234567")
    add(db, original, copy, links={original.id: ["marketing"], copy.id: ["sales"]})
    out = engine(db, Promote(), Dedup()).run(T0)
    assert out.errors == []
    assert out.counts["promote.set_status"] == 1 and out.counts["dedup_test.merge"] == 1
    survivor = db.get_lead(original.id)
    assert survivor.status == "MQL"  # the other rule's change to the survivor
    assert survivor.phone == "+49 30 1234567"  # and the merge's fill, in one batch
