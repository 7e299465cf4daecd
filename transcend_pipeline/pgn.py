"""Lichess PGN text -> Arrow rows: split a byte stream into games, validate them, extract UCI moves.

The SAN -> legal-move work is done by `rust_pgn_reader_python_binding` (about
50k games/s on one core here, against ~350 for python-chess `read_game`, with
the same UCI moves on every sample game); this module feeds it one chunk of
movetexts at a time and turns its flat move arrays into Arrow columns without a
Python loop per move. Tags are parsed here, so that a broken tag line is caught
(the Rust parser silently stops at it). A stream is cut into game-aligned chunks
(`game_aligned_chunks`) that parse alike in any process (`parse_chunk`). Within a
chunk no game becomes a Python object: games are spans of the chunk's text
(`RawGames`), viewed by Arrow without a copy, so that the tag lines of all its
games are matched and pivoted into typed columns by a few Arrow calls; only the
games that fail a check are looked at one by one.

Game boundaries follow the lines, as python-chess reads them: a line is *blank*
(spaces and tabs only), a *tag line* (it begins with `[`) or *movetext*. A game
starts at the first tag line after a movetext line, whatever the tag, with or
without blank lines between; its tag section is the run of tag and blank lines
it starts with (ChessBase puts blank lines in it), its movetext the rest. A `[`
line inside a `{ comment }` that spans lines starts nothing. Two differences
from python-chess, both on the side of counting games apart: two blank lines
inside a tag section do not end it, and a tag line right after a result line
starts a new game even without a blank line between.

A game is either accepted into `games` or quarantined with one of these reasons:

- `truncated`: the last game of the stream stops before its result (file cut off).
- `broken_tags`: a header line that is not `[Name "value"]`, no tag section, or a
  malformed Elo, rating diff or TimeControl value (the PGN standard's forms are all
  accepted: `?`, `-`, `300`, `180+2`, `40/7200`, `*180`, periods joined by `:`, and
  the fractions of seconds engine matches write, `10+0.1`).
- `non_standard_start`: a `Variant` other than Standard, or a `FEN`/`SetUp` tag.
- `missing_result`: no `Result` tag, or movetext that ends without a result.
- `result_mismatch`: the movetext's result differs from the `Result` tag.
- `null_move`: a move written `--`, `Z0`, `0000` or `@@@@` (a null move: no legal game has one).
  The move parser skips `0000` and reads on with the wrong side to move; the game is
  named a null move's when a later move turns illegal, as one nearly always does
  (a `0000` that ends the game is dropped).
- `uci_notation`: a move written in UCI form (`g1f3`, `e7e8q`) that is not SAN.
  A pawn move such as `e2e4` is also fully qualified SAN and reads as one.
- `illegal_move`: a well-formed SAN move that is not legal in the position.
- `unparsable_movetext`: a token that is not SAN, or text the parser cannot split into one game.
- `duplicate_game_id` (set by `ingest`, month-wide): a game id already seen earlier in the month.

A game's id is the last path segment of its `Site` when that is a URL (Lichess's
8 characters), else a hash of the game's text: games of one over-the-board
event share a Site, and only an exact repeat of a game is a duplicate.

As in the Rust parser, the first result marker ends a game's moves: text after it
and before the next game is ignored.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import rust_pgn_reader_python_binding as rust_pgn

from transcend_pipeline.vocab import MOVES

# Where a game starts: a movetext line (neither blank nor a tag line), any blank lines, then a tag line. A match
# ends just past that line's `[`; the game is cut at the newline before it.
GAME_BOUNDARY = re.compile(rb"\n(?!\[)[ \t\r]*[^ \t\r\n][^\n]*\n(?:[ \t\r]*\n)*\[")
MOVETEXT_LINE = re.compile(rb"\n(?!\[)[ \t\r]*[^ \t\r\n]")  # the first one ends a game's tag section
BOUNDARY_SEARCH_BYTES = 1 << 14  # how far back a previous game boundary is first looked for (Lichess: ~2 KB a game)
IS_WHITESPACE = np.isin(np.arange(256), list(b" \t\n\r\x0b\x0c"))  # the bytes that bytes.strip() removes
BYTE_ORDER_MARK = b"\xef\xbb\xbf"
EXCERPT_CHARS = 300
CHUNK_BYTES = 8 << 20  # ~3,400 Lichess games: the fixed cost of a chunk (~4 ms) stays small, two cores stay busy
MAX_GAME_BYTES = 32 << 20  # far above any real game; past it the input is not PGN, and memory must stay bounded

TAG_LINE = re.compile(r'^\[([A-Za-z0-9_]+) "([^"\\]*(?:\\.[^"\\]*)*)"\][ \t]*$', re.MULTILINE)
TAG_LINE_RE2 = r'^\[(?P<name>[A-Za-z0-9_]+) "(?P<value>[^"\\]*(?:\\.[^"\\]*)*)"\][ \t]*$'  # TAG_LINE, for Arrow
RESULT_AT_END = re.compile(r"(?:^|\s)(1-0|0-1|1/2-1/2|\*)$")
RESULTS = ("1-0", "0-1", "1/2-1/2", "*")
NULL_MOVES = ("--", "Z0", "0000", "@@@@")  # the Rust parser reads `Z0` as `--`, and skips `0000` without a word
ZERO_MOVE = re.compile(r"\{[^}]*\}|;[^\n]*|(?P<null>(?<![^\s.])0000(?!\S))")  # a comment, or a `0000` move
MOVE_ERROR = re.compile(r"at ply ([0-9]+): (\S+)")  # the Rust parser's "illegal move at ply 3: g1f3 (illegal san)"
UCI_MOVE = re.compile(r"[a-h][1-8][a-h][1-8][nbrq]?")

# TimeControl as the PGN standard writes it: `?`, `-`, or periods joined by `:`, each `moves/seconds`,
# `seconds`, `seconds+increment` or sandglass `*seconds` (FIDE: `40/5400+30:1800+30`).
SECONDS = r"[0-9]{1,7}(?:\.[0-9]{1,3})?"  # whole in the standard; fastchess and cutechess write `10+0.1`
TIME_PERIOD = rf"(?:[0-9]{{1,4}}/)?{SECONDS}(?:\+{SECONDS})?|\*{SECONDS}"
TIME_CONTROL = re.compile(rf"\?|-|(?:{TIME_PERIOD})(?::(?:{TIME_PERIOD}))*")
URL_WITH_PATH = r"^[A-Za-z][A-Za-z0-9+.-]*://[^/]+/[^/]"  # a Site whose last segment is a game id, for Arrow
LICHESS_TIME_CONTROL = r"^(?P<base>[0-9]{1,7})\+(?P<increment>[0-9]{1,5})$"  # for Arrow
FIRST_PERIOD = re.compile(rf"(?P<moves>[0-9]+/)?(?P<base>{SECONDS})(?:\+(?P<increment>{SECONDS}))?(?P<later>:.*)?$")

# A game's moves are indices into the vocabulary's moves (DuckDB stores them as the ENUM `uci_move`): the parser's
# squares become one lookup, and DuckDB writes 2 bytes a move instead of compressing ~2M short strings per 100k games.
UCI_MOVES = pa.array(MOVES, pa.string())
MOVE_LISTS = pa.list_(pa.dictionary(pa.int16(), pa.string()))

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
        ("moves", MOVE_LISTS),
        ("ply_count", pa.int16()),
        ("has_clock", pa.bool_()),
        ("has_eval", pa.bool_()),
    ]
)
# What `parse_chunk` accepts: the rows of `games`, each with its position in the chunk, so that `ingest` can keep
# a month's first game of an id and quarantine the later ones.
PARSED_GAMES_SCHEMA = GAMES_SCHEMA.append(pa.field("position", pa.int32()))

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

# Every tag the columns are built from, as Arrow columns pivoted from a chunk's tag lines.
TAGS_STRUCT = pa.struct(
    [(tag, pa.string()) for tag in [*TEXT_COLUMNS.values(), *INT_COLUMNS.values()]]
    + [(tag, pa.string()) for tag in ("Variant", "TimeControl", "UTCDate", "UTCTime")]
    + [("has_clock", pa.bool_()), ("has_eval", pa.bool_())]  # not tags: whether the movetext has [%clk / [%eval
)
# The tags pivoted from a chunk's tag lines: those of the columns, and those that mark a non-standard start.
PIVOTED_TAGS = [field.name for field in TAGS_STRUCT if field.type == pa.string()] + ["FEN", "SetUp"]


# Lichess's speed classes, by estimated seconds below each limit; the last class is for a TimeControl of '-'.
SPEEDS = pa.array(["ultraBullet", "bullet", "blitz", "rapid", "classical", "correspondence"], pa.string())
SPEED_LIMITS = np.array([30, 180, 480, 1500])
# The binding encodes promotions as -1 (none), 2=N, 3=B, 4=R, 5=Q; map them to slots 0..4.
PROMOTION_SLOT = np.array([0, 0, 0, 1, 2, 3, 4], dtype=np.int64)  # index = promotion + 1


def _move_indices() -> np.ndarray:
    """Each (from * 64 + to) * 5 + promotion slot -> the move's index in `MOVES` (-1 where no piece moves so)."""
    indices = np.full(64 * 64 * 5, -1, dtype=np.int16)
    for index, uci in enumerate(MOVES):
        from_square, to_square = ("abcdefgh".index(uci[i]) + 8 * (int(uci[i + 1]) - 1) for i in (0, 2))
        indices[(from_square * 64 + to_square) * 5 + "_nbrq".index(uci[4:] or "_")] = index
    return indices


