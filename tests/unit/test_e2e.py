"""Signal layer (contracts §5): alice is the business (initiator), bob a phone (responder).

Receiver rule exercised here, as coreapp/chatd will apply it: with a session for (peer, device) call
``decrypt`` (it also accepts the initiator's repeated PREKEY envelopes), otherwise ``decrypt_first``.
"""

from __future__ import annotations

import sqlite3

import msgspec
import pytest

from shared.wire.e2e import (
    BundleError,
    DecryptError,
    EnvelopeBody,
    Identity,
    SessionMismatchError,
    decrypt,
    decrypt_first,
    encrypt,
    encrypt_first,
    verify_signature,
)
from shared.wire.frames import DeviceBundle, Envelope, EnvelopeKind, OneTimePreKey, SignedPreKey

POOL = 5  # small pools keep x3dh cheap; the default (50) is covered once


def bundle_of(identity: Identity, device_id: int = 0, *, index: int = 0, with_otpk: bool = True) -> DeviceBundle:
    return DeviceBundle(
        device_id=device_id,
        identity_key=identity.public_key,
        signed_prekey=identity.signed_prekey(),
        one_time_prekey=identity.one_time_prekeys()[index] if with_otpk else None,
    )


@pytest.fixture
async def alice() -> Identity:
    return await Identity.create(POOL)


@pytest.fixture
async def bob() -> Identity:
    return await Identity.create(POOL)


def tampered(envelope: Envelope) -> Envelope:
    body = msgspec.msgpack.decode(envelope.body, type=EnvelopeBody)
    flipped = bytes([body.ciphertext[0] ^ 1]) + body.ciphertext[1:]
    body = msgspec.structs.replace(body, ciphertext=flipped)
    return Envelope(device_id=envelope.device_id, kind=envelope.kind, body=msgspec.msgpack.encode(body))


async def test_first_message_and_reply() -> None:
    alice, bob = await Identity.create(), await Identity.create()  # default pool of 50
    assert len(bob.one_time_prekeys()) == 50

    alice_session, env = await encrypt_first(alice, bundle_of(bob, device_id=7), b"hello bob")
    assert env.kind is EnvelopeKind.PREKEY and env.device_id == 7

    bob_session, plaintext = await decrypt_first(bob, alice.public_key, env, sender_device=2)
    assert plaintext == b"hello bob"
    assert len(bob.one_time_prekeys()) == 49

    bob_session, reply = await encrypt(bob_session, b"hi alice")
    assert reply.kind is EnvelopeKind.MESSAGE and reply.device_id == 2
    alice_session, plaintext = await decrypt(alice_session, reply)
    assert plaintext == b"hi alice"

    alice_session, env = await encrypt(alice_session, b"after the reply")
    assert env.kind is EnvelopeKind.MESSAGE
    _, plaintext = await decrypt(bob_session, env)
    assert plaintext == b"after the reply"


async def test_twenty_each_way_with_reload_between_every_step(alice: Identity, bob: Identity) -> None:
    alice_json, bob_json = alice.to_json(), bob.to_json()
    bundle = bundle_of(Identity.from_json(bob_json))

    a_sess, env = await encrypt_first(Identity.from_json(alice_json), bundle, b"a0")
    bob_loaded = Identity.from_json(bob_json)
    b_sess, pt = await decrypt_first(bob_loaded, alice.public_key, env)
    bob_json = bob_loaded.to_json()
    assert pt == b"a0"

    for i in range(20):
        b_sess, env = await encrypt(b_sess, f"b{i}".encode())
        a_sess, pt = await decrypt(a_sess, env)
        assert pt == f"b{i}".encode()
        a_sess, env = await encrypt(a_sess, f"a{i + 1}".encode() * 50)
        assert env.kind is EnvelopeKind.MESSAGE
        b_sess, pt = await decrypt(b_sess, env)
        assert pt == f"a{i + 1}".encode() * 50
        # the strings are all a caller keeps: the session has no other memory
        assert isinstance(a_sess, str) and isinstance(b_sess, str)


