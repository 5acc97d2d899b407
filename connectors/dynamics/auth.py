"""Client-credentials tokens from Microsoft Entra ID (msal) as an ``httpx.Auth``.

``msal.ConfidentialClientApplication`` fetches and caches the app token (``/.default`` scope of
the Dataverse org) and renews it before it expires. Dataverse may still refuse a token msal
thinks fresh (revoked, clock skew, the sandbox's clock advanced): on a 401 the token is dropped
from msal's cache and the request is sent once more with a new one.

msal reads OpenID discovery at ``{authority}/v2.0/.well-known/openid-configuration`` and only
accepts ``https`` authorities; any host works with ``instance_discovery=False`` (no call to
login.microsoftonline.com to vet it), so the same code reaches Entra, a national cloud or the
sandbox. msal talks through an httpx client given here (its ``http_client`` hook), not its own
``requests`` session: requests lets ``REQUESTS_CA_BUNDLE`` override a session's ``verify``, so a
``ca_bundle`` setting would be ignored wherever that variable is set.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Generator
from typing import Any

import httpx
from pydantic import SecretStr

from hub.errors import AuthError, TransientError
from hub.http import Guard, GuardedTransport, RetryPolicy

__all__ = ["EntraAuth"]

_NETWORK = (OSError, httpx.HTTPError)


class _MsalHttp:
    """msal's minimal HTTP interface (``get``/``post`` returning a response-like object) on httpx.

    429 and 5xx answers and transport errors are retried (``Retry-After`` honoured) by a guard of
    its own: Entra's calls are not Dataverse requests, so they stay out of the connection's rate
    budget and call count.
    """

    def __init__(self, verify: ssl.SSLContext | bool, timeout: float, connection: str):
        guard = Guard(connection=connection, policy=RetryPolicy(attempts=4))
        # no keep-alive: a token is fetched about once an hour
        inner = httpx.HTTPTransport(verify=verify, limits=httpx.Limits(max_keepalive_connections=0))
        self.client = httpx.Client(timeout=timeout, transport=GuardedTransport(
            guard, inner, kind=lambda r: f"entra {r.method} {r.url.path}"))

    def get(self, url: str, params: Any = None, headers: Any = None, **kw: Any) -> httpx.Response:
        return self.client.get(url, params=params, headers=headers)

    def post(self, url: str, params: Any = None, data: Any = None, headers: Any = None,
             **kw: Any) -> httpx.Response:
        if isinstance(data, (str, bytes)):
            return self.client.post(url, params=params, content=data, headers=headers)
        return self.client.post(url, params=params, data=data, headers=headers)

    def close(self) -> None:
        self.client.close()


class EntraAuth(httpx.Auth):
    """Bearer tokens for ``scope`` from ``authority`` with a client id and secret."""

    def __init__(self, *, authority: str, client_id: str, client_secret: SecretStr, scope: str,
                 verify: ssl.SSLContext | bool = True, timeout: float = 30.0, connection: str = ""):
        self.authority, self.client_id, self.scope = authority.rstrip("/"), client_id, scope
        self._secret = client_secret
        self._verify, self._timeout, self._connection = verify, timeout, connection
        self._app: Any = None
        self._lock = threading.Lock()

    def _client(self) -> Any:
        if self._app is None:
            import msal

            try:
                self._app = msal.ConfidentialClientApplication(
                    self.client_id, client_credential=self._secret.get_secret_value(),
                    authority=self.authority, instance_discovery=False,
                    http_client=_MsalHttp(self._verify, self._timeout, self._connection),
                    token_cache=msal.TokenCache())
            except ValueError as exc:  # discovery refused: unknown tenant, bad authority
                raise AuthError(f"token: {exc}", connection=self._connection) from None
            except _NETWORK as exc:
                raise TransientError(f"token: cannot reach {self.authority}: {type(exc).__name__}",
                                     connection=self._connection) from None
        return self._app

    def token(self) -> str:
        """A valid access token (msal's cached one while it has more than 5 minutes left)."""
        with self._lock:
            try:
                result = self._client().acquire_token_for_client(scopes=[self.scope])
            except _NETWORK as exc:
                raise TransientError(f"token: cannot reach {self.authority}: {type(exc).__name__}",
                                     connection=self._connection) from None
        if "access_token" not in result:
            # Entra's description names the app and the AADSTS code, never the secret
            raise AuthError(f"token: credentials refused by {self.authority}: {result.get('error')}: "
                            f"{result.get('error_description', '')}", connection=self._connection)
        return str(result["access_token"])

    def invalidate(self, token: str) -> None:
        """Forget ``token`` so the next :meth:`token` asks Entra for a new one."""
        with self._lock:
            if self._app is None:
                return
            cache = self._app.token_cache
            for item in list(cache.search(cache.CredentialType.ACCESS_TOKEN)):
                if item.get("secret") == token:
                    cache.remove_at(item)

    def close(self) -> None:
        if self._app is not None:
            self._app.http_client.close()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self.token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            self.invalidate(token)
            request.headers["Authorization"] = f"Bearer {self.token()}"
            yield request
