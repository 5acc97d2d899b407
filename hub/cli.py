"""The ``leadhub`` command line: a thin shell over library functions.

Every command validates its inputs before any I/O and exits non-zero with
every problem listed when something is wrong. Plugins add commands through
``hub_register_commands(cli)``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hub.errors import ConfigError, LeadHubError, Problem

__all__ = ["app", "main"]

app = typer.Typer(help="LeadHub: one lead process across the CRMs you already have.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
console = Console(stderr=True)
out = Console()

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="Hub config file "
                                                   "(default: $LEADHUB_CONFIG or ./leadhub.yaml).")]


def _config_path(config: Path | None) -> Path:
    return config or Path(os.environ.get("LEADHUB_CONFIG", "leadhub.yaml"))


def _fail(exc: LeadHubError) -> None:
    if isinstance(exc, ConfigError):
        console.print(f"[red]{len(exc.problems)} problem(s):[/red]")
        for p in exc.problems:
            console.print(f"  {p}", markup=False, highlight=False)
    else:
        console.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
    raise typer.Exit(2)


@app.command()
def sync(config: ConfigOpt = None,
         connection: Annotated[Optional[list[str]], typer.Option("--connection", help="Only these.")] = None,
         as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object, no progress.")] = False,
         no_push: Annotated[bool, typer.Option("--no-push", help="Pull only; leave the outbox.")] = False,
         dry_run: Annotated[bool, typer.Option("--dry-run", help="Read the CRMs and print the writes a sync "
                                               "would make, with the rule behind each; change nothing.")] = False,
         ) -> None:
    """Run one sync cycle: pull every configured connection, then push every one."""
    from hub.runtime import Hub

    if dry_run:
        _dry_run(config, connection, as_json)
        return
    try:
        hub = Hub.from_file(_config_path(config))
        with hub:
            if as_json:
                outcomes = hub.sync(connection, push=not no_push)
            else:
                with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}"),
                              TimeElapsedColumn(), console=console, transient=True) as bar:
                    tasks: dict[tuple[str, str], int] = {}

                    def progress(name: str, phase: str, n: int) -> None:
                        key = (name, phase)
                        if key not in tasks:
                            tasks[key] = bar.add_task(f"{name}: {phase}", total=None)
                        bar.advance(tasks[key], n)

                    outcomes = hub.sync(connection, push=not no_push, progress=progress)
    except LeadHubError as exc:
        _fail(exc)
        return
    if as_json:
        out.print_json(json.dumps({"connections": [o.as_dict() for o in outcomes],
                                   "ok": all(o.error is None for o in outcomes)}))
    else:
        table = Table("connection", "pulled", "new", "matched", "updated", "unchanged", "handed off", "pushed",
                      "rejected", "malformed", "conflicts", "API calls", "429s", "seconds", title="leadhub sync")
        for o in outcomes:
            table.add_row(o.connection, *(str(x) for x in (o.pulled, o.created, o.matched, o.updated, o.unchanged,
                          o.handed_off, o.pushed, o.rejected, o.malformed, o.conflicts, o.api_calls,
                          o.throttled, o.seconds)))
        out.print(table)
        for o in outcomes:
            if o.error:
                console.print(f"[red]{o.connection}: {o.error}[/red]", highlight=False)
    if any(o.error for o in outcomes):
        raise typer.Exit(1)


def _dry_run(config: Path | None, connection: list[str] | None, as_json: bool) -> None:
    from hub.runtime import Hub

    try:
        with Hub.from_file(_config_path(config)) as hub:
            plans, outcomes = hub.plan(connection)
    except LeadHubError as exc:
        _fail(exc)
        return
    errors = [o for o in outcomes if o.error]
    if as_json:
        out.print_json(json.dumps({"writes": [p.as_dict() for p in plans], "ok": not errors,
                                   "errors": {o.connection: o.error for o in errors}}, default=str))
    else:
        names = [o.connection for o in outcomes]
        table = Table("connection", "creates", "updates", "hub-id stamps", title="leadhub sync --dry-run")
        for name in names:
            mine = [p for p in plans if p.connection == name]
            table.add_row(name, *(str(sum(p.action == a for p in mine)) for a in ("create", "update", "stamp")))
        out.print(table)
        for p in plans:
            if p.action == "stamp":
                continue
            target = p.remote_id or "(new record)"
            out.print(f"[bold]{p.connection}[/bold] {p.action} {target} (lead {p.lead_id[:8]})", highlight=False)
            if "*" in p.reasons:
                out.print(f"    {p.reasons['*']}", highlight=False)
            for name, (before, after) in sorted(p.changes.items()):
                why = p.reasons.get(name)
                out.print(f"    {name}: {before!r} -> {after!r}" + (f"  [dim]({why})[/dim]" if why else ""),
                          highlight=False)
        for o in errors:
            console.print(f"[red]{o.connection}: {o.error}[/red]", highlight=False)
        console.print("[dim]dry run: the CRMs were read; nothing was written to them or to the store.[/dim]")
    if errors:
        raise typer.Exit(1)


@app.command()
def backfill(config: ConfigOpt = None,
             fields: Annotated[Optional[list[str]], typer.Option("--field", help="Only these fields "
                                                                 "(default: those with a conflict rule).")] = None,
             dry_run: Annotated[bool, typer.Option("--dry-run", help="Count, change nothing.")] = False) -> None:
    """Apply the current conflict rules to leads the CRMs disagree on, and queue the writes (and refresh
    every lead's match keys)."""
    from hub.runtime import Hub

    try:
        with Hub.from_file(_config_path(config)) as hub:
            report = hub.backfill(fields, dry_run=dry_run)
    except LeadHubError as exc:
        _fail(exc)
        return
    verb = "would change" if dry_run else "changed"
    out.print(f"{report.leads} leads read, {report.changed} {verb}, {report.queued} writes "
              f"{'would be ' if dry_run else ''}queued for the next sync")
    for reason, n in sorted(report.reasons.items(), key=lambda kv: -kv[1]):
        out.print(f"  {n:>6}  {reason}", highlight=False)


@app.command()
def validate(files: Annotated[list[Path], typer.Argument(help="Hub config and/or process files.")]) -> None:
    """Check config and process files, the rules' settings included; print every problem with file, line and field."""
    import yaml

    from hub.config import validate_files
    from hub.plugins import registry

    reg = registry()
    problems = []
    for f in files:
        is_config = False
        try:
            data = yaml.safe_load(f.read_text()) if f.exists() else None
            is_config = isinstance(data, dict) and ("connections" in data or "database" in data)
        except (yaml.YAMLError, OSError):
            pass
        problems += validate_files(f if is_config else None, None if is_config else f, reg.connectors, reg.rules)
    # a process file named by a config and given too is checked twice: report each problem once
    unique: dict[tuple[object, ...], Problem] = {}
    for p in problems:
        unique.setdefault((Path(p.file).resolve(), p.line, p.field, p.message), p)
    problems = list(unique.values())
    errors = [p for p in problems if not p.message.startswith("warning:")]
    for p in problems:
        (console if p in errors else out).print(str(p), markup=False, highlight=False)
    if errors:
        console.print(f"[red]{len(errors)} error(s)[/red]")
        raise typer.Exit(1)
    out.print(f"[green]ok[/green]: {', '.join(str(f) for f in files)}")


@app.command()
def plugins() -> None:
    """List loaded plugins: name, version, origin and hooks."""
    from hub.plugins import list_plugins, registry

    try:
        reg = registry()
    except LeadHubError as exc:
        _fail(exc)
        return
    table = Table("plugin", "version", "origin", "hooks", title="leadhub plugins")
    for p in list_plugins():
        table.add_row(p.name, p.version, p.origin, ", ".join(p.hooks))
    out.print(table)
    out.print(f"connectors: {', '.join(sorted(reg.connectors)) or '-'}")
    out.print(f"rules: {', '.join(sorted(reg.rules)) or '-'}")


@app.command()
def sandbox(crm: Annotated[str, typer.Argument(help="Connector name, e.g. hubspot.")],
            port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: any free one).")] = 0,
            seed: Annotated[int, typer.Option(help="Random seed for the generated data.")] = 0,
            n: Annotated[int, typer.Option("--n", help="How many leads to seed.")] = 2000,
            rate: Annotated[Optional[int], typer.Option(help="Requests per vendor window; 0: unlimited.")] = None,
            ) -> None:
    """Serve a CRM's sandbox on loopback, seeded, until stopped (Ctrl-C)."""
    from hub.sandboxes import open_sandbox

    try:
        box = open_sandbox(crm, seed=seed, n=n, rate=rate)
    except LeadHubError as exc:
        _fail(exc)
        return

    def ready(url: str) -> None:
        out.print(f"{crm} sandbox serving at [bold]{url}[/bold]")
        out.print(f"token: {box.token}")
        if hasattr(box, "connector_settings"):
            out.print("connection settings for a config file:")
            for key, value in box.connector_settings(url).items():
                out.print(f"  {key}: {value}", highlight=False)
        out.print(f"{n} leads seeded (seed {seed}); Ctrl-C to stop")

    box.serve_forever(port=port, ready=ready)


