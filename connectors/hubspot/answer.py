"""What a ``hubspot-api-client`` call returned or raised, as the core's :class:`hub.http.Answer`.

One translation for every API package the connector uses (contacts, owners, tasks…), handed to
:class:`hub.http.Guard` as ``to_answer`` so retries, ``Retry-After`` and rate budgets see the
status and headers whatever package the call went through.
"""

from __future__ import annotations

from typing import Any

import urllib3

from hub.http import Answer

__all__ = ["to_answer"]


def to_answer(result: Any) -> Answer:
    """A response, or any of the client's exceptions, as an :class:`~hub.http.Answer`; anything else
    is raised again."""
    # each API package of the client has its own ApiException, with 401/403/404/5xx subclasses: an
    # owners 401 is an owners UnauthorizedException, not a contacts ApiException
    if "ApiException" in {c.__name__ for c in type(result).__mro__} and hasattr(result, "status"):
        if result.status == 0:
            return Answer(None, {}, None, result)
        return Answer(result.status, dict(result.headers or {}), result.body)
    if isinstance(result, (urllib3.exceptions.HTTPError, OSError)):
        return Answer(None, {}, None, result)
    if isinstance(result, urllib3.BaseHTTPResponse):
        return Answer(result.status, dict(result.headers), None)
    raise result
