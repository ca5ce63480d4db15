"""``contacts.check``: is a number a WhatsApp user, and under which wa_id (reference §2.12).

Inputs come in any format (``+1 (516) 283-7151``); phonenumbers turns them into E.164 digits, and an input it
cannot parse, or a number that cannot exist, is ``invalid`` without asking anyone.  A number without ``+`` is
read as already carrying its country code, as in Meta's examples (``16315551000`` is valid, ``6315551002``
is not).  Answers are cached for ``CACHE_TTL`` (the original's "about 7 days"); ``force_check`` skips the
cache.  ``wait`` asks the network before answering; ``no_wait`` answers from the cache at once, says
``processing`` for the rest and asks the network in a supervised background task, so a later call knows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import phonenumbers

from coreapp.chat.errors import ChatRemoteError, ChatUnavailable
from coreapp.chat.link import ChatLink
from coreapp.chat.ready import LinkSource, ready_link
from coreapp.chat.session import expect
from coreapp.storage.contacts import ContactStore
from shared.bus.contract.contacts import ContactAnswer
from shared.errors import ApiError, ErrorCode
from shared.tasks import TaskSupervisor
from shared.wire.frames import CheckContacts, ContactsResult

log = logging.getLogger("openprem.coreapp.contacts")

CACHE_TTL = timedelta(days=7)
NETWORK_TIMEOUT_S = 20.0
"""Below the bus RPC timeout (30 s by default), so a slow network is a clear 1011, not an RPC timeout."""
MAX_BACKGROUND_NUMBERS = 10_000
"""Numbers being resolved in the background at once; beyond that they stay ``processing`` until a later call."""


def utcnow() -> datetime:
    """The cache's clock (looked up at call time, so tests can move it)."""
    return datetime.now(UTC)


def normalise(raw: str) -> str | None:
    """E.164 digits without ``+``, or None when ``raw`` is not a possible phone number."""
    text = raw.strip()
    if not text:
        return None
    if not text.startswith("+"):
        text = "+" + text
    try:
        parsed = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164).lstrip("+")


class ContactsService:
    def __init__(
        self, store: ContactStore, link: LinkSource, supervisor: TaskSupervisor, ttl: timedelta = CACHE_TTL
    ) -> None:
        self._store = store
        self._link = link
        self._supervisor = supervisor
        self._ttl = ttl
        self._pending: set[str] = set()  # numbers a background check is resolving right now

    async def check(self, inputs: Sequence[str], *, wait: bool, force_check: bool) -> list[ContactAnswer]:
        """One answer per input, in order: ``{"input", "status", "wa_id"?}``; 1011 when not connected."""
        link = ready_link(self._link, "contacts.check")
        numbers = {raw: normalise(raw) for raw in inputs}
        wanted = {n for n in numbers.values() if n is not None}
        known: dict[str, str | None] = {}
        if not force_check:
            fresh = await self._store.get_fresh(wanted, utcnow() - self._ttl)
            known = {number: cached.wa_id for number, cached in fresh.items()}
        missing = sorted(wanted - known.keys())
        if missing and wait:
            known.update(await self._ask(link, missing))
        elif missing:
            self._resolve_later(link, missing)
        return [_answer(raw, numbers[raw], known) for raw in inputs]

    async def _ask(self, link: ChatLink, numbers: list[str]) -> dict[str, str | None]:
        """The network's answer for ``numbers``, saved to the cache before it is returned."""
        try:
            reply = expect(await link.request(CheckContacts(numbers=numbers), NETWORK_TIMEOUT_S), ContactsResult)
        except ChatUnavailable as exc:
            log.warning("contacts check of %d number(s) failed: %s", len(numbers), exc)
            raise ApiError(ErrorCode.NOT_READY, "the network did not answer the contacts check") from None
        except ChatRemoteError as exc:
            log.error("the network refused a contacts check of %d number(s): %s", len(numbers), exc)
            raise ApiError(ErrorCode.NOT_READY, "the network refused the contacts check") from None
        asked = set(numbers)
        answers = {r.input: r.wa_id for r in reply.results if r.input in asked}
        await self._store.save(answers, utcnow())
        return answers

    def _resolve_later(self, link: ChatLink, numbers: list[str]) -> None:
        room = MAX_BACKGROUND_NUMBERS - len(self._pending)
        batch = [n for n in numbers if n not in self._pending][: max(room, 0)]
        if not batch:
            return
        self._pending.update(batch)
        self._supervisor.spawn(f"contacts-check:{len(batch)}", self._background(link, batch))

    async def _background(self, link: ChatLink, numbers: list[str]) -> None:
        """Resolve ``numbers`` for a later call; a failure leaves them uncached (the next call tries again)."""
        try:
            await self._ask(link, numbers)
        except ApiError as exc:
            log.warning("background contacts check of %d number(s) gave up: %s", len(numbers), exc)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background contacts check of %d number(s) failed", len(numbers))
        finally:
            self._pending.difference_update(numbers)


def _answer(raw: str, number: str | None, known: dict[str, str | None]) -> ContactAnswer:
    if number is None:
        return ContactAnswer(input=raw, status="invalid")
    if number not in known:
        return ContactAnswer(input=raw, status="processing")
    wa_id = known[number]
    if wa_id is None:
        return ContactAnswer(input=raw, status="invalid")
    return ContactAnswer(input=raw, status="valid", wa_id=wa_id)