async def test_out_of_order_within_a_chain(alice: Identity, bob: Identity) -> None:
    a_sess, env = await encrypt_first(alice, bundle_of(bob), b"open")
    b_sess, _ = await decrypt_first(bob, alice.public_key, env)

    sent = []
    for i in range(1, 6):
        b_sess, env = await encrypt(b_sess, f"m{i}".encode())
        sent.append(env)
    for n in (5, 3, 1, 2, 4):
        a_sess, pt = await decrypt(a_sess, sent[n - 1])
        assert pt == f"m{n}".encode()


async def test_prekey_burst_before_any_reply_out_of_order(alice: Identity, bob: Identity) -> None:
    """Every message before a reply is PREKEY; whichever arrives first opens the session, the rest use decrypt."""
    a_sess, first = await encrypt_first(alice, bundle_of(bob), b"p1")
    burst = [first]
    for i in range(2, 6):
        a_sess, env = await encrypt(a_sess, f"p{i}".encode())
        assert env.kind is EnvelopeKind.PREKEY
        burst.append(env)

    b_sess, pt = await decrypt_first(bob, alice.public_key, burst[4])
    assert pt == b"p5"
    for n in (3, 1, 2, 4):
        b_sess, pt = await decrypt(b_sess, burst[n - 1])
        assert pt == f"p{n}".encode()


async def test_two_prekey_messages_second_via_decrypt(alice: Identity, bob: Identity) -> None:
    a_sess, env1 = await encrypt_first(alice, bundle_of(bob), b"one")
    a_sess, env2 = await encrypt(a_sess, b"two")
    assert env1.kind is env2.kind is EnvelopeKind.PREKEY

    b_sess, pt = await decrypt_first(bob, alice.public_key, env1)
    assert pt == b"one"
    # decrypt_first again would need the one-time pre-key, which the first message consumed
    with pytest.raises(DecryptError):
        await decrypt_first(Identity.from_json(bob.to_json()), alice.public_key, env2)
    b_sess, pt = await decrypt(b_sess, env2)
    assert pt == b"two"

    b_sess, reply = await encrypt(b_sess, b"reply")
    a_sess, _ = await decrypt(a_sess, reply)
    a_sess, env3 = await encrypt(a_sess, b"three")
    assert env3.kind is EnvelopeKind.MESSAGE
    _, pt = await decrypt(b_sess, env3)
    assert pt == b"three"


async def test_tampered_ciphertext_fails_and_leaves_session_usable(alice: Identity, bob: Identity) -> None:
    a_sess, env = await encrypt_first(alice, bundle_of(bob), b"open")
    with pytest.raises(DecryptError):
        await decrypt_first(bob, alice.public_key, tampered(env))
    assert len(bob.one_time_prekeys()) == POOL  # a failed first decrypt consumes nothing
    b_sess, _ = await decrypt_first(bob, alice.public_key, env)

    b_sess, env = await encrypt(b_sess, b"secret")
    with pytest.raises(DecryptError):
        await decrypt(a_sess, tampered(env))
    _, pt = await decrypt(a_sess, env)
    assert pt == b"secret"


async def test_wrong_sender_identity_key(alice: Identity, bob: Identity) -> None:
    carol = await Identity.create(1)
    _, env = await encrypt_first(alice, bundle_of(bob), b"hi")
    with pytest.raises(DecryptError):
        await decrypt_first(bob, carol.public_key, env)
    _, pt = await decrypt_first(bob, None, env)  # None skips the check
    assert pt == b"hi"


async def test_consumed_one_time_prekey_is_unknown(alice: Identity, bob: Identity) -> None:
    stale_bob = bob.to_json()
    _, env = await encrypt_first(alice, bundle_of(bob), b"hi")
    await decrypt_first(bob, alice.public_key, env)
    with pytest.raises(DecryptError):
        await decrypt_first(bob, alice.public_key, env)
    with pytest.raises(DecryptError):  # reloaded from the persisted state: still gone
        await decrypt_first(Identity.from_json(bob.to_json()), alice.public_key, env)
    # only a stale (unpersisted) copy would still accept it: callers persist identity right after
    _, pt = await decrypt_first(Identity.from_json(stale_bob), alice.public_key, env)
    assert pt == b"hi"


async def test_replay_within_session_is_rejected(alice: Identity, bob: Identity) -> None:
    a_sess, env = await encrypt_first(alice, bundle_of(bob), b"open")
    b_sess, _ = await decrypt_first(bob, alice.public_key, env)
    b_sess, env = await encrypt(b_sess, b"once")
    a_sess, _ = await decrypt(a_sess, env)
    with pytest.raises(DecryptError):
        await decrypt(a_sess, env)


