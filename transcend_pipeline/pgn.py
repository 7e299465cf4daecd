"""Lichess PGN text -> Arrow rows: split a byte stream into games, validate them, extract UCI moves.

The SAN -> legal-move work is done by `rust_pgn_reader_python_binding` (about
50k games/s on one core here, against ~350 for python-chess `read_game`, with
the same UCI moves on every sample game); this module feeds it one batch of
movetexts at a time and turns its flat move arrays into Arrow columns without a
Python loop per move. Tags are parsed here, so that a broken tag line is caught
(the Rust parser silently stops at it): the tag lines of a whole batch are
matched and pivoted into typed columns by Arrow compute, and only games that
fail a check are looked at one by one. A stream is cut into game-aligned chunks
(`game_aligned_chunks`) that parse alike in any process (`parse_chunk`).

A game is either accepted into `games` or quarantined with one of these reasons:

- `truncated`: the last game of the stream stops before its result (file cut off).
- `broken_tags`: a header line that is not `[Name "value"]`, or a malformed Elo,
  rating diff or TimeControl value.
- `non_standard_start`: a `Variant` other than Standard, or a `FEN`/`SetUp` tag.
- `missing_result`: no `Result` tag, or movetext that ends without a result.
- `result_mismatch`: the movetext's result differs from the `Result` tag.
- `illegal_move`: a well-formed SAN move that is not legal in the position.
- `unparsable_movetext`: a token that is not SAN, or text the parser cannot split into one game.

As in the Rust parser, the first result marker ends a game's moves: text after it
and before the next `[Event ` line is ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import rust_pgn_reader_python_binding as rust_pgn

GAME_START = b"\n[Event "
BYTE_ORDER_MARK = b"\xef\xbb\xbf"
EXCERPT_CHARS = 300
CHUNK_BYTES = 4 << 20  # ~1,700 Lichess games: small enough to keep two cores evenly busy to the end
BATCH_GAMES = 5000
MAX_GAME_BYTES = 32 << 20  # far above any real game; past it the input is not PGN, and memory must stay bounded

TAG_LINE = re.compile(r'^\[([A-Za-z0-9_]+) "([^"\\]*(?:\\.[^"\\]*)*)"\][ \t]*$', re.MULTILINE)
TAG_LINE_RE2 = r'^\[(?P<name>[A-Za-z0-9_]+) "(?P<value>[^"\\]*(?:\\.[^"\\]*)*)"\][ \t]*$'  # TAG_LINE, for Arrow
RESULT_AT_END = re.compile(r"(?:^|\s)(1-0|0-1|1/2-1/2|\*)$")
RESULTS = ("1-0", "0-1", "1/2-1/2", "*")

GAMES_SCHEMA = pa.schema(
    [
        ("month", pa.string()),
        ("game_id", pa.string()),
        ("site", pa.string()),
        ("event", pa.string()),
        ("rated", pa.bool_()),
        ("variant", pa.string()),
        ("speed", pa.string()),
        ("base_seconds", pa.int32()),
        ("increment_seconds", pa.int32()),
        ("white", pa.string()),
        ("black", pa.string()),
        ("white_elo", pa.int16()),
        ("black_elo", pa.int16()),
        ("white_rating_diff", pa.int16()),
        ("black_rating_diff", pa.int16()),
        ("white_title", pa.string()),
        ("black_title", pa.string()),
        ("result", pa.string()),
        ("termination", pa.string()),
        ("utc_time", pa.timestamp("s")),
        ("eco", pa.string()),
        ("opening", pa.string()),
        ("moves", pa.list_(pa.string())),
        ("ply_count", pa.int16()),
        ("has_clock", pa.bool_()),
        ("has_eval", pa.bool_()),
    ]
)

QUARANTINE_SCHEMA = pa.schema(
    [
        ("month", pa.string()),
        ("position", pa.int32()),
        ("site", pa.string()),
        ("excerpt", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
    ]
)

# Plain string tags copied as they are: column -> tag.
TEXT_COLUMNS = {
    "site": "Site",
    "event": "Event",
    "white": "White",
    "black": "Black",
    "white_title": "WhiteTitle",
    "black_title": "BlackTitle",
    "result": "Result",
    "termination": "Termination",
    "eco": "ECO",
    "opening": "Opening",
}
INT_COLUMNS = {
    "white_elo": "WhiteElo",
    "black_elo": "BlackElo",
    "white_rating_diff": "WhiteRatingDiff",
    "black_rating_diff": "BlackRatingDiff",
}

# Every tag the columns are built from, as Arrow columns pivoted from the batch's tag lines.
TAGS_STRUCT = pa.struct(
    [(tag, pa.string()) for tag in [*TEXT_COLUMNS.values(), *INT_COLUMNS.values()]]
    + [(tag, pa.string()) for tag in ("Variant", "TimeControl", "UTCDate", "UTCTime")]
    + [("has_clock", pa.bool_()), ("has_eval", pa.bool_())]  # not tags: whether the movetext has [%clk / [%eval
)


def _uci_table() -> pa.StringArray:
    """Every UCI string indexed by (from * 64 + to) * 5 + promotion slot, so moves become one `take`."""
    squares = [f"{file}{rank}" for rank in "12345678" for file in "abcdefgh"]
    return pa.array(
        [a + b + promotion for a in squares for b in squares for promotion in ("", "n", "b", "r", "q")], pa.string()
    )


UCI_TABLE = _uci_table()
# The binding encodes promotions as -1 (none), 2=N, 3=B, 4=R, 5=Q; map them to slots 0..4.
PROMOTION_SLOT = np.array([0, 0, 0, 1, 2, 3, 4], dtype=np.int64)  # index = promotion + 1


class PgnFormatError(ValueError):
    """The input cannot be PGN: no game boundary for longer than any game could be."""


@dataclass(frozen=True)
class PgnChunk:
    """A run of whole games cut from a stream, to be split and parsed on its own, in any process."""

    text: bytes
    ends_stream: bool


def game_aligned_chunks(chunks: Iterable[bytes], chunk_bytes: int = CHUNK_BYTES) -> Iterator[PgnChunk]:
    """Regroup a PGN byte stream into chunks of about `chunk_bytes` that `split_games` reads as the whole stream.

    Finding the cuts costs two `bytes.find`s per chunk, so the process reading
    the dump stays far from a bottleneck. A chunk ends just before an `[Event `
    line that starts a game for `split_games`: one not preceded by a game with an
    open `{ comment }` (a piece's own braces decide that, as in
    `_join_open_comments`). The byte-order mark is removed here, where the
    stream's first bytes are known.
    """
    buffer = b"\n"  # as in split_games, so that a game on the first line is found by GAME_START
    at_start = True
    for chunk in chunks:
        buffer += chunk
        if at_start and len(buffer) > len(BYTE_ORDER_MARK):  # the mark may come in pieces
            buffer = b"\n" + buffer[1:].removeprefix(BYTE_ORDER_MARK)
            at_start = False
        start = 0
        while len(buffer) - start >= chunk_bytes and (cut := _game_boundary(buffer, start + chunk_bytes)) != -1:
            yield PgnChunk(buffer[start:cut], ends_stream=False)
            start = cut
        buffer = buffer[start:]
        if len(buffer) > chunk_bytes + MAX_GAME_BYTES:
            raise PgnFormatError(f"no game ends (before a line beginning '[Event ') in {len(buffer):,} bytes")
    yield PgnChunk(buffer, ends_stream=True)


def _game_boundary(buffer: bytes, after: int) -> int:
    """The first GAME_START at or after `after` that the game before it does not hide in an open comment, or -1."""
    cut = buffer.find(GAME_START, after)
    while cut != -1:
        previous = buffer.rfind(GAME_START, 0, cut)
        if previous == -1 or buffer.rfind(b"{", previous, cut) <= buffer.rfind(b"}", previous, cut):
            return cut
        cut = buffer.find(GAME_START, cut + 1)
    return -1


def parse_chunk(chunk: PgnChunk, month: str, moves_max_elo: int | None = None) -> tuple[pa.Table, pa.Table]:
    """Split and parse one chunk: (accepted games, quarantined games), positions counted from the chunk's first game."""
    parsed = [
        parse_batch(batch, month, moves_max_elo)
        for batch in split_games([chunk.text], batch_games=BATCH_GAMES, ends_stream=chunk.ends_stream)
    ]
    return pa.Table.from_batches([games for games, _ in parsed], GAMES_SCHEMA), pa.Table.from_batches(
        [quarantined for _, quarantined in parsed], QUARANTINE_SCHEMA
    )


