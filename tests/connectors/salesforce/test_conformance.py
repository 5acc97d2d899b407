"""Salesforce through the conformance kit (hub.testing.conformance)."""

from __future__ import annotations

from connectors.salesforce import SalesforceConnector
from connectors.salesforce.sandbox import SalesforceSandbox
from hub.testing.conformance import ConformanceSuite


class TestSalesforceConformance(ConformanceSuite):
    connector = SalesforceConnector
    sandbox = SalesforceSandbox
    page_size = 200  # Salesforce's smallest query batch (Sforce-Query-Options: batchSize)
    timestamp_resolution = 1.0  # SystemModstamp is kept in whole seconds