MOVE_INDEX = _move_indices()


class PgnFormatError(ValueError):
    """The input cannot be PGN: no game boundary for longer than any game could be."""


@dataclass(frozen=True)
class PgnChunk:
    """A run of whole games cut from a stream, to be split and parsed on its own, in any process."""

    text: bytes
    ends_stream: bool


def game_aligned_chunks(pieces: Iterable[bytes], chunk_bytes: int = CHUNK_BYTES) -> Iterator[PgnChunk]:
    """Regroup a PGN byte stream into chunks of about `chunk_bytes` that `parse_chunk` reads as the whole stream.

    Pieces are gathered until they hold `chunk_bytes`, joined once and cut at
    the last game boundary in them (and at more boundaries if they hold several
    chunks' worth): a chunk is at least `chunk_bytes` less one game, and each
    byte is copied about twice, in a seventh of the time it took to decompress
    (in the process that also reads the dump). A chunk ends just before a line
    that starts a game for `RawGames`: a tag line after a movetext line
    (`GAME_BOUNDARY`), not preceded by a game with an open `{ comment }` (a
    piece's own braces decide that, as in `RawGames.from_chunk`). Boundaries are
    looked for near the cut only, not in the whole chunk again. The byte-order
    mark is removed here, where the stream's first bytes are known.
    """
    pending: list[bytes] = [b"\n"]  # so that every chunk starts with a newline, as `RawGames` wants
    pending_bytes = 1
    at_start = True
    for piece in pieces:
        pending.append(piece)
        pending_bytes += len(piece)
        if at_start and pending_bytes >= 1 + len(BYTE_ORDER_MARK):  # the mark may come in pieces
            pending = [b"\n" + b"".join(pending)[1:].removeprefix(BYTE_ORDER_MARK)]
            pending_bytes = len(pending[0])
            at_start = False
        if pending_bytes < chunk_bytes:
            continue
        text = b"".join(pending)
        start = 0
        while (cut := _next_game_boundary(text, start + chunk_bytes)) != -1 and len(text) - cut >= chunk_bytes:
            yield PgnChunk(text[start:cut], ends_stream=False)
            start = cut
        if (cut := _last_game_boundary(text, start)) != -1:
            yield PgnChunk(text[start:cut], ends_stream=False)
            start = cut
        pending = [text[start:]]
        pending_bytes = len(pending[0])
        if pending_bytes > chunk_bytes + MAX_GAME_BYTES:
            raise PgnFormatError(f"no game ends (before a tag line after movetext) in {pending_bytes:,} bytes")
    yield PgnChunk(b"".join(pending), ends_stream=True)