@dataclass(frozen=True)
class GameBatch:
    """Consecutive raw games of one stream: `start` is the position of the first, 0-based."""

    start: int
    texts: list[bytes]
    ends_stream: bool


def split_games(
    chunks: Iterable[bytes], batch_games: int = BATCH_GAMES, *, ends_stream: bool = True
) -> Iterator[GameBatch]:
    """Cut a stream of PGN bytes into batches of single-game texts, holding only one partial game between chunks.

    A game starts at a line beginning with `[Event ` (always the first tag of a
    Lichess game) unless that line lies inside an open `{ comment }`. CRLF line
    ends and a leading byte-order mark are normalised away here. Text before the
    first game, if any, is passed on as a game of its own (it will not parse).
    `ends_stream=False` says the input stops where a game ends (a chunk from
    `game_aligned_chunks`), so its last game cannot be `truncated`.
    """
    pending = b"\n"  # so that the first game, too, is found by GAME_START
    at_start = True
    start = 0
    batch: list[bytes] = []
    for chunk in chunks:
        if at_start and chunk:
            chunk = chunk.removeprefix(BYTE_ORDER_MARK)
            at_start = False
        buffer = pending + chunk
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        preamble, *games = buffer.split(GAME_START)
        if not games:
            pending = buffer
            if len(pending) > MAX_GAME_BYTES:
                raise PgnFormatError(f"no game starts (a line beginning '[Event ') in {len(pending):,} bytes")
            continue
        if preamble.strip():
            batch.append(preamble.strip())
        games = list(_join_open_comments(games, tail_is_partial=True))
        pending = GAME_START + games.pop()
        batch.extend((b"[Event " + game).rstrip() for game in games)
        if len(batch) >= batch_games:
            yield GameBatch(start, batch, ends_stream=False)
            start += len(batch)
            batch = []
    preamble, *games = pending.split(GAME_START)
    if preamble.strip():
        batch.append(preamble.strip())
    if games:
        batch.extend((b"[Event " + game).rstrip() for game in _join_open_comments(games, tail_is_partial=False))
    yield GameBatch(start, batch, ends_stream=ends_stream)


