"""The registering hooks a plugin uses to add rules and CLI commands."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from hub import cli, plugins
from hub.hookspecs import hookimpl


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
