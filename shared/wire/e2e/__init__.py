"""Signal end-to-end encryption (X3DH + Double Ratchet) shared by coreapp and chatd (contracts §5).

Pure: no I/O, no storage. Callers persist the JSON strings returned (TEXT columns: they contain ``\\u0000``,
which PostgreSQL jsonb rejects) and serialise work per session. The configuration in ``_protocol`` and the
body format in ``session`` are part of the wire: both ends must run the same code.
"""

from shared.wire.e2e.errors import BundleError, DecryptError, E2EError, SessionMismatchError
from shared.wire.e2e.identity import Identity, verify_signature
from shared.wire.e2e.session import (
    EnvelopeBody,
    PreKeyHeader,
    decrypt,
    decrypt_first,
    encrypt,
    encrypt_first,
)

__all__ = [
    "BundleError",
    "DecryptError",
    "E2EError",
    "EnvelopeBody",
    "Identity",
    "PreKeyHeader",
    "SessionMismatchError",
    "decrypt",
    "decrypt_first",
    "encrypt",
    "encrypt_first",
    "verify_signature",
]
