"""HubSpot through the conformance kit (hub.testing.conformance)."""

from __future__ import annotations

from connectors.hubspot import HubSpotConnector
from connectors.hubspot.sandbox import HubSpotSandbox
from hub.testing.conformance import ConformanceSuite


class TestHubSpotConformance(ConformanceSuite):
    connector = HubSpotConnector
    sandbox = HubSpotSandbox
    # the kit runs connectors unlimited (no 5 searches/s budget), so the sandbox's search limit is off too
    sandbox_kwargs = {"search_rate": None}
    # the connector reads through search, which never returns archived contacts
    supports_delete = False
