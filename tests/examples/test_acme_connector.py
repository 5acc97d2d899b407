"""The example third-party connector (examples/acme_connector) through the conformance kit, uninstalled."""

from __future__ import annotations

import importlib
import sys
import tomllib
from pathlib import Path

import httpx
import pluggy

from hub import hookspecs
from hub.plugins import Registry
from hub.testing.conformance import ConformanceSuite

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "acme_connector"
sys.path.insert(0, str(EXAMPLE))

from leadhub_acme import AcmeConnector  # noqa: E402
from leadhub_acme.sandbox import AcmeSandbox  # noqa: E402


class TestAcmeConformance(ConformanceSuite):
    connector = AcmeConnector
    sandbox = AcmeSandbox
    timestamp_resolution = 1.0  # Acme stamps updated_at in whole seconds


def test_the_package_registers_its_connector_through_the_leadhub_entry_point_group():
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    target = project["entry-points"][hookspecs.PROJECT]["acme"]
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(importlib.import_module(target), name="acme")
    pm.check_pending()
    assert Registry(pm, {}).connectors == {"acme": AcmeConnector}
    # `leadhub sandbox acme` and the demo find the sandbox through the connector's attribute
    module, _, name = AcmeConnector.sandbox.partition(":")
    assert getattr(importlib.import_module(module), name) is AcmeSandbox


def test_the_sandbox_answers_like_the_documented_api(served_sandbox):
    box = AcmeSandbox(rate=2)
    box.seed(3)
    url = served_sandbox(box)
    with httpx.Client(base_url=f"{url}/v1") as http:
        refused = http.get("/leads")
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
        key = {"X-Api-Key": box.token}
        first = http.get("/leads", params={"limit": 2}, headers=key).json()
        assert len(first["data"]) == 2 and first["next_cursor"] == "2"
        assert [r["updated_at"] for r in first["data"]] == sorted(r["updated_at"] for r in first["data"])
        too_big = http.get("/leads", params={"limit": 101}, headers=key)
        assert too_big.status_code == 400 and "limit" in too_big.json()["error"]["message"]
        limited = http.get("/leads", headers=key)  # the third call within one second
        assert limited.status_code == 429 and limited.headers["retry-after"] == "1"


def test_a_stage_only_acme_users_set_is_read_as_sal(conformance_kit):
    kit = conformance_kit(AcmeConnector, AcmeSandbox)
    rid = kit.box.remote_create(kit.person(1))
    kit.box.leads[rid]["stage"] = "contacted"  # an Acme user picks a stage the hub never writes
    out = kit.sync(push=False)
    assert out.created == 1 and out.malformed == 0
    assert kit.store.get_lead(kit.links()[rid].lead_id).status == "SAL"
