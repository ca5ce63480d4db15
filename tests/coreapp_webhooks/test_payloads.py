"""The On-Prem webhook shapes (reference §3) and which statuses are sent."""

from __future__ import annotations

import pytest

from coreapp.webhooks import payloads
from shared.appsettings import ApplicationSettings, apply_patch
from shared.errors import ErrorCode


def test_inbound_text_has_contacts_and_string_timestamp() -> None:
    body = payloads.inbound_message(
        {"id": "ABGGFlA5FpafAgo6tHcNmNjXmuSf", "timestamp": 1518694235, "type": "text", "text": {"body": "Hello"}},
        "16315551234",
        "Kerry Fisher",
    )
    assert body == {
        "contacts": [{"profile": {"name": "Kerry Fisher"}, "wa_id": "16315551234"}],
        "messages": [
            {
                "from": "16315551234",
                "id": "ABGGFlA5FpafAgo6tHcNmNjXmuSf",
                "timestamp": "1518694235",
                "type": "text",
                "text": {"body": "Hello"},
            }
        ],
    }
    assert list(body["messages"][0])[:4] == ["from", "id", "timestamp", "type"]


@pytest.mark.parametrize("kind", ["location", "contacts"])
def test_contacts_for_location_and_contacts(kind: str) -> None:
    body = payloads.inbound_message({"id": "x", "timestamp": "1", "type": kind, kind: {}}, "1555", "N")
    assert body["contacts"] == [{"profile": {"name": "N"}, "wa_id": "1555"}]


@pytest.mark.parametrize("kind", ["image", "document", "audio", "video", "voice", "sticker", "system"])
def test_no_contacts_for_media_and_system(kind: str) -> None:
    body = payloads.inbound_message({"id": "x", "timestamp": 2.9, "type": kind, kind: {"id": "m"}}, "1555", "N")
    assert "contacts" not in body
    assert body["messages"][0]["timestamp"] == "2"


def test_inbound_from_is_the_sender_and_send_only_keys_go() -> None:
    body = payloads.inbound_message(
        {
            "id": "x",
            "timestamp": 5,
            "type": "text",
            "text": {"body": "b"},
            "from": "999",
            "to": "1",
            "preview_url": False,
        },
        "1555",
        "N",
    )
    msg = body["messages"][0]
    assert msg["from"] == "1555"
    assert "to" not in msg and "preview_url" not in msg


def test_inbound_requires_id_type_timestamp() -> None:
    with pytest.raises(ValueError):
        payloads.inbound_message({"id": "x", "type": "text"}, "1", "n")


def test_status_shape() -> None:
    assert payloads.status("gBEG", "16315555555", "delivered", 1518694700) == {
        "statuses": [{"id": "gBEG", "recipient_id": "16315555555", "status": "delivered", "timestamp": "1518694700"}]
    }


def test_failed_status_carries_errors() -> None:
    body = payloads.status("gBEG", "1555", "failed", "1518694700", errors=[ErrorCode.REENGAGEMENT])
    assert body["statuses"][0]["errors"] == [{"code": 470, "title": "Re-engagement message"}]
    body = payloads.status("gBEG", "1555", "failed", 1, errors=[{"code": 1013, "title": "User is not valid"}])
    assert body["statuses"][0]["errors"] == [{"code": 1013, "title": "User is not valid"}]


def test_unknown_status_refused() -> None:
    with pytest.raises(ValueError):
        payloads.status("id", "1", "seen", 1)


def test_error_shape() -> None:
    assert payloads.error(400, "Media download error", "timeout") == {
        "errors": [{"code": 400, "title": "Media download error", "details": "timeout"}]
    }
    assert payloads.error(1000, "Generic error") == {"errors": [{"code": 1000, "title": "Generic error"}]}


def test_wants_status_defaults() -> None:
    s = ApplicationSettings()
    assert not payloads.wants_status(s, "sent")
    assert payloads.wants_status(s, "delivered")
    assert payloads.wants_status(s, "read")
    assert payloads.wants_status(s, "failed")


def test_wants_status_flags() -> None:
    assert payloads.wants_status(apply_patch(ApplicationSettings(), {"sent_status": True}), "sent")
    assert payloads.wants_status(apply_patch(ApplicationSettings(), {"webhooks": {"message": {"sent": True}}}), "sent")
    off = apply_patch(ApplicationSettings(), {"webhooks": {"message": {"delivered": False, "read": False}}})
    assert not payloads.wants_status(off, "delivered")
    assert not payloads.wants_status(off, "read")
    assert payloads.wants_status(off, "failed")