async def test_garbage_and_inconsistent_envelopes(alice: Identity, bob: Identity) -> None:
    _, env = await encrypt_first(alice, bundle_of(bob), b"open")
    b_sess, _ = await decrypt_first(bob, alice.public_key, env)
    bad = [
        Envelope(device_id=0, kind=EnvelopeKind.MESSAGE, body=b"\x00garbage"),
        Envelope(device_id=0, kind=EnvelopeKind.PREKEY, body=b""),
        Envelope(device_id=0, kind=EnvelopeKind.MESSAGE, body=env.body),  # PREKEY body labelled MESSAGE
        Envelope(device_id=0, kind=EnvelopeKind.MESSAGE, body=msgspec.msgpack.encode({"v": 1, "counter": -1})),
    ]
    for envelope in bad:
        with pytest.raises(DecryptError):
            await decrypt(b_sess, envelope)
        with pytest.raises(DecryptError):
            await decrypt_first(bob, alice.public_key, envelope)
    _, reply = await encrypt(b_sess, b"x")
    with pytest.raises(DecryptError):
        await decrypt("{not json", reply)


async def test_new_session_from_peer_raises_mismatch_then_decrypt_first(alice: Identity, bob: Identity) -> None:
    _, env = await encrypt_first(alice, bundle_of(bob, index=0), b"old session")
    b_sess, _ = await decrypt_first(bob, alice.public_key, env)

    _, env = await encrypt_first(alice, bundle_of(bob, index=0), b"new session")  # alice lost her state
    with pytest.raises(SessionMismatchError):
        await decrypt(b_sess, env)
    _, pt = await decrypt_first(bob, alice.public_key, env)
    assert pt == b"new session"


async def test_bundle_without_one_time_prekey(alice: Identity, bob: Identity) -> None:
    _, env = await encrypt_first(alice, bundle_of(bob, with_otpk=False), b"no otpk")
    _, pt = await decrypt_first(bob, alice.public_key, env)
    assert pt == b"no otpk"
    assert len(bob.one_time_prekeys()) == POOL


async def test_forged_signed_prekey_is_rejected(alice: Identity, bob: Identity) -> None:
    mallory = await Identity.create(1)
    forged = DeviceBundle(
        device_id=0,
        identity_key=bob.public_key,
        signed_prekey=mallory.signed_prekey(),  # signed by mallory, not bob
        one_time_prekey=bob.one_time_prekeys()[0],
    )
    with pytest.raises(BundleError):
        await encrypt_first(alice, forged, b"x")
    short = msgspec.structs.replace(bundle_of(bob), identity_key=b"short")
    with pytest.raises(BundleError):
        await encrypt_first(alice, short, b"x")


async def test_sign_and_verify(alice: Identity, bob: Identity) -> None:
    nonce = b"challenge-nonce"
    signature = alice.sign(nonce)
    assert verify_signature(alice.public_key, nonce, signature)
    assert not verify_signature(bob.public_key, nonce, signature)
    assert not verify_signature(alice.public_key, nonce + b"!", signature)
    forged = bytes([signature[0] ^ 1]) + signature[1:]
    assert not verify_signature(alice.public_key, nonce, forged)
    assert not verify_signature(alice.public_key, nonce, b"short")
    assert not verify_signature(b"short", nonce, signature)
    reloaded = Identity.from_json(alice.to_json())
    assert reloaded.public_key == alice.public_key
    assert verify_signature(alice.public_key, nonce, reloaded.sign(nonce))


async def test_identity_json_round_trip(alice: Identity, bob: Identity) -> None:
    data = bob.to_json()
    reloaded = Identity.from_json(data)
    assert reloaded.to_json() == data
    assert reloaded.public_key == bob.public_key
    assert reloaded.signed_prekey() == bob.signed_prekey()
    assert reloaded.one_time_prekeys() == bob.one_time_prekeys()

    _, env = await encrypt_first(alice, bundle_of(bob, index=2), b"to the reloaded bob")
    _, pt = await decrypt_first(reloaded, alice.public_key, env)
    assert pt == b"to the reloaded bob"


