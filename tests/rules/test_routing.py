"""Routing at the edges: caps, concurrency, catch-up, pool changes, territories, accounts, fallback, SLA."""

from __future__ import annotations

import threading
import time
from datetime import date, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from hub.engine import Engine
from hub.model import Lead, utcnow
from hub.process import Process, default_process
from hub.store import LeadRow, Store, row_values
from rules.routing import Routing
from rules.routing.config import RoutingSettings
from rules.routing.eligibility import postcode_in, window_starts
from rules.routing.rotation import CatchUp, Rotation
from rules.routing.router import Router
from rules.routing.tables import RoutingDecision

NOW = datetime(2026, 3, 2, 10, tzinfo=timezone.utc)  # a Monday, 11:00 in Berlin
A, B, C = "a@t.example", "b@t.example", "c@t.example"
BERLIN, UK, BOSS = "berlin@t.example", "uk@t.example", "boss@t.example"


def _process(**changes) -> Process:
    data = default_process().model_dump(mode="json", by_alias=True)
    team = {
        A: {"role": "sales", "territories": ["DE"], "calendar": "de"},
        B: {"role": "sales", "territories": ["DE"], "calendar": "de"},
        C: {"role": "sales", "territories": ["DE", "AT"], "calendar": "de"},
        BERLIN: {"role": "sales", "territories": ["BERLIN"], "calendar": "de"},
        UK: {"role": "sales", "territories": ["GB"], "calendar": "de"},
        BOSS: {"role": "sales_manager", "calendar": "de"},
        "mk@t.example": {"role": "marketing"},
        "cs@t.example": {"role": "customer_success"},
    }
    for email, extra in changes.pop("people", {}).items():
        team[email] = {**team.get(email, {"role": "sales"}), **extra}
    data["team"] = [{"email": e, **v} for e, v in team.items()]
    data["calendars"] = {"de": {"timezone": "Europe/Berlin", "country": "DE"}}
    data["default_calendar"] = "de"
    data.update(changes)
    return Process.model_validate(data)


def _router(process: Process | None = None, **settings) -> Router:
    settings.setdefault("pools", {"p": {"members": [A, B, C]}})
    settings.setdefault("rules", [{"name": "rr", "strategy": "round_robin", "pool": "p"}])
    return Router(RoutingSettings.model_validate(settings), process or _process())


def _lead(s, **fields) -> Lead:
    lead = Lead(**{"last_name": "X", "status": "MQL", "country": "DE", **fields})
    s.add(LeadRow(**row_values(lead), created_at=NOW, updated_at=NOW))
    s.flush()
    return lead


def _route(store, router: Router, n: int = 1, at: datetime = NOW, **fields) -> list:
    out = []
    for _ in range(n):
        with store.session() as s:
            out.append(router.route(s, _lead(s, **fields), at))
    return out


# -- rotation: pure ----------------------------------------------------------------------------
def _serve(rot: Rotation, members: list[tuple[str, float]], n: int, start: datetime = NOW,
           catch_up: CatchUp = CatchUp.NONE, max_catch_up: int = 3) -> list[str]:
    got = []
    for i in range(n):
        rot.admit(members, catch_up, max_catch_up)
        who = rot.order(members)[0]
        rot.assign(who, dict(members)[who], start + timedelta(minutes=i), members)
        got.append(who)
    return got


def test_weighted_round_robin_serves_two_to_one_interleaved():
    assert _serve(Rotation(), [("a", 2), ("b", 1)], 6) == ["a", "b", "a", "a", "b", "a"]


@pytest.mark.parametrize("policy, expected", [
    (CatchUp.NONE, ["c", "a", "b"]),      # back at the front of the line, no backlog
    (CatchUp.LIMITED, ["c", "c", "a"]),   # at most max_catch_up (2) leads in a row
    (CatchUp.FULL, ["c", "c", "c"]),      # until even with everyone else
])
def test_a_returning_person_catches_up_by_the_stated_policy(policy, expected):
    rot = Rotation()
    everyone = [("a", 1), ("b", 1), ("c", 1)]
    _serve(rot, everyone, 3)
    _serve(rot, everyone[:2], 6, NOW + timedelta(hours=1))  # c away for six leads
    assert _serve(rot, everyone, 3, NOW + timedelta(hours=2), policy, 2) == expected


