"""One error taxonomy for every process: the On-Premises error codes with their titles and HTTP status.

Every client-visible failure is an ``ApiError`` carrying an ``ErrorCode``; the webapp middleware renders it
as the On-Prem envelope and RPC handlers ship it across the bus unchanged.  Async codes (400-501) only ever
appear inside ``statuses[].errors`` of webhooks, so their HTTP status is informational.
"""

from __future__ import annotations

import enum
from typing import Any


class ErrorCode(enum.Enum):
    """``(code, title, http_status)`` for each On-Prem error code."""

    MEDIA_DOWNLOAD_ERROR = (400, "Media download error", 400)
    PAYMENT_ISSUE = (402, "Business eligibility — payment issue", 400)
    MESSAGE_NOT_VALID = (408, "Message is not valid", 400)
    MESSAGE_EXPIRED = (410, "Message expired", 400)
    RATE_LIMIT_HIT = (429, "Rate limit hit", 429)
    UNSIGNED_CERTIFICATE = (430, "Unsigned certificate", 400)
    CERTIFICATE_ID_MISMATCH = (432, "Certificate ID mismatch", 400)
    CERTIFICATE_SIGNATURE_INVALID = (433, "Certificate signature invalid", 400)
    REENGAGEMENT = (470, "Re-engagement message", 400)
    SPAM_RATE_LIMIT = (471, "Spam rate limit hit", 429)
    EXPERIMENT = (472, "User's number is part of an experiment", 400)
    USER_POTENTIALLY_CHANGED = (480, "User potentially changed", 400)
    GENERIC_ASYNC = (500, "Generic error", 500)
    UNSUPPORTED_TYPE = (501, "Message type is not currently supported", 400)
    API_SERVICE = (2, "API service temporarily unavailable", 503)

    GENERIC = (1000, "Generic error", 500)
    MESSAGE_TOO_LONG = (1001, "Message too long", 400)
    INVALID_RECIPIENT_TYPE = (1002, "Invalid recipient type", 400)
    NOT_GROUP_PARTICIPANT = (1003, "Not a group participant", 403)
    RESOURCE_EXISTS = (1004, "Resource already exists", 409)
    ACCESS_DENIED = (1005, "Access denied", 403)
    NOT_FOUND = (1006, "Resource not found", 404)
    RECIPIENT_BLOCKED = (1007, "Recipient blocked to receive message", 400)
    MISSING_PARAMETER = (1008, "Required parameter is missing", 400)
    INVALID_PARAMETER = (1009, "Parameter value is not valid", 400)
    UNEXPECTED_PARAMETER = (1010, "Parameter is not required", 400)
    NOT_READY = (1011, "Service not ready", 503)
    UNKNOWN_GROUP = (1012, "Group is unknown", 404)
    INVALID_USER = (1013, "User is not valid", 400)
    INTERNAL = (1014, "Internal error", 500)
    TOO_MANY_REQUESTS = (1015, "Too many requests", 429)
    OVERLOADED = (1016, "System overloaded", 503)
    NOT_PRIMARY_MASTER = (1017, "Not Primary Master", 503)
    NOT_PRIMARY_COREAPP = (1018, "Not Primary Coreapp", 503)
    BAD_USER = (1021, "Bad user", 400)
    WEBHOOKS_URL_NOT_CONFIGURED = (1022, "Webhooks URL is not configured", 400)
    DATABASE_ERROR = (1023, "Database error occurred", 500)
    PASSWORD_CHANGE_REQUIRED = (1024, "Password change required", 401)
    INVALID_REQUEST = (1025, "Invalid request", 400)
    RECEIVER_INCAPABLE = (1026, "Receiver incapable", 400)
    IDENTITY_ACK_REQUIRED = (
        1028,
        "A user_identity_changed system notification requires acknowledgement",
        400,
    )
    ACCOUNT_LOCKED = (1031, "Sender account has been locked", 403)

    TEMPLATE_PARAM_COUNT = (2000, "Template param count mismatch", 400)
    TEMPLATE_MISSING = (2001, "Template missing", 404)
    TEMPLATE_FETCH_FAILED = (2002, "Template fetch failed", 500)
    TEMPLATE_PACK_MISSING = (2003, "Template pack missing", 404)
    TEMPLATE_PARAM_TOO_LONG = (2004, "Template param length too long", 400)
    TEMPLATE_TEXT_TOO_LONG = (2005, "Template hydrated text too long", 400)
    TEMPLATE_WHITESPACE = (2006, "Template white space policy violated", 400)
    TEMPLATE_FORMAT_CHAR = (2007, "Template format character policy violated", 400)
    TEMPLATE_MEDIA_FORMAT = (2008, "Template media format unsupported", 400)
    TEMPLATE_COMPONENT_MISSING = (2009, "Template required component missing", 400)
    TEMPLATE_INVALID_URL = (2010, "Template invalid hydrated URL", 400)
    TEMPLATE_INVALID_PHONE = (2011, "Template invalid phone number", 400)
    TEMPLATE_PARAM_FORMAT = (2012, "Template parameter format mismatch", 400)
    TEMPLATE_BUTTONS_UNSUPPORTED = (2013, "Template buttons unsupported", 400)
    NAMESPACE_EMPTY = (2014, "Expected namespace is empty", 400)
    INVALID_SECTIONS = (2015, "Invalid number of sections", 400)
    INVALID_ROWS = (2016, "Invalid number of rows", 400)
    CHARACTER_POLICY = (2017, "Character policy violated", 400)
    INVALID_PRODUCT_COUNT = (2023, "Invalid number of product", 400)
    TEMPLATE_REJECTED = (2060, "Template rejected", 400)
    TEMPLATE_PAUSED = (2061, "Template paused", 400)
    TEMPLATE_DISABLED = (2062, "Template disabled", 400)

    def __init__(self, code: int, title: str, http_status: int) -> None:
        self.code = code
        self.title = title
        self.http_status = http_status

    @classmethod
    def from_code(cls, code: int) -> ErrorCode:
        """The member for a numeric code; unknown codes map to ``GENERIC``."""
        return _BY_CODE.get(code, cls.GENERIC)


_BY_CODE: dict[int, ErrorCode] = {member.code: member for member in ErrorCode}


class ApiError(Exception):
    """A failure the client is told about, with its On-Prem code and an optional human detail."""

    def __init__(self, code: ErrorCode, details: str | None = None, href: str | None = None) -> None:
        super().__init__(f"{code.code} {code.title}" + (f": {details}" if details else ""))
        self.code = code
        self.details = details
        self.href = href

    def to_dict(self) -> dict[str, Any]:
        """The entry for the envelope's ``errors`` list (also the RPC error payload)."""
        body: dict[str, Any] = {"code": self.code.code, "title": self.code.title}
        if self.details:
            body["details"] = self.details
        if self.href:
            body["href"] = self.href
        return body

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> ApiError:
        """Rebuild an error shipped across the bus."""
        return cls(ErrorCode.from_code(int(body.get("code", 1000))), body.get("details"), body.get("href"))
