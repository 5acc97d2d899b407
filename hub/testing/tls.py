"""A loopback certificate authority for sandboxes that must speak HTTPS.

Some vendor clients hard-code ``https://`` (simple-salesforce does); their sandboxes
serve TLS with a certificate for ``127.0.0.1``/``localhost`` issued by a throw-away CA
(``trustme``). Clients trust it through the ordinary CA-bundle setting
(``ca_bundle`` in a connection's config), exactly as they would trust a corporate
proxy's CA, so the connector code is the same as against the real CRM.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

__all__ = ["LoopbackTLS", "loopback_tls"]


@dataclass(frozen=True, slots=True)
class LoopbackTLS:
    certfile: str  # server certificate chain (PEM)
    keyfile: str  # server private key (PEM)
    ca_file: str  # the CA to trust on the client side (PEM)


@lru_cache(maxsize=1)
def loopback_tls() -> LoopbackTLS:
    """One CA and server certificate per process, written to a private temp folder."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost", "::1")
    folder = Path(tempfile.mkdtemp(prefix="leadhub-tls-"))
    certfile, keyfile, ca_file = folder / "server.pem", folder / "server.key", folder / "ca.pem"
    cert.private_key_pem.write_to_path(str(keyfile))
    with certfile.open("wb") as f:
        for blob in cert.cert_chain_pems:
            f.write(blob.bytes())
    ca.cert_pem.write_to_path(str(ca_file))
    return LoopbackTLS(str(certfile), str(keyfile), str(ca_file))