def test_a_new_member_starts_level_and_a_removed_one_returns_without_backlog():
    rot = Rotation()
    _serve(rot, [("a", 1), ("b", 1)], 10)
    got = _serve(rot, [("a", 1), ("b", 1), ("n", 1)], 6, NOW + timedelta(hours=1))
    assert got[0] == "n" and sorted(got) == ["a", "a", "b", "b", "n", "n"]  # no flood of 5 catch-up leads
    _serve(rot, [("a", 1), ("n", 1)], 4, NOW + timedelta(hours=2))  # b removed from the pool
    back = _serve(rot, [("a", 1), ("b", 1), ("n", 1)], 3, NOW + timedelta(hours=3))
    assert sorted(back) == ["a", "b", "n"]


# -- territories: pure -------------------------------------------------------------------------
@pytest.mark.parametrize("code, inside", [("10000", True), ("10115", True), ("14999", True), ("15000", False),
                                          ("09999", False), ("", False)])
def test_numeric_postcode_ranges_include_both_ends(code, inside):
    assert postcode_in(code, "10000", "14999") is inside


@pytest.mark.parametrize("code, inside", [("EC1A 1BB", True), ("ec4m 7rf", True), ("EC5A", False),
                                          ("E1 6AN", False), ("EC", False)])
def test_prefix_postcode_ranges_compare_by_prefix(code, inside):
    assert postcode_in(code, "EC1", "EC4") is inside


def test_cap_windows_follow_the_persons_time_zone():
    from zoneinfo import ZoneInfo

    starts = window_starts(datetime(2026, 3, 4, 23, 30, tzinfo=timezone.utc), ZoneInfo("Europe/Berlin"))
    assert starts["day"] == datetime(2026, 3, 4, 23, 0, tzinfo=timezone.utc)  # Thursday 00:00 in Berlin
    assert starts["week"] == datetime(2026, 3, 1, 23, 0, tzinfo=timezone.utc)  # Monday 00:00 in Berlin


# -- the router against the store ----------------------------------------------------------------
def test_a_reached_cap_passes_the_lead_to_the_next_candidate_and_says_why(sqlite_store):
    router = _router(pools={"p": {"members": [A, {"email": B, "caps": {"day": 1}}, C]}})
    got = _route(sqlite_store, router, 4)
    assert [d.owner for d in got] == [A, B, C, A]
    assert got[3].skipped(B) == "cap reached: 1/1 today"
    with sqlite_store.session() as s:
        row = s.execute(sa.select(RoutingDecision).order_by(RoutingDecision.id.desc())).scalars().first()
    assert row.rule == "rr" and row.owner == A and "cap reached" in str(row.candidates)


def test_many_leads_in_one_transaction_keep_caps_and_rotation_current_and_a_rollback_forgets_them(sqlite_store):
    # the router reads caps and rotation once per transaction (rules.routing.books) and keeps them
    # current itself: within one transaction they must behave exactly as if read before every lead
    router = _router(pools={"p": {"members": [A, {"email": B, "caps": {"day": 1}}, C],
                                  "caps": {"day": 5}}}, fallback={"owner": BOSS})
    with sqlite_store.session() as s:
        owners = [router.route(s, _lead(s), NOW).owner for _ in range(7)]
        s.rollback()  # a dry run: none of it happened
    assert owners == [A, B, C, A, C, BOSS, BOSS]
    with sqlite_store.session() as s:
        assert s.execute(sa.select(sa.func.count()).select_from(RoutingDecision)).scalar() == 0
        again = [router.route(s, _lead(s), NOW).owner for _ in range(3)]
    assert again == [A, B, C]  # the rolled-back rotation and counts are not carried over
    with sqlite_store.session() as s:
        counts = dict(s.execute(sa.select(RoutingDecision.owner, sa.func.count())
                                .group_by(RoutingDecision.owner)).all())
        assert counts == {A: 1, B: 1, C: 1}
        assert [router.route(s, _lead(s), NOW).owner for _ in range(3)] == [A, C, BOSS]  # B capped, pool 5/5


def test_kept_cap_counts_see_decisions_committed_elsewhere_and_forget_rolled_back_ones(sqlite_store):
    # cap counts are kept across transactions (rules.routing.books._Ledger) and caught up from the
    # decisions committed since: another process's count, a rolled-back transaction's do not
    router = _router(pools={"p": {"members": [A, {"email": B, "caps": {"day": 2}}, C]}})
    assert [d.owner for d in _route(sqlite_store, router, 3)] == [A, B, C]
    with sqlite_store.session() as s:
        assert [router.route(s, _lead(s), NOW).owner for _ in range(2)] == [A, B]
        s.rollback()
    other = Store(sqlite_store.url)  # another process on the same database: its own engine and books
    try:
        assert [d.owner for d in _route(other, router, 2)] == [A, B]  # B's second lead today: 2/2
    finally:
        other.dispose()
    got = _route(sqlite_store, router, 3)
    assert B not in [d.owner for d in got]
    assert all(d.skipped(B) == "cap reached: 2/2 today" for d in got)


