"""The demo's story: one lead from HubSpot (marketing) through Salesforce (sales) to monday.com (delivery).

Each step is what a person does in one CRM's own screen — done here directly in
that CRM's sandbox — followed by one ``leadhub sync`` cycle; the report shows
where the lead stands in every CRM after each cycle, then its canonical history.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table
from sqlmodel import Session

from hub.runtime import Hub
from hub.store import LeadRow, Link, StatusChange
from hub.testing.fakedata import team

__all__ = ["tell_story", "STORY_CONNECTIONS"]

#: the connections the story needs: name -> connector
STORY_CONNECTIONS = {"marketing": "hubspot", "sales": "salesforce", "delivery": "monday_delivery"}


def tell_story(console: Console, hub: Hub, boxes: dict[str, Any]) -> dict[str, Any]:
    hs, sf, mon = boxes["marketing"], boxes["sales"], boxes["delivery"]
    owner = next(p["email"] for p in team(0) if p["role"] == "sdr")
    cid = hs.remote_create({"first_name": "Greta", "last_name": "Lindqvist", "email": "greta@nordwind-demo.example",
                            "company": "Nordwind Logistics", "country": "DE", "title": "Head of Operations",
                            "status": "Lead", "owner": owner})
    state: dict[str, Any] = {}

    def lead_id() -> str:
        with Session(hub.store.engine) as s:
            return s.execute(sa.select(Link.lead_id).where(Link.connection == "marketing",
                                                           Link.remote_id == cid)).scalar_one()

    def sf_id() -> str:
        return next(k for k, v in sf.leads.items() if v.get("LeadHub_Id__c") == lead_id())

    def convert() -> None:
        state["opp"] = sf.convert_lead(sf_id(), stage="Qualification",
                                       deal={"Amount": 48000, "CloseDate": "2027-01-31", "Probability": 40})

    steps: list[tuple[str, Callable[[], Any]]] = [
        ("HubSpot: a visitor fills in a form; a new contact", lambda: None),
        ("HubSpot: marketing qualifies it (lifecycle stage MQL)", lambda: hs.remote_update(cid, {"status": "MQL"})),
        ("Salesforce: the SDR accepts it (Working - Contacted)",
         lambda: sf.update_lead(sf_id(), {"Status": "Working - Contacted"})),
        ("Salesforce: qualified after the first call", lambda: sf.update_lead(sf_id(), {"Status": "Sales Qualified"})),
        ("Salesforce: converted to an opportunity", convert),
        ("Salesforce: the opportunity is won",
         lambda: sf.update_opportunity(state["opp"], {"StageName": "Closed Won"})),
    ]
    console.print("\n[bold]One lead's journey[/bold] (each step is done in that CRM, then one sync cycle runs)")
    t = Table()
    for col in ("step", "hub status", "HubSpot lifecycle", "Salesforce", "monday kickoff"):
        t.add_column(col)
    rows = []
    for title, act in steps:
        act()
        hub.sync()
        lid = lead_id()
        with Session(hub.store.engine) as s:
            status = s.get(LeadRow, lid).status
        contact = hs.contacts[cid]
        sf_rec = next((v for v in sf.leads.values() if v.get("LeadHub_Id__c") == lid), None)
        kickoff = [i for i in mon.items(mon.delivery_board_id) if i.get("LeadHub ID") == lid]
        row = (title, status, contact.get("lifecyclestage", ""),
               (sf_rec or {}).get("Status", "-") if sf_rec else "-",
               f"{kickoff[0]['name']} ({kickoff[0]['Status']})" if kickoff else "-")
        rows.append(row)
        t.add_row(*row)
    console.print(t)
    with Session(hub.store.engine) as s:
        history = s.execute(sa.select(StatusChange.from_status, StatusChange.to_status, StatusChange.connection)
                            .where(StatusChange.lead_id == lead_id()).order_by(StatusChange.id)).all()
    console.print("Canonical history: " + " → ".join(f"{to} ({conn})" for _, to, conn in history), highlight=False)
    console.print("[dim]The hub handed the lead to Salesforce when it became an MQL (sales' `statuses`), kept "
                  "HubSpot's lifecycle stage in step, and created the kickoff item once it was won.[/dim]")
    return {"lead_id": lead_id(), "steps": [list(r) for r in rows],
            "history": [[f, to, c] for f, to, c in history]}
