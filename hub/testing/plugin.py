"""The LeadHub pytest plugin (entry point ``pytest11: leadhub``).

Gives any connector's tests the fixtures of the conformance kit. Loaded
automatically once ``leadhub`` is installed.
"""

from __future__ import annotations

__all__: list[str] = []
