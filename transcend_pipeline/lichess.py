"""Fetch one month of the Lichess open database: streamed, resumable, verified, renamed into place.

A recent month is ~31 GB, so the download must survive dropped connections without starting over
(HTTP Range), must never leave a file that looks finished but is not (a `.part` file renamed
atomically only after its sha256 matches the published `sha256sums.txt`), and must not fetch
again what is already here and verified.

For example::

    result = fetch_month("2013-01", "https://database.lichess.org/standard", Path("data/raw"))
    result.path.name, result.downloaded
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

USER_AGENT = "transcend-pipeline (Lichess open database monthly dumps)"
CHUNK_BYTES = 1 << 20
PROGRESS_EVERY_BYTES = 8 << 20
RETRYABLE_HTTP_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")

Progress = Callable[[int, int | None, float], None]
T = TypeVar("T")


class LichessDownloadError(RuntimeError):
    """A month of the Lichess database could not be fetched."""


class MonthNotPublishedError(LichessDownloadError):
    """The month is not (yet) on the server: a 404, or no line for it in sha256sums.txt."""


class ChecksumMismatchError(LichessDownloadError):
    """The downloaded bytes do not hash to the published sha256; the bad file has been deleted."""


class _Interrupted(Exception):
    """The connection ended before the whole file arrived: resume from what we have."""


TRANSIENT_ERRORS = (_Interrupted, ConnectionError, TimeoutError, http.client.HTTPException, urllib.error.URLError)


@dataclass(frozen=True)
class DownloadResult:
    """A verified dump on disk and how it got there (the raw_dump asset's metadata)."""

    path: Path
    bytes: int
    sha256: str
    url: str
    seconds: float
    downloaded: bool  # False when an existing verified file was kept


def dump_filename(month: str) -> str:
    """The dump's file name for a month 'YYYY-MM', exactly as Lichess publishes it."""
    if not MONTH.match(month):
        raise ValueError(f"month must look like 'YYYY-MM', got {month!r}")
    return f"lichess_db_standard_rated_{month}.pgn.zst"


def sha256_file(path: Path) -> str:
    """Hash a file in chunks: dumps are far larger than memory."""
    digest = hashlib.sha256()
    _hash_into(path, digest)
    return digest.hexdigest()


def _hash_into(path: Path, digest: hashlib._Hash) -> int:
    """Feed a file to `digest` chunk by chunk; returns its size."""
    size = 0
    with path.open("rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return size


def fetch_month(
    month: str,
    base_url: str,
    dest_dir: Path,
    *,
    retries: int = 5,
    backoff_s: float = 1.0,
    timeout_s: float = 60.0,
    progress: Progress | None = None,
) -> DownloadResult:
    """Download the month's dump into `dest_dir`, verified against the published sha256.

    `retries` counts consecutive failed attempts that brought no new bytes (waiting `backoff_s`·2^k
    between them), so a long download that keeps making progress is never abandoned.
    `progress(bytes_so_far, total_or_None, seconds)` is called every few MB.
    """
    started = time.monotonic()
    name = dump_filename(month)
    base_url = base_url.rstrip("/")
    url = f"{base_url}/{name}"
    expected = _retrying(lambda: _published_sha256(month, base_url, name, timeout_s), retries, backoff_s)

    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / name
    if final.exists():
        if sha256_file(final) == expected:
            return DownloadResult(final, final.stat().st_size, expected, url, time.monotonic() - started, False)
        final.unlink()  # corrupt, or another release of the month: fetch it again

    part = _PartFile.resume(dest_dir / f"{name}.part")
    if part.size == 0 or part.digest.hexdigest() != expected:  # a complete .part (killed before renaming) is kept
        _retrying(
            lambda: _download_rest(url, month, part, timeout_s, started, progress),
            retries,
            backoff_s,
            progress_marker=lambda: part.size,
        )
    actual = part.digest.hexdigest()
    if actual != expected:
        part.path.unlink()
        raise ChecksumMismatchError(f"{url}: sha256 {actual} does not match the published {expected}; file deleted")
    os.replace(part.path, final)
    if progress:
        progress(part.size, part.size, time.monotonic() - started)
    return DownloadResult(final, part.size, actual, url, time.monotonic() - started, True)


@dataclass
class _PartFile:
    """A file being downloaded, with the running sha256 and size of the bytes already in it."""

    path: Path
    digest: hashlib._Hash
    size: int

    @classmethod
    def resume(cls, path: Path) -> _PartFile:
        """Pick up an existing file by hashing what is there (or start an empty one)."""
        digest = hashlib.sha256()
        return cls(path, digest, _hash_into(path, digest) if path.exists() else 0)

    def restart(self) -> None:
        self.path.write_bytes(b"")
        self.digest, self.size = hashlib.sha256(), 0


def _request(url: str, headers: dict[str, str] | None = None) -> urllib.request.Request:
    return urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **(headers or {})})


