"""``leadhub demo``: the whole loop on the embedded default, in well under a minute.

Starts each built-in CRM's sandbox on loopback seeded with generated, messy
leads; writes a throw-away config (SQLite, the sandboxes' URLs, tokens passed
through the environment as a real install would); runs a real sync through the
connectors; runs it again to show that nothing echoes; prints a report; stops
every sandbox. Nothing stays running and nothing is written outside a temp
folder unless ``keep`` names one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table
from sqlmodel import Session

from hub.actions import RuleAction, Task
from hub.demo_story import STORY_CONNECTIONS, tell_story
from hub.model import Status
from hub.plugins import registry
from hub.process import default_process
from hub.runtime import Hub
from hub.sandboxes import sandbox_class
from hub.store import Conflict, LeadRow, Link, RecordIssue
from hub.sync import SyncOutcome
from hub.testing.fakedata import team

__all__ = ["run_demo", "DEMO_CONNECTIONS"]

#: connection name -> (connector, role, share of ``n`` seeded there). Each gets its own sandbox.
#: Shares follow the vendors' write costs: Pipedrive has no batch endpoint (one call per
#: record within a 2-second burst window), so it gets fewer leads to keep the demo short.
DEMO_CONNECTIONS: dict[str, tuple[str, str, float]] = {
    "marketing": ("hubspot", "marketing", 1.0),
    "sales": ("salesforce", "sales", 0.6),
    "sales-emea": ("dynamics", "sales", 0.4),
    "sales-smb": ("pipedrive", "sales", 0.1),
    "partners": ("monday", "partner-sales", 0.1),
    "delivery": ("monday_delivery", "delivery", 0.0),
}
#: handoffs: a lead in one of these canonical statuses is created in that connection (once)
HANDOFFS: dict[str, list[str]] = {
    "sales": ["MQL", "SAL", "SQL", "Opportunity", "Negotiation", "Closed Won"],
    "delivery": ["Closed Won"],
}


#: share of the marketing CRM's people also entered in the sales CRM (a contact sales typed in again)
SHARED = 0.1
#: what a salesperson types in again for a person marketing already has
_RETYPED = ("first_name", "last_name", "email", "phone", "company", "title", "country", "source")


def _share_people(boxes: dict[str, Any], source: str, target: str, share: float) -> int:
    """Enter every ``1/share``-th person of ``source``'s CRM in ``target``'s as well, as a Lead."""
    if source not in boxes or target not in boxes or share <= 0:
        return 0
    step, n = round(1 / share), 0
    for k, rid in enumerate(sorted(boxes[source].remote_ids())):
        if k % step:
            continue
        person = boxes[source].remote_get(rid) or {}
        if person.get("email") and person.get("last_name") and person.get("company"):
            boxes[target].remote_create({**{f: person.get(f) for f in _RETYPED}, "status": "Lead"})
            n += 1
    return n


def _available() -> dict[str, tuple[str, str, float]]:
    """The demo connections whose connector is installed (a plugin can be switched off)."""
    known = registry().connectors
    return {name: spec for name, spec in DEMO_CONNECTIONS.items() if spec[0] in known}


def _is_secret(model: type[BaseModel], key: str) -> bool:
    field = model.model_fields.get(key)
    return field is not None and "SecretStr" in str(field.annotation)


_ROLES = {"marketing": "marketing", "sdr": "sales", "rep": "sales", "manager": "sales_manager"}


def _process(folder: Path) -> Path:
    """The default process plus the sandboxes' team, a calendar and routing rules: what an admin adds."""
    data = default_process().model_dump(mode="json", by_alias=True)
    people = team(0)
    manager = next(p["email"] for p in people if p["role"] == "manager")
    data["team"] = [{"email": p["email"], "name": p["name"], "role": _ROLES[p["role"]],
                     **({"manager": manager} if p["role"] != "manager" else {}),
                     **({"territories": [p["country"]]} if p["role"] in ("rep", "sdr") else {}),
                     "calendar": "eu"} for p in people]
    data["calendars"] = {"eu": {"timezone": "Europe/Berlin", "country": "DE"}}
    data["default_calendar"] = "eu"
    reps = [p["email"] for p in people if p["role"] in ("rep", "sdr")]
    data.setdefault("rules", {})["routing"] = {
        "rules": [{"name": "existing account", "strategy": "account_match"},
                  {"name": "territory", "strategy": "territory", "roles": ["sales"]},
                  {"name": "everyone else", "strategy": "round_robin", "pool": "reps"}],
        "pools": {"reps": {"members": reps}},
    }
    path = folder / "process.yaml"
    path.write_text("# written by `leadhub demo`: the default process, the sandboxes' team, routing\n"
                    + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


def _config(folder: Path, boxes: dict[str, Any], urls: dict[str, str], env: dict[str, str]) -> Path:
    """A config like an admin would write: secrets as ``${VARS}``, set in ``env``."""
    connections: dict[str, Any] = {}
    for name, (connector, role, _) in _available().items():
        model = registry().connectors[connector].settings_model
        entry: dict[str, Any] = {"connector": connector, "role": role, "sync_every": "5m"}
        if name in HANDOFFS:
            entry["statuses"] = HANDOFFS[name]
        if connector == "monday_delivery":
            entry["direction"] = "write"
        settings = boxes[name].connector_settings(urls[name])
        if connector == "monday_delivery":
            settings["board_id"] = str(boxes[name].delivery_board_id)
        for key, value in settings.items():
            if _is_secret(model, key):
                var = f"LEADHUB_DEMO_{name.upper().replace('-', '_')}_{key.upper()}"
                env[var] = str(value)
                entry[key] = f"${{{var}}}"
            else:
                entry[key] = value
        connections[name] = entry
    body = {"database": f"sqlite:///{folder / 'leadhub.db'}", "process": str(_process(folder)),
            "conflict_rules": {"*": "most_recent", "phone": "prefer sales"},
            "connections": connections}
    path = folder / "leadhub.yaml"
    path.write_text("# written by `leadhub demo`: every connection points at a loopback sandbox\n"
                    + yaml.safe_dump(body, sort_keys=False))
    return path


def run_demo(console: Console, *, n: int = 2000, seed: int = 7, keep: Path | None = None) -> dict[str, Any]:
    folder = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="leadhub-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "leadhub.db").unlink(missing_ok=True)
    report: dict[str, Any] = {}
    env: dict[str, str] = {}
    try:
        with ExitStack() as stack:
            urls, boxes = {}, {}
            for i, (name, (connector, _, share)) in enumerate(_available().items()):
                box = sandbox_class(connector)()
                if share:
                    box.seed(max(10, int(n * share)), seed=seed + i)
                served = stack.enter_context(box.serve())
                urls[name], boxes[name] = served.url, box
                console.print(f"[dim]{connector} sandbox at {served.url}, {int(n * share) and max(10, int(n * share))}"
                              " leads seeded[/dim]")
            shared = _share_people(boxes, "marketing", "sales", SHARED)
            if shared:
                console.print(f"[dim]{shared} of the marketing contacts are also leads in the sales CRM (the same "
                              "people, typed in again): the sync must make each one lead[/dim]")
            teams = [team(seed + i) for i in range(len(boxes))]
            for box in boxes.values():  # one company, one sales team, a user in every CRM
                add = getattr(box, "add_users", None) or getattr(box, "add_owners", None)
                for members in teams if add else ():
                    add(members)
            config = _config(folder, boxes, urls, env)
            os.environ.update(env)
            hub = stack.enter_context(Hub.from_file(config))
            with console.status("first sync: pulling every lead, stamping the hub's id back"):
                first = hub.sync()
            with console.status("second sync: nothing changed outside, so nothing should be written"):
                second = hub.sync()
            report = _report(console, hub, first, second)
            report["shared_people"] = shared
            with console.status("rules: dedup, scoring, routing, stale leads, governance, SLA clocks"):
                rules = hub.run_rules()
            with console.status("third sync: the rules' decisions go back to the CRMs"):
                third = hub.sync()
            report["rules"] = _rules_report(console, hub, rules, third)
            if all(name in boxes for name in STORY_CONNECTIONS):
                report["story"] = tell_story(console, hub, boxes)
    finally:
        for var in env:
            os.environ.pop(var, None)
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)
    return report


