"""``CheckContacts``: which numbers are WhatsApp users, answered from the sandbox's phones and businesses.

A phone is a user whatever its state (offline, blocked the business, old client: the real network still says
"valid"), unless its user changed number: then the old number is no longer anyone's (SANDBOX.md).
"""

from __future__ import annotations

from chatd.directory import Directory
from chatd.errors import Refused
from chatd.phones import Phones
from shared.errors import ErrorCode
from shared.wire.frames import CheckContacts, ContactResult, ContactsResult

MAX_NUMBERS = 1000
"""The most numbers one request may carry (the client sends at most this many per ``POST /v1/contacts``)."""


def wa_id_of(directory: Directory, phones: Phones, number: str) -> str | None:
    """The WhatsApp id behind ``number`` (E.164 digits), or None when it is not a WhatsApp user."""
    number = number.lstrip("+")
    phone = phones.get(number)
    if phone is not None:
        return None if phone.state.changed_number else phone.wa_id
    return number if directory.account(number) is not None else None


def check_contacts(directory: Directory, phones: Phones, frame: CheckContacts) -> ContactsResult:
    if len(frame.numbers) > MAX_NUMBERS:
        raise Refused(ErrorCode.INVALID_PARAMETER, f"at most {MAX_NUMBERS} numbers per CheckContacts")
    results = [ContactResult(input=n, wa_id=wa_id_of(directory, phones, n)) for n in frame.numbers]
    return ContactsResult(id=frame.id, results=results)