def _next_game_boundary(buffer: bytes, after: int) -> int:
    """The first game boundary at or after `after`, or -1."""
    return next((cut for cut in _boundary_candidates(buffer, after) if _is_game_boundary(buffer, cut)), -1)


def _last_game_boundary(buffer: bytes, after: int) -> int:
    """The last game boundary after `after` (a cut that leaves a chunk not empty), or -1."""
    cut = _last_candidate_before(buffer, len(buffer), after + 1)
    while cut != -1 and not _is_game_boundary(buffer, cut):
        cut = _last_candidate_before(buffer, cut, after + 1)
    return cut


def _boundary_candidates(buffer: bytes, start: int, stop: int | None = None) -> Iterator[int]:
    """The cuts before a tag line that follows a movetext line (`GAME_BOUNDARY`) in [start, stop), in order.

    The search starts at the last movetext line before `start`, which a cut
    just after `start` depends on.
    """
    line = start
    while line > 0 and buffer[line - 1] in b" \t\r\n":  # back over blank lines, to the movetext line's end
        line -= 1
    for match in GAME_BOUNDARY.finditer(buffer, max(buffer.rfind(b"\n", 0, line), 0)):
        cut = match.end() - 2
        if stop is not None and cut >= stop:
            return
        if cut >= start:
            yield cut


def _last_candidate_before(buffer: bytes, stop: int, floor: int = 0) -> int:
    """The last cut of `_boundary_candidates` in [floor, stop), or -1: looked for in windows that grow back."""
    window = BOUNDARY_SEARCH_BYTES
    while True:
        start = max(floor, stop - window)
        last = -1
        for last in _boundary_candidates(buffer, start, stop):  # noqa: B007 - the last one is wanted
            pass
        if last != -1 or start == floor:
            return last
        window *= 4


def _is_game_boundary(buffer: bytes, cut: int) -> bool:
    """Whether the candidate at `cut` starts a game: the piece before it does not hide it in an open comment."""
    previous = max(_last_candidate_before(buffer, cut), 0)
    return buffer.rfind(b"{", previous, cut) <= buffer.rfind(b"}", previous, cut)