def _join_open_comments(parts: list[bytes], *, tail_is_partial: bool) -> Iterator[bytes]:
    """Re-join pieces that were split at an `[Event ` line inside a comment; yield whole games.

    A piece with an open comment is joined to the next when that one closes it,
    or when the next is the stream's unfinished tail (decided again with more text).
    """
    current = parts[0]
    last = len(parts) - 1
    for number, part in enumerate(parts[1:], start=1):
        if current.rfind(b"{") > current.rfind(b"}") and (
            (tail_is_partial and number == last) or _closes_comment(part)
        ):
            current += GAME_START + part
        else:
            yield current
            current = part
    yield current


def _closes_comment(part: bytes) -> bool:
    close = part.find(b"}")
    opening = part.find(b"{")
    return close != -1 and (opening == -1 or close < opening)


@dataclass(frozen=True)
class Rejection:
    """One quarantined game: its index in the batch, its Site if known, its text, and why."""

    index: int
    site: str | None
    text: str
    reason: str
    detail: str


def parse_batch(
    batch: GameBatch, month: str, moves_max_elo: int | None = None
) -> tuple[pa.RecordBatch, pa.RecordBatch]:
    """Turn one batch of raw games into (accepted games, quarantined games) as Arrow record batches.

    With `moves_max_elo`, only games whose both Elos are known and at most that
    value get their moves checked and stored; the others are accepted on their
    tags alone, with NULL moves and ply_count (storing and legality-checking
    moves is most of the cost, and those games can never enter a rating bucket).
    """
    kept, tags, movetexts, rejected = _read_tags(batch)
    sites = tags.field("Site")
    columns, bad_values = _games_columns(tags, month)
    accepted = np.ones(len(kept), dtype=bool)
    for slot, detail in bad_values:
        accepted[slot] = False
        rejected.append(
            Rejection(int(kept[slot]), sites[slot].as_py(), _text(batch, kept[slot]), "broken_tags", detail)
        )

    wants_moves = accepted.copy()
    if moves_max_elo is not None:
        max_elo = pc.max_element_wise(columns["white_elo"], columns["black_elo"], skip_nulls=False)
        wants_moves &= np.asarray(pc.fill_null(pc.less_equal(max_elo, moves_max_elo), False), dtype=bool)
    parsed_slots = np.flatnonzero(wants_moves)
    moves, valid, errors = _parse_moves(movetexts.take(parsed_slots))
    for parsed in np.flatnonzero(~valid):
        slot = parsed_slots[parsed]
        accepted[slot] = False
        reason = "illegal_move" if errors[parsed].startswith("illegal move") else "unparsable_movetext"
        rejected.append(
            Rejection(int(kept[slot]), sites[slot].as_py(), _text(batch, kept[slot]), reason, errors[parsed])
        )

    moves_at = np.full(len(kept), -1, dtype=np.int64)
    moves_at[parsed_slots] = np.arange(len(parsed_slots))
    columns["moves"] = moves.take(pa.array(moves_at, mask=moves_at < 0))
    columns["ply_count"] = pc.cast(pc.list_value_length(columns["moves"]), pa.int16())
    games = pa.RecordBatch.from_pydict(columns, schema=GAMES_SCHEMA).filter(pa.array(accepted))
    rejected.sort(key=lambda rejection: rejection.index)
    quarantine = {
        "month": [month] * len(rejected),
        "position": [batch.start + rejection.index for rejection in rejected],
        "site": [rejection.site or None for rejection in rejected],
        "excerpt": [rejection.text[:EXCERPT_CHARS].rstrip() for rejection in rejected],
        "reason": [rejection.reason for rejection in rejected],
        "detail": [rejection.detail for rejection in rejected],
    }
    return games, pa.RecordBatch.from_pydict(quarantine, schema=QUARANTINE_SCHEMA)


