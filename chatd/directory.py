"""Accounts and the key directory: who is registered, and the public keys others need to reach them.

Businesses register through ``VerifyRequest`` (device 0); phones publish their devices' keys when created.
Both are served the same way: ``take_bundles`` hands out one bundle per device and consumes a one-time pre-key
from each, as the Signal server does, so a pre-key is never given to two senders.
"""

from __future__ import annotations

import msgspec

from chatd.store import Store
from shared.wire.frames import DeviceBundle, OneTimePreKey, SignedPreKey


class Account(msgspec.Struct, kw_only=True):
    """A registered business number."""

    wa_id: str
    cc: str
    phone_number: str
    vname: str
    registered_at: float
    two_step_pin: str | None = None  # digest of the two-step PIN (``chatd.registration.pin_digest``), None when off


class KeyRecord(msgspec.Struct, kw_only=True):
    """One device's public keys as published."""

    wa_id: str
    device_id: int
    identity_key: bytes
    signed_prekey: SignedPreKey
    one_time_prekeys: list[OneTimePreKey] = []


_ACCOUNT, _KEYS = "account", "keys"
_account_decoder = msgspec.json.Decoder(Account)
_keys_decoder = msgspec.json.Decoder(KeyRecord)


def _key(wa_id: str, device_id: int) -> str:
    return f"{wa_id}/{device_id}"


class Directory:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._accounts: dict[str, Account] = {}
        self._keys: dict[str, dict[int, KeyRecord]] = {}

    async def load(self) -> None:
        for _, body in await self._store.load(_ACCOUNT):
            account = _account_decoder.decode(body)
            self._accounts[account.wa_id] = account
        for _, body in await self._store.load(_KEYS):
            record = _keys_decoder.decode(body)
            self._keys.setdefault(record.wa_id, {})[record.device_id] = record

    # --- accounts ---------------------------------------------------------------------------------------

    def account(self, wa_id: str) -> Account | None:
        return self._accounts.get(wa_id)

    def accounts(self) -> list[Account]:
        return list(self._accounts.values())

    def put_account(self, account: Account) -> None:
        self._accounts[account.wa_id] = account
        self._store.put(_ACCOUNT, account.wa_id, msgspec.json.encode(account).decode())

    # --- keys -------------------------------------------------------------------------------------------

    def publish(
        self,
        wa_id: str,
        device_id: int,
        identity_key: bytes,
        signed_prekey: SignedPreKey,
        one_time_prekeys: list[OneTimePreKey],
    ) -> None:
        """Replace a device's keys (registration, a phone's creation or reinstall)."""
        record = KeyRecord(
            wa_id=wa_id,
            device_id=device_id,
            identity_key=identity_key,
            signed_prekey=signed_prekey,
            one_time_prekeys=list(one_time_prekeys),
        )
        self._keys.setdefault(wa_id, {})[device_id] = record
        self._save(record)

    def add_prekeys(
        self, wa_id: str, device_id: int, one_time_prekeys: list[OneTimePreKey], signed_prekey: SignedPreKey | None
    ) -> bool:
        """Top up a device's pool (and rotate its signed pre-key); False if the device is unknown."""
        record = self._keys.get(wa_id, {}).get(device_id)
        if record is None:
            return False
        known = {k.key_id for k in record.one_time_prekeys}
        record.one_time_prekeys.extend(k for k in one_time_prekeys if k.key_id not in known)
        if signed_prekey is not None:
            record.signed_prekey = signed_prekey
        self._save(record)
        return True

    def devices(self, wa_id: str) -> list[int]:
        return sorted(self._keys.get(wa_id, {}))

    def identity_key(self, wa_id: str, device_id: int = 0) -> bytes | None:
        record = self._keys.get(wa_id, {}).get(device_id)
        return None if record is None else record.identity_key

    def prekeys_remaining(self, wa_id: str, device_id: int = 0) -> int:
        record = self._keys.get(wa_id, {}).get(device_id)
        return 0 if record is None else len(record.one_time_prekeys)

    def take_bundles(self, wa_id: str) -> list[DeviceBundle]:
        """One bundle per device, each consuming a one-time pre-key while any are left."""
        bundles = []
        for device_id in self.devices(wa_id):
            record = self._keys[wa_id][device_id]
            otp = record.one_time_prekeys.pop(0) if record.one_time_prekeys else None
            if otp is not None:
                self._save(record)
            bundles.append(
                DeviceBundle(
                    device_id=device_id,
                    identity_key=record.identity_key,
                    signed_prekey=record.signed_prekey,
                    one_time_prekey=otp,
                )
            )
        return bundles

    def _save(self, record: KeyRecord) -> None:
        self._store.put(_KEYS, _key(record.wa_id, record.device_id), msgspec.json.encode(record).decode())