def parse_chunk(chunk: PgnChunk, month: str, moves_max_elo: int | None = None) -> tuple[pa.Table, pa.Table]:
    """Turn one chunk into (accepted games, quarantined games), positions counted from the chunk's first game.

    With `moves_max_elo`, only games whose both Elos are known and at most that
    value get their moves checked and stored; the others are accepted on their
    tags alone, with NULL moves and ply_count (storing and legality-checking
    moves is most of the cost, and those games can never enter a rating bucket).
    """
    games = RawGames.from_chunk(chunk)
    kept, tags, rejected = _read_tags(games)
    sites = tags.field("Site")
    columns, bad_values = _games_columns(tags, month)
    columns["game_id"] = _game_ids(columns["game_id"], games, kept)
    columns["position"] = pa.array(kept, pa.int32())
    accepted = np.ones(len(kept), dtype=bool)
    for slot, detail in bad_values:
        accepted[slot] = False
        rejected.append(
            Rejection(int(kept[slot]), sites[slot].as_py(), games.text_of(kept[slot]), "broken_tags", detail)
        )

    wants_moves = accepted.copy()
    if moves_max_elo is not None:
        max_elo = pc.max_element_wise(columns["white_elo"], columns["black_elo"], skip_nulls=False)
        wants_moves &= np.asarray(pc.fill_null(pc.less_equal(max_elo, moves_max_elo), False), dtype=bool)
    parsed_slots = np.flatnonzero(wants_moves)
    moves, valid, errors = _parse_moves(games.movetexts(kept[parsed_slots]))
    for parsed in np.flatnonzero(~valid):
        slot = parsed_slots[parsed]
        accepted[slot] = False
        reason, detail = _move_error(errors[parsed], games.movetexts(kept[slot : slot + 1])[0].as_py())
        rejected.append(Rejection(int(kept[slot]), sites[slot].as_py(), games.text_of(kept[slot]), reason, detail))

    moves_at = np.full(len(kept), -1, dtype=np.int64)
    moves_at[parsed_slots] = np.arange(len(parsed_slots))
    columns["moves"] = moves.take(pa.array(moves_at, mask=moves_at < 0))
    columns["ply_count"] = pc.cast(pc.list_value_length(columns["moves"]), pa.int16())
    accepted_games = pa.Table.from_pydict(columns, schema=PARSED_GAMES_SCHEMA).filter(pa.array(accepted))
    rejected.sort(key=lambda rejection: rejection.index)
    quarantine = {
        "month": [month] * len(rejected),
        "position": [rejection.index for rejection in rejected],
        "site": [rejection.site or None for rejection in rejected],
        "excerpt": [rejection.text[:EXCERPT_CHARS].rstrip() for rejection in rejected],
        "reason": [rejection.reason for rejection in rejected],
        "detail": [rejection.detail for rejection in rejected],
    }
    return accepted_games, pa.Table.from_pydict(quarantine, schema=QUARANTINE_SCHEMA)


def _game_ids(url_ids: pa.Array, games: RawGames, kept: np.ndarray) -> pa.Array:
    """Each game's id: its Site URL's last segment, else (few games, in files not from a site) a hash of its text."""
    missing = np.flatnonzero(np.asarray(url_ids.is_null()))
    if not len(missing):
        return url_ids
    ids = url_ids.to_numpy(zero_copy_only=False)
    for slot in missing.tolist():
        game_text = games.text[games.starts[kept[slot]] : games.ends[kept[slot]]]
        ids[slot] = hashlib.blake2b(game_text, digest_size=8).hexdigest()
    return pa.array(ids, pa.string())


def _move_error(error: str, movetext: str) -> tuple[str, str]:
    """The quarantine reason and detail for the Rust parser's error on a game's movetext.

    The parser skips a `0000` move without a word and reads on with the wrong side to move, which makes a later
    move illegal: such a game is a null move's, not an illegal move's. (Looking for `0000` in every game would cost
    a tenth of the parse; a game with `0000` as its very last move reads, without it.)
    """
    match = MOVE_ERROR.search(error)
    token, ply = (match.group(2), match.group(1)) if match else ("", "?")
    if token in NULL_MOVES:
        return "null_move", f"a null move ({token}) at ply {ply}: no legal game has one ({error})"
    if UCI_MOVE.fullmatch(token):
        return "uci_notation", f"a move in UCI notation ({token}) at ply {ply}, not SAN ({error})"
    if any(zero.group("null") for zero in ZERO_MOVE.finditer(movetext)):
        return "null_move", f"a null move (0000) before ply {ply}: no legal game has one ({error})"
    return ("illegal_move" if error.startswith("illegal move") else "unparsable_movetext"), error