def _read_tags(batch: GameBatch) -> tuple[np.ndarray, pa.StructArray, pa.LargeStringArray, list[Rejection]]:
    """(indices, tags, movetexts) of the games whose tags and result look right, and the other games' rejections.

    The tag lines of the whole batch are matched and pivoted into columns by
    Arrow in a few calls; only the few games that fail a check go through
    `_rejection`, the per-game rules that also word the detail.
    """
    texts = [raw.decode("utf-8", errors="replace") for raw in batch.texts]
    heads: list[str] = []
    movetexts: list[str] = []
    finals: list[str | None] = []
    clocks: list[bool] = []
    evals: list[bool] = []
    for text in texts:  # str's `in` beats Arrow's kernel: it stops at the clock of the first move
        head, _, movetext = text.partition("\n\n")
        heads.append(head)
        movetexts.append(movetext)
        final = RESULT_AT_END.search(text[-8:])
        finals.append(final and final.group(1))
        clocks.append("[%clk" in movetext)
        evals.append("[%eval" in movetext)
    lines = pc.split_pattern(pa.array(heads, pa.string()), "\n")
    line_game = np.asarray(pc.list_parent_indices(lines))
    pairs = pc.extract_regex(lines.flatten(), TAG_LINE_RE2)
    broken = np.zeros(len(texts), dtype=bool)
    broken[line_game[np.asarray(pairs.is_null())]] = True
    tags = _pivot_tags(pc.struct_field(pairs, [0]), pc.struct_field(pairs, [1]), line_game, len(texts))
    variant, result = tags["Variant"], tags["Result"]
    suspect = (
        broken
        | np.asarray(pc.fill_null(pc.not_equal(variant, "Standard"), False))
        | np.asarray(tags.pop("FEN").is_valid())
        | np.asarray(tags.pop("SetUp").is_valid())
        | ~np.asarray(pc.fill_null(pc.equal(result, pa.array(finals, pa.string())), False))
    )
    if batch.ends_stream and texts:
        suspect[-1] = True
    rejected: list[Rejection] = []
    for index in np.flatnonzero(suspect):
        rejection = _rejection(int(index), texts[index], last=batch.ends_stream and index == len(texts) - 1)
        if rejection is None:
            suspect[index] = False
        else:
            rejected.append(rejection)
    kept = np.flatnonzero(~suspect)
    tags["has_clock"], tags["has_eval"] = pa.array(clocks, pa.bool_()), pa.array(evals, pa.bool_())
    struct = pa.StructArray.from_arrays(
        [tags[field.name].take(kept) for field in TAGS_STRUCT], fields=list(TAGS_STRUCT)
    )
    return kept, struct, pa.array(movetexts, pa.large_string()).take(kept), rejected


