"""Microsoft Entra ID (the token issuer) as far as a client-credentials app sees it.

``msal.ConfidentialClientApplication`` pointed at ``https://<sandbox>/<tenant>`` works
unmodified: it reads OpenID discovery at ``/{tenant}/v2.0/.well-known/openid-configuration``
and posts ``grant_type=client_credentials`` to the ``token_endpoint`` found there. msal only
accepts ``https`` authorities, which is why the sandbox serves TLS. Errors carry Entra's
``AADSTS`` codes and body shape; tokens are opaque and expire after ``token_ttl`` seconds of
the sandbox clock.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any
from urllib.parse import parse_qs

from starlette.responses import Response

from hub.testing.sandbox import Call

__all__ = ["Entra"]


class Entra:
    """Mixin for :class:`DynamicsSandbox`: discovery and the v2.0 token endpoint of one tenant."""

    tenant_id: str
    client_id: str
    token: str  # the client secret
    token_ttl: int
    tls: bool
    clock: Any
    _tokens: dict[str, tuple[str, float]]

    def entra_routes(self) -> list[tuple[str, str, Any]]:
        return [("GET", "/{tenant}/v2.0/.well-known/openid-configuration", self._discovery),
                ("POST", "/{tenant}/oauth2/v2.0/token", self._token)]

    def _entra_error(self, status: int, error: str, code: int, text: str) -> Response:
        trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
        now = self.clock.now()
        when = now.strftime("%Y-%m-%d %H:%M:%S") + "Z"
        body = {"error": error,
                "error_description": f"AADSTS{code}: {text} Trace ID: {trace} Correlation ID: {correlation} "
                                     f"Timestamp: {when}",
                "error_codes": [code], "timestamp": when, "trace_id": trace, "correlation_id": correlation,
                "error_uri": f"https://login.microsoftonline.com/error?code={code}"}
        return self.json(body, status)  # type: ignore[attr-defined]

    def _discovery(self, call: Call) -> Response:
        tenant = call.params["tenant"]
        if tenant.lower() != self.tenant_id.lower():
            return self._entra_error(400, "invalid_tenant", 90002,
                                     f"Tenant '{tenant}' not found. Check to make sure you have the correct "
                                     "tenant ID and are signing into the correct cloud.")
        base = f"{'https' if self.tls else 'http'}://{call.headers.get('host', 'localhost')}/{self.tenant_id}"
        return self.json({  # type: ignore[attr-defined]
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                      "client_secret_basic"],
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/v2.0",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com"})

    def _token(self, call: Call) -> Response:
        form = {k: v[0] for k, v in parse_qs(call.body.decode("utf-8", "replace")).items()}
        if call.params["tenant"].lower() != self.tenant_id.lower():
            return self._entra_error(400, "invalid_tenant", 90002,
                                     f"Tenant '{call.params['tenant']}' not found.")
        if form.get("grant_type") != "client_credentials":
            grant = form.get("grant_type", "")
            return self._entra_error(400, "unsupported_grant_type", 70003,
                                     f"The app requested an unsupported grant type '{grant}'.")
        client = form.get("client_id", "")
        if client.lower() != self.client_id.lower():
            return self._entra_error(400, "unauthorized_client", 700016,
                                     f"Application with identifier '{client}' was not found in the directory "
                                     f"'{self.tenant_id}'.")
        if not secrets.compare_digest(form.get("client_secret", ""), self.token):
            return self._entra_error(401, "invalid_client", 7000215,
                                     "Invalid client secret provided. Ensure the secret being sent in the "
                                     "request is the client secret value, not the client secret ID, for a "
                                     f"secret added to app '{self.client_id}'.")
        scope = form.get("scope", "")
        if not any(s.endswith("/.default") for s in scope.split()):
            return self._entra_error(400, "invalid_scope", 1002012,
                                     f"The provided value for scope {scope} is not valid. Client credential "
                                     "flows must have a scope value with /.default suffixed to the resource "
                                     "identifier (application ID URI).")
        access = "eyJ0eXAiOiJKV1QifQ." + secrets.token_urlsafe(48)
        self._tokens[access] = (client.lower(), self.clock.now().timestamp() + self.token_ttl)
        return self.json({"token_type": "Bearer", "expires_in": self.token_ttl,  # type: ignore[attr-defined]
                          "ext_expires_in": self.token_ttl, "access_token": access})

    def bearer(self, call: Call) -> str | None:
        """The client id of a valid bearer token on ``call``, else None."""
        auth = call.headers.get("authorization", "")
        if not auth.lower().startswith("bearer "):
            return None
        entry = self._tokens.get(auth[7:].strip())
        if entry is None or entry[1] <= self.clock.now().timestamp():
            return None
        return entry[0]

    def expire_tokens(self) -> None:
        """Make every issued token invalid now (as if they had expired)."""
        self._tokens.clear()