def parse_chunk_file(
    path: Path, ends_stream: bool, month: str, moves_max_elo: int | None = None
) -> tuple[pa.Table, pa.Table]:
    """`parse_chunk` on a chunk handed over as a file, which it then deletes.

    Here rather than in `ingest` so that a helper process imports this module
    only, not DuckDB: it starts in 0.35 s instead of 0.42 s.
    """
    text = path.read_bytes()
    path.unlink()
    return parse_chunk(PgnChunk(text, ends_stream), month, moves_max_elo)


@dataclass(frozen=True)
class RawGames:
    """The games of one chunk as spans of its text: no bytes object per game, so Arrow reads them all at once.

    Game i is `text[starts[i]:ends[i]]` (trailing whitespace cut off), its tags
    end at `head_ends[i]` (the first blank line, or the game's end). `segments`
    views the text, without a copy, as head, movetext and gap of each game in turn.
    """

    text: bytes
    starts: np.ndarray
    head_ends: np.ndarray
    ends: np.ndarray
    ends_stream: bool
    segments: pa.StringArray

    @classmethod
    def from_chunk(cls, chunk: PgnChunk) -> RawGames:
        """Find the games of a chunk.

        A game starts at the chunk's start and at each `GAME_BOUNDARY`, unless
        that boundary lies inside a `{ comment }` left open by the game before
        and closed after it. Its tag section ends at its first movetext line.
        CRLF line ends are normalised and invalid UTF-8 replaced here. Text
        before the first tag line, if any, is a game of its own (it will not parse).
        """
        text = chunk.text if chunk.text.startswith(b"\n") else b"\n" + chunk.text  # so a boundary may open it
        if b"\r" in text:
            text = text.replace(b"\r\n", b"\n")
        if not _is_utf8(text):
            text = text.decode("utf-8", errors="replace").encode()
        if len(text) >= 1 << 31:  # Arrow's string offsets below are 32-bit
            raise PgnFormatError(f"a chunk of {len(text):,} bytes: cut the stream with game_aligned_chunks")
        cuts = [match.end() - 2 for match in GAME_BOUNDARY.finditer(text)]
        starts, ends = [], []
        start = 0
        for cut, after in itertools.pairwise([*cuts, len(text), -1]):
            if after != -1 and text.rfind(b"{", start, cut) > text.rfind(b"}", start, cut):
                close, opening = text.find(b"}", cut, after), text.find(b"{", cut, after)
                if close != -1 and (opening == -1 or close < opening):  # the next piece closes the comment: join it
                    continue
            starts.append(start)
            ends.append(cut)
            start = cut + 1
        byte_view = np.frombuffer(text, dtype=np.uint8)
        starts_array = _trim(byte_view, np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64), step=1)
        ends_array = _trim(byte_view, np.array(ends, dtype=np.int64), starts_array, step=-1)
        games = ends_array > starts_array  # only the first piece can be blank
        starts_array, ends_array = starts_array[games], ends_array[games]
        head_ends = np.array(
            [
                end if (line := MOVETEXT_LINE.search(text, start, end)) is None else line.start()
                for start, end in zip(starts_array.tolist(), ends_array.tolist(), strict=True)
            ],
            dtype=np.int64,
        )
        head_ends = _trim(byte_view, head_ends, starts_array, step=-1)
        head_ends[byte_view[starts_array] != ord("[")] = starts_array[byte_view[starts_array] != ord("[")]
        offsets = np.append(np.column_stack([starts_array, head_ends, ends_array]).ravel(), len(text)).astype(np.int32)
        segments = pa.StringArray.from_buffers(len(offsets) - 1, pa.py_buffer(offsets), pa.py_buffer(text))
        return cls(text, starts_array, head_ends, ends_array, chunk.ends_stream, segments)

    def __len__(self) -> int:
        return len(self.starts)

    def heads(self) -> pa.StringArray:
        """Every game's tag section, as one Arrow array."""
        return self.segments.take(np.arange(len(self)) * 3)

    def movetexts(self, indices: np.ndarray) -> pa.StringArray:
        """The movetexts of the games at `indices`, as one Arrow array (they start with the blank line)."""
        return self.segments.take(indices * 3 + 1)

    def finals(self) -> pa.StringArray:
        """The result each movetext ends with, after a whitespace byte of the movetext, or NULL: RESULT_AT_END."""
        byte_view = np.frombuffer(self.text, dtype=np.uint8)
        finals = np.full(len(self), None, dtype=object)
        for result in RESULTS:
            token = np.frombuffer(result.encode(), dtype=np.uint8)
            rows = np.flatnonzero(self.ends - len(token) - 1 >= self.head_ends)  # room for it and a byte before it
            at = self.ends[rows] - len(token)
            ends_with = (byte_view[at[:, None] + np.arange(len(token))] == token).all(axis=1)
            finals[rows[ends_with & IS_WHITESPACE[byte_view[at - 1]]]] = result
        return pa.array(finals, pa.string())

    def containing(self, needle: bytes) -> pa.BooleanArray:
        """Whether each game's movetext contains `needle`: one `bytes.find` per hit, skipping to the next game.

        Faster than scanning each movetext whole when the needle is rare, as `[%eval` is.
        """
        starts, head_ends, ends = self.starts.tolist(), self.head_ends.tolist(), self.ends.tolist()
        found = np.zeros(len(starts), dtype=bool)
        at = self.text.find(needle)
        while at != -1:
            game = bisect.bisect_right(starts, at) - 1
            if game >= 0 and head_ends[game] <= at < ends[game]:
                found[game] = True
                at = ends[game]
            at = self.text.find(needle, at + 1)
        return pa.array(found)

    def containing_early(self, needle: bytes, within: int = 64) -> pa.BooleanArray:
        """Whether each game's movetext contains `needle`, for a needle most movetexts have in their first bytes.

        The first `within` bytes of all movetexts are compared at once, as one
        array (Lichess writes `[%clk` into the first move's comment); only the
        movetexts without it there are searched whole.
        """
        byte_view = np.frombuffer(self.text, dtype=np.uint8)
        at = self.head_ends[:, None] + np.arange(within)
        first_bytes = np.where(at < self.ends[:, None], byte_view[np.minimum(at, len(byte_view) - 1)], 0)
        offsets = within - len(needle) + 1
        found = np.ones((len(self), offsets), dtype=bool)
        for index, byte in enumerate(needle):
            found &= first_bytes[:, index : index + offsets] == byte
        found = found.any(axis=1)
        for game in np.flatnonzero(~found):
            found[game] = self.text.find(needle, self.head_ends[game], self.ends[game]) != -1
        return pa.array(found)

    def text_of(self, index: int) -> str:
        return self.text[self.starts[index] : self.ends[index]].decode()

    def head_of(self, index: int) -> str:
        return self.text[self.starts[index] : self.head_ends[index]].decode()