def _pivot_tags(names: pa.Array, values: pa.Array, line_game: np.ndarray, games: int) -> dict[str, pa.Array]:
    """One column per tag that the columns or checks need: the value of each game's tag line, NULL if it has none.

    A tag given twice keeps its last value, as a dict built from the lines would.
    """
    names = pc.dictionary_encode(names)
    codes = np.asarray(pc.fill_null(names.indices, -1))
    columns: dict[str, pa.Array] = {}
    for tag in [field.name for field in TAGS_STRUCT if field.type == pa.string()] + ["FEN", "SetUp"]:
        code = pc.index(names.dictionary, tag).as_py()
        lines = np.flatnonzero(codes == code) if code >= 0 else np.zeros(0, dtype=np.int64)
        line_of_game = np.full(games, -1, dtype=np.int64)
        line_of_game[line_game[lines]] = lines  # in order, so a repeated tag's last line wins
        columns[tag] = values.take(pa.array(line_of_game, mask=line_of_game < 0))
    return columns


def _rejection(index: int, text: str, *, last: bool) -> Rejection | None:
    """Why one game is quarantined, by the rules in the module docstring, or None if it is not."""
    head, _, _ = text.partition("\n\n")
    final = RESULT_AT_END.search(text[-8:])
    if final is None and last:
        return Rejection(index, _site_of(head), text, "truncated", "the stream ends inside this game")
    pairs = TAG_LINE.findall(head)
    tags = dict(pairs)
    if len(pairs) != head.count("\n") + 1:
        bad = next((line for line in head.split("\n") if not TAG_LINE.fullmatch(line)), head)
        return Rejection(index, tags.get("Site"), text, "broken_tags", f"not a tag line: {bad[:80]!r}")
    if tags.get("Variant", "Standard") != "Standard" or "FEN" in tags or "SetUp" in tags:
        detail = f"Variant {tags.get('Variant', 'Standard')!r}, FEN {tags.get('FEN')!r}"
        return Rejection(index, tags.get("Site"), text, "non_standard_start", detail)
    if tags.get("Result") not in RESULTS:
        return Rejection(index, tags.get("Site"), text, "missing_result", f"Result tag {tags.get('Result')!r}")
    if final is None:
        return Rejection(index, tags["Site"], text, "missing_result", "the movetext ends without a result")
    if final.group(1) != tags["Result"]:
        detail = f"Result tag {tags['Result']} but the movetext ends {final.group(1)}"
        return Rejection(index, tags.get("Site"), text, "result_mismatch", detail)
    return None


def _text(batch: GameBatch, index: int) -> str:
    return batch.texts[index].decode("utf-8", errors="replace")


def _site_of(head: str) -> str | None:
    match = re.search(r'^\[Site "([^"]*)"\]', head, re.MULTILINE)
    return match.group(1) if match else None


def _parse_moves(movetexts: pa.LargeStringArray) -> tuple[pa.ListArray, np.ndarray, list[str | None]]:
    """Legal-move check movetexts in Rust; return (UCI move lists, valid flags, error messages), one per text."""
    if not movetexts:
        return pa.array([], pa.list_(pa.string())), np.zeros(0, dtype=bool), []
    parsed = rust_pgn.parse_games(pa.chunked_array([movetexts]), num_threads=1)
    if len(parsed) != len(movetexts):  # some text read as several games, or none: find it game by game
        return _parse_moves_one_by_one(movetexts)
    chunks = parsed.chunks
    offsets = [np.zeros(1, dtype=np.int64)]
    for chunk in chunks:
        offsets.append(chunk.move_offsets[1:].astype(np.int64) + offsets[-1][-1])
    from_squares = np.concatenate([chunk.from_squares for chunk in chunks]).astype(np.int64)
    to_squares = np.concatenate([chunk.to_squares for chunk in chunks]).astype(np.int64)
    promotions = np.concatenate([chunk.promotions for chunk in chunks]).astype(np.int64)
    uci = UCI_TABLE.take(pa.array((from_squares * 64 + to_squares) * 5 + PROMOTION_SLOT[promotions + 1]))
    moves = pa.ListArray.from_arrays(pa.array(np.concatenate(offsets).astype(np.int32)), uci)
    valid = np.concatenate([chunk.valid for chunk in chunks])
    errors = [error for chunk in chunks for error in chunk.parse_errors]
    return moves, valid, errors


