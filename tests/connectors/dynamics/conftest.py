"""Fixtures for the Dynamics 365 tests: a served sandbox (HTTPS on loopback) and a raw Web API client."""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import httpx
import pytest

from connectors.dynamics.sandbox import DynamicsSandbox
from hub.testing.tls import loopback_tls


@pytest.fixture
def box() -> Iterator[DynamicsSandbox]:
    sandbox = DynamicsSandbox(rate=None)
    with sandbox.serve() as served:
        sandbox.url = served.url
        yield sandbox


def trust() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=loopback_tls().ca_file)


def token_for(box: DynamicsSandbox, secret: str | None = None) -> httpx.Response:
    return httpx.post(f"{box.url}/{box.tenant_id}/oauth2/v2.0/token", verify=trust(), data={
        "grant_type": "client_credentials", "client_id": box.client_id, "client_secret": secret or box.token,
        "scope": f"{box.url}/.default"})


@pytest.fixture
def api(box: DynamicsSandbox) -> Iterator[httpx.Client]:
    """A Web API client with a valid bearer token and the OData headers."""
    token = token_for(box).json()["access_token"]
    with httpx.Client(base_url=f"{box.url}/api/data/v9.2/", verify=trust(), headers={
            "Authorization": f"Bearer {token}", "OData-Version": "4.0", "OData-MaxVersion": "4.0",
            "Accept": "application/json"}) as client:
        yield client
