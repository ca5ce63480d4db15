"""Media messages (image, audio, video, document, sticker; reference §2.6): a media object by ``id`` or ``link``.

Only the shape is checked here; whether the id exists or the link can be fetched is coreapp's business (the
media service).  ``caption`` exists for image, video and document only, ``filename`` for document only, so a
caption on audio or sticker is an unexpected parameter (1010) like any other stray key.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import field_validator, model_validator

from shared.errors import ErrorCode
from webapp.schemas.base import RequestModel, onprem_error
from webapp.schemas.message_base import MessageBase, limit, require_text

MAX_CAPTION_LENGTH = 1024
"""As the Cloud API documents it; the reference is silent.  Longer is 1001 (the text limit's code)."""
MAX_FILENAME_LENGTH = 240
MAX_LINK_LENGTH = 2048
MAX_MEDIA_ID_LENGTH = 128
_LINK = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)


class Provider(RequestModel):
    """A media provider configured at ``/v1/settings/application/media/providers``."""

    name: str

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return require_text(value, 255)


class MediaObject(RequestModel):
    """``id`` of an upload or ``link`` to fetch, exactly one; ``provider`` only goes with ``link``."""

    id: str | None = None
    link: str | None = None
    provider: Provider | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return require_text(value, MAX_MEDIA_ID_LENGTH)

    @field_validator("link")
    @classmethod
    def _link(cls, value: str) -> str:
        if not _LINK.match(value):
            raise ValueError("must be an http:// or https:// URL")
        return limit(value, MAX_LINK_LENGTH)

    @model_validator(mode="after")
    def _one_source(self) -> MediaObject:
        if self.id is None and self.link is None:
            raise onprem_error(ErrorCode.MISSING_PARAMETER, "one of 'id' or 'link' is required")
        if self.id is not None and self.link is not None:
            raise onprem_error(ErrorCode.INVALID_PARAMETER, "give either 'id' or 'link', not both")
        if self.provider is not None and self.link is None:
            raise onprem_error(ErrorCode.UNEXPECTED_PARAMETER, "'provider' only goes with 'link'")
        return self


class CaptionedMedia(MediaObject):
    caption: str | None = None

    @field_validator("caption")
    @classmethod
    def _caption(cls, value: str) -> str:
        return limit(value, MAX_CAPTION_LENGTH, ErrorCode.MESSAGE_TOO_LONG)


class DocumentMedia(CaptionedMedia):
    filename: str | None = None

    @field_validator("filename")
    @classmethod
    def _filename(cls, value: str) -> str:
        if "/" in value or "\\" in value or "\x00" in value:
            raise ValueError("must be a file name, not a path")
        return require_text(value, MAX_FILENAME_LENGTH)


class ImageMessage(MessageBase):
    type: Literal["image"]
    image: CaptionedMedia


class AudioMessage(MessageBase):
    type: Literal["audio"]
    audio: MediaObject


class VideoMessage(MessageBase):
    type: Literal["video"]
    video: CaptionedMedia


class DocumentMessage(MessageBase):
    type: Literal["document"]
    document: DocumentMedia


class StickerMessage(MessageBase):
    type: Literal["sticker"]
    sticker: MediaObject


MEDIA_TYPES = frozenset({"image", "audio", "video", "document", "sticker"})