def _not_published(month: str, url: str) -> MonthNotPublishedError:
    return MonthNotPublishedError(
        f"{month} is not published at {url} yet: Lichess publishes each month's dump "
        "in the first days of the following month."
    )


def _published_sha256(month: str, base_url: str, name: str, timeout_s: float) -> str:
    """The month's sha256 from `sha256sums.txt` (lines '<sha256>  <filename>')."""
    sums_url = f"{base_url}/sha256sums.txt"
    try:
        with urllib.request.urlopen(_request(sums_url), timeout=timeout_s) as response:
            text = response.read().decode("utf-8", errors="replace")
    except urllib.error.HTTPError as error:
        if error.code == 404:
            raise LichessDownloadError(
                f"no checksum list at {sums_url} (404): is TRANSCEND_LICHESS_URL right?"
            ) from error
        raise
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[1].lstrip("*") == name:  # '*' marks binary mode in sha256sum output
            return fields[0].lower()
    raise _not_published(month, f"{base_url}/{name}")


def _download_rest(
    url: str, month: str, part: _PartFile, timeout_s: float, started: float, progress: Progress | None
) -> None:
    """Append the bytes after what `part` holds (HTTP Range), hashing them as they arrive."""
    request = _request(url, {"Range": f"bytes={part.size}-"} if part.size else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as error:
        if error.code == 404:
            raise _not_published(month, url) from error
        if error.code == 416:  # our part is at least as long as the file and yet wrong: start over
            offset = part.size
            part.restart()
            raise _Interrupted(f"{url}: range {offset}- not satisfiable, restarting") from error
        raise
    with response:
        if part.size and response.status == 200:  # the server ignored Range and sends the whole file
            part.restart()
        total = _total_size(url, response, part.size)
        reported = part.size
        with part.path.open("ab") as file:
            while chunk := response.read(CHUNK_BYTES):
                file.write(chunk)
                part.digest.update(chunk)
                part.size += len(chunk)
                if progress and part.size - reported >= PROGRESS_EVERY_BYTES:
                    progress(part.size, total, time.monotonic() - started)
                    reported = part.size
    if total is not None and part.size < total:
        raise _Interrupted(f"{url}: connection closed at {part.size:,} of {total:,} bytes")


def _total_size(url: str, response: http.client.HTTPResponse, offset: int) -> int | None:
    """The whole file's size from Content-Range (206) or Content-Length (200), if the server says."""
    if response.status == 206:
        content_range = response.headers.get("Content-Range", "")
        match = CONTENT_RANGE.match(content_range)
        if not match or int(match[1]) != offset:
            raise LichessDownloadError(f"{url}: asked for bytes {offset}- but got Content-Range {content_range!r}")
        return None if match[3] == "*" else int(match[3])
    length = response.headers.get("Content-Length")
    return int(length) if length is not None else None


def _retrying(
    call: Callable[[], T], retries: int, backoff_s: float, progress_marker: Callable[[], int] = lambda: 0
) -> T:
    """Run `call`, retrying network trouble with exponential backoff.

    Failures are counted only while `progress_marker()` stands still, so a download that keeps
    advancing between drops is resumed as often as it needs.
    """
    failures, marker = 0, progress_marker()
    while True:
        try:
            return call()
        except TRANSIENT_ERRORS as error:
            if isinstance(error, urllib.error.HTTPError) and error.code not in RETRYABLE_HTTP_STATUS:
                raise LichessDownloadError(f"{error.url}: HTTP {error.code} {error.reason}") from error
            failures = 0 if progress_marker() > marker else failures + 1
            marker = progress_marker()
            if failures > retries:
                raise LichessDownloadError(f"giving up after {retries} retries without progress: {error}") from error
            time.sleep(backoff_s * 2 ** max(failures - 1, 0))
