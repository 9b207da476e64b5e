"""Object storage for media: a local directory or an S3-compatible bucket, behind obstore.

One seam, two backends, chosen by ``GATEWAY_STORAGE_URL``::

    file:///abs/dir  or  ./rel/dir  ──► obstore LocalStore (directory created on start)
    s3://bucket/optional/prefix      ──► obstore S3Store (AWS S3, Aliyun OSS, MinIO, moto)

Keys are relative (``ab/cdef….png``) and validated here, so nothing outside the store's
root or prefix is ever addressed. With an ``s3://bucket/prefix`` URL every key lives
under the prefix (obstore's own prefix handling; listings come back relative to it).

Content types: S3 keeps the ``Content-Type`` given to :meth:`Storage.put` as the
object's own attribute. obstore's local store cannot keep attributes, so a local
object's type is derived from its key's extension (the gateway always names media
``<hash>.png|.jpg|.webp|.gif|.mp4``), and :meth:`Storage.put` refuses a key whose
extension would not give back the type it was asked to store. No sidecar files.

Public URLs: local media is served by the gateway itself at
``{public_base_url}/media/{key}``. S3 media is at ``{public_base_url}/{key}`` when a
public (CDN or bucket) URL addressing the prefix root is configured, else at a
presigned GET URL valid for ``presign_seconds``.
"""

from __future__ import annotations

import contextlib
import mimetypes
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import obstore
from obstore.store import LocalStore, S3Store

if TYPE_CHECKING:
    from obstore import GetOptions, GetResult, ObjectMeta
    from obstore.store import ClientConfig, S3Config

MAX_KEY_LENGTH = 200
# What :meth:`Storage.check` writes (local) or looks up (S3): never a media key, which is
# always ``<hash>.<extension>`` under a two-character directory.
PROBE_KEY = ".readyz-probe"
_KEY_CHARS = re.compile(r"[A-Za-z0-9._/-]+")
_URL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")

# Chunks handed to the HTTP layer when streaming: big enough to keep Python overhead
# low, small enough not to buffer a whole video before the first byte goes out.
STREAM_CHUNK_BYTES = 256 * 1024
# S3 allows presigned URLs of at most seven days.
MAX_PRESIGN_SECONDS = 7 * 24 * 3600
# obstore's default overall request timeout (30 s) would also cut off a slow stream
# of a large object, so allow more; connecting must still be quick.
_S3_CLIENT_OPTIONS: ClientConfig = {"connect_timeout": "10s", "timeout": "300s"}

# The types the gateway stores, explicitly: `mimetypes` depends on the host's tables
# (.webp is missing from some), and a local object's type comes only from its key.
_TYPES_BY_EXTENSION = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".mov": "video/quicktime",
}


class MediaNotFound(KeyError):
    """No object is stored under the key."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key

    def __str__(self) -> str:
        return f"no media stored under {self.key!r}"


@dataclass(frozen=True, slots=True)
class StoredObject:
    key: str
    size: int
    content_type: str | None
    last_modified: datetime  # aware, UTC
    etag: str | None


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe relative key, else raise ``ValueError``."""
    if not key or len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"media key must be 1 to {MAX_KEY_LENGTH} characters long")
    if not _KEY_CHARS.fullmatch(key):
        raise ValueError(f"media key {key!r} may contain only A-Z a-z 0-9 . _ / -")
    if key.startswith("/") or key.endswith("/"):
        raise ValueError(f"media key {key!r} must not start or end with '/'")
    if ".." in key or any(part in ("", ".") for part in key.split("/")):
        raise ValueError(f"media key {key!r} must not contain '..', '.' or empty segments")
    return key


def content_type_for_key(key: str) -> str | None:
    """The content type a key's extension implies (how local objects are typed)."""
    suffix = Path(key).suffix.lower()
    return _TYPES_BY_EXTENSION.get(suffix) or mimetypes.guess_type(key, strict=False)[0]


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


