"""Finding and starting a connector's sandbox by the connector's name.

A connector names its sandbox class in ``Connector.sandbox`` ("module:Class");
that is all ``leadhub sandbox NAME`` and the demo need to serve it.
"""

from __future__ import annotations

import importlib
from typing import Any

from hub.errors import ConfigError
from hub.plugins import registry

__all__ = ["sandbox_class", "open_sandbox"]


def sandbox_class(crm: str) -> type[Any]:
    connectors = registry().connectors
    if crm not in connectors:
        raise ConfigError(f"no connector named {crm!r}; known: {', '.join(sorted(connectors))}")
    target = connectors[crm].sandbox
    if not target:
        raise ConfigError(f"connector {crm!r} ships no sandbox")
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)


def open_sandbox(crm: str, *, seed: int = 0, n: int = 2000, rate: int | None = None, **kw: Any) -> Any:
    """A seeded sandbox for ``crm``, not yet serving. ``rate`` 0 means unlimited, None the default."""
    cls = sandbox_class(crm)
    if rate is not None:
        kw["rate"] = rate or None
    box = cls(**kw)
    box.seed(n, seed=seed)
    return box
