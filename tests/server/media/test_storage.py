"""Storage against real backends: a local directory and moto's S3 server."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from ability_gateway.server.media.storage import MediaNotFound, Storage, StoredObject
from tests.server.media.conftest import S3Server

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
BIG = os.urandom(1_500_000)  # several stream chunks
PREFIX = "gateway/media"
PUBLIC = "https://gw.example.com"


def local_storage(directory: Path) -> Storage:
    return Storage.from_url(directory.as_uri(), public_base_url=PUBLIC + "/")


def s3_storage(server: S3Server, bucket: str, public_base_url: str | None = None) -> Storage:
    return Storage.from_url(
        f"s3://{bucket}/{PREFIX}",
        public_base_url=public_base_url,
        s3_endpoint=server.endpoint,
        s3_region=server.region,
        s3_access_key_id=server.access_key_id,
        s3_secret_access_key=server.secret_access_key,
        presign_seconds=300,
    )


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return local_storage(tmp_path / "media")
    server: S3Server = request.getfixturevalue("s3_server")
    return s3_storage(server, request.getfixturevalue("s3_bucket"))


# Both backends


async def test_put_then_get_returns_the_same_bytes(storage: Storage) -> None:
    await storage.put("ab/cdef.png", PNG, "image/png")

    assert await storage.get("ab/cdef.png") == PNG


async def test_put_replaces_an_existing_object(storage: Storage) -> None:
    await storage.put("ab/cdef.png", b"old", "image/png")
    await storage.put("ab/cdef.png", PNG, "image/png")

    assert await storage.get("ab/cdef.png") == PNG


async def test_head_reports_size_type_and_modification_time(storage: Storage) -> None:
    before = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    await storage.put("ab/cdef.png", PNG, "image/png")

    head = await storage.head("ab/cdef.png")

    assert isinstance(head, StoredObject)
    assert head.key == "ab/cdef.png"
    assert head.size == len(PNG)
    assert head.content_type == "image/png"
    assert head.last_modified.tzinfo == UTC
    assert before <= head.last_modified <= datetime.now(UTC) + timedelta(seconds=1)
    assert head.etag


async def test_head_of_a_missing_key_is_none(storage: Storage) -> None:
    assert await storage.head("ab/missing.png") is None


async def test_exists_follows_put_and_delete(storage: Storage) -> None:
    assert not await storage.exists("ab/cdef.png")
    await storage.put("ab/cdef.png", PNG, "image/png")
    assert await storage.exists("ab/cdef.png")
    await storage.delete("ab/cdef.png")
    assert not await storage.exists("ab/cdef.png")


async def test_get_of_a_missing_key_raises_media_not_found(storage: Storage) -> None:
    with pytest.raises(MediaNotFound) as info:
        await storage.get("ab/missing.png")

    assert info.value.key == "ab/missing.png"
    assert isinstance(info.value, KeyError)


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (10, 20, PNG[10:20]),
        (0, 1, PNG[:1]),
        (100, None, PNG[100:]),
        (None, 8, PNG[:8]),
        (len(PNG) - 5, len(PNG) + 100, PNG[-5:]),
    ],
)
async def test_range_get_returns_the_slice(
    storage: Storage, start: int | None, end: int | None, expected: bytes
) -> None:
    await storage.put("ab/cdef.png", PNG, "image/png")

    assert await storage.get("ab/cdef.png", start=start, end=end) == expected


@pytest.mark.parametrize(("start", "end"), [(-1, 5), (5, 5), (6, 5)])
async def test_invalid_range_is_a_value_error(
    storage: Storage, start: int, end: int | None
) -> None:
    await storage.put("ab/cdef.png", PNG, "image/png")

    with pytest.raises(ValueError, match="invalid byte range"):
        await storage.get("ab/cdef.png", start=start, end=end)


async def test_stream_chunks_concatenate_to_the_object(storage: Storage) -> None:
    await storage.put("ab/big.mp4", BIG, "video/mp4")

    chunks = [chunk async for chunk in storage.stream("ab/big.mp4")]

    assert len(chunks) > 1
    assert all(isinstance(chunk, bytes) for chunk in chunks)
    assert b"".join(chunks) == BIG


async def test_stream_of_a_range_yields_the_slice(storage: Storage) -> None:
    await storage.put("ab/big.mp4", BIG, "video/mp4")

    chunks = [chunk async for chunk in storage.stream("ab/big.mp4", start=1000, end=900_000)]

    assert b"".join(chunks) == BIG[1000:900_000]


async def test_stream_of_a_missing_key_raises_media_not_found(storage: Storage) -> None:
    with pytest.raises(MediaNotFound):
        async for _ in storage.stream("ab/missing.mp4"):
            pass


async def test_delete_of_a_missing_key_is_fine(storage: Storage) -> None:
    await storage.delete("ab/missing.png")

    assert not await storage.exists("ab/missing.png")


async def test_list_older_than_returns_objects_before_the_cutoff(storage: Storage) -> None:
    await storage.put("ab/one.png", PNG, "image/png")
    await storage.put("cd/two.jpg", b"\xff\xd8\xff", "image/jpeg")
    now = datetime.now(UTC)

    everything = await storage.list_older_than(now + timedelta(minutes=1))
    nothing = await storage.list_older_than(now - timedelta(hours=1))
    limited = await storage.list_older_than(now + timedelta(minutes=1), limit=1)

    assert sorted((o.key, o.size, o.content_type) for o in everything) == [
        ("ab/one.png", len(PNG), "image/png"),
        ("cd/two.jpg", 3, "image/jpeg"),
    ]
    assert nothing == []
    assert len(limited) == 1


async def test_list_older_than_needs_an_aware_cutoff(storage: Storage) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await storage.list_older_than(datetime.now())


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/ab/cdef.png",
        "ab/../cdef.png",
        "..",
        "ab//cdef.png",
        "ab/./cdef.png",
        "ab/cdef.png/",
        "ab/cd ef.png",
        "ab/cdéf.png",
        "ab\\cdef.png",
        "ab/cdef.png?x=1",
        "a" * 197 + ".png",
    ],
)
async def test_invalid_keys_are_rejected(storage: Storage, key: str) -> None:
    with pytest.raises(ValueError, match="media key"):
        await storage.put(key, PNG, "image/png")
    with pytest.raises(ValueError, match="media key"):
        await storage.get(key)
    with pytest.raises(ValueError, match="media key"):
        await storage.head(key)
    with pytest.raises(ValueError, match="media key"):
        await storage.delete(key)
    with pytest.raises(ValueError, match="media key"):
        await storage.public_url(key)


async def test_a_200_character_key_is_accepted(storage: Storage) -> None:
    key = "a" * 196 + ".png"

    await storage.put(key, PNG, "image/png")

    assert await storage.get(key) == PNG


# Local directory


async def test_local_storage_creates_its_directory(tmp_path: Path) -> None:
    directory = tmp_path / "deep" / "media"

    storage = local_storage(directory)
    await storage.put("ab/cdef.png", PNG, "image/png")

    assert storage.is_local
    assert (directory / "ab" / "cdef.png").read_bytes() == PNG


async def test_a_plain_path_is_resolved_to_an_absolute_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    storage = Storage.from_url("./data/media", public_base_url=PUBLIC)
    await storage.put("ab/cdef.png", PNG, "image/png")

    assert (tmp_path / "data" / "media" / "ab" / "cdef.png").read_bytes() == PNG
    assert repr(storage) == f"Storage({(tmp_path / 'data' / 'media').as_uri()!r})"


async def test_local_list_older_than_uses_modification_times(tmp_path: Path) -> None:
    storage = local_storage(tmp_path / "media")
    await storage.put("ab/old.png", PNG, "image/png")
    await storage.put("ab/new.webp", b"RIFF....WEBP", "image/webp")
    old = datetime.now(UTC) - timedelta(days=40)
    os.utime(tmp_path / "media" / "ab" / "old.png", (old.timestamp(), old.timestamp()))

    found = await storage.list_older_than(datetime.now(UTC) - timedelta(days=30))

    assert [(o.key, o.content_type) for o in found] == [("ab/old.png", "image/png")]
    assert abs(found[0].last_modified - old) < timedelta(seconds=1)


async def test_local_listing_skips_files_that_are_not_valid_keys(tmp_path: Path) -> None:
    storage = local_storage(tmp_path / "media")
    await storage.put("ab/cdef.png", PNG, "image/png")
    (tmp_path / "media" / "stray file.png").write_bytes(b"x")

    found = await storage.list_older_than(datetime.now(UTC) + timedelta(minutes=1))

    assert [o.key for o in found] == ["ab/cdef.png"]


async def test_local_delete_removes_the_file(tmp_path: Path) -> None:
    storage = local_storage(tmp_path / "media")
    await storage.put("ab/cdef.png", PNG, "image/png")

    await storage.delete("ab/cdef.png")

    assert not (tmp_path / "media" / "ab" / "cdef.png").exists()


async def test_local_types_come_from_the_key_extension(tmp_path: Path) -> None:
    storage = local_storage(tmp_path / "media")
    for key, content_type in [
        ("a.png", "image/png"),
        ("a.jpg", "image/jpeg"),
        ("a.webp", "image/webp"),
        ("a.gif", "image/gif"),
        ("a.mp4", "video/mp4"),
    ]:
        await storage.put(key, b"data", content_type)
        head = await storage.head(key)
        assert head is not None
        assert head.content_type == content_type


async def test_local_put_refuses_a_type_its_extension_would_not_serve(tmp_path: Path) -> None:
    storage = local_storage(tmp_path / "media")

    with pytest.raises(ValueError, match="served as image/jpeg, not image/png"):
        await storage.put("ab/cdef.jpg", PNG, "image/png")
    with pytest.raises(ValueError, match="served as None"):
        await storage.put("ab/cdef", PNG, "image/png")
    assert not await storage.exists("ab/cdef.jpg")


async def test_local_public_url_is_under_the_gateway(tmp_path: Path) -> None:
    storage = local_storage(tmp_path / "media")

    assert await storage.public_url("ab/cdef.png") == "https://gw.example.com/media/ab/cdef.png"


def test_local_storage_needs_a_public_base_url(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="public base URL"):
        Storage.from_url(tmp_path.as_uri(), public_base_url=None)


@pytest.mark.parametrize(
    "url",
    [
        "",
        "http://example.com/media",
        "gs://bucket/media",
        "file://host/media",
        "file:relative/media",
        "s3://",
        "s3://Bad_Bucket/media",
        "s3://bucket/../media",
        "s3://bucket/media?x=1",
    ],
)
def test_unsupported_storage_urls_are_rejected(url: str) -> None:
    with pytest.raises(ValueError, match=r"storage URL|media key"):
        Storage.from_url(url, public_base_url=PUBLIC)


def test_half_a_credential_pair_is_rejected() -> None:
    with pytest.raises(ValueError, match="both"):
        Storage.from_url("s3://bucket", public_base_url=None, s3_access_key_id="only-id")


def test_presign_lifetime_must_be_within_s3_limits() -> None:
    with pytest.raises(ValueError, match="presign_seconds"):
        Storage.from_url("s3://bucket", public_base_url=None, presign_seconds=0)


# S3 (moto)


async def test_s3_keys_live_under_the_prefix(s3_server: S3Server, s3_bucket: str) -> None:
    storage = s3_storage(s3_server, s3_bucket)
    await storage.put("ab/cdef.png", PNG, "image/png")

    listed = s3_server.client().list_objects_v2(Bucket=s3_bucket)["Contents"]
    found = await storage.list_older_than(datetime.now(UTC) + timedelta(minutes=1))

    assert not storage.is_local
    assert [o["Key"] for o in listed] == [f"{PREFIX}/ab/cdef.png"]
    assert [o.key for o in found] == ["ab/cdef.png"]


async def test_s3_content_type_comes_back_on_head_and_get(
    s3_server: S3Server, s3_bucket: str
) -> None:
    storage = s3_storage(s3_server, s3_bucket)
    # An extension that says nothing: the type must come from the object itself.
    await storage.put("ab/cdef.bin", PNG, "image/png")

    head = await storage.head("ab/cdef.bin")
    fetched = s3_server.client().get_object(Bucket=s3_bucket, Key=f"{PREFIX}/ab/cdef.bin")

    assert head is not None
    assert head.content_type == "image/png"
    assert fetched["ContentType"] == "image/png"
    assert fetched["Body"].read() == PNG


async def test_s3_presigned_url_serves_the_bytes(s3_server: S3Server, s3_bucket: str) -> None:
    storage = s3_storage(s3_server, s3_bucket)
    await storage.put("ab/big.webp", BIG, "image/webp")

    url = await storage.public_url("ab/big.webp")
    async with httpx.AsyncClient() as client:
        response = await client.get(url)

    assert url.startswith(f"{s3_server.endpoint}/{s3_bucket}/{PREFIX}/ab/big.webp?")
    assert "X-Amz-Expires=300" in url
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/webp"
    assert response.content == BIG


async def test_s3_public_url_uses_the_configured_base(s3_server: S3Server, s3_bucket: str) -> None:
    storage = s3_storage(s3_server, s3_bucket, public_base_url="https://cdn.example.com/m/")

    assert await storage.public_url("ab/cdef.png") == "https://cdn.example.com/m/ab/cdef.png"


# check(): what /readyz asks of the store


async def test_check_passes_on_a_working_store_and_leaves_nothing(storage: Storage) -> None:
    await storage.check()
    await storage.check()
    assert await storage.list_older_than(datetime.now(UTC) + timedelta(days=1)) == []


async def test_local_check_fails_when_the_directory_is_gone_for_a_file(tmp_path: Path) -> None:
    storage = local_storage(tmp_path / "media")
    (tmp_path / "media").rmdir()
    (tmp_path / "media").write_bytes(b"a file where the directory was")
    with pytest.raises(Exception, match="Not a directory"):
        await storage.check()


async def test_s3_check_fails_for_a_missing_bucket(s3_server: S3Server) -> None:
    storage = s3_storage(s3_server, "no-such-bucket-here")
    with pytest.raises(Exception):  # noqa: B017, PT011 - obstore's error types vary by cause
        await storage.check()