def _parse_moves_one_by_one(movetexts: pa.LargeStringArray) -> tuple[pa.ListArray, np.ndarray, list[str | None]]:
    """Slow path: parse each text alone so one text that is not exactly one game cannot shift the others."""
    moves: list[list[str]] = []
    valid: list[bool] = []
    errors: list[str | None] = []
    for movetext in movetexts.to_pylist():
        parsed = rust_pgn.parse_games_from_strings([movetext], num_threads=1)
        if len(parsed) == 1:
            moves.append(parsed[0].moves_uci())
            valid.append(parsed[0].is_valid)
            errors.append(parsed[0].parse_error)
        else:
            moves.append([])
            valid.append(False)
            errors.append(f"the movetext reads as {len(parsed)} games")
    return pa.array(moves, pa.list_(pa.string())), np.array(valid, dtype=bool), errors


def _games_columns(tags: pa.StructArray, month: str) -> tuple[dict[str, pa.Array], list[tuple[int, str]]]:
    """Every `games` column but the moves, built column-wise from the tags, and the (row, detail) of malformed values."""
    columns: dict[str, pa.Array] = {name: tags.field(tag) for name, tag in TEXT_COLUMNS.items()}
    columns["month"] = pa.array([month] * len(tags), pa.string())
    columns["game_id"] = pc.struct_field(pc.extract_regex(columns["site"], r"(?P<id>[^/]*)$"), [0])
    columns["rated"] = pc.starts_with(columns["event"], "Rated")
    columns["variant"] = pc.fill_null(tags.field("Variant"), "Standard")
    malformed: list[tuple[str, pa.Array, pa.Array]] = []  # (tag, raw values, parsed values)
    for name, tag in INT_COLUMNS.items():
        values = tags.field(tag)
        numbers = pc.if_else(pc.match_substring_regex(values, r"^[+-]?[0-9]{1,4}$"), values, None)
        columns[name] = pc.cast(pc.utf8_ltrim(numbers, "+"), pa.int16())
        malformed.append((tag, pc.if_else(pc.equal(values, "?"), None, values), numbers))
    time_control = tags.field("TimeControl")
    parts = pc.extract_regex(time_control, r"^(?P<base>[0-9]{1,6})\+(?P<increment>[0-9]{1,4})$")
    columns["base_seconds"] = pc.cast(pc.struct_field(parts, [0]), pa.int32())
    columns["increment_seconds"] = pc.cast(pc.struct_field(parts, [1]), pa.int32())
    columns["speed"] = _speed(time_control, columns["base_seconds"], columns["increment_seconds"])
    malformed.append(("TimeControl", pc.if_else(pc.equal(time_control, "-"), None, time_control), parts))
    stamp = pc.binary_join_element_wise(tags.field("UTCDate"), tags.field("UTCTime"), " ")
    columns["utc_time"] = pc.strptime(stamp, format="%Y.%m.%d %H:%M:%S", unit="s", error_is_null=True)
    columns["has_clock"] = tags.field("has_clock")
    columns["has_eval"] = tags.field("has_eval")
    bad: dict[int, str] = {}
    for tag, raw, parsed in malformed:
        for row in np.flatnonzero(np.asarray(pc.and_(pc.is_valid(raw), pc.is_null(parsed)))):
            bad.setdefault(int(row), f"{tag} {raw[row].as_py()!r} is not a valid value")
    return columns, sorted(bad.items())


def _speed(time_control: pa.Array, base: pa.Array, increment: pa.Array) -> pa.Array:
    """Lichess's speed classes: estimated seconds = base + 40 * increment; '-' is correspondence."""
    estimate = np.asarray(pc.fill_null(pc.add(base, pc.multiply(increment, 40)), -1))
    speeds = np.select(
        [estimate < 0, estimate < 30, estimate < 180, estimate < 480, estimate < 1500],
        ["", "ultraBullet", "bullet", "blitz", "rapid"],
        "classical",
    ).astype(object)
    speeds[np.asarray(pc.fill_null(pc.equal(time_control, "-"), False))] = "correspondence"
    speeds[speeds == ""] = None
    return pa.array(speeds, pa.string())