def _trim(byte_view: np.ndarray, edges: np.ndarray, limits: np.ndarray, *, step: int) -> np.ndarray:
    """Move each span edge over whitespace toward its other edge: starts forward (`step` 1), ends back (-1)."""
    edges = edges.copy()
    inside = edges - (step < 0)  # the byte an edge would move over
    while (
        moving := ((limits - edges) * step > 0) & IS_WHITESPACE[byte_view[np.minimum(inside, len(byte_view) - 1)]]
    ).any():
        edges += step * moving
        inside += step * moving
    return edges


def _is_utf8(text: bytes) -> bool:
    """Whether `text` is valid UTF-8, checked by Arrow without decoding it."""
    offsets = pa.py_buffer(np.array([0, len(text)], dtype=np.int64))
    try:
        pa.LargeStringArray.from_buffers(1, offsets, pa.py_buffer(text)).validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


@dataclass(frozen=True)
class Rejection:
    """One quarantined game: its index in the chunk, its Site if known, its text, and why."""

    index: int
    site: str | None
    text: str
    reason: str
    detail: str


def _read_tags(games: RawGames) -> tuple[np.ndarray, pa.StructArray, list[Rejection]]:
    """(indices, tags) of the games whose tags and result look right, and the other games' rejections.

    Every game of the chunk is checked at once by Arrow: the tag lines are
    matched and pivoted into columns, the movetexts' last characters matched
    against the results. Only the few games that fail a check go through
    `_rejection`, the per-game rules that also word the detail.
    """
    lines = pc.split_pattern(games.heads(), "\n")
    line_game = np.asarray(pc.list_parent_indices(lines))
    flat_lines = lines.flatten()
    pairs = pc.extract_regex(flat_lines, TAG_LINE_RE2)
    not_tags = np.flatnonzero(np.asarray(pairs.is_null()))
    not_blank = [line for line in not_tags.tolist() if flat_lines[line].as_py().strip(" \t\r")]  # few lines
    broken = np.zeros(len(games), dtype=bool)
    broken[line_game[not_blank]] = True
    tag_lines = _tag_lines(pc.struct_field(pairs, [0]), line_game, len(games))
    values = pc.struct_field(pairs, [1])

    def tag_values(tags: list[str], rows: np.ndarray | slice = slice(None)) -> list[pa.Array]:
        """The values of `tags` for the games at `rows`, NULL where a game lacks the tag: one `take` for all."""
        lines = tag_lines[[PIVOTED_TAGS.index(tag) for tag in tags]][:, rows]
        taken = values.take(pa.array(lines.ravel(), mask=lines.ravel() < 0))
        return [taken.slice(row * lines.shape[1], lines.shape[1]) for row in range(len(tags))]

    variant, result = tag_values(["Variant", "Result"])
    suspect = (
        broken
        | np.asarray(pc.fill_null(pc.not_equal(variant, "Standard"), False))
        | (tag_lines[PIVOTED_TAGS.index("FEN")] >= 0)
        | (tag_lines[PIVOTED_TAGS.index("SetUp")] >= 0)
        | ~np.asarray(pc.fill_null(pc.equal(result, games.finals()), False))
    )
    last = len(games) - 1
    if games.ends_stream and last >= 0:
        suspect[last] = True
    rejected: list[Rejection] = []
    for index in np.flatnonzero(suspect):
        rejection = _rejection(
            int(index), games.head_of(index), games.text_of(index), last=games.ends_stream and index == last
        )
        if rejection is None:
            suspect[index] = False
        else:
            rejected.append(rejection)
    kept = np.flatnonzero(~suspect)
    # Not tags, but read here: clocks are in almost every movetext, near its start; evals in few.
    has_clock = games.containing_early(b"[%clk").take(kept)
    has_eval = games.containing(b"[%eval").take(kept)
    columns = tag_values([field.name for field in TAGS_STRUCT if field.type == pa.string()], kept)
    struct = pa.StructArray.from_arrays([*columns, has_clock, has_eval], fields=list(TAGS_STRUCT))
    return kept, struct, rejected


