"""The :mod:`requests` form of :class:`hub.http.Guard`: a transport adapter and a session built on it.

Vendor clients built on requests (``simple-salesforce``, monday's SDK, the Dataverse
client) accept a ``requests.Session``. Give them one from :func:`guarded_session`
and every call they make goes through the connection's guard — rate budgets
acquired first, 429/408/425/5xx and transport errors retried with ``Retry-After``
or backoff, every answer metered — without the connector wrapping calls one by one::

    session = guarded_session(connector.guard, verify=settings.ca_bundle or True, timeout=30)
    sf = simple_salesforce.Salesforce(instance_url=url, session_id=token, session=session)

Like :class:`hub.http.GuardedTransport`, the adapter hands the final answer back,
4xx included, so the client raises its own error with the vendor's body; only
exhausted retries (5xx, 429, transport errors) raise :class:`hub.errors.TransientError`
or :class:`hub.errors.RateLimitError`. A TLS verification failure is configuration,
not bad luck: it is raised at once, never retried.

Retries resend the prepared body, so they assume it is bytes or text (what JSON
and form clients send), not a one-shot stream.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from hub.errors import ConnectorError, RateLimitError, TransientError
from hub.http import Answer, Guard

__all__ = ["GuardedAdapter", "guarded_session", "request_kind"]

Verify = bool | str


def request_kind(request: requests.PreparedRequest) -> str:
    """The default meter label: method and path, e.g. ``GET /services/data/v59.0/query``."""
    return f"{request.method} {urlsplit(request.url or '').path}"


def _answer(result: Any, stream: bool = False) -> Answer:
    if isinstance(result, requests.Response):
        body = None if stream and result.status_code < 400 else result.content
        return Answer(result.status_code, result.headers, body)
    if isinstance(result, requests.exceptions.SSLError):
        raise result  # a certificate the client does not trust: retrying cannot help
    if isinstance(result, (requests.ConnectionError, requests.Timeout)):
        return Answer(None, {}, None, result)
    raise result


class GuardedAdapter(HTTPAdapter):
    """An :class:`~requests.adapters.HTTPAdapter` that sends every request through a :class:`Guard`.

    ``verify`` (a CA bundle path, or ``False``), when given, is used for every
    request whatever the session or environment say: requests lets
    ``REQUESTS_CA_BUNDLE`` override ``Session.verify``, which would silently
    ignore a connection's ``ca_bundle`` setting. ``timeout`` applies to requests
    that set none (most vendor clients set none). ``kind`` labels calls for the meter.
    """

    def __init__(self, guard: Guard, *, verify: Verify | None = None, timeout: float | None = None,
                 kind: Callable[[requests.PreparedRequest], str] | None = None, **kw: Any):
        super().__init__(max_retries=0, **kw)  # the guard retries, urllib3 must not
        self.guard = guard
        self.verify = verify
        self.timeout = timeout
        self.kind = kind or request_kind

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None,
             verify: Verify = True, cert: Any = None, proxies: Mapping[str, str] | None = None) -> requests.Response:
        if self.verify is not None:
            verify = self.verify
        if timeout is None:
            timeout = self.timeout
        send = super().send

        def attempt() -> requests.Response:
            resp = send(request, stream=stream, timeout=timeout, verify=verify, cert=cert,
                        proxies=dict(proxies or {}))
            if not stream or resp.status_code >= 400:
                resp.content  # noqa: B018 - read now: a retried answer frees its connection, errors keep their body
            return resp

        last: list[requests.Response] = []

        def to_answer(result: Any) -> Answer:
            if isinstance(result, requests.Response):
                last[:] = [result]
            return _answer(result, stream)

        try:
            return self.guard.call(attempt, kind=self.kind(request), to_answer=to_answer)
        except ConnectorError as exc:
            if last and not isinstance(exc, TransientError | RateLimitError):
                return last[0]  # 4xx: the client reads the vendor's message and raises its own error
            raise


def guarded_session(guard: Guard, *, verify: Verify = True, timeout: float | None = None,
                    kind: Callable[[requests.PreparedRequest], str] | None = None) -> requests.Session:
    """A :class:`requests.Session` whose every call (http and https) goes through ``guard``.

    ``verify``: ``True`` trusts the system's CAs (and ``REQUESTS_CA_BUNDLE``); a
    path trusts that bundle only (a corporate proxy's CA, a sandbox's loopback
    CA); ``False`` turns verification off.
    """
    session = requests.Session()
    adapter = GuardedAdapter(guard, verify=None if verify is True else verify, timeout=timeout, kind=kind)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.verify = verify
    return session
