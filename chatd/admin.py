"""The admin HTTP API (loopback JSON): how tests, demos and operators drive the sandbox.

Routes are those of contracts §6 and SANDBOX.md plus a few read-only inspection routes.  Every failure is
``{"error": "..."}`` with a 4xx status; an unexpected exception is logged and answered 500 without details.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from chatd.ca import CertificateAuthority
from chatd.clock import Clock
from chatd.delivery import PhoneDelivery
from chatd.directory import Directory
from chatd.faults import FaultError, Faults, describe
from chatd.limits import LimitError, Limits
from chatd.outbox import Outbox
from chatd.phones import PhoneError, Phones
from chatd.policy import Policy, PolicyError
from chatd.registration import Registrar
from chatd.router import Router
from chatd.store import Store
from chatd.templates import TemplateError, TemplateStore, approval_delay
from shared.wire.frames import IdentityChanged

log = logging.getLogger("openprem.chatd.admin")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_DIGITS = re.compile(r"^[0-9]+$")


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except BadRequest as exc:
        return _error(exc.status, str(exc))
    except PhoneError as exc:
        return _error(exc.status, str(exc))
    except (FaultError, TemplateError, PolicyError, LimitError) as exc:
        return _error(400, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(exc.status, exc.reason)
    except Exception:
        log.exception("admin %s %s failed", request.method, request.path)
        return _error(500, "internal error (see the chatd log)")


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json(loads=json.loads)
    except ValueError:
        raise BadRequest("body must be a JSON object") from None
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return body


def _digits(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not _DIGITS.match(value.lstrip("+")):
        raise BadRequest(f"'{name}' must be a string of digits")
    return value.lstrip("+")


class AdminApi:
    def __init__(
        self,
        *,
        ca: CertificateAuthority,
        clock: Clock,
        store: Store,
        directory: Directory,
        registrar: Registrar,
        phones: Phones,
        delivery: PhoneDelivery,
        outbox: Outbox,
        router: Router,
        templates: TemplateStore,
        faults: Faults,
        policy: Policy | None = None,
        limits: Limits | None = None,
    ) -> None:
        self._limits = limits if limits is not None else Limits(store, clock)
        self._policy = policy if policy is not None else Policy(store)
        self._ca = ca
        self._clock = clock
        self._store = store
        self._directory = directory
        self._registrar = registrar
        self._phones = phones
        self._delivery = delivery
        self._outbox = outbox
        self._router = router
        self._templates = templates
        self._faults = faults

    def app(self) -> web.Application:
        app = web.Application(middlewares=[_errors], client_max_size=1024 * 1024)
        app.router.add_get("/admin/health", self.health)
        app.router.add_post("/admin/certificates", self.certificate)
        app.router.add_get("/admin/codes/{wa_id}", self.code)
        app.router.add_get("/admin/phones", self.list_phones)
        app.router.add_post("/admin/phones", self.create_phone)
        app.router.add_get("/admin/phones/{wa_id}", self.get_phone)
        app.router.add_patch("/admin/phones/{wa_id}", self.patch_phone)
        app.router.add_get("/admin/phones/{wa_id}/inbox", self.inbox)
        app.router.add_post("/admin/phones/{wa_id}/send", self.send)
        app.router.add_post("/admin/phones/{wa_id}/read", self.read)
        app.router.add_get("/admin/phones/{wa_id}/sent", self.sent)
        app.router.add_post("/admin/phones/{wa_id}/reinstall", self.reinstall)
        app.router.add_post("/admin/phones/{wa_id}/change-number", self.change_number)
        app.router.add_get("/admin/businesses", self.businesses)
        app.router.add_get("/admin/templates", self.list_templates)
        app.router.add_post("/admin/templates", self.create_template)
        app.router.add_get("/admin/faults", self.list_faults)
        app.router.add_post("/admin/faults", self.add_fault)
        app.router.add_delete("/admin/faults", self.clear_faults)
        app.router.add_get("/admin/policy", self.get_policy)
        app.router.add_patch("/admin/policy", self.patch_policy)
        app.router.add_get("/admin/limits", self.get_limits)
        app.router.add_patch("/admin/limits", self.patch_limits)
        app.router.add_patch("/admin/limits/{wa_id}", self.patch_business_limits)
        app.router.add_post("/admin/businesses/{wa_id}/kick", self.kick_business)
        app.router.add_get("/admin/clock", self.clock)
        app.router.add_post("/admin/clock/advance", self.advance_clock)
        return app

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def certificate(self, request: web.Request) -> web.Response:
        body = await _body(request)
        cc, number = _digits(body, "cc"), _digits(body, "phone_number")
        vname = body.get("vname")
        if not isinstance(vname, str) or not vname.strip():
            raise BadRequest("'vname' (the display name) is required")
        return web.json_response({"cert": self._ca.issue_vname(cc, number, vname.strip(), self._clock.timestamp())})

    async def code(self, request: web.Request) -> web.Response:
        wa_id = request.match_info["wa_id"].lstrip("+")
        code = self._registrar.code_for(wa_id)
        if code is None:
            raise BadRequest("no registration code was sent to this number", status=404)
        return web.json_response({"code": code, "method": self._registrar.method_for(wa_id)})

    async def list_phones(self, request: web.Request) -> web.Response:
        return web.json_response({"phones": [self._describe(p.wa_id) for p in self._phones.all()]})

    async def create_phone(self, request: web.Request) -> web.Response:
        body = await _body(request)
        name, devices, online = body.get("name"), body.get("devices", 1), body.get("online", True)
        if name is not None and not isinstance(name, str):
            raise BadRequest("'name' must be a string")
        if not isinstance(devices, int) or isinstance(devices, bool):
            raise BadRequest("'devices' must be an integer")
        if not isinstance(online, bool):
            raise BadRequest("'online' must be a boolean")
        phone = await self._phones.create(_digits(body, "wa_id"), name, devices, online)
        return web.json_response({"wa_id": phone.wa_id}, status=201)

    def _describe(self, wa_id: str) -> dict[str, Any]:
        phone = self._phones.require(wa_id)
        doc = self._phones.describe(phone)
        doc["held_count"] = self._delivery.held_count(wa_id)
        return doc

    async def get_phone(self, request: web.Request) -> web.Response:
        return web.json_response(self._describe(request.match_info["wa_id"].lstrip("+")))

    async def patch_phone(self, request: web.Request) -> web.Response:
        phone = self._phones.require(request.match_info["wa_id"].lstrip("+"))
        changed = self._phones.update(phone, await _body(request))
        await self._store.sync()
        if "online" in changed:
            self._delivery.kick(phone)
        return web.json_response(self._describe(phone.wa_id))

    async def inbox(self, request: web.Request) -> web.Response:
        phone = self._phones.require(request.match_info["wa_id"].lstrip("+"))
        return web.json_response({"messages": self._phones.inbox(phone)})

    async def send(self, request: web.Request) -> web.Response:
        phone = self._phones.require(request.match_info["wa_id"].lstrip("+"))
        return web.json_response({"id": await self._phones.send(phone, await _body(request))})

    async def sent(self, request: web.Request) -> web.Response:
        """What the phone sent, each with ``read_by_business`` (set when the business marks it read)."""
        phone = self._phones.require(request.match_info["wa_id"].lstrip("+"))
        return web.json_response({"messages": self._phones.sent(phone)})

    async def read(self, request: web.Request) -> web.Response:
        phone = self._phones.require(request.match_info["wa_id"].lstrip("+"))
        message_id = (await _body(request)).get("id")
        if not isinstance(message_id, str) or not message_id:
            raise BadRequest("'id' (the message id) is required")
        await self._phones.read(phone, message_id)
        return web.json_response({})

    async def reinstall(self, request: web.Request) -> web.Response:
        """The user reinstalled WhatsApp: new identity keys; the businesses it knew get ``IdentityChanged``."""
        phone = self._phones.require(request.match_info["wa_id"].lstrip("+"))
        notified = await self._phones.reinstall(phone)
        await self._tell(notified, IdentityChanged(wa_id=phone.wa_id, timestamp=self._clock.timestamp()))
        log.warning("+%s reinstalled WhatsApp: new identity keys, %d business(es) told", phone.wa_id, len(notified))
        return web.json_response({**self._describe(phone.wa_id), "notified": notified})

    async def change_number(self, request: web.Request) -> web.Response:
        """``{"new_wa_id"}``: the user moves to a new number (a new phone); the old one stops being a user."""
        phone = self._phones.require(request.match_info["wa_id"].lstrip("+"))
        new_wa_id = _digits(await _body(request), "new_wa_id")
        if phone.state.changed_number:
            raise BadRequest(f"+{phone.wa_id} already moved to +{phone.state.new_wa_id}", status=409)
        state = phone.state
        await self._phones.create(new_wa_id, state.name, state.devices, state.online)
        state.changed_number, state.new_wa_id = True, new_wa_id
        self._phones.save_state(phone)
        notified = self._phones.known_businesses(phone)
        frame = IdentityChanged(wa_id=phone.wa_id, timestamp=self._clock.timestamp(), new_wa_id=new_wa_id)
        await self._tell(notified, frame)
        log.warning("+%s changed number to +%s; %d business(es) told", phone.wa_id, new_wa_id, len(notified))
        return web.json_response({**self._describe(phone.wa_id), "notified": notified})

    async def _tell(self, businesses: list[str], frame: IdentityChanged) -> None:
        for business in businesses:
            await self._outbox.enqueue(business, frame)
        await self._store.sync()

    async def businesses(self, request: web.Request) -> web.Response:
        docs = [
            {
                "wa_id": account.wa_id,
                "vname": account.vname,
                "connected": bool(self._router.live(account.wa_id)),
                "pending_pushes": len(self._outbox.pending(account.wa_id)),
                "prekeys_remaining": self._directory.prekeys_remaining(account.wa_id, 0),
            }
            for account in self._directory.accounts()
        ]
        return web.json_response({"businesses": docs})

    def _template_doc(self, t: Any) -> dict[str, Any]:
        doc = _template(t)
        approves_at = self._templates.approves_at(t)
        if approves_at is not None:
            doc["status"], doc["approves_at"] = "pending", approves_at
        return doc

    async def list_templates(self, request: web.Request) -> web.Response:
        return web.json_response({"templates": [self._template_doc(t) for t in self._templates.all()]})

    async def create_template(self, request: web.Request) -> web.Response:
        """``approval_delay_s`` (0-1200) with ``status: approved``: pending until then, by the sandbox clock."""
        body = await _body(request)
        template = self._templates.parse(body)
        self._templates.put(template, approval_delay(body))
        await self._store.sync()
        return web.json_response(self._template_doc(template), status=201)

    async def list_faults(self, request: web.Request) -> web.Response:
        return web.json_response({"faults": [describe(f) for f in self._faults.active()]})

    async def add_fault(self, request: web.Request) -> web.Response:
        fault = self._faults.parse(await _body(request))
        await self._faults.add(fault)
        log.warning("fault set: %s", describe(fault))
        return web.json_response({"faults": [describe(f) for f in self._faults.active()]})

    async def clear_faults(self, request: web.Request) -> web.Response:
        await self._faults.clear()
        log.warning("faults cleared")
        return web.json_response({"faults": []})

    async def get_policy(self, request: web.Request) -> web.Response:
        return web.json_response(self._policy.describe())

    async def patch_policy(self, request: web.Request) -> web.Response:
        """``{"turkey": "allowed"|"restricted", "reengagement_window": bool, "sanctioned_prefixes": [...]}``."""
        self._policy.update(await _body(request))
        await self._store.sync()
        return web.json_response(self._policy.describe())

    async def get_limits(self, request: web.Request) -> web.Response:
        return web.json_response(self._limits.describe())

    async def patch_limits(self, request: web.Request) -> web.Response:
        """``{"enabled", "pair_burst", "pair_interval_s", "throughput_mps", "min_client_version"}`` (any subset)."""
        self._limits.update(await _body(request))
        await self._store.sync()
        log.warning("limits changed: %s", self._limits.describe())
        return web.json_response(self._limits.describe())

    async def patch_business_limits(self, request: web.Request) -> web.Response:
        """``{"throughput_mps": 1-1000 | null, "quality_limited": bool}`` for one business."""
        self._limits.update(await _body(request), business=request.match_info["wa_id"].lstrip("+"))
        await self._store.sync()
        return web.json_response(self._limits.describe())

    async def kick_business(self, request: web.Request) -> web.Response:
        """Close the business's live session (it reconnects: tests use it to force a reconnect)."""
        wa_id = request.match_info["wa_id"].lstrip("+")
        if not await self._router.kick(wa_id, "kicked by the sandbox operator"):
            raise BadRequest(f"+{wa_id} is not connected", status=404)
        return web.json_response({"kicked": wa_id})

    async def clock(self, request: web.Request) -> web.Response:
        return web.json_response({"now": self._clock.now(), "offset_s": self._clock.offset_s})

    async def advance_clock(self, request: web.Request) -> web.Response:
        seconds = (await _body(request)).get("seconds")
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
            raise BadRequest("'seconds' must be a non-negative number")
        self._clock.advance(float(seconds))
        log.warning("sandbox clock advanced by %ss (offset now %ss)", seconds, self._clock.offset_s)
        return web.json_response({"now": self._clock.now(), "offset_s": self._clock.offset_s})


def _template(t: Any) -> dict[str, Any]:
    return {
        "namespace": t.namespace,
        "name": t.name,
        "language": t.language,
        "status": t.status,
        "category": t.category,
        "components": t.components,
    }
