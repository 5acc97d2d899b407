"""The hub's conformance kit against the monday connector and its sandbox."""

from __future__ import annotations

from connectors.monday import MondayConnector
from connectors.monday.sandbox import MondaySandbox
from hub.testing.conformance import ConformanceSuite


class TestMondayConformance(ConformanceSuite):
    connector = MondayConnector
    sandbox = MondaySandbox
    supports_delete = False  # items_page lists active items only; deletions reach apps by webhook
    timestamp_resolution = 1.0  # updated_at has whole seconds
    rate_window = 60.0
