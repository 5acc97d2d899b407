"""Issue 5: the merges the dedup rule requests are carried out in the CRMs that can merge.

End to end against the served HubSpot and Dynamics 365 sandboxes, with a hub built from a config
file: two records of one person become two hub leads, the dedup rule merges the leads and requests
the CRM merge, and the next sync cycle merges the records in the CRM (``hub_after_push``). The
decisions that need no CRM (unsupported, waiting, nothing left to merge, transient errors) are
checked against a fake connector.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from sqlmodel import Session

from connectors.dynamics.sandbox import DynamicsSandbox
from connectors.hubspot.sandbox import HubSpotSandbox
from hub import outbox
from hub.engine import Engine
from hub.errors import ConnectorError, TransientError
from hub.http import CallMeter
from hub.model import Lead, utcnow
from hub.runtime import Hub
from hub.store import LeadRow, Link, OutboxRow, RecordIssue, row_values
from rules.dedup import Dedup
from rules.dedup.remote import carry_out
from rules.dedup.tables import MergeRequest

ADA = {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@engines.example", "company": "Engines",
       "phone": "+44 20 7946 0000", "status": "Lead"}
ADA_AGAIN = {"first_name": "Ada", "last_name": "Lovelace", "company": "Engines", "phone": "+44 20 7946 0000",
             "status": "Lead"}  # the same person, without the e-mail: two records the CRM does not dedupe


@dataclass
class One:
    """A hub with one CRM connection (``name``) served by ``box``."""

    hub: Hub
    box: Any
    name: str

    def cycle(self):
        (out,) = self.hub.sync()
        assert out.error is None, out.error
        return out

    def dedup(self) -> None:
        conns = [self.hub.connection(n) for n in self.hub.connection_names()]
        engine = Engine(self.hub.store, self.hub.process, [Dedup(None, self.hub.process)],
                        carried={c.name: c.connector.mapped_fields for c in conns})
        assert engine.run().errors == []

    def live_records(self) -> list[str]:
        if isinstance(self.box, HubSpotSandbox):
            return list(self.box.contacts)
        return [k for k, v in self.box.leads.items() if v["statecode"] == 0]

    def requests(self) -> list[MergeRequest]:
        with Session(self.hub.store.engine) as s:
            return list(s.execute(sa.select(MergeRequest).order_by(MergeRequest.id)).scalars())

    def links(self, lead_id: str | None = None) -> list[Link]:
        with Session(self.hub.store.engine) as s:
            q = sa.select(Link).where(Link.connection == self.name)
            return list(s.execute(q if lead_id is None else q.where(Link.lead_id == lead_id)).scalars())

    def leads(self) -> int:
        return self.hub.store.count(LeadRow)

    def merges_sent(self) -> int:
        return sum(n for k, n in self.hub.connection(self.name).connector.meter.by_kind.items() if "erge" in k)


def _hub(tmp_path: Path, name: str, connector: str, settings: dict[str, Any]) -> Hub:
    config = {"database": f"sqlite:///{tmp_path / 'hub.db'}",
              "connections": {name: {"connector": connector, **settings}}}
    path = tmp_path / "leadhub.yaml"
    path.write_text(yaml.safe_dump(config))
    return Hub.from_file(path)


@pytest.fixture(params=["hubspot", "dynamics"])
def crm(request, tmp_path: Path) -> Iterator[One]:
    if request.param == "hubspot":
        box: Any = HubSpotSandbox(rate=None, search_rate=None, lag=0.0)
        name = "marketing"
    else:
        box, name = DynamicsSandbox(rate=None), "sales"
    with box.serve() as served:
        settings = box.connector_settings(served.url)
        if request.param == "hubspot":
            settings["search_overlap"] = 0.0
        with _hub(tmp_path, name, request.param, settings) as hub:
            yield One(hub, box, name)


def _two_of_one_person(crm: One) -> tuple[str, str]:
    a, b = crm.box.remote_create(ADA), crm.box.remote_create(ADA_AGAIN)
    crm.cycle()
    crm.cycle()  # the hub ids stamped in the first cycle come back
    assert crm.leads() == 2
    crm.dedup()
    return a, b


def test_the_dedup_rules_merge_is_made_in_the_crm_and_the_next_pull_keeps_one_link(crm):
    a, b = _two_of_one_person(crm)
    (req,) = crm.requests()
    assert req.state == "requested" and {req.survivor_remote_id, req.merged_remote_id} == {a, b}

    crm.cycle()  # pull, push, then the merge (hub_after_push)
    (req,) = crm.requests()
    assert (req.state, crm.merges_sent()) == ("done", 1), req.message
    assert len(crm.live_records()) == 1  # the CRM holds one record
    (gone,) = crm.links(req.merged_id)
    assert gone.deleted_at is not None and gone.merged_into == req.survivor_remote_id

    out = crm.cycle()  # the CRM reports its merge (HubSpot: as a new contact)
    assert (out.created, crm.leads()) == (0, 2)  # no new lead
    (only,) = crm.live_records()
    (live,) = [ln for ln in crm.links() if ln.deleted_at is None]
    assert (live.lead_id, live.remote_id) == (req.survivor_id, only)  # one live link, the survivor's
    assert crm.box.remote_get(only)["hub_id"] == req.survivor_id

    quiet = crm.cycle()  # nothing changed anywhere: nothing is written
    assert (quiet.pushed, quiet.created_remote, quiet.created, quiet.updated, crm.merges_sent()) == (0, 0, 0, 0, 1)
    assert [r.state for r in crm.requests()] == ["done"]


def test_a_merge_the_crm_refuses_fails_with_its_words_and_the_push_goes_on(crm):
    a, _ = crm.box.remote_create(ADA), crm.box.remote_create(ADA_AGAIN)
    grace = crm.box.remote_create({"first_name": "Grace", "last_name": "Hopper", "status": "Lead"})
    crm.cycle()
    crm.cycle()
    cn = crm.hub.connection(crm.name).connector
    unknown = "999999" if crm.name == "marketing" else "00000000-0000-0000-0000-000000000001"
    with crm.hub.store.session() as s:  # a lead whose record the CRM does not know (merged before it)
        ghost = Lead(first_name="Zed", last_name="Ghost", status="Lead")
        s.add(LeadRow(**row_values(ghost), created_at=utcnow(), updated_at=utcnow()))
        s.flush()
        s.add(Link(lead_id=ghost.id, connection=crm.name, object=cn.lead_object, remote_id=unknown))
        survivor = s.execute(sa.select(Link.lead_id).where(Link.remote_id == a)).scalar_one()
        s.add(MergeRequest(survivor_id=survivor, merged_id=ghost.id, connection=crm.name, object=cn.lead_object,
                           survivor_remote_id=a, merged_remote_id=unknown, confidence=0.999, at=utcnow()))
    crm.dedup()  # the real duplicate: a second request, after the refused one
    with crm.hub.store.session() as s:  # and a change the hub owes the CRM for another lead
        row = s.get(LeadRow, s.execute(sa.select(Link.lead_id).where(Link.remote_id == grace)).scalar_one())
        row.title = "Rear Admiral"
        outbox.enqueue(s, connection=crm.name, object=cn.lead_object, lead_id=row.id, remote_id=grace,
                       fields={"title": "Rear Admiral"})

    out = crm.cycle()
    refused, merged = crm.requests()
    assert out.error is None and out.pushed >= 1  # the push went on, and so did the next merge
    assert crm.box.remote_get(grace)["title"] == "Rear Admiral"
    assert refused.state == "failed" and refused.message
    assert ("Could not find contacts" if crm.name == "marketing" else "Does Not Exist") in refused.message
    assert merged.state == "done" and len(crm.live_records()) == 2  # the next request went on
    with Session(crm.hub.store.engine) as s:
        issue = s.execute(sa.select(RecordIssue).where(RecordIssue.kind == "merge_rejected")).scalar_one()
    assert (issue.remote_id, issue.lead_id, issue.message) == (unknown, ghost.id, refused.message)
    crm.cycle()
    assert [r.state for r in crm.requests()] == ["failed", "done"]  # a refusal is not retried


@pytest.fixture
def dynamics(tmp_path: Path) -> Iterator[One]:
    box = DynamicsSandbox(rate=None)
    with box.serve() as served, _hub(tmp_path, "sales", "dynamics", box.connector_settings(served.url)) as hub:
        yield One(hub, box, "sales")


@pytest.mark.parametrize(("side", "status", "state"), [("survivor", "Closed Lost", "Disqualified"),
                                                       ("merged", "Closed Won", "Qualified")])
def test_dynamics_merges_of_an_inactive_lead_are_skipped_once_and_made_when_it_is_active_again(
        dynamics, side, status, state):
    crm = dynamics
    _two_of_one_person(crm)
    (req,) = crm.requests()
    inactive = req.survivor_remote_id if side == "survivor" else req.merged_remote_id
    lead = req.survivor_id if side == "survivor" else req.merged_id
    crm.box.remote_update(inactive, {"status": status})  # won or lost in Dynamics: the lead is closed there

    crm.cycle()  # the pull sees it inactive, so the merge is not sent
    (req,) = crm.requests()
    assert (req.state, crm.merges_sent()) == ("skipped", 0), req.message
    role = "survivor's" if side == "survivor" else "merged lead's"
    assert req.message.startswith(f"Dynamics merges only active leads; lead {inactive} is {state} ({status}) — "
                                  f"the {role} record, hub lead {lead}. Not sent"), req.message
    assert crm.box.leads[inactive]["statecode"] != 0 and not any(r.get("merged") for r in crm.box.leads.values())
    with Session(crm.hub.store.engine) as s:  # nothing for anyone to act on
        assert s.execute(sa.select(RecordIssue).where(RecordIssue.kind == "merge_rejected")).first() is None
    at = req.updated_at

    crm.cycle()  # set once: nothing is sent, nothing rewritten
    (again,) = crm.requests()
    assert (again.state, again.message, again.updated_at, crm.merges_sent()) == ("skipped", req.message, at, 0)

    crm.box.remote_update(inactive, {"status": "SQL"})  # reopened in Dynamics: both are active again
    crm.cycle()
    (done,) = crm.requests()
    assert (done.state, crm.merges_sent()) == ("done", 1), done.message
    assert len(crm.live_records()) == 1 and crm.box.leads[done.merged_remote_id]["merged"]


def test_a_dynamics_lead_closed_after_the_last_pull_makes_the_refused_merge_skipped_not_failed(dynamics):
    crm = dynamics
    _two_of_one_person(crm)
    (req,) = crm.requests()
    # closed in Dynamics between the hub's pull and its merge: change tracking has not reported it
    crm.box.tables["leads"].rows[req.merged_remote_id]["statecode"] = 2

    crm.cycle()
    (req,) = crm.requests()
    assert (req.state, crm.merges_sent()) == ("skipped", 1), req.message
    assert "is deactive" in req.message and "both records stay" in req.message
    with Session(crm.hub.store.engine) as s:  # a state to wait out, not a refusal anyone must act on
        assert s.execute(sa.select(RecordIssue).where(RecordIssue.kind == "merge_rejected")).first() is None
    assert len(crm.live_records()) == 1 and not any(r.get("merged") for r in crm.box.leads.values())

    crm.box.tables["leads"].rows[req.merged_remote_id]["statecode"] = 0  # reopened: the next run merges them
    crm.cycle()
    (done,) = crm.requests()
    assert (done.state, crm.merges_sent()) == ("done", 2), done.message


def test_dynamics_merge_of_two_active_leads_is_sent_even_where_one_is_nurtured(dynamics):
    crm = dynamics
    _two_of_one_person(crm)
    (req,) = crm.requests()
    crm.box.remote_update(req.merged_remote_id, {"status": "Nurture"})  # an Open status reason: still active
    crm.cycle()
    (req,) = crm.requests()
    assert (req.state, crm.merges_sent()) == ("done", 1), req.message
    assert crm.box.leads[req.merged_remote_id]["merged"] and len(crm.live_records()) == 1


# -- the decisions that need no CRM ---------------------------------------------------------------
class FakeConnector:
    """Just what :func:`carry_out` touches: ``can_merge``, ``merge``, ``meter``, names."""

    name, title, lead_object = "fake", "Fake CRM", "leads"

    def __init__(self, can_merge: bool = True, fail: Exception | None = None):
        self.can_merge, self.fail, self.meter, self.merged = can_merge, fail, CallMeter(), []

    def merge(self, survivor: str, loser: str, object: str | None = None) -> None:
        if self.fail is not None:
            raise self.fail
        self.merged.append((survivor, loser))

    def merge_blocker(self, remote_id: str, fields: dict[str, Any]) -> str | None:
        return f"closed record {remote_id}" if fields.get("status") == "Closed Lost" else None


def _pair(store, *, survivor_remote: str | None = "S1", merged_remote: str = "M1") -> tuple[str, str]:
    with store.session() as s:
        leads = [Lead(first_name=n, last_name="Lovelace", status="Lead") for n in ("Ada", "Augusta")]
        for lead in leads:
            s.add(LeadRow(**row_values(lead), created_at=utcnow(), updated_at=utcnow()))
        s.flush()
        if survivor_remote:
            s.add(Link(lead_id=leads[0].id, connection="crm", object="leads", remote_id=survivor_remote))
        s.add(Link(lead_id=leads[0 if survivor_remote is None else 1].id, connection="crm", object="leads",
                   remote_id=merged_remote))  # without a survivor record the hub merge moved the link
        s.add(MergeRequest(survivor_id=leads[0].id, merged_id=leads[1].id, connection="crm", object="leads",
                           survivor_remote_id=survivor_remote, merged_remote_id=merged_remote, confidence=0.999,
                           at=utcnow()))
    return leads[0].id, leads[1].id


def _states(store) -> list[tuple[str, str | None]]:
    with Session(store.engine) as s:
        return [(r.state, r.message) for r in s.execute(sa.select(MergeRequest).order_by(MergeRequest.id)).scalars()]


def test_a_crm_that_cannot_merge_marks_the_request_unsupported_once(sqlite_store):
    _pair(sqlite_store)
    out = carry_out(sqlite_store, "crm", FakeConnector(can_merge=False))
    assert out.unsupported == 1
    ((state, message),) = _states(sqlite_store)
    assert state == "unsupported" and message == "the fake connector does not merge records: merge record M1 " \
        "into S1 in Fake CRM by hand"
    assert carry_out(sqlite_store, "crm", FakeConnector(can_merge=False)).unsupported == 0  # once


def test_nothing_to_merge_when_the_survivor_had_no_record_there(sqlite_store):
    _pair(sqlite_store, survivor_remote=None)
    cn = FakeConnector()
    assert carry_out(sqlite_store, "crm", cn).done == 1 and cn.merged == []
    assert _states(sqlite_store)[0][0] == "done"


def test_a_transient_error_leaves_the_request_for_the_next_run_and_says_so(sqlite_store):
    _pair(sqlite_store)
    out = carry_out(sqlite_store, "crm", FakeConnector(fail=TransientError("merge: HTTP 503", status=503)))
    assert out.error == "merge: HTTP 503" and _states(sqlite_store) == [("requested", None)]
    refused = carry_out(sqlite_store, "crm", FakeConnector(fail=ConnectorError("no", status=400,
                                                                               vendor_message="bad ids")))
    assert refused.failed == 1 and _states(sqlite_store) == [("failed", "bad ids")]


def test_a_merge_waits_until_the_survivors_record_carries_the_hub_id(sqlite_store):
    survivor, _ = _pair(sqlite_store)
    with sqlite_store.session() as s:
        outbox.enqueue(s, connection="crm", object="leads", lead_id=survivor, remote_id="S1", fields={},
                       reasons={"hub_id": "stamp the hub's lead id"})
    cn = FakeConnector()
    assert carry_out(sqlite_store, "crm", cn).waiting == 1 and cn.merged == []
    ((state, message),) = _states(sqlite_store)
    assert state == "requested" and message.startswith("waiting")
    with sqlite_store.session() as s:
        s.execute(sa.update(OutboxRow).values(state="done"))
    assert carry_out(sqlite_store, "crm", cn).done == 1 and cn.merged == [("S1", "M1")]


def test_a_skipped_merge_is_looked_at_again_from_the_store_alone(sqlite_store):
    _pair(sqlite_store)
    with sqlite_store.session() as s:
        s.execute(sa.update(Link).where(Link.remote_id == "M1").values(synced={"status": "Closed Lost"}))
    cn = FakeConnector()
    out = carry_out(sqlite_store, "crm", cn)
    assert (out.skipped, cn.merged, cn.meter.calls) == (1, [], 0)
    ((state, message),) = _states(sqlite_store)
    assert state == "skipped" and message.startswith("closed record M1 — the merged lead's record, hub lead ")
    assert carry_out(sqlite_store, "crm", cn).skipped == 0 and _states(sqlite_store) == [(state, message)]
    with sqlite_store.session() as s:  # the hub wrote an open status there
        s.execute(sa.update(Link).where(Link.remote_id == "M1").values(synced={"status": "SQL"}))
    assert carry_out(sqlite_store, "crm", cn).done == 1 and cn.merged == [("S1", "M1")]
