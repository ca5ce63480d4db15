"""The media volume (``WA_MEDIA_DIR``, shared by webapp and coreapp): one file per media id plus a JSON sidecar.

Layout: ``<media_dir>/<uuid>`` holds the plaintext bytes and ``<media_dir>/<uuid>.json`` its metadata
``{"id", "mime_type", "size", "sha256" (hex), "created_at" (epoch s)}``.  Both are written to a hidden temporary
name and renamed into place, the sidecar last: a file without a sidecar does not exist yet (a crash mid-upload
leaves only a ``.part``).  Paths are built only from ids that match the UUID format, never from other input.
Files are created 0600 and directories 0700 (``shared.private_files``): media are customers' messages.

All disk work runs in threads (``asyncio.to_thread``); writes are buffered so a 64 MB upload costs a few dozen
thread hops, and hashing happens in the same thread call as the write.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from shared.private_files import make_private_dirs, private_opener

MEDIA_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_WRITE_BUFFER = 1024 * 1024


def is_media_id(value: str) -> bool:
    """Whether ``value`` is a media id (lower-case UUID): the only strings that ever become a path."""
    return bool(MEDIA_ID.match(value))


@dataclass(frozen=True, slots=True)
class MediaMeta:
    id: str
    mime_type: str
    size: int
    sha256: str
    created_at: int


class MediaWriter:
    """One file being written: ``write`` chunks, then ``commit`` (or ``abort``, which removes every trace)."""

    def __init__(self, files: MediaFiles, media_id: str, handle: IO[bytes]) -> None:
        self._files = files
        self.id = media_id
        self._handle: IO[bytes] | None = handle
        self._hash = hashlib.sha256()
        self._buffer = bytearray()
        self.size = 0

    async def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self._buffer += chunk
        if len(self._buffer) >= _WRITE_BUFFER:
            await self._flush()

    async def _flush(self) -> None:
        if not self._buffer or self._handle is None:
            return
        data, self._buffer = bytes(self._buffer), bytearray()
        await asyncio.to_thread(self._write_sync, self._handle, data)

    def _write_sync(self, handle: IO[bytes], data: bytes) -> None:
        self._hash.update(data)
        handle.write(data)

    async def commit(self, mime_type: str) -> MediaMeta:
        await self._flush()
        handle, self._handle = self._handle, None
        assert handle is not None, "writer already closed"
        meta = MediaMeta(self.id, mime_type, self.size, self._hash.hexdigest(), int(time.time()))
        await asyncio.to_thread(self._files._commit_sync, handle, meta)
        return meta

    async def abort(self) -> None:
        """Drop the partial file; a no-op after ``commit``."""
        handle, self._handle = self._handle, None
        if handle is not None:
            await asyncio.to_thread(self._files._abort_sync, handle, self.id)


class MediaFiles:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _blob(self, media_id: str) -> Path:
        if not is_media_id(media_id):
            raise ValueError("not a media id")
        return self.root / media_id

    def _sidecar(self, media_id: str) -> Path:
        return self._blob(media_id).with_name(media_id + ".json")

    def _part(self, media_id: str) -> Path:
        return self._blob(media_id).with_name(f".{media_id}.part")

    def blob_path(self, media_id: str) -> Path:
        """Where the bytes of ``media_id`` live (``ValueError`` for anything but a media id)."""
        return self._blob(media_id)

    async def open_writer(self) -> MediaWriter:
        media_id = str(uuid.uuid4())
        handle = await asyncio.to_thread(self._open_sync, media_id)
        return MediaWriter(self, media_id, handle)

    async def save(self, data: bytes, mime_type: str) -> MediaMeta:
        writer = await self.open_writer()
        try:
            await writer.write(data)
            return await writer.commit(mime_type)
        finally:
            await writer.abort()

    async def meta(self, media_id: str) -> MediaMeta | None:
        """The metadata of a stored file; ``None`` for an unknown or malformed id."""
        if not is_media_id(media_id):
            return None
        return await asyncio.to_thread(self._meta_sync, media_id)

    async def read(self, media_id: str) -> tuple[MediaMeta, bytes] | None:
        """Metadata and bytes (coreapp, before encrypting for a send); ``None`` when unknown."""
        meta = await self.meta(media_id)
        if meta is None:
            return None
        try:
            data = await asyncio.to_thread(self._blob(media_id).read_bytes)
        except FileNotFoundError:
            return None
        return meta, data

    async def delete(self, media_id: str) -> bool:
        """Remove both files (sidecar first, so a half-deleted file reads as gone); ``False`` when unknown."""
        if not is_media_id(media_id):
            return False
        return await asyncio.to_thread(self._delete_sync, media_id)

    # --- blocking parts (threads only) ------------------------------------------------------------------

    def _open_sync(self, media_id: str) -> IO[bytes]:
        make_private_dirs(self.root)
        return open(self._part(media_id), "xb", opener=private_opener)  # 0600, kept by the renames

    def _commit_sync(self, handle: IO[bytes], meta: MediaMeta) -> None:
        sidecar = self._sidecar(meta.id)
        tmp = sidecar.with_name(f".{meta.id}.json.tmp")
        try:
            try:
                handle.flush()
                os.fsync(handle.fileno())
            finally:
                handle.close()
            os.replace(self._part(meta.id), self._blob(meta.id))
            with open(tmp, "w", encoding="utf-8", opener=private_opener) as fh:
                fh.write(json.dumps(asdict(meta)))
            os.replace(tmp, sidecar)
        except BaseException:  # e.g. ENOSPC: leave nothing behind, not even bytes without a sidecar
            for path in (tmp, self._blob(meta.id), self._part(meta.id)):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            raise

    def _abort_sync(self, handle: IO[bytes], media_id: str) -> None:
        handle.close()
        with contextlib.suppress(FileNotFoundError):
            self._part(media_id).unlink()

    def _meta_sync(self, media_id: str) -> MediaMeta | None:
        try:
            doc: dict[str, Any] = json.loads(self._sidecar(media_id).read_text(encoding="utf-8"))
            meta = MediaMeta(
                id=media_id,
                mime_type=str(doc["mime_type"]),
                size=int(doc["size"]),
                sha256=str(doc["sha256"]),
                created_at=int(doc["created_at"]),
            )
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None
        return meta if self._blob(media_id).exists() else None

    def _delete_sync(self, media_id: str) -> bool:
        found = False
        for path in (self._sidecar(media_id), self._blob(media_id)):
            try:
                path.unlink()
                found = True
            except FileNotFoundError:
                pass
        return found