def _report(console: Console, hub: Hub, first: list[SyncOutcome], second: list[SyncOutcome]) -> dict[str, Any]:
    names = [o.connection for o in first]
    with Session(hub.store.engine) as s:
        per_conn = s.execute(sa.select(Link.connection, LeadRow.status, sa.func.count())
                             .join(LeadRow, LeadRow.id == Link.lead_id)
                             .group_by(Link.connection, LeadRow.status)).all()
        by_source = Counter(dict(s.execute(sa.select(LeadRow.source, sa.func.count()).group_by(LeadRow.source)).all()))
        name = (sa.func.lower(LeadRow.first_name), sa.func.lower(LeadRow.last_name), sa.func.lower(LeadRow.company))
        twins = s.execute(sa.select(*name, sa.func.count()).where(LeadRow.last_name.is_not(None))
                          .group_by(*name).having(sa.func.count() > 1)).all()
        issues = s.execute(sa.select(RecordIssue.connection, RecordIssue.kind, RecordIssue.remote_id,
                                     RecordIssue.message).limit(5)).all()
        n_issues = s.execute(sa.select(RecordIssue.kind, sa.func.count()).group_by(RecordIssue.kind)).all()
        conflicts = s.execute(sa.select(sa.func.count()).select_from(Conflict)).scalar_one()
    table: dict[str, Counter] = {}
    for conn, status, count in per_conn:
        table.setdefault(status, Counter())[conn] = count
    total = sum(sum(c.values()) for c in table.values())

    console.print(f"\n[bold]Leads by canonical status, per connection[/bold] ({total} CRM records in the hub)")
    t = Table()
    t.add_column("status")
    for n in names:
        t.add_column(f"{n}\n({hub.config.connections[n].connector})", justify="right")
    t.add_column("all", justify="right")
    order = [st.value for st in Status]
    for status in order + sorted(set(table) - set(order)):
        row = table.get(status)
        if row:
            t.add_row(status, *(str(row.get(n, 0)) for n in names), str(sum(row.values())))
    console.print(t)

    console.print("[bold]Leads by source[/bold]")
    t = Table()
    t.add_column("source")
    t.add_column("leads", justify="right")
    for source, count in by_source.most_common():
        t.add_row(source or "(none)", str(count))
    console.print(t)

    console.print("[bold]API calls against the vendor minimum[/bold]")
    t = Table()
    for col in ("connection", "pulled", "read calls", "minimum", "written", "write calls", "minimum",
                "2nd sync calls", "2nd sync writes", "429s", "seconds"):
        t.add_column(col, justify="left" if col == "connection" else "right")
    for o, o2 in zip(first, second):
        lim = hub.connection(o.connection).connector.limits
        written = o.pushed + o.rejected
        t.add_row(o.connection, str(o.pulled), str(o.pull_calls), str(lim.min_reads(o.pulled)),
                  str(written), str(o.push_calls), str(lim.min_writes(written)),
                  str(o2.api_calls), str(o2.pushed), str(o.throttled + o2.throttled),
                  f"{o.seconds + o2.seconds:.1f}")
    console.print(t)
    console.print("[dim]minimum = records / the vendor's page or batch size; the 2nd sync has no outside "
                  "edits, so it must write nothing (the hub recognises its own writes).[/dim]")

    counts = dict(n_issues)
    console.print(f"[bold]Data quality[/bold]: {counts.get('malformed', 0)} unreadable values, "
                  f"{counts.get('rejected', 0)} writes the CRM rejected (kept and retried every run), "
                  f"{conflicts} illegal status moves held as conflicts, "
                  f"{len(twins)} people appearing on more than one lead (same name and company: "
                  f"candidates for deduplication).")
    for conn, kind, remote_id, message in issues:
        console.print(f"  [dim]{conn} record {remote_id} ({kind}): {message[:200]}[/dim]", highlight=False)
    for o in first + second:
        if o.error:
            console.print(f"[red]{o.connection}: {o.error}[/red]")
    return {"per_connection": {st: dict(c) for st, c in table.items()},
            "first": [o.as_dict() for o in first], "second": [o.as_dict() for o in second],
            "possible_duplicates": len(twins)}