def test_a_decision_that_needed_no_count_is_counted_once_by_a_later_capped_one(sqlite_store):
    # the kept counts are caught up before a transaction decides anything: a first decision that
    # read no count (a named owner, no caps) must not be folded in as "committed" and then added
    # again as the transaction's own
    router = _router(pools={"p": {"members": [{"email": B, "caps": {"day": 2}}]}},
                     rules=[{"name": "vip", "strategy": "owner", "owner": B, "when": 'lead.country == "AT"'},
                            {"name": "rr", "strategy": "round_robin", "pool": "p"}],
                     fallback={"owner": BOSS})
    _route(sqlite_store, router)  # the ledger keeps B's count from here on
    with sqlite_store.session() as s:
        assert router.route(s, _lead(s, country="AT"), NOW).rule == "vip"  # B: 2 today
        third = router.route(s, _lead(s), NOW)
    assert third.owner == BOSS and third.skipped(B) == "cap reached: 2/2 today"


def test_a_pool_cap_and_all_member_caps_fall_through_to_the_next_rule_then_the_fallback(sqlite_store):
    router = _router(pools={"p": {"members": [A, B], "caps": {"hour": 2}}, "q": {"members": [C],
                                                                               "member_caps": {"day": 1}}},
                     rules=[{"name": "first", "strategy": "round_robin", "pool": "p"},
                            {"name": "second", "strategy": "round_robin", "pool": "q"}],
                     fallback={"queue": "inbox"})
    got = _route(sqlite_store, router, 4)
    assert [(d.owner, d.queue, d.rule) for d in got] == [(A, None, "first"), (B, None, "first"),
                                                          (C, None, "second"), (None, "inbox", "fallback")]
    assert "first: pool cap reached: 2/2 this hour" in got[3].reason
    assert "second: all 1 candidate(s) skipped" in got[3].reason


@pytest.mark.postgres
def test_two_leads_routed_at_the_same_moment_never_overdraw_a_cap(store, monkeypatch):
    router = _router(pools={"p": {"members": [A, B], "member_caps": {"day": 3}}}, fallback={"owner": BOSS})
    reads = Router._person_counts

    def slow(self, *args, **kw):  # widen the window between reading a cap and writing the assignment
        counts = reads(self, *args, **kw)
        time.sleep(0.03)
        return counts

    monkeypatch.setattr(Router, "_person_counts", slow)
    with store.session() as s:
        leads = [_lead(s) for _ in range(10)]
    errors: list[BaseException] = []

    def work(mine: list[Lead]) -> None:
        try:
            for lead in mine:
                with store.session() as s:
                    router.route(s, lead, NOW)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(leads[i::2],)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    with store.session() as s:
        owners = s.execute(sa.select(RoutingDecision.owner, sa.func.count()).group_by(RoutingDecision.owner)).all()
    assert dict(owners) == {A: 3, B: 3, BOSS: 4}


def test_an_away_person_is_skipped_with_the_date_they_return(sqlite_store):
    process = _process(people={B: {"out_of_office": [{"from": "2026-03-01", "to": "2026-03-06"}]}})
    got = _route(sqlite_store, _router(process), 3)
    assert [d.owner for d in got] == [A, C, A]
    assert got[0].skipped(B) == "away until 2026-03-06"


def test_working_hours_only_skips_people_whose_day_is_over(sqlite_store):
    router = _router(pools={"p": {"members": [A, B], "working_hours_only": True}}, fallback={"queue": "night"})
    evening = datetime(2026, 3, 2, 18, tzinfo=timezone.utc)  # 19:00 in Berlin
    (d,) = _route(sqlite_store, router, 1, evening)
    assert d.queue == "night" and d.skipped(A) == "outside working hours (09:00-17:00 Europe/Berlin)"


def test_the_returning_persons_catch_up_policy_holds_against_the_store(sqlite_store):
    router = _router()
    _route(sqlite_store, router, 3)  # a, b, c
    away = _process(people={C: {"out_of_office": [{"from": "2026-03-03", "to": "2026-03-04"}]}})
    _route(sqlite_store, _router(away), 6, NOW + timedelta(days=1))
    back = _route(sqlite_store, _router(away), 3, NOW + timedelta(days=3))
    assert [d.owner for d in back] == [C, A, B]


