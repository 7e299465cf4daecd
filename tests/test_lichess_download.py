"""The Lichess download against a real HTTP server on 127.0.0.1 that can drop, lie about checksums and 404."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from transcend_pipeline.lichess import (
    ChecksumMismatchError,
    LichessDownloadError,
    MonthNotPublishedError,
    dump_filename,
    fetch_month,
)

MONTH = "2021-10"
NAME = dump_filename(MONTH)
PAYLOAD = os.urandom(3 * 1024 * 1024 + 12345)  # several 1 MB chunks, not a multiple of the chunk size


@dataclass
class FakeLichess:
    """What the server serves and how it misbehaves; `requests` records (path, Range header) per request."""

    files: dict[str, bytes] = field(default_factory=lambda: {NAME: PAYLOAD})
    sums: dict[str, str] = field(default_factory=lambda: {NAME: hashlib.sha256(PAYLOAD).hexdigest()})
    drop_after: int | None = None  # send this many bytes of the next file response, then hang up (once)
    ignore_range: bool = False  # answer Range requests with 200 and the whole file
    not_found: set[str] = field(default_factory=set)
    statuses: list[int] = field(default_factory=list)  # answer the next file requests with these errors first
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    base_url: str = ""

    def file_requests(self) -> list[tuple[str, str | None]]:
        return [(path, ranged) for path, ranged in self.requests if path != "/standard/sha256sums.txt"]


def make_handler(fake: FakeLichess) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            ranged = self.headers.get("Range")
            fake.requests.append((self.path, ranged))
            name = self.path.removeprefix("/standard/")
            if name == "sha256sums.txt":
                body = "".join(f"{digest}  {file}\n" for file, digest in fake.sums.items()).encode()
                return self.send_body(200, body, {})
            if name in fake.not_found or name not in fake.files:
                return self.send_body(404, b"not found", {})
            if fake.statuses:
                return self.send_body(fake.statuses.pop(0), b"try later", {})
            data, start, status, headers = fake.files[name], 0, 200, {}
            if ranged and not fake.ignore_range:
                start = int(ranged.removeprefix("bytes=").rstrip("-"))
                status, headers = 206, {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
            body = data[start:]
            if fake.drop_after is not None:
                body, fake.drop_after = body[: fake.drop_after], None
                self.close_connection = True
                return self.send_body(status, body, headers, length=len(data) - start)
            return self.send_body(status, body, headers)

        def send_body(self, status: int, body: bytes, headers: dict[str, str], length: int | None = None) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@pytest.fixture()
def lichess() -> Iterator[FakeLichess]:
    fake = FakeLichess()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(fake))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    fake.base_url = f"http://127.0.0.1:{server.server_address[1]}/standard"
    yield fake
    server.shutdown()
    server.server_close()
    thread.join()


def fetch(fake: FakeLichess, dest: Path, **kwargs: object):
    return fetch_month(MONTH, fake.base_url, dest, backoff_s=0.001, timeout_s=10.0, **kwargs)


def test_dump_filename_is_lichess_naming() -> None:
    assert dump_filename("2021-10") == "lichess_db_standard_rated_2021-10.pgn.zst"
    with pytest.raises(ValueError, match="YYYY-MM"):
        dump_filename("2021-13")


def test_download_verifies_and_reports(lichess: FakeLichess, tmp_path: Path) -> None:
    seen: list[tuple[int, int | None]] = []
    result = fetch(lichess, tmp_path, progress=lambda done, total, seconds: seen.append((done, total)))
    assert result.path == tmp_path / NAME
    assert result.path.read_bytes() == PAYLOAD
    assert (result.bytes, result.sha256, result.downloaded) == (len(PAYLOAD), hashlib.sha256(PAYLOAD).hexdigest(), True)
    assert result.url == f"{lichess.base_url}/{NAME}"
    assert not (tmp_path / f"{NAME}.part").exists()
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))


def test_resumes_with_range_after_dropped_connection(lichess: FakeLichess, tmp_path: Path) -> None:
    lichess.drop_after = 1_500_000
    result = fetch(lichess, tmp_path)
    assert result.path.read_bytes() == PAYLOAD
    assert lichess.file_requests() == [(f"/standard/{NAME}", None), (f"/standard/{NAME}", "bytes=1500000-")]


def test_resumes_an_existing_part_file(lichess: FakeLichess, tmp_path: Path) -> None:
    (tmp_path / f"{NAME}.part").write_bytes(PAYLOAD[:777_777])
    result = fetch(lichess, tmp_path)
    assert result.path.read_bytes() == PAYLOAD
    assert lichess.file_requests() == [(f"/standard/{NAME}", "bytes=777777-")]


def test_restarts_when_server_ignores_range(lichess: FakeLichess, tmp_path: Path) -> None:
    lichess.drop_after, lichess.ignore_range = 1_000_000, True
    result = fetch(lichess, tmp_path)
    assert result.path.read_bytes() == PAYLOAD
    assert [ranged for _, ranged in lichess.file_requests()] == [None, "bytes=1000000-"]


def test_checksum_mismatch_is_refused_and_file_not_kept(lichess: FakeLichess, tmp_path: Path) -> None:
    lichess.sums[NAME] = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(ChecksumMismatchError, match="does not match"):
        fetch(lichess, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_missing_file_says_month_not_published(lichess: FakeLichess, tmp_path: Path) -> None:
    lichess.not_found.add(NAME)
    with pytest.raises(MonthNotPublishedError) as raised:
        fetch(lichess, tmp_path)
    message = str(raised.value)
    assert "not published" in message and "first days of the following month" in message
    assert f"{lichess.base_url}/{NAME}" in message
    assert len(lichess.file_requests()) == 1  # a 404 is an answer, not a hiccup: no retries


def test_month_absent_from_checksums_is_not_published(lichess: FakeLichess, tmp_path: Path) -> None:
    del lichess.sums[NAME]
    with pytest.raises(MonthNotPublishedError, match=MONTH):
        fetch(lichess, tmp_path)
    assert lichess.file_requests() == []


def test_existing_verified_file_is_not_downloaded_again(lichess: FakeLichess, tmp_path: Path) -> None:
    (tmp_path / NAME).write_bytes(PAYLOAD)
    result = fetch(lichess, tmp_path)
    assert result.downloaded is False
    assert (result.path, result.bytes) == (tmp_path / NAME, len(PAYLOAD))
    assert lichess.file_requests() == []


def test_existing_corrupt_file_is_downloaded_again(lichess: FakeLichess, tmp_path: Path) -> None:
    (tmp_path / NAME).write_bytes(PAYLOAD[:-1] + b"x")
    result = fetch(lichess, tmp_path)
    assert result.downloaded is True
    assert result.path.read_bytes() == PAYLOAD
    assert len(lichess.file_requests()) == 1


def test_server_errors_are_retried_but_refusals_are_not(lichess: FakeLichess, tmp_path: Path) -> None:
    lichess.statuses = [503, 502]
    assert fetch(lichess, tmp_path / "retried").path.read_bytes() == PAYLOAD
    assert len(lichess.file_requests()) == 3
    lichess.statuses = [403]
    with pytest.raises(LichessDownloadError, match="HTTP 403"):
        fetch(lichess, tmp_path / "refused")
    assert len(lichess.file_requests()) == 4


def test_gives_up_when_server_keeps_failing(tmp_path: Path) -> None:
    with pytest.raises(LichessDownloadError, match="giving up"):
        fetch_month(MONTH, "http://127.0.0.1:9/standard", tmp_path, retries=2, backoff_s=0.001, timeout_s=2.0)
