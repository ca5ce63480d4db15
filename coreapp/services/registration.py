"""Registration: ``account.register`` (RegisterRequest) and ``account.verify`` (VerifyRequest with our keys).

Both run on a short pre-auth session of their own (same TLS connect-with-fallback as the chat connection).
The identity is created at verify and committed together with the account in one transaction, only after the
network accepted it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncConnection

from coreapp.chat.errors import ChatRemoteError, ChatUnavailable
from coreapp.chat.session import ChatSession, expect
from coreapp.chat.transport import open_channel
from coreapp.models import AccountStatus
from coreapp.services.keys import KeyService
from coreapp.storage.account import AccountStore
from coreapp.storage.keys import KeyStore
from shared.bus.contract.account import Registration
from shared.config import ChatSettings
from shared.db.engine import Database
from shared.errors import ApiError, ErrorCode
from shared.ids import WaId
from shared.tasks import TaskSupervisor
from shared.wire.e2e import Identity
from shared.wire.frames import Frame, RegisterRequest, RegisterResponse, VerifyRequest, VerifyResponse

log = logging.getLogger("openprem.coreapp.registration")

PREAUTH_TIMEOUT_S = 30.0


class RegistrationService:
    def __init__(
        self,
        settings: ChatSettings,
        db: Database,
        accounts: AccountStore,
        key_store: KeyStore,
        keys: KeyService,
        supervisor: TaskSupervisor,
        on_registered: Callable[[WaId], Awaitable[None]],
    ) -> None:
        self._settings = settings
        self._db = db
        self._accounts = accounts
        self._key_store = key_store
        self._keys = keys
        self._supervisor = supervisor
        self._on_registered = on_registered

    async def register(self, cc: str, phone_number: str, method: str, cert: str, pin: str | None) -> Registration:
        account = await self._accounts.get()
        if account is not None and account.registered and (account.cc, account.phone_number) == (cc, phone_number):
            return Registration(status="registered")
        frame = RegisterRequest(cc=cc, phone_number=phone_number, method=method, cert=cert, pin=pin)
        reply = expect(await self._preauth(frame), RegisterResponse)
        await self._accounts.save_pending(cc, phone_number, cert, reply.vname)
        log.info("registration code requested for +%s %s by %s", cc, phone_number, method)
        status: Literal["registered", "code_sent"] = "registered" if reply.status == "registered" else "code_sent"
        return Registration(status=status, vname=reply.vname)

    async def verify(self, code: str) -> None:
        account = await self._accounts.get()
        if account is None or account.status is not AccountStatus.PENDING:
            raise ApiError(ErrorCode.NOT_FOUND, "no registration is waiting for a code")
        identity = await Identity.create()
        frame = VerifyRequest(
            cc=account.cc,
            phone_number=account.phone_number,
            code=code,
            identity_key=identity.public_key,
            signed_prekey=identity.signed_prekey(),
            one_time_prekeys=identity.one_time_prekeys(),
        )
        reply = expect(await self._preauth(frame), VerifyResponse)
        wa_id = WaId(reply.wa_id)
        identity_json = identity.to_json()

        async def commit_txn(conn: AsyncConnection) -> None:
            await self._accounts.mark_registered_txn(
                conn, account.cc, account.phone_number, wa_id, account.vname, account.cert
            )
            await self._key_store.save_identity_txn(conn, identity_json)

        async with self._keys.identity_lock:
            await self._db.run("registration.verify", commit_txn)
            self._keys.install(identity)
        log.info("registered as %s", wa_id)
        await self._on_registered(wa_id)

    async def _preauth(self, frame: Frame) -> Frame:
        """One request on a fresh pre-auth session; network errors become the frame's On-Prem code."""
        try:
            channel = await open_channel(self._settings)
        except ChatUnavailable as exc:
            log.error("registration: network unreachable: %s", exc)
            raise ApiError(ErrorCode.NOT_READY, "network unreachable") from None
        session = ChatSession(channel, self._supervisor, lambda push: None)
        session.start()
        try:
            return await session.request(frame, PREAUTH_TIMEOUT_S)
        except ChatRemoteError as exc:
            raise ApiError(exc.error_code, exc.message) from None
        except ChatUnavailable as exc:
            log.error("registration: %s", exc)
            raise ApiError(ErrorCode.NOT_READY, "network unreachable") from None
        finally:
            await session.close("registration done")