def test_a_pool_change_adds_a_member_level_with_the_rest(sqlite_store):
    _route(sqlite_store, _router(pools={"p": {"members": [A, B]}}), 8)
    got = _route(sqlite_store, _router(pools={"p": {"members": [A, B, C]}}), 6, NOW + timedelta(minutes=5))
    assert got[0].owner == C and sorted(d.owner for d in got) == [A, A, B, B, C, C]


def test_territory_prefers_the_postcode_match_and_lists_who_was_out_of_territory(sqlite_store):
    router = _router(territories={"Berlin": {"postcodes": [{"country": "DE", "from": "10", "to": "14"}]}},
                     rules=[{"name": "terr", "strategy": "territory", "roles": ["sales"]}])
    (berlin,) = _route(sqlite_store, router, 1, custom={"postcode": "10115"})
    (munich,) = _route(sqlite_store, router, 1, custom={"postcode": "80331"})
    (edge,) = _route(sqlite_store, router, 1, custom={"postcode": "14999"})
    assert berlin.owner == BERLIN and edge.owner == BERLIN
    assert munich.owner in (A, B, C) and munich.skipped(BERLIN) == "not in territory (lead DE 80331)"
    assert berlin.skipped(A) == "more specific territory match available"


def test_account_match_routes_to_the_owner_of_the_company_domain(sqlite_store):
    with sqlite_store.session() as s:
        for _ in range(2):
            _lead(s, domain="acme.co.uk", owner=UK)
    router = _router(rules=[{"name": "account", "strategy": "account_match"},
                            {"name": "rr", "strategy": "round_robin", "pool": "p"}])
    (same,) = _route(sqlite_store, router, 1, email="jo@mail.acme.co.uk")
    (free,) = _route(sqlite_store, router, 1, email="jo@gmail.com")
    assert (same.owner, same.rule) == (UK, "account") and "already owns the account" in same.reason
    assert free.rule == "rr" and free.rules[0]["outcome"].startswith("no company domain")


def test_least_loaded_picks_the_lowest_share_of_capacity_and_skips_anyone_full(sqlite_store):
    process = _process(people={A: {"capacity": 4}, B: {"capacity": 10}, C: {"capacity": 2}})
    with sqlite_store.session() as s:
        for owner, n in ((A, 1), (B, 4), (C, 2)):
            for _ in range(n):
                _lead(s, owner=owner)
        _lead(s, owner=B, status="Closed Won")  # final: not open
    router = _router(process, rules=[{"name": "load", "strategy": "least_loaded", "pool": "p"}])
    (d,) = _route(sqlite_store, router, 1)
    assert d.owner == A and "least loaded (25% of capacity)" in d.reason  # A 1/4 < B 4/10
    assert d.skipped(B) == "more loaded (40% of capacity)" and d.skipped(C) == "at capacity: 2/2 open leads"


def test_cel_conditions_and_a_zen_table_choose_the_pool(sqlite_store):
    table = {"nodes": [
        {"id": "in", "type": "inputNode", "name": "in"},
        {"id": "t", "type": "decisionTableNode", "name": "by size", "content": {
            "hitPolicy": "first", "inputs": [{"id": "s", "name": "Size", "field": "lead.company_size"}],
            "outputs": [{"id": "o", "name": "Pool", "field": "pool"}],
            "rules": [{"_id": "r1", "s": '"5000+"', "o": '"big"'}]}},
        {"id": "out", "type": "outputNode", "name": "out"}],
        "edges": [{"id": "e1", "sourceId": "in", "targetId": "t"}, {"id": "e2", "sourceId": "t", "targetId": "out"}]}
    router = _router(pools={"p": {"members": [A]}, "big": {"members": [C]}},
                     rules=[{"name": "austria", "when": 'lead.country == "AT"', "strategy": "owner", "owner": C},
                            {"name": "table", "table": table},
                            {"name": "rest", "strategy": "round_robin", "pool": "p"}])
    (at,) = _route(sqlite_store, router, 1, country="AT")
    (big,) = _route(sqlite_store, router, 1, custom={"company_size": "5000+"})
    (small,) = _route(sqlite_store, router, 1, custom={"company_size": "11-50"})
    assert (at.rule, big.rule, big.pool, small.rule) == ("austria", "table", "big", "rest")
    assert small.rules[:2] == [{"rule": "austria", "outcome": "condition false"},
                               {"rule": "table", "outcome": "no table row matched"}]


