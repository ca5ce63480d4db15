"""Errors raised by the E2E layer; library and codec exceptions never escape past these."""

from __future__ import annotations


class E2EError(Exception):
    """Base class: something in the Signal layer failed (corrupt state, unusable bundle, bad ciphertext)."""


class BundleError(E2EError):
    """A peer's pre-key bundle cannot be used: malformed keys or a signed pre-key signature that fails."""


class DecryptError(E2EError):
    """An envelope could not be decrypted: bad MAC, unknown pre-key, garbage body, replay, corrupt session."""


class SessionMismatchError(DecryptError):
    """A PREKEY envelope opens a *different* session than the one passed to ``decrypt``.

    The peer re-initiated (lost its state, or both sides initiated at once): the receiver should retry the
    same envelope with ``decrypt_first``, which replaces the session.
    """
