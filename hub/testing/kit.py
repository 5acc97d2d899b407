"""What the conformance kit needs from a connector's sandbox: :class:`ConformanceSandbox`.

Every built-in sandbox implements this protocol, and so should a third-party
connector's, so that :mod:`hub.testing.conformance` can run the standard read,
write and round-trip suite against it. The methods act *as a user of the CRM
would* (they bypass the API, its rate limits and faults, but they do stamp the
CRM's modified time), and speak canonical field names so the kit is the same
for every CRM: ``first_name``, ``last_name``, ``email``, ``phone``, ``company``,
``title``, ``country``, ``source``, ``status`` (a canonical status), ``owner``
(an owner's e-mail), plus ``hub_id`` on reads (the hub's id as stored remotely,
or ``None``).

A connector's test file then is a few lines::

    from hub.testing.conformance import ConformanceSuite

    class TestAcme(ConformanceSuite):
        connector = AcmeConnector
        sandbox = AcmeSandbox
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

__all__ = ["ConformanceSandbox"]


@runtime_checkable
class ConformanceSandbox(Protocol):
    """The test-side handle on a stateful fake CRM (see the module docstring)."""

    #: a valid credential for this sandbox (the connector's token / API key / client secret)
    token: str

    def seed(self, n: int, seed: int = 0) -> Any:
        """Fill the CRM with ``n`` realistic leads (deterministic for ``seed``)."""

    def connector_settings(self, base_url: str) -> dict[str, Any]:
        """Settings (as a config file would give them) for this connector to reach this sandbox.

        Must include ``base_url`` (and a token URL where the CRM has one) and the
        credential; must not include rate overrides.
        """

    def remote_create(self, fields: dict[str, Any]) -> str:
        """Create a lead as a CRM user would; returns its remote id."""

    def remote_update(self, remote_id: str, fields: dict[str, Any]) -> None:
        """Change some fields of a lead as a CRM user would (stamps the modified time)."""

    def remote_delete(self, remote_id: str) -> None:
        """Delete (or archive) a lead as a CRM user would."""

    def remote_get(self, remote_id: str) -> dict[str, Any] | None:
        """The lead as the CRM holds it, in canonical names (with ``hub_id``); None if deleted."""

    def remote_ids(self) -> Iterable[str]:
        """Every live (not deleted) lead's remote id."""