class Storage:
    """One object store (a local directory or an S3-compatible bucket/prefix) behind obstore."""

    def __init__(
        self,
        store: LocalStore | S3Store,
        *,
        url: str,
        public_base_url: str | None,
        presign_seconds: int = 3600,
    ) -> None:
        if isinstance(store, LocalStore) and not public_base_url:
            raise ValueError("local media storage needs a public base URL to build media URLs")
        if not 1 <= presign_seconds <= MAX_PRESIGN_SECONDS:
            raise ValueError(f"presign_seconds must be between 1 and {MAX_PRESIGN_SECONDS}")
        self._store = store
        self._url = url
        self._public_base_url = public_base_url.rstrip("/") if public_base_url else None
        self._presign = timedelta(seconds=presign_seconds)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        public_base_url: str | None,
        s3_endpoint: str | None = None,
        s3_region: str | None = None,
        s3_access_key_id: str | None = None,
        s3_secret_access_key: str | None = None,
        presign_seconds: int = 3600,
    ) -> Storage:
        """Open the store ``url`` names (see the module docstring for the forms).

        S3 settings left as ``None`` fall back to obstore's own ``AWS_*`` environment
        variables (e.g. ``AWS_VIRTUAL_HOSTED_STYLE_REQUEST=true`` for Aliyun OSS).
        """
        store: LocalStore | S3Store
        if not _URL_SCHEME.match(url):
            if not url.strip():
                raise ValueError("storage URL is empty")
            store = _local_store(Path(url).expanduser(), public_base_url)
        else:
            parts = urlsplit(url)
            if parts.scheme == "file":
                if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
                    raise ValueError(f"storage URL {url!r} must be file:///absolute/path (no host)")
                store = _local_store(Path(unquote(parts.path)), public_base_url)
            elif parts.scheme == "s3":
                store = _s3_store(
                    url,
                    endpoint=s3_endpoint,
                    region=s3_region,
                    access_key_id=s3_access_key_id,
                    secret_access_key=s3_secret_access_key,
                )
            else:
                raise ValueError(
                    f"unsupported storage URL {url!r}: use file:///absolute/dir, "
                    "a directory path, or s3://bucket/prefix"
                )
        if isinstance(store, LocalStore) and store.prefix is not None:
            url = store.prefix.as_uri()
        return cls(store, url=url, public_base_url=public_base_url, presign_seconds=presign_seconds)

    def __repr__(self) -> str:
        return f"Storage({self._url!r})"

    @property
    def is_local(self) -> bool:
        return isinstance(self._store, LocalStore)

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` under ``key``, replacing what was there, atomically."""
        validate_key(key)
        if isinstance(self._store, LocalStore):
            implied = content_type_for_key(key)
            if implied is None or implied != _media_type(content_type):
                raise ValueError(
                    f"local storage types objects by extension: {key!r} would be "
                    f"served as {implied}, not {content_type}"
                )
            await obstore.put_async(self._store, key, data)
        else:
            await obstore.put_async(
                self._store, key, data, attributes={"Content-Type": content_type}
            )

    async def exists(self, key: str) -> bool:
        return await self.head(key) is not None

    async def head(self, key: str) -> StoredObject | None:
        """The object's metadata, or ``None`` when nothing is stored under ``key``."""
        validate_key(key)
        try:
            # A GET with `head` (not head_async) because only it returns attributes.
            result = await obstore.get_async(self._store, key, options={"head": True})
        except FileNotFoundError:
            return None
        return self._stored_object(result.meta, result.attributes.get("Content-Type"))

    async def get(self, key: str, *, start: int | None = None, end: int | None = None) -> bytes:
        """The object's bytes, or those in ``[start, end)``.

        ``end`` past the object's end is clamped; ``start`` at or past it is an error of
        the backend, so callers serving ranges check against :meth:`head` first.
        """
        result = await self._get(key, start, end)
        return bytes(await result.bytes_async())

    async def stream(
        self, key: str, *, start: int | None = None, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """The object's bytes (or ``[start, end)``) in chunks, for serving large files.

        An async generator: :class:`MediaNotFound` is raised on the first iteration,
        so a handler that must answer 404 before sending headers calls :meth:`head`.
        """
        result = await self._get(key, start, end)
        async for chunk in result.stream(min_chunk_size=STREAM_CHUNK_BYTES):
            yield chunk

    async def delete(self, key: str) -> None:
        """Delete the object; a missing one is not an error."""
        validate_key(key)
        with contextlib.suppress(FileNotFoundError):
            await obstore.delete_async(self._store, key)

    async def check(self) -> None:
        """Raise unless the store can be used now (``/readyz``).

        Local: an empty object is written under :data:`PROBE_KEY` and deleted, through the
        same path media takes, so a missing, read-only or full directory fails it (a
        permission check alone would pass for root). S3: a listing under that key (one
        small request with an empty answer), which fails for a missing bucket, refused
        credentials or an endpoint that does not answer; a HEAD could not tell a missing
        bucket from a missing object, and a write per probe would pile up versions in a
        versioned bucket.
        """
        if isinstance(self._store, LocalStore):
            await obstore.put_async(self._store, PROBE_KEY, b"")
            with contextlib.suppress(FileNotFoundError):
                await obstore.delete_async(self._store, PROBE_KEY)
        else:
            await obstore.list_with_delimiter_async(self._store, prefix=PROBE_KEY)

    async def list_older_than(self, cutoff: datetime, limit: int = 1000) -> list[StoredObject]:
        """Up to ``limit`` objects last modified before ``cutoff`` (aware), in no set order.

        Listings carry no attributes, so ``content_type`` here is derived from the key
        for both backends. Objects whose names are not valid keys are skipped, so every
        result can be passed to :meth:`delete`.
        """
        if cutoff.tzinfo is None:
            raise ValueError("cutoff must be timezone-aware")
        if limit < 1:
            raise ValueError("limit must be at least 1")
        found: list[StoredObject] = []
        async for batch in obstore.list(self._store, chunk_size=min(limit, 1000)):
            for meta in batch:
                if meta["last_modified"] >= cutoff:
                    continue
                try:
                    validate_key(meta["path"])
                except ValueError:
                    continue
                found.append(self._stored_object(meta, None))
                if len(found) >= limit:
                    return found
        return found

    async def public_url(self, key: str) -> str:
        """The URL an app fetches the object from (see the module docstring)."""
        validate_key(key)
        if isinstance(self._store, LocalStore):
            return f"{self._public_base_url}/media/{key}"
        if self._public_base_url:
            return f"{self._public_base_url}/{key}"
        return await obstore.sign_async(self._store, "GET", key, self._presign)

    async def _get(self, key: str, start: int | None, end: int | None) -> GetResult:
        validate_key(key)
        options: GetOptions = {}
        if start is not None or end is not None:
            first = start or 0
            if first < 0 or (end is not None and end <= first):
                raise ValueError(f"invalid byte range [{start}, {end})")
            options["range"] = {"offset": first} if end is None else (first, end)
        try:
            return await obstore.get_async(self._store, key, options=options)
        except FileNotFoundError:
            raise MediaNotFound(key) from None

    def _stored_object(self, meta: ObjectMeta, content_type: str | None) -> StoredObject:
        if content_type is None:
            content_type = content_type_for_key(meta["path"])
        return StoredObject(
            key=meta["path"],
            size=meta["size"],
            content_type=content_type,
            last_modified=meta["last_modified"].astimezone(UTC),
            etag=meta["e_tag"],
        )


def _local_store(directory: Path, public_base_url: str | None) -> LocalStore:
    # Checked here too, before the directory is created as a side effect.
    if not public_base_url:
        raise ValueError("local media storage needs a public base URL to build media URLs")
    return LocalStore(directory.resolve(), mkdir=True, automatic_cleanup=True)


def _s3_store(
    url: str,
    *,
    endpoint: str | None,
    region: str | None,
    access_key_id: str | None,
    secret_access_key: str | None,
) -> S3Store:
    parts = urlsplit(url)
    bucket = parts.netloc
    if not _BUCKET.fullmatch(bucket):
        raise ValueError(f"storage URL {url!r} must name a bucket: s3://bucket/optional/prefix")
    if parts.query or parts.fragment:
        raise ValueError(f"storage URL {url!r} must not carry a query or fragment")
    prefix = parts.path.strip("/")
    if prefix:
        validate_key(prefix)
    if (access_key_id is None) != (secret_access_key is None):
        raise ValueError("set both the S3 access key id and secret access key, or neither")
    config: S3Config = {}
    if endpoint:
        config["endpoint"] = endpoint
    if region:
        config["region"] = region
    if access_key_id is not None and secret_access_key is not None:
        config["access_key_id"] = access_key_id
        config["secret_access_key"] = secret_access_key
    # Path-style requests (obstore's default) suit MinIO and moto; virtual-hosted style
    # comes from AWS_VIRTUAL_HOSTED_STYLE_REQUEST when a provider requires it.
    client_options: ClientConfig = {
        **_S3_CLIENT_OPTIONS,
        "allow_http": bool(endpoint and endpoint.startswith("http://")),
    }
    return S3Store(bucket, prefix=prefix or None, config=config, client_options=client_options)
