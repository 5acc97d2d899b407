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
    # search never returns archived contacts; the connector lists them (archived=true) after the search
    supports_delete = True
