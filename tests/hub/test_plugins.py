"""The plugin system: built-ins, a real third-party entry point, allow/block lists, hook hygiene."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hub import hookspecs, plugins
from hub.errors import PluginError

REPO = Path(__file__).resolve().parents[2]

ACME = '''
from hub.connector import Connector, ConnectorSettings, Limits, StatusMap
from hub.hookspecs import hookimpl


class AcmeConnector(Connector):
    name = "acme"
    lead_object = "people"
    hub_id_field = "hub_id"
    status_map = StatusMap({"Lead": {"stage": "new"}})
    limits = Limits(page_size=50, batch_size=10)


@hookimpl
def hub_register_connectors(register):
    register(AcmeConnector)
'''


@pytest.fixture(scope="module")
def acme_site(tmp_path_factory) -> Path:
    """A tiny third-party connector package, pip-installed into its own folder."""
    src = tmp_path_factory.mktemp("acme-src")
    (src / "leadhub_acme.py").write_text(ACME)
    (src / "pyproject.toml").write_text(textwrap.dedent("""
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "leadhub-acme"
        version = "0.3.1"
        [project.entry-points.leadhub]
        acme = "leadhub_acme"
        [tool.setuptools]
        py-modules = ["leadhub_acme"]
    """))
    site = tmp_path_factory.mktemp("acme-site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(src)], check=True, capture_output=True)
    return site


def _connectors(stdout: str) -> set[str]:
    line = next(ln for ln in stdout.splitlines() if ln.startswith("connectors:"))
    return {n.strip() for n in line.split(":", 1)[1].split(",")}


def _leadhub(*args: str, site: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    e = {**os.environ, "COLUMNS": "200", **env}
    if site:
        e["PYTHONPATH"] = os.pathsep.join([str(site), e.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "hub.cli", *args], capture_output=True, text=True, env=e,
                          cwd=REPO, timeout=120)


def test_builtins_load_and_register_hubspot(monkeypatch):
    monkeypatch.delenv("LEADHUB_PLUGINS", raising=False)
    plugins.reset()
    reg = plugins.registry()
    assert "hubspot" in reg.connectors
    info = reg.plugins["connectors.hubspot"]
    assert info.origin == "built-in" and "hub_register_connectors" in info.hooks


def test_third_party_connector_loads_through_a_real_entry_point(acme_site):
    res = _leadhub("plugins", site=acme_site)
    assert res.returncode == 0, res.stderr
    assert "acme" in res.stdout and "0.3.1" in res.stdout
    assert "entry point (leadhub-acme)" in res.stdout
    assert {"acme", "hubspot"} <= _connectors(res.stdout)


def test_block_list_and_allow_list(acme_site):
    blocked = _leadhub("plugins", site=acme_site, LEADHUB_DISABLE_PLUGINS="acme")
    assert "hubspot" in _connectors(blocked.stdout) and "acme" not in _connectors(blocked.stdout)
    only = _leadhub("plugins", site=acme_site, LEADHUB_PLUGINS="acme")
    assert _connectors(only.stdout) == {"acme"}


def test_a_misspelt_hook_fails_at_start_up(monkeypatch):
    class Bad:
        @hookspecs.hookimpl
        def hub_register_conectors(self, register):  # typo on purpose
            pass

    pm, _ = plugins._build()
    pm.register(Bad())
    import pluggy

    with pytest.raises(pluggy.PluginValidationError):
        pm.check_pending()


def test_two_connectors_with_one_name_is_an_error():
    class A:
        name = "dup"

    class B:
        name = "dup"

    table: dict = {}
    add = plugins.Registry._adder(table, "connector")
    add(A)
    with pytest.raises(PluginError, match="two plugins register a connector named 'dup'"):
        add(B)


def test_every_hook_is_documented_and_tested():
    specs = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("hub_")]
    assert specs, "no hooks found"
    tests = "\n".join(p.read_text() for p in (REPO / "tests").rglob("test_*.py") if p.name != "test_plugins.py")
    for name in specs:
        doc = inspect.getdoc(getattr(hookspecs, name))
        assert doc and len(doc) > 30, f"hook {name} has no real docstring"
        assert name in tests, f"hook {name} is not exercised by any test outside test_plugins.py"
