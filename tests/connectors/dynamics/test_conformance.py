"""The conformance kit against the Dynamics 365 connector and its sandbox."""

from __future__ import annotations

from connectors.dynamics import DynamicsConnector
from connectors.dynamics.sandbox import DynamicsSandbox
from hub.testing.conformance import ConformanceSuite


class TestDynamicsConformance(ConformanceSuite):
    connector = DynamicsConnector
    sandbox = DynamicsSandbox
    timestamp_resolution = 1.0  # modifiedon is stamped in whole seconds
