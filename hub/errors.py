"""Every error LeadHub raises on purpose, in one small tree::

    LeadHubError
    ├── ConfigError            bad hub config or process file (all problems at once)
    ├── PluginError            a plugin failed to load or registered something invalid
    └── ConnectorError         anything that went wrong talking to a CRM
        ├── AuthError          credentials refused (401/403 that is not a rate limit): fix config
        ├── RateLimitError     the CRM said "slow down" and retries ran out (429, daily budget)
        ├── TransientError     timeouts, connection errors, 5xx: retried, then raised
        └── RejectedRecord     the CRM refused one record (validation, duplicate rule…);
            │                  carries the vendor's own message; the rest of the batch goes on
            └── MergeBlocked   the CRM refused a merge because of a record's state (an inactive
                               Dynamics lead): not worth retrying until that state changes

Rules of the tree: messages name what and where (connection, object, record, field),
and never contain a secret. Callers catch :class:`ConnectorError` around one
connection so one broken CRM never stops the others.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "LeadHubError",
    "ConfigError",
    "Problem",
    "PluginError",
    "ConnectorError",
    "AuthError",
    "RateLimitError",
    "TransientError",
    "RejectedRecord",
    "MergeBlocked",
]


class LeadHubError(Exception):
    """Base of every error LeadHub raises on purpose."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in a file: where (file, line, field path) and what."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class ConfigError(LeadHubError):
    """A config or process file is invalid. ``problems`` lists every issue found."""

    def __init__(self, problems: list[Problem] | str):
        if isinstance(problems, str):
            problems = [Problem("<config>", None, "", problems)]
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class PluginError(LeadHubError):
    """A plugin could not be loaded or registered something invalid."""


class ConnectorError(LeadHubError):
    """Talking to a CRM failed. ``connection`` names the configured connection."""

    def __init__(self, message: str, *, connection: str = "", status: int | None = None,
                 vendor_message: str = ""):
        self.connection = connection
        self.status = status
        self.vendor_message = vendor_message or message
        prefix = f"[{connection}] " if connection else ""
        super().__init__(prefix + message)


class AuthError(ConnectorError):
    """The CRM refused the credentials; retrying will not help."""


class RateLimitError(ConnectorError):
    """The CRM kept answering "too many requests" (or a daily budget is spent)."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw):
        self.retry_after = retry_after
        super().__init__(message, **kw)


class TransientError(ConnectorError):
    """A timeout, connection failure or 5xx that outlived its retries."""


class RejectedRecord(ConnectorError):
    """The CRM refused one record. ``vendor_message`` is its verbatim error."""

    def __init__(self, message: str, *, record: str = "", **kw):
        self.record = record
        super().__init__(message, **kw)


class MergeBlocked(RejectedRecord):
    """The CRM refused to merge two records because of one's state (Dataverse merges only active
    leads): the request is set aside, not failed, until the hub sees that state change."""
