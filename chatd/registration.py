"""Registration before login: a verified-name certificate, a 6-digit code "sent by SMS or voice", then keys.

The code is random, logged and readable through the admin API (``GET /admin/codes/{wa_id}``): that is how a
test or an operator "receives the SMS".  Businesses in sanctioned countries are refused outright.  A number
with two-step verification on (``SetTwoStep``) can only be registered again with its PIN, as on the real
network, so a stolen SMS code alone does not take the number over.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets

from chatd.ca import CertError, CertificateAuthority
from chatd.clock import Clock
from chatd.directory import Account, Directory
from chatd.errors import Refused
from chatd.store import Store
from shared.errors import ErrorCode
from shared.wire.frames import RegisterRequest, RegisterResponse, VerifyRequest, VerifyResponse

log = logging.getLogger("openprem.chatd.registration")

SANCTIONED_CC = frozenset({"53", "98", "850", "963"})
_CODE = "code"
_CC = re.compile(r"^[1-9][0-9]{0,2}$")
_NUMBER = re.compile(r"^[0-9]{4,14}$")
_PIN = re.compile(r"^[0-9]{6}$")


def pin_digest(wa_id: str, pin: str) -> str:
    """What the directory keeps instead of the PIN itself."""
    return hashlib.sha256(f"two-step:{wa_id}:{pin}".encode()).hexdigest()


def set_two_step(directory: Directory, wa_id: str, pin: str | None) -> None:
    """``SetTwoStep`` of a logged-in business: store the PIN's digest, or turn two-step off with ``None``."""
    account = directory.account(wa_id)
    if account is None:
        raise Refused(ErrorCode.NOT_FOUND, f"{wa_id} is not a registered business")
    if pin is not None and not _PIN.match(pin):
        raise Refused(ErrorCode.INVALID_PARAMETER, "the two-step PIN must be exactly 6 digits")
    account.two_step_pin = None if pin is None else pin_digest(wa_id, pin)
    directory.put_account(account)
    log.info("two-step verification %s for +%s", "enabled" if pin is not None else "disabled", wa_id)


def _check_number(cc: str, phone_number: str) -> str:
    if not _CC.match(cc):
        raise Refused(ErrorCode.INVALID_PARAMETER, f"cc must be 1-3 digits, got {cc!r}")
    if not _NUMBER.match(phone_number):
        raise Refused(ErrorCode.INVALID_PARAMETER, f"phone_number must be 4-14 digits, got {phone_number!r}")
    return cc + phone_number


class Registrar:
    def __init__(self, ca: CertificateAuthority, directory: Directory, store: Store, clock: Clock) -> None:
        self._ca = ca
        self._directory = directory
        self._store = store
        self._clock = clock
        self._codes: dict[str, dict[str, object]] = {}

    async def load(self) -> None:
        self._codes = {key: json.loads(body) for key, body in await self._store.load(_CODE)}

    def code_for(self, wa_id: str) -> str | None:
        """The last code sent to this number (the admin API's "read the SMS")."""
        entry = self._codes.get(wa_id)
        return None if entry is None else str(entry["code"])

    async def register(self, req: RegisterRequest) -> RegisterResponse:
        wa_id = _check_number(req.cc, req.phone_number)
        if req.cc in SANCTIONED_CC:
            raise Refused(
                ErrorCode.ACCESS_DENIED,
                f"registration refused: +{req.cc} is a sanctioned country; WhatsApp Business accounts "
                "cannot be registered there",
            )
        if req.method not in ("sms", "voice"):
            raise Refused(ErrorCode.INVALID_PARAMETER, f"method must be 'sms' or 'voice', got {req.method!r}")
        try:
            cert = self._ca.verify_vname(req.cert)
        except CertError as exc:
            raise Refused(ErrorCode.ACCESS_DENIED, f"bad certificate: {exc}") from None
        if (cert.cc, cert.phone_number) != (req.cc, req.phone_number):
            raise Refused(
                ErrorCode.ACCESS_DENIED,
                f"bad certificate: issued for +{cert.cc} {cert.phone_number}, not +{req.cc} {req.phone_number}",
            )
        self._check_pin(wa_id, req.pin)
        code = f"{secrets.randbelow(1_000_000):06d}"
        entry: dict[str, object] = {
            "code": code,
            "cc": req.cc,
            "phone_number": req.phone_number,
            "vname": cert.vname,
            "method": req.method,
            "sent_at": self._clock.now(),
            "used": False,
        }
        self._codes[wa_id] = entry
        self._store.put(_CODE, wa_id, json.dumps(entry))
        await self._store.sync()
        log.info("registration code for +%s sent by %s: %s", wa_id, req.method, code)
        return RegisterResponse(id=req.id, status="code_sent", vname=cert.vname)

    def method_for(self, wa_id: str) -> str | None:
        """How the last code was "sent" (``sms`` or ``voice``)."""
        entry = self._codes.get(wa_id)
        return None if entry is None else str(entry.get("method", "sms"))

    def _check_pin(self, wa_id: str, pin: str | None) -> None:
        """With two-step on, no code is sent unless ``pin`` matches (1005 either way, saying which)."""
        account = self._directory.account(wa_id)
        if account is None or account.two_step_pin is None:
            return
        if not pin:
            raise Refused(
                ErrorCode.ACCESS_DENIED,
                f"two-step verification is enabled for +{wa_id}: registration needs its 6-digit PIN ('pin')",
            )
        if not hmac.compare_digest(account.two_step_pin, pin_digest(wa_id, pin)):
            raise Refused(ErrorCode.ACCESS_DENIED, f"wrong two-step verification PIN for +{wa_id}")

    async def verify(self, req: VerifyRequest) -> VerifyResponse:
        wa_id = _check_number(req.cc, req.phone_number)
        entry = self._codes.get(wa_id)
        if entry is None or entry.get("used"):
            raise Refused(ErrorCode.NOT_FOUND, "nothing to verify: request a registration code first")
        if not hmac.compare_digest(str(entry["code"]).encode(), req.code.strip().encode()):
            raise Refused(ErrorCode.ACCESS_DENIED, "wrong registration code")
        if not req.identity_key or not req.signed_prekey.public_key:
            raise Refused(ErrorCode.INVALID_PARAMETER, "identity_key and signed_prekey are required")
        previous = self._directory.account(wa_id)
        self._directory.put_account(
            Account(
                wa_id=wa_id,
                cc=req.cc,
                phone_number=req.phone_number,
                vname=str(entry["vname"]),
                registered_at=self._clock.now(),
                two_step_pin=previous.two_step_pin if previous is not None else None,  # survives re-registration
            )
        )
        self._directory.publish(wa_id, 0, req.identity_key, req.signed_prekey, req.one_time_prekeys)
        entry["used"] = True
        self._store.put(_CODE, wa_id, json.dumps(entry))
        await self._store.sync()
        log.info("business +%s registered (%d one-time pre-keys)", wa_id, len(req.one_time_prekeys))
        return VerifyResponse(id=req.id, wa_id=wa_id)