async def test_session_json_survives_text_storage(alice: Identity, bob: Identity) -> None:
    a_sess, env = await encrypt_first(alice, bundle_of(bob), b"open")
    b_sess, _ = await decrypt_first(bob, alice.public_key, env)
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE s (state TEXT)")
    db.execute("INSERT INTO s VALUES (?)", (b_sess,))
    (stored,) = db.execute("SELECT state FROM s").fetchone()
    assert stored == b_sess
    _, reply = await encrypt(stored, b"from storage")
    _, pt = await decrypt(a_sess, reply)
    assert pt == b"from storage"


async def test_top_up(alice: Identity, bob: Identity) -> None:
    initial = bob.one_time_prekeys()
    assert [k.key_id for k in initial] == list(range(1, POOL + 1))
    assert await bob.top_up(POOL) == []  # full pool: nothing new

    for i in range(3):
        _, env = await encrypt_first(alice, bundle_of(bob, index=i), b"x")
        # consumes the key at index i of a list that shrinks: indices 0, 1, 2 of what is left
        await decrypt_first(bob, alice.public_key, env)
    assert len(bob.one_time_prekeys()) == POOL - 3
    assert await bob.top_up(1) == []  # above the minimum

    fresh = await bob.top_up(POOL)
    assert len(fresh) == 3
    assert all(isinstance(k, OneTimePreKey) and k.key_id > POOL for k in fresh)
    assert len(bob.one_time_prekeys()) == POOL
    assert await bob.top_up(POOL) == []  # already handed out

    reloaded = Identity.from_json(bob.to_json())
    new_bundle = DeviceBundle(
        device_id=0, identity_key=bob.public_key, signed_prekey=bob.signed_prekey(), one_time_prekey=fresh[0]
    )
    _, env = await encrypt_first(alice, new_bundle, b"via a topped-up key")
    _, pt = await decrypt_first(reloaded, alice.public_key, env)
    assert pt == b"via a topped-up key"
    assert fresh[0] not in reloaded.one_time_prekeys()


async def test_signed_prekey_shape(bob: Identity) -> None:
    spk = bob.signed_prekey()
    assert isinstance(spk, SignedPreKey)
    assert spk.key_id == 1 and len(spk.public_key) == 32 and len(spk.signature) == 64
    assert len(bob.public_key) == 32


async def _receive(identity: Identity, held: str | None, envelope: Envelope, sender: Identity) -> tuple[str, bytes]:
    """What coreapp and chatd do with a pushed envelope: the held session, else accept a new one."""
    if held is not None:
        try:
            return await decrypt(held, envelope)
        except SessionMismatchError:
            pass
    return await decrypt_first(identity, sender.public_key, envelope, existing=held)


async def test_crossing_first_messages_settle_on_one_session(alice: Identity, bob: Identity) -> None:
    """A phone's first message crossing the business's: both sides accept the other's session and keep their
    own; afterwards every message in both directions still decrypts (it used to fail for good)."""
    a_state, a_first = await encrypt_first(alice, bundle_of(bob), b"hello from the business")
    b_state, b_first = await encrypt_first(bob, bundle_of(alice), b"hello from the phone")

    a_state, plain = await _receive(alice, a_state, b_first, bob)
    assert plain == b"hello from the phone"
    b_state, plain = await _receive(bob, b_state, a_first, alice)
    assert plain == b"hello from the business"

    for i in range(6):
        a_state, env = await encrypt(a_state, f"a{i}".encode())
        b_state, plain = await _receive(bob, b_state, env, alice)
        assert plain == f"a{i}".encode()
        b_state, env = await encrypt(b_state, f"b{i}".encode())
        a_state, plain = await _receive(alice, a_state, env, bob)
        assert plain == f"b{i}".encode()
    # Both sides now send ordinary messages on one shared session.
    _, env = await encrypt(a_state, b"x")
    assert env.kind is EnvelopeKind.MESSAGE


async def test_a_version_one_session_still_loads(alice: Identity, bob: Identity) -> None:
    """State written before session records existed (one bare session) keeps working."""
    import json

    a_state, first = await encrypt_first(alice, bundle_of(bob), b"one")
    legacy = json.dumps(json.loads(a_state)["current"])
    _, env = await encrypt(legacy, b"two")
    b_state, plain = await decrypt_first(bob, alice.public_key, first)
    _, plain = await decrypt(b_state, env)
    assert plain == b"two"