def _tag_lines(names: pa.Array, line_game: np.ndarray, games: int) -> np.ndarray:
    """For each tag of `PIVOTED_TAGS` (a row), the line holding each game's value, or -1 if it has none.

    A tag given twice keeps its last line, as a dict built from the lines would.
    """
    names = pc.dictionary_encode(names)
    row_of_name = [PIVOTED_TAGS.index(name) if name in PIVOTED_TAGS else -1 for name in names.dictionary.to_pylist()]
    rows = np.array([*row_of_name, -1], dtype=np.int64)[np.asarray(pc.fill_null(names.indices, -1))]  # NULL -> -1
    lines = np.flatnonzero(rows >= 0)
    tag_lines = np.full((len(PIVOTED_TAGS), games), -1, dtype=np.int64)
    tag_lines[rows[lines], line_game[lines]] = lines  # in order, so a repeated tag's last line wins
    return tag_lines


def _rejection(index: int, head: str, text: str, *, last: bool) -> Rejection | None:
    """Why one game (its tag section and whole text) is quarantined, by the module docstring's rules, or None."""
    final = RESULT_AT_END.search(text[-8:])
    if final is None and last:
        return Rejection(index, _site_of(head), text, "truncated", "the stream ends inside this game")
    if not head:
        first_line = text.lstrip().partition("\n")[0]
        return Rejection(index, None, text, "broken_tags", f"no tag section: the game begins {first_line[:80]!r}")
    tags = dict(TAG_LINE.findall(head))
    bad = next((line for line in head.split("\n") if line.strip(" \t\r") and not TAG_LINE.fullmatch(line)), None)
    if bad is not None:
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


def _site_of(head: str) -> str | None:
    match = re.search(r'^\[Site "([^"]*)"\]', head, re.MULTILINE)
    return match.group(1) if match else None


def _parse_moves(movetexts: pa.StringArray) -> tuple[pa.ListArray, np.ndarray, list[str | None]]:
    """Legal-move check movetexts in Rust; return (UCI move lists, valid flags, error messages), one per text."""
    if not movetexts:
        return pa.array([], MOVE_LISTS), np.zeros(0, dtype=bool), []
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
    indices = MOVE_INDEX[(from_squares * 64 + to_squares) * 5 + PROMOTION_SLOT[promotions + 1]]
    uci = pa.DictionaryArray.from_arrays(pa.array(indices, mask=indices < 0), UCI_MOVES)
    moves = pa.ListArray.from_arrays(pa.array(np.concatenate(offsets).astype(np.int32)), uci)
    valid = np.concatenate([chunk.valid for chunk in chunks])
    errors = [error for chunk in chunks for error in chunk.parse_errors]
    return moves, valid, errors


def _parse_moves_one_by_one(movetexts: pa.StringArray) -> tuple[pa.ListArray, np.ndarray, list[str | None]]:
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
    texts = pa.array(moves, pa.list_(pa.string()))
    indices = pc.index_in(texts.values, value_set=UCI_MOVES).cast(pa.int16())
    as_lists = pa.ListArray.from_arrays(texts.offsets, pa.DictionaryArray.from_arrays(indices, UCI_MOVES))
    return as_lists, np.array(valid, dtype=bool), errors


