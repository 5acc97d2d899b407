"""The registering hooks a plugin uses to add rules and CLI commands, and ``hub_after_push``."""

from __future__ import annotations

from threading import Event

import pluggy
import typer
from typer.testing import CliRunner

from hub import cli, hookspecs, plugins
from hub.connector import Connector, ConnectorSettings, Limits, StatusMap
from hub.errors import ConnectorError
from hub.hookspecs import hookimpl
from hub.store import Run
from hub.sync import Connection, Syncer


class FollowUpRule:
    name = "follow_up"


class Plugin:
    @hookimpl
    def hub_register_rules(self, register):
        register(FollowUpRule)

    @hookimpl
    def hub_register_commands(self, cli):
        @cli.command("hello")
        def hello(name: str = "RevOps") -> None:
            """Say hello (added by a plugin)."""
            typer.echo(f"hello {name}")


def _registry_with(plugin) -> plugins.Registry:
    pm, infos = plugins._build()
    pm.register(plugin, name="test-plugin")
    return plugins.Registry(pm, infos)


def test_rules_registered_by_a_plugin_are_in_the_registry():
    reg = _registry_with(Plugin())
    assert reg.rules["follow_up"] is FollowUpRule
    assert "hubspot" in reg.connectors


def test_a_plugin_command_runs_from_the_leadhub_cli(monkeypatch):
    reg = _registry_with(Plugin())
    monkeypatch.setattr(plugins, "registry", lambda: reg)
    app = typer.Typer()
    app.registered_commands = list(cli.app.registered_commands)
    monkeypatch.setattr(cli, "app", app)
    cli._load_plugin_commands()
    result = CliRunner().invoke(app, ["hello", "--name", "Anna"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "hello Anna"


def test_a_connector_registered_by_hub_register_connectors_is_configurable(tmp_path):
    from hub.config import load_config
    from hub.connector import Connector, ConnectorSettings, Limits, StatusMap

    class TinySettings(ConnectorSettings):
        api_key: str

    class Tiny(Connector):
        name = "tiny"
        settings_model = TinySettings
        hub_id_field = "hub_id"
        status_map = StatusMap({"Lead": {"stage": "new"}})
        limits = Limits(page_size=10, batch_size=5)

    class ConnectorPlugin:
        @hookimpl
        def hub_register_connectors(self, register):
            register(Tiny)

    reg = _registry_with(ConnectorPlugin())
    cfg = tmp_path / "leadhub.yaml"
    cfg.write_text("connections:\n  crm:\n    connector: tiny\n    base_url: http://127.0.0.1:9\n"
                   "    api_key: k\n")
    config = load_config(cfg, reg.connectors)
    assert isinstance(config.connections["crm"].settings, TinySettings)


class Quiet(Connector):
    """A CRM with nothing to read and nothing to write: the cycle calls only the hooks."""

    name = "quiet"
    hub_id_field = "hub_id"
    status_map = StatusMap({"Lead": {"stage": "new"}})
    limits = Limits(page_size=10, batch_size=5)

    def read_pages(self, cursor):
        return iter(())


class AfterPush:
    def __init__(self, fail: str | None = None):
        self.calls: list[tuple] = []
        self.fail = fail

    @hookimpl
    def hub_after_push(self, connection, connector, store, run):
        self.calls.append((connection, connector, store, run["id"]))
        if self.fail:
            raise ConnectorError(self.fail)


def _hooked(plugin) -> pluggy.HookRelay:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(plugin)
    return pm.hook


def _conn(name: str, direction: str = "both") -> Connection:
    return Connection(name, Quiet(ConnectorSettings(base_url="http://127.0.0.1:9"), connection=name),
                      direction=direction)


def test_hub_after_push_gets_each_writing_connection_after_its_push_with_the_live_connector(sqlite_store):
    rec = AfterPush()
    syncer = Syncer(sqlite_store, hook=_hooked(rec))
    crm, read_only = _conn("crm"), _conn("archive", "read")
    outs = syncer.cycle([crm, read_only])
    assert rec.calls == [("crm", crm.connector, sqlite_store, outs[0].run_id)]
    syncer.cycle([crm], push=False)  # no push, no hook
    stop = Event()
    stop.set()
    syncer.cycle([crm], stop=stop)  # a stopped cycle does not push
    assert len(rec.calls) == 1


def test_a_connector_error_raised_in_hub_after_push_is_the_runs_error(sqlite_store):
    (out,) = Syncer(sqlite_store, hook=_hooked(AfterPush(fail="merges: the CRM is down"))).cycle([_conn("crm")])
    assert out.error == "merges: the CRM is down"
    assert sqlite_store.count(Run, Run.status == "error") == 1