@app.command()
def demo(n: Annotated[int, typer.Option("--n", help="Leads seeded in the largest CRM (others get a share).")] = 2000,
         seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
         keep: Annotated[Optional[Path], typer.Option(help="Keep the demo's files in this folder.")] = None,
         as_json: Annotated[bool, typer.Option("--json", help="Also print the figures as one JSON object "
                                               "(on stdout; the report goes to stderr).")] = False,
         ) -> None:
    """Sandboxes, seeded data, a real sync, and a readable report. Leaves nothing running."""
    from hub.demo import run_demo

    try:
        report = run_demo(console if as_json else out, n=n, seed=seed, keep=keep)
    except LeadHubError as exc:
        _fail(exc)
        return
    if as_json:
        out.print_json(json.dumps(report, default=str))


def _parse_now(now: str | None):
    from datetime import datetime, timezone

    if now is None:
        return None
    try:
        at = datetime.fromisoformat(now.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--now {now!r} is not an ISO date-time (e.g. 2026-03-02T09:00:00Z)") from None
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


@app.command()
def rules(config: ConfigOpt = None,
          dry_run: Annotated[bool, typer.Option(
              "--dry-run", help="Show what every rule would do; change nothing.")] = False,
          now: Annotated[Optional[str], typer.Option(help="Evaluate as of this ISO time.")] = None,
          lead: Annotated[Optional[list[str]], typer.Option(
              "--lead", help="Only these leads (id or email).")] = None,
          all_leads: Annotated[bool, typer.Option(
              "--all", help="Every lead, not only changed or due ones.")] = False,
          limit: Annotated[int, typer.Option(help="Show at most this many actions.")] = 200,
          as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
          ) -> None:
    """Run the rules over leads that changed or fell due, applying their actions (or --dry-run)."""
    from hub.explain import find_lead
    from hub.runtime import Hub

    try:
        at = _parse_now(now)
        hub = Hub.from_file(_config_path(config))
        with hub:
            ids = None
            if lead:
                ids = [find_lead(hub.store, ref) for ref in lead]
                missing = [ref for ref, i in zip(lead, ids) if i is None]
                if missing:
                    raise ConfigError(f"no single lead matches {', '.join(missing)}")
            result = hub.rules_engine().run(at, ids, dry_run=dry_run, all_leads=all_leads,
                                            keep_actions=dry_run or ids is not None or as_json)
    except LeadHubError as exc:
        _fail(exc)
        return
    if as_json:
        out.print_json(json.dumps(result.as_dict()))
    else:
        title = f"leadhub rules{' --dry-run' if dry_run else ''} at {result.now:%Y-%m-%d %H:%M} UTC"
        table = Table("rule", "lead", "action", "reason", "", title=title)
        for a in result.actions[:limit]:
            what = a.kind if a.applied else f"{a.kind} (refused: {a.outcome})"
            table.add_row(a.rule, a.lead_id[:12], what, a.reason, "would" if dry_run else "done")
        if result.actions:
            out.print(table)
        if len(result.actions) > limit:
            out.print(f"… and {len(result.actions) - limit} more (--limit, --json)")
        counts = ", ".join(f"{k} {v}" for k, v in sorted(result.counts.items())) or "no actions"
        verb = "would take" if dry_run else "took"
        out.print(f"{result.evaluated} lead(s) evaluated; {verb} {result.applied} action(s), "
                  f"{result.refused} refused; {counts}; {result.seconds}s")
        for e in result.errors[:20]:
            console.print(f"[red]{e}[/red]", highlight=False, markup=False)
    if result.errors:
        raise typer.Exit(1)


@app.command()
def explain(lead: Annotated[str, typer.Argument(help="Lead id (or a unique 8+ character prefix, or email).")],
            config: ConfigOpt = None,
            now: Annotated[Optional[str], typer.Option(help="Describe clocks as of this ISO time.")] = None,
            ) -> None:
    """Print a lead's whole story in order: status history, rule decisions, SLA clocks, merges."""
    from hub.explain import find_lead, format_story
    from hub.runtime import Hub

    try:
        at = _parse_now(now)
        hub = Hub.from_file(_config_path(config))
        with hub:
            lead_id = find_lead(hub.store, lead)
            if lead_id is None:
                raise ConfigError(f"no single lead matches {lead!r}")
            lines = format_story(hub.store, lead_id, hub.rules_engine(), at)
    except LeadHubError as exc:
        _fail(exc)
        return
    for line in lines:
        out.print(line, markup=False, highlight=False)


@app.command()
def status(config: ConfigOpt = None,
           as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False) -> None:
    """Each connection's last run, lag, errors, API calls (24 h), pending writes, CRM merges and rule
    tasks (pushed, refused, closed in the hub but not yet in the CRM); open violations, conflicts and tasks."""
    from hub.runtime import Hub
    from hub.status import hub_status

    try:
        with Hub.from_file(_config_path(config)) as hub:
            st = hub_status(hub)
    except LeadHubError as exc:
        _fail(exc)
        return
    if as_json:
        out.print_json(json.dumps(st.as_dict(), default=str))
        return
    table = Table("connection", "connector", "last run", "result", "lag", "API calls 24h", "pending",
                  "failed", "CRM merges", "tasks", "error", title="leadhub status")
    for c in st.connections:
        budget = f"{c.calls_24h}" + (f" / {c.daily_budget}" if c.daily_budget else "")
        lag = "-" if c.lag_seconds is None else f"{c.lag_seconds / 60:.0f} min"
        merges = ", ".join(f"{n} {state}" for state, n in c.merges.items() if n) or "-"
        tasks = ", ".join(f"{n} {what}" for what, n in (("in CRM", c.tasks_pushed), ("refused", c.tasks_failed))
                          if n) or "-"
        table.add_row(c.connection, c.connector, str(c.last_run or "never")[:19], c.last_status or "-", lag,
                      budget, str(c.pending), str(c.failed), merges, tasks, (c.last_error or "")[:80])
    out.print(table)
    for c in st.connections:
        if c.merge_failure:
            out.print(f"{c.connection}: latest CRM merge failure: {c.merge_failure[:200]}", markup=False,
                      highlight=False)
        if c.task_error:
            out.print(f"{c.connection}: latest task push error: {c.task_error[:200]}", markup=False,
                      highlight=False)
        if c.tasks_to_close:  # a line of its own: the table is wide enough already
            out.print(f"{c.connection}: {c.tasks_to_close} tasks closed in the hub still to close in the CRM, "
                      f"{c.tasks_close_failed} refused", markup=False, highlight=False)
        if c.task_close_error:
            out.print(f"{c.connection}: latest task close error: {c.task_close_error[:200]}", markup=False,
                      highlight=False)
    out.print(f"{st.violations} leads missing required fields for their status (tasks with their owners); "
              f"{st.conflicts} unresolved conflicts; {st.tasks_open} open rule tasks, {st.tasks_unlinked} "
              "unlinked (their lead has no record in a CRM that takes tasks).")


@app.command("run")
def run_worker(config: ConfigOpt = None,
               once: Annotated[bool, typer.Option("--once", help="Run every job once, in order, then exit "
                                                 "(for cron); exit 1 if any failed.")] = False,
               rules_every: Annotated[str, typer.Option("--rules-every", help="How often the rules run "
                                                        "(e.g. 1m, 1h).")] = "1m",
               ) -> None:
    """The long-running worker: each connection synced every sync_every, the rules every --rules-every.

    SIGTERM or Ctrl-C stops it cleanly (the running sync finishes its page and commits); a second one
    exits at once. One log line per run on stderr."""
    import logging

    from hub.process import parse_duration
    from hub.runtime import Hub
    from hub.worker import Worker

    try:
        try:
            every = parse_duration(rules_every).delta
        except ValueError as exc:
            raise ConfigError(f"--rules-every: {exc}") from None
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("hub").setLevel(logging.INFO)
        logging.getLogger("apscheduler").setLevel(logging.ERROR)  # "skipped: still running" is no run
        with Hub.from_file(_config_path(config)) as hub:
            worker = Worker(hub, rules_every=every)
            if once:
                code = int(not all(r.ok for r in worker.run_once()))
            else:
                code = worker.run_forever()
    except LeadHubError as exc:
        _fail(exc)
        return
    raise typer.Exit(code)


def _load_plugin_commands() -> None:
    try:
        from hub.plugins import get_plugin_manager

        get_plugin_manager().hook.hub_register_commands(cli=app)
    except LeadHubError as exc:
        console.print(f"[red]plugin error:[/red] {exc}")


def main(argv: list[str] | None = None) -> None:
    _load_plugin_commands()
    app(args=argv, prog_name="leadhub")


if __name__ == "__main__":
    main(sys.argv[1:])