def _games_columns(tags: pa.StructArray, month: str) -> tuple[dict[str, pa.Array], list[tuple[int, str]]]:
    """Every `games` column but the moves, built column-wise from the tags, and the (row, detail) of malformed values."""
    columns: dict[str, pa.Array] = {name: tags.field(tag) for name, tag in TEXT_COLUMNS.items()}
    columns["month"] = pa.array([month] * len(tags), pa.string())
    last_segment = pc.struct_field(pc.extract_regex(columns["site"], r"/(?P<id>[^/]+)$"), [0])
    columns["game_id"] = pc.if_else(
        pc.match_substring_regex(columns["site"], URL_WITH_PATH), last_segment, None
    )  # NULL: no URL
    columns["rated"] = pc.starts_with(columns["event"], "Rated")
    columns["variant"] = pc.fill_null(tags.field("Variant"), "Standard")
    malformed: list[tuple[str, pa.Array, pa.Array]] = []  # (tag, raw values, parsed values)
    for name, tag in INT_COLUMNS.items():
        values = tags.field(tag)
        numbers = pc.if_else(pc.match_substring_regex(values, r"^[+-]?[0-9]{1,4}$"), values, None)
        columns[name] = pc.cast(pc.utf8_ltrim(numbers, "+"), pa.int16())
        malformed.append((tag, pc.if_else(pc.equal(values, "?"), None, values), numbers))
    time_control = tags.field("TimeControl")
    columns["base_seconds"], columns["increment_seconds"], estimate, valid = _time_controls(time_control)
    columns["speed"] = _speed(time_control, estimate)
    malformed.append(("TimeControl", time_control, valid))
    stamp = pc.binary_join_element_wise(tags.field("UTCDate"), tags.field("UTCTime"), " ")
    columns["utc_time"] = pc.strptime(stamp, format="%Y.%m.%d %H:%M:%S", unit="s", error_is_null=True)
    columns["has_clock"] = tags.field("has_clock")
    columns["has_eval"] = tags.field("has_eval")
    bad: dict[int, str] = {}
    for tag, raw, parsed in malformed:
        for row in np.flatnonzero(np.asarray(pc.and_(pc.is_valid(raw), pc.is_null(parsed)))):
            bad.setdefault(int(row), f"{tag} {raw[row].as_py()!r} is not a valid value")
    return columns, sorted(bad.items())


def _time_controls(time_control: pa.Array) -> tuple[pa.Array, pa.Array, pa.Array, pa.Array]:
    """(base, increment, Lichess's estimate of a game's seconds, the value where valid) of each TimeControl.

    The estimate, base + 40 increments, is only made for a control of one period without a move count. Base
    and increment are whole seconds: NULL for a fraction. Lichess's `base+increment` and `-` are read
    column-wise; the few other values (every game of some files) one by one.
    """
    lichess = pc.extract_regex(time_control, LICHESS_TIME_CONTROL)
    base = pc.cast(pc.struct_field(lichess, [0]), pa.int32())
    increment = pc.cast(pc.struct_field(lichess, [1]), pa.int32())
    estimate = pc.add(pc.cast(base, pa.float64()), pc.multiply(pc.cast(increment, pa.float64()), 40.0))
    valid = pc.or_(pc.is_valid(lichess), pc.fill_null(pc.equal(time_control, "-"), False))
    others = np.flatnonzero(np.asarray(pc.and_(pc.invert(valid), pc.is_valid(time_control))))
    if not len(others):
        return base, increment, estimate, pc.if_else(valid, time_control, None)
    base_values, increment_values = base.to_pylist(), increment.to_pylist()
    estimate_values, valid_values = estimate.to_pylist(), valid.to_pylist()
    for row in others.tolist():
        value = time_control[row].as_py()
        valid_values[row] = TIME_CONTROL.fullmatch(value) is not None
        if valid_values[row] and (first := FIRST_PERIOD.match(value)):
            seconds, added = float(first.group("base")), float(first.group("increment") or 0)
            base_values[row] = int(seconds) if seconds.is_integer() else None
            increment_values[row] = int(added) if added.is_integer() else None
            if not first.group("moves") and not first.group("later"):
                estimate_values[row] = seconds + 40 * added
    return (
        pa.array(base_values, pa.int32()),
        pa.array(increment_values, pa.int32()),
        pa.array(estimate_values, pa.float64()),
        pc.if_else(pa.array(valid_values, pa.bool_()), time_control, None),
    )


def _speed(time_control: pa.Array, estimate: pa.Array) -> pa.Array:
    """Lichess's speed classes by estimated seconds (see `_time_controls`); '-' is correspondence; NULL where
    Lichess's rule does not apply."""
    estimate = np.asarray(pc.fill_null(estimate, -1.0))
    classes = np.searchsorted(SPEED_LIMITS, estimate, side="right")
    correspondence = np.asarray(pc.fill_null(pc.equal(time_control, "-"), False))
    classes[correspondence] = len(SPEEDS) - 1
    return SPEEDS.take(pa.array(classes, mask=(estimate < 0) & ~correspondence))