def _rules_report(console: Console, hub: Hub, outcome: Any, third: list[SyncOutcome]) -> dict[str, Any]:
    console.print(f"\n[bold]Rules[/bold]: {outcome.evaluated} leads evaluated, {outcome.applied} actions taken, "
                  f"{outcome.refused} refused, in {outcome.seconds:.1f}s")
    t = Table()
    t.add_column("rule.action")
    t.add_column("count", justify="right")
    for key, count in sorted(outcome.counts.items(), key=lambda kv: -kv[1]):
        t.add_row(key, str(count))
    console.print(t)
    with Session(hub.store.engine) as s:
        def sample(rule: str, *kinds: str, n: int = 3) -> list[tuple[str, str, str]]:
            q = (sa.select(RuleAction.lead_id, RuleAction.kind, RuleAction.reason)
                 .where(RuleAction.rule == rule, RuleAction.kind.in_(kinds)).limit(n))
            return [tuple(r) for r in s.execute(q).all()]

        shown = {
            "Routing decisions": sample("routing", "assign_owner", "flag"),
            "Duplicates found": sample("dedup", "merge", "link"),
            "SLA breaches and escalations": sample("sla", "create_task", "escalate", "flag"),
        }
        tasks = s.execute(sa.select(sa.func.count()).select_from(Task)).scalar_one()
    for title, rows in shown.items():
        console.print(f"[bold]{title}[/bold]")
        for lead_id, kind, reason in rows or [("-", "-", "none on this data")]:
            console.print(f"  {lead_id[:8]} {kind}: {reason}", highlight=False)
    written = {o.connection: o.pushed for o in third}
    in_crms = {o.connection: o.tasks_pushed for o in third if o.tasks_pushed}
    console.print(f"{tasks} tasks open for owners; created as tasks in their CRMs: "
                  + (", ".join(f"{k} {v}" for k, v in in_crms.items()) or "none") + ". Written back to the CRMs: "
                  + ", ".join(f"{k} {v}" for k, v in written.items()) + " records.")
    console.print("[dim]`leadhub explain <lead>` prints one lead's whole story.[/dim]")
    return {"counts": outcome.counts, "applied": outcome.applied, "written_back": written, "tasks_in_crms": in_crms,
            "errors": outcome.errors[:5]}