def test_the_fallback_owner_takes_what_no_rule_decides(sqlite_store):
    process = _process(people={A: {"out_of_office": [{"from": "2026-03-01", "to": "2026-03-09"}]}})
    router = _router(process, pools={"p": {"members": [A]}}, fallback={"owner": BOSS})
    (d,) = _route(sqlite_store, router, 1)
    assert (d.owner, d.rule) == (BOSS, "fallback") and "rr: all 1 candidate(s) skipped" in d.reason


# -- configuration -----------------------------------------------------------------------------
@pytest.mark.parametrize("bad, message", [
    ({"rules": [{"name": "x", "strategy": "round_robin", "pool": "nope"}]}, "not defined under pools"),
    ({"rules": [{"name": "x", "strategy": "round_robin"}]}, "needs a pool"),
    ({"fallback": {"queue": None}}, "no lead is left unassigned silently"),
    ({"pools": {"p": {"members": [A, A]}}}, "listed twice"),
])
def test_bad_routing_settings_are_refused_with_a_reason(bad, message):
    with pytest.raises(ValidationError, match=message):
        RoutingSettings.model_validate(bad)


def test_the_rule_checks_that_pool_members_are_in_the_team():
    config = Routing.Config.model_validate({"pools": {"p": {"members": ["ghost@t.example"]}}})
    assert Routing(config, _process()).check() == [(("pools", "p", "members", 0), "ghost@t.example is not in the team")]


# -- the rule in the engine: assignment and SAL-SLA reassignment -------------------------------
def test_a_missed_sal_sla_reassigns_to_someone_who_has_not_had_the_lead(store):
    process = _process()
    config = Routing.Config.model_validate({"pools": {"p": {"members": [A, B, C]}},
                                            "rules": [{"name": "rr", "strategy": "round_robin", "pool": "p"}],
                                            "fallback": {"owner": BOSS}})
    engine = Engine(store, process, [Routing(config, process)])
    with store.session() as s:
        first = _lead(s, status="MQL")
    out = engine.run(NOW, keep_actions=True)
    (assign,) = [a for a in out.actions if a.kind == "assign_owner"]
    assert assign.params == {"owner": A} and assign.inputs["rule"] == "rr"  # the email goes to the CRMs
    with store.session() as s:  # B had it once too, then it came back to A and entered SAL
        s.add(RoutingDecision(lead_id=first.id, at=NOW, owner=B, reason="earlier", rule="rr"))
        row = s.get(LeadRow, first.id)
        row.status, row.status_since, row.updated_at = "SAL", NOW + timedelta(hours=1), utcnow()
    engine.run(NOW + timedelta(hours=2))
    assert store.get_lead(first.id).owner == A  # within the 24 h SLA: nothing happens
    out = engine.run(NOW + timedelta(hours=26), keep_actions=True)
    (again,) = [a for a in out.actions if a.kind == "assign_owner"]
    assert again.params == {"owner": C} and again.inputs["kind"] == "reassign"
    assert {c["email"]: c.get("skipped") for c in again.inputs["candidates"]}[B] == "had this lead before"
    assert store.get_lead(first.id).owner == C
    out = engine.run(NOW + timedelta(hours=60), keep_actions=True)
    assert [a for a in out.actions if a.kind == "assign_owner"] == []  # max_reassignments: 1


def test_an_unroutable_lead_is_flagged_with_its_queue_never_left_silently(sqlite_store):
    process = _process(people={A: {"out_of_office": [{"from": "2026-03-01", "to": "2026-03-09"}]}})
    config = Routing.Config.model_validate({"pools": {"p": {"members": [A]}},
                                            "rules": [{"name": "rr", "strategy": "round_robin", "pool": "p"}]})
    engine = Engine(sqlite_store, process, [Routing(config, process)])
    with sqlite_store.session() as s:
        _lead(s)
    out = engine.run(NOW, keep_actions=True)
    (flag,) = [a for a in out.actions if a.kind == "flag"]
    assert flag.params["flag"] == "unrouted" and flag.params["note"] == "queue unrouted"
    assert "away until 2026-03-09" not in flag.reason and "rr: all 1 candidate(s) skipped" in flag.reason
    later = engine.run(datetime.combine(date(2026, 3, 10), datetime.min.time(), timezone.utc) + timedelta(hours=9),
                       keep_actions=True)
    assert [a.params for a in later.actions if a.kind == "assign_owner"] == [{"owner": A}]
