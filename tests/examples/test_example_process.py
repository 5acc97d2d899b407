"""The example company's rules (examples/process.yaml) load into the engine and do what their comments say."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from hub.engine import Engine, build_rules
from hub.model import Lead
from hub.process import load_process
from rules import builtin_rules
from tests.rules.harness import CLAIRE, JONAS, LENA, add

PROCESS = Path(__file__).resolve().parents[2] / "examples" / "process.yaml"
OLIVER = "oliver.hughes@brightfield.example"
NOW = datetime(2026, 3, 2, 10, tzinfo=timezone.utc)  # a Monday: 11:00 in Munich, 10:00 in London


def test_the_example_rules_score_and_route_leads(db):
    process = load_process(PROCESS)
    rules = build_rules(process, {cls.name: cls for cls in builtin_rules()}, source=PROCESS)
    assert {r.name for r in rules} >= {"dedup", "scoring", "routing", "stale", "governance", "sla"}
    engine = Engine(db, process, rules)

    day = timedelta(days=1)
    hot = Lead(last_name="Weber", email="anna.weber@nordwind.example", company="Nordwind", country="DE",
               title="Head of Data", source="web", status="Lead", status_since=NOW - day,
               custom={"company_size": "201-500", "demo_request_at": (NOW - day).isoformat(),
                       "pricing_page_at": [(NOW - 2 * day).isoformat(), (NOW - 3 * day).isoformat()]})
    cold = Lead(last_name="Doe", email="jdoe@gmail.com", country="US", source="web", status="Lead",
                status_since=NOW - day)
    # handed over to sales (SAL) while marketing still owns them: routed again, to sales
    sal = {"status": "SAL", "status_since": NOW - timedelta(minutes=5), "owner": LENA}
    munich = Lead(last_name="Huber", email="k.huber@alpenmetall.example", country="DE",
                  custom={"postcode": "80331"}, **sal)
    geneva = Lead(last_name="Favre", email="l.favre@lemanbank.example", country="CH",
                  custom={"postcode": "1201"}, **sal)
    zurich = Lead(last_name="Meier", email="p.meier@limmat.example", country="CH", custom={"postcode": "8001"}, **sal)
    london = Lead(last_name="Smith", email="j.smith@thameslogistics.example", country="GB", **sal)
    amsterdam = Lead(last_name="de Vries", email="e.devries@grachten.example", country="NL", **sal)
    handovers = {"munich": munich, "geneva": geneva, "zurich": zurich, "london": london, "amsterdam": amsterdam}
    add(db, hot, cold, *handovers.values())

    out = engine.run(NOW)
    assert out.errors == []
    h, c = db.get_lead(hot.id), db.get_lead(cold.id)
    assert h.score >= 100 and h.custom["score_band"] == "hot" and h.status == "MQL"  # scored into MQL
    assert c.score < 50 and c.custom["score_band"] == "cold" and c.status == "Lead"
    assert h.owner == c.owner == LENA  # before the handover marketing qualifies
    owners = {name: db.get_lead(lead.id).owner for name, lead in handovers.items()}
    assert owners == {"munich": JONAS, "geneva": CLAIRE,  # Romandie's postcodes beat DACH's country
                      "zurich": JONAS, "london": OLIVER, "amsterdam": OLIVER}  # the pool: Oliver weighs 2

    # nobody accepted within SAL's 8 working hours: each handover goes to someone who has not had it
    later = engine.run(NOW + 2 * day)
    assert later.errors == [] and later.counts["routing.assign_owner"] == len(handovers)
    for name, lead in handovers.items():
        assert db.get_lead(lead.id).owner not in (None, LENA, owners[name]), name
    assert db.get_lead(geneva.id).owner == JONAS  # Claire had it: the DACH country match is next
