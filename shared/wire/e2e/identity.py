"""A party's long-term Signal keys: identity key, signed pre-key and the one-time pre-key pool."""

from __future__ import annotations

from typing import Any

import msgspec
import xeddsa
from x3dh.identity_key_pair import IdentityKeyPair
from x3dh.migrations import parse_base_state_model

from shared.wire.e2e._protocol import (
    KEY_LENGTH,
    SIGNATURE_DOMAIN,
    SIGNATURE_LENGTH,
    X3DHState,
    load_x3dh_state,
    new_x3dh_state,
)
from shared.wire.e2e.errors import E2EError
from shared.wire.frames import OneTimePreKey, SignedPreKey


class _IdentityDoc(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Persisted form. Key ids live here because x3dh only knows keys by their bytes."""

    v: int = 1
    x3dh: dict[str, Any]  # the library's own JSON (holds \u0000: TEXT, never jsonb)
    pool: int  # refill target chosen at create
    next_id: int  # next one-time pre-key id
    published: int  # highest one-time pre-key id already handed out for publishing
    prekeys: list[tuple[int, bytes]]  # (key_id, public key) of every one-time pre-key still held
    spk: tuple[int, bytes]  # (key_id, public key) of the current signed pre-key


def verify_signature(public_key: bytes, data: bytes, signature: bytes) -> bool:
    """Check a signature made by ``Identity.sign`` against ``Identity.public_key`` (never raises)."""
    if len(public_key) != KEY_LENGTH or len(signature) != SIGNATURE_LENGTH:
        return False
    try:
        return bool(xeddsa.ed25519_verify(signature, public_key, SIGNATURE_DOMAIN + data))
    except Exception:
        return False


class Identity:
    """Wraps the x3dh state plus the integer key ids the wire needs; pure, callers persist ``to_json()``."""

    def __init__(self, state: X3DHState, doc: _IdentityDoc) -> None:
        self._state = state
        self._pool = doc.pool
        self._next_id = doc.next_id
        self._published = doc.published
        self._prekeys: dict[bytes, int] = {pub: key_id for key_id, pub in doc.prekeys}
        self._spk_id, self._spk_pub = doc.spk
        self._priv: bytes | None = None
        self._pub: bytes | None = None
        self._active: X3DHState | None = None

    # --- lifecycle -------------------------------------------------------------------------------------

    @classmethod
    async def create(cls, one_time_prekeys: int = 50) -> Identity:
        """New keys. Pool size drives x3dh's cost (it re-derives every pre-key on each bundle access)."""
        if one_time_prekeys < 1:
            raise ValueError("one_time_prekeys must be at least 1")
        state = new_x3dh_state()
        state.generate_pre_keys(one_time_prekeys - state.get_num_visible_pre_keys())
        bundle = state.bundle
        doc = _IdentityDoc(
            x3dh={}, pool=one_time_prekeys, next_id=1, published=0, prekeys=[], spk=(1, bundle.signed_pre_key)
        )
        self = cls(state, doc)
        self._sync_prekeys(bundle.pre_keys)
        self._published = self._next_id - 1  # the initial pool is published via one_time_prekeys()
        return self

    def to_json(self) -> str:
        state_json: dict[str, Any] = dict(self._state.json)
        state_json["pre_keys"] = sorted(state_json["pre_keys"])  # set order is per-process
        doc = _IdentityDoc(
            x3dh=state_json,
            pool=self._pool,
            next_id=self._next_id,
            published=self._published,
            prekeys=sorted((key_id, pub) for pub, key_id in self._prekeys.items()),
            spk=(self._spk_id, self._spk_pub),
        )
        return msgspec.json.encode(doc).decode()

    @classmethod
    def from_json(cls, data: str) -> Identity:
        try:
            doc = msgspec.json.decode(data, type=_IdentityDoc)
            if doc.v != 1:
                raise ValueError(f"unsupported identity version {doc.v}")
            state = load_x3dh_state(parse_base_state_model(doc.x3dh)[0])
        except Exception as exc:
            raise E2EError("corrupt identity state") from exc
        self = cls(state, doc)
        if state.get_num_visible_pre_keys() != len(self._prekeys):  # only if edited outside this class
            self._sync_prekeys(state.bundle.pre_keys)
        return self

    # --- public keys and signing -----------------------------------------------------------------------

    def _private_key(self) -> bytes:
        if self._priv is None:
            self._priv = IdentityKeyPair.from_model(self._state.model.identity_key).as_priv().priv
        return self._priv

    @property
    def public_key(self) -> bytes:
        """Ed25519 identity key: what x3dh puts in bundles/headers and what ``verify_signature`` takes."""
        if self._pub is None:
            self._pub = xeddsa.priv_to_ed25519_pub(self._private_key())
        return self._pub

    def sign(self, data: bytes) -> bytes:
        """Ed25519-compatible (XEdDSA-library) signature over a domain-separated ``data``."""
        return xeddsa.ed25519_priv_sign(self._private_key(), SIGNATURE_DOMAIN + data)

    def signed_prekey(self) -> SignedPreKey:
        spk = self._state.model.signed_pre_key
        pub = xeddsa.priv_to_curve25519_pub(spk.priv)
        if pub != self._spk_pub:  # x3dh rotated it (at load, past the rotation period): new id
            self._spk_id, self._spk_pub = self._spk_id + 1, pub
        return SignedPreKey(key_id=self._spk_id, public_key=pub, signature=spk.sig)

    def one_time_prekeys(self) -> list[OneTimePreKey]:
        """Every one-time pre-key still held, by key id (served from the id map: no key derivation)."""
        return sorted(
            (OneTimePreKey(key_id=key_id, public_key=pub) for pub, key_id in self._prekeys.items()),
            key=lambda k: k.key_id,
        )

    async def top_up(self, minimum: int) -> list[OneTimePreKey]:
        """If fewer than ``minimum`` keys remain, refill to ``max(minimum, pool)``; return keys to publish.

        Refilling to the pool size (not just to ``minimum``) batches refills. Each key is returned once:
        persist the identity, then publish (if that publish is lost, republish ``one_time_prekeys()``).
        """
        have = self._state.get_num_visible_pre_keys()
        if have < minimum:
            self._state.generate_pre_keys(max(minimum, self._pool) - have)
            self._sync_prekeys(self._state.bundle.pre_keys)
        fresh = [k for k in self.one_time_prekeys() if k.key_id > self._published]
        self._published = self._next_id - 1
        return fresh

    # --- internals used by the session functions -------------------------------------------------------

    def _sync_prekeys(self, current: frozenset[bytes]) -> None:
        """Drop ids of consumed keys, number new ones in a stable order."""
        self._prekeys = {pub: key_id for pub, key_id in self._prekeys.items() if pub in current}
        for pub in sorted(current - self._prekeys.keys()):
            self._prekeys[pub] = self._next_id
            self._next_id += 1

    def _active_state(self) -> X3DHState:
        """A pre-key-free copy for the active agreement, which reads our own bundle twice (cheap when empty)."""
        if self._active is None:
            model = self._state.model
            self._active = load_x3dh_state(model.model_copy(update={"pre_keys": frozenset()}))
        return self._active

    def _scratch_state(self, pre_key: bytes | None) -> tuple[X3DHState, bytes | None]:
        """A throw-away state holding at most the one pre-key a header names, and that key's private part.

        The passive agreement derives every pre-key's public key several times (bundle, lookup, delete,
        publish); on a one-key copy that costs nothing, and a failed decrypt leaves our pool untouched.
        Raises ``KeyError`` if the pre-key is not (or no longer) ours.
        """
        model = self._state.model
        priv: bytes | None = None
        if pre_key is not None:
            if pre_key not in self._prekeys:
                raise KeyError("unknown one-time pre-key")
            priv = next((p for p in model.pre_keys if xeddsa.priv_to_curve25519_pub(p) == pre_key), None)
            if priv is None:
                raise KeyError("unknown one-time pre-key")
        keys = frozenset() if priv is None else frozenset({priv})
        return load_x3dh_state(model.model_copy(update={"pre_keys": keys})), priv

    def _consume(self, pre_key: bytes | None, priv: bytes | None) -> None:
        """Delete a one-time pre-key after a successful first decrypt (Signal: each is used once)."""
        if pre_key is None or priv is None:
            return
        model = self._state.model
        self._state = load_x3dh_state(model.model_copy(update={"pre_keys": model.pre_keys - {priv}}))
        self._prekeys.pop(pre_key, None)
