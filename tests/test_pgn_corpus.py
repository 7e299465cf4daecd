"""PGN written by other tools than Lichess: every game is counted, and read as python-chess reads it or quarantined.

The corpus in tests/data/pgn_corpus imitates ChessBase, cutechess-cli, FIDE broadcasts, fastchess and hand-made
null-move and UCI games (see its README). python-chess is the reference for where games start and what their
moves are, except in the two places where this reader differs on purpose (tested by name below).
"""

from __future__ import annotations

import collections
import io
import random
from pathlib import Path

import chess
import chess.pgn
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transcend_pipeline import ingest as ingest_module
from transcend_pipeline import pgn
from transcend_pipeline.ingest import ingest_month
from transcend_pipeline.pgn import PgnChunk, game_aligned_chunks, parse_chunk
from transcend_pipeline.warehouse import open_warehouse

CORPUS = Path(__file__).parent / "data" / "pgn_corpus"
MONTH = "2024-01"
REASONS = {
    "truncated",
    "broken_tags",
    "non_standard_start",
    "missing_result",
    "result_mismatch",
    "illegal_move",
    "unparsable_movetext",
    "null_move",
    "uci_notation",
    "duplicate_game_id",
}

# file -> (games python-chess reads in it, {position: reason} of the games to quarantine; all others are accepted)
CORPUS_FILES = {
    "chessbase.pgn": (6, {}),
    "cutechess.pgn": (5, {}),
    "fide_broadcast.pgn": (5, {}),
    "variant_first.pgn": (6, {0: "non_standard_start", 3: "non_standard_start"}),
    "nulls_and_uci.pgn": (
        11,
        {
            1: "null_move",  # --
            2: "null_move",  # Z0
            3: "null_move",  # 1. e4 0000 2. Nf3: the parser skips 0000, so Nf3 is Black's, and illegal
            4: "null_move",  # @@@@
            6: "uci_notation",  # 2. g1f3 (the pawn pushes before it are SAN too)
            8: "uci_notation",  # 4. e1g1
            9: "uci_notation",  # 5. h7g8q
            10: "illegal_move",  # 3. Qxf7#
        },
    ),
    "stockfish_tests.pgn": (6, {0: "non_standard_start", 2: "non_standard_start"}),
}
# file -> {position: (base_seconds, increment_seconds, speed)} of its accepted games
CORPUS_TIME_CONTROLS = {
    "chessbase.pgn": dict.fromkeys(range(6), (None, None, None)),  # no TimeControl tag
    "cutechess.pgn": {
        0: (60, 0, None),  # 40/60
        1: (60, 0, None),
        2: (60, 1, "bullet"),  # 60+1
        3: (120, 1, None),  # 40/120+1
        4: (300, 0, "blitz"),  # 300
    },
    "fide_broadcast.pgn": {
        **dict.fromkeys(range(3), (5400, 30, None)),  # 40/5400+30:1800+30
        **dict.fromkeys(range(3, 5), (7200, 0, None)),  # 40/7200:20/3600:900+30
    },
    "variant_first.pgn": {
        1: (300, 3, "blitz"),
        2: (600, 0, "rapid"),
        4: (None, None, None),
        5: (1800, 20, "classical"),
    },
    "nulls_and_uci.pgn": dict.fromkeys([0, 5, 7], (None, None, None)),
    "stockfish_tests.pgn": {
        1: (60, 1, "bullet"),
        3: (10, None, "ultraBullet"),
        4: (120, 1, "bullet"),
        5: (5, 0, "ultraBullet"),
    },
}

SCHOLARS_MATE = "1. e4 e5 2. Qh5 Nc6 3. Bc4 Nf6 4. Qxf7# 1-0"
SCHOLARS_MATE_UCI = ["e2e4", "e7e5", "d1h5", "b8c6", "f1c4", "g8f6", "h5f7"]
LEGALS_MATE = "1. e4 e5 2. Nf3 d6 3. Bc4 Bg4 4. Nc3 g6 5. Nxe5 Bxd1 6. Bxf7+ Ke7 7. Nd5# 1-0"


def game(movetext: str, *, site: str | None = "https://lichess.org/game0001", result: str = "1-0", **tags: str) -> str:
    """A game with Lichess's first tags; `site=None` leaves Site out, keyword tags are added or replace a default."""
    pairs = {"Event": "Rated Blitz game", "Site": site, "White": "alice", "Black": "bob", "Result": result}
    pairs |= {"TimeControl": "180+2"} | tags
    head = "".join(f'[{name} "{value}"]\n' for name, value in pairs.items() if value is not None)
    return head + "\n" + movetext + "\n\n"


def read_whole(data: bytes) -> tuple[list[dict], list[dict]]:
    """The whole stream as one chunk: (accepted, quarantined) rows, what any cut into chunks must reproduce."""
    chunks = list(game_aligned_chunks([data], chunk_bytes=2 * len(data) + 16))
    assert len(chunks) == 1
    games, rejected = parse_chunk(chunks[0], MONTH)
    return games.to_pylist(), rejected.to_pylist()


def read(data: bytes | str, chunk_bytes: int | None = None) -> tuple[list[dict], list[dict]]:
    """Cut a PGN text into pieces of `chunk_bytes` and chunks of about as many (None: one chunk) and parse them.

    Positions are counted from the stream's first game, as ingest counts them.
    """
    data = data.encode() if isinstance(data, str) else data
    if chunk_bytes is None:
        return read_whole(data)
    pieces = [data[start : start + chunk_bytes] for start in range(0, len(data), chunk_bytes)]
    accepted: list[dict] = []
    quarantined: list[dict] = []
    for chunk in game_aligned_chunks(pieces, chunk_bytes=chunk_bytes):
        games, rejected = parse_chunk(chunk, MONTH)
        before = len(accepted) + len(quarantined)
        accepted += [row | {"position": row["position"] + before} for row in games.to_pylist()]
        quarantined += [row | {"position": row["position"] + before} for row in rejected.to_pylist()]
    return accepted, quarantined


def python_chess_games(data: bytes | str) -> list[chess.pgn.Game]:
    """Every game python-chess reads in a text (CRLF read as LF, as a file opened in text mode would)."""
    text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
    handle = io.StringIO(text, newline=None)
    games = []
    while (parsed := chess.pgn.read_game(handle)) is not None:
        games.append(parsed)
    return games


def uci_moves(parsed: chess.pgn.Game) -> list[str]:
    return [move.uci() for move in parsed.mainline_moves()]


def by_position(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda row: row["position"])


# --- the corpus -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_python_chess_reads_the_corpus_as_the_tests_expect(name: str) -> None:
    """The corpus itself: python-chess reads the expected games, and finds an error only in the illegal one."""
    count, quarantined = CORPUS_FILES[name]
    games = python_chess_games((CORPUS / name).read_bytes())
    assert len(games) == count
    assert {position for position, parsed in enumerate(games) if parsed.errors} == {
        position for position, reason in quarantined.items() if reason == "illegal_move"
    }


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_every_corpus_game_is_read_once_at_any_chunk_size(name: str) -> None:
    """read = accepted + quarantined = python-chess's count, and any cut into chunks gives the same rows."""
    data = (CORPUS / name).read_bytes()
    whole = read_whole(data)
    accepted, quarantined = whole
    assert sorted(row["position"] for row in accepted + quarantined) == list(range(CORPUS_FILES[name][0]))
    for chunk_bytes in (64, 300, 4096):
        assert read(data, chunk_bytes) == whole, f"chunk_bytes={chunk_bytes}"


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_accepted_corpus_games_have_python_chess_moves(name: str) -> None:
    """Each game not meant for quarantine is accepted with exactly python-chess's main line."""
    data = (CORPUS / name).read_bytes()
    count, quarantined = CORPUS_FILES[name]
    theirs = python_chess_games(data)
    accepted, _ = read_whole(data)
    assert {row["position"]: row["moves"] for row in accepted} == {
        position: uci_moves(theirs[position]) for position in range(count) if position not in quarantined
    }


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_quarantined_corpus_games_have_their_documented_reason(name: str) -> None:
    _, quarantined = read_whole((CORPUS / name).read_bytes())
    assert {row["reason"] for row in quarantined} <= REASONS
    assert {row["position"]: row["reason"] for row in quarantined} == CORPUS_FILES[name][1]


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_corpus_time_controls(name: str) -> None:
    """Multi-period and moves/seconds controls and integer engine controls are read into columns, not quarantined."""
    expected = CORPUS_TIME_CONTROLS[name]
    accepted, _ = read_whole((CORPUS / name).read_bytes())
    assert {
        row["position"]: (row["base_seconds"], row["increment_seconds"], row["speed"])
        for row in accepted
        if row["position"] in expected  # which games are accepted at all is another test's
    } == expected


def test_chessbase_tags_after_a_blank_line_are_read() -> None:
    """A blank line inside a ChessBase tag section does not end it: the tags after it (Elo, ECO) are columns too."""
    accepted, _ = read_whole((CORPUS / "chessbase.pgn").read_bytes())
    assert [(row["white"], row["white_elo"], row["black_elo"], row["eco"]) for row in by_position(accepted)] == [
        ("Carlsen, Magnus", 2830, 2749, "C67"),
        ("Gukesh, D", 2725, 2769, "B90"),
        ("Praggnanandhaa, R", 2743, 2734, "D37"),
        ("Firouzja, Alireza", 2759, 2760, "B18"),
        ("Ding, Liren", 2780, 2727, "E97"),
        ("Van Foreest, Jorden", 2677, 2658, "C41"),
    ]
    assert {row["site"] for row in accepted} == {"Wijk aan Zee NED"} and not any(row["has_clock"] for row in accepted)


def test_broadcast_clock_comments_are_seen() -> None:
    accepted, _ = read_whole((CORPUS / "fide_broadcast.pgn").read_bytes())
    assert len(accepted) == 5 and all(row["has_clock"] for row in accepted)


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_ingest_counts_every_corpus_game(name: str, tmp_path: Path) -> None:
    """Through ingest_month into DuckDB: games_read = accepted + quarantined = python-chess's count, ids unique."""
    count, quarantined = CORPUS_FILES[name]
    warehouse = tmp_path / "w.duckdb"
    result = ingest_month(CORPUS / name, MONTH, warehouse, staging_dir=tmp_path / "staging")
    assert (result.games_read, result.games_accepted, result.games_quarantined) == (
        count,
        count - len(quarantined),
        len(quarantined),
    )
    assert result.quarantine_reasons == dict(collections.Counter(quarantined.values()))
    with open_warehouse(warehouse, read_only=True) as connection:
        reasons = connection.execute(
            "SELECT position, reason FROM games_quarantine WHERE month = ?", [MONTH]
        ).fetchall()
        (games, game_ids) = connection.execute(
            "SELECT count(*), count(DISTINCT game_id) FROM games WHERE month = ?", [MONTH]
        ).fetchone()
    assert dict(reasons) == quarantined
    assert games == game_ids == count - len(quarantined)


# --- TimeControl ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("time_control", "base", "increment", "speed"),
    [
        ("?", None, None, None),
        ("-", None, None, "correspondence"),
        ("300", 300, 0, "blitz"),
        ("180+2", 180, 2, "blitz"),
        ("15", 15, 0, "ultraBullet"),
        ("600+5", 600, 5, "rapid"),
        ("1500", 1500, 0, "classical"),
        ("10+0.1", 10, None, "ultraBullet"),  # fastchess: a fraction is no whole second
        ("40/60.5", None, 0, None),
        ("40/7200", 7200, 0, None),
        ("40/5400+30", 5400, 30, None),
        ("*180", None, None, None),
        ("40/7200:20/3600:900+30", 7200, 0, None),
        ("40/5400+30:1800+30", 5400, 30, None),
    ],
)
def test_time_control_forms_of_the_pgn_standard(
    time_control: str, base: int | None, increment: int | None, speed: str | None
) -> None:
    """Base and increment come from the first period; a speed class only for one period without a move count."""
    accepted, quarantined = read(game(SCHOLARS_MATE, TimeControl=time_control))
    assert quarantined == []
    assert [(row["base_seconds"], row["increment_seconds"], row["speed"]) for row in accepted] == [
        (base, increment, speed)
    ]


@pytest.mark.parametrize("time_control", ["abc", "5+", "10+", "40/", "3 min", "10+0.1234"])
def test_a_time_control_of_no_standard_form_is_broken_tags(time_control: str) -> None:
    """What neither the standard nor an engine-match tool writes is a broken tag."""
    accepted, quarantined = read(game(SCHOLARS_MATE, TimeControl=time_control))
    assert accepted == [] and [row["reason"] for row in quarantined] == ["broken_tags"]
    assert "TimeControl" in quarantined[0]["detail"]


# --- game boundaries ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gap", ["\n", "\n\n", "\n\n\n"])
@pytest.mark.parametrize("first_tag", ['[Variant "Standard"]', '[White "carol"]', '[ECO "C20"]', '[Annotator "me"]'])
def test_any_tag_line_after_movetext_starts_a_game(first_tag: str, gap: str) -> None:
    """Not only `[Event `: the first tag line after a movetext line starts the next game, blank lines or not."""
    second = f'{first_tag}\n[Site "https://lichess.org/second00"]\n[Result "0-1"]\n\n1. d4 d5 0-1\n'
    text = game("1. e4 e5 1-0", site="https://lichess.org/first000").rstrip("\n") + gap + second
    for chunk_bytes in (16, 100, None):
        accepted, quarantined = read(text, chunk_bytes)
        assert quarantined == [], f"chunk_bytes={chunk_bytes}"
        assert [(row["game_id"], row["moves"]) for row in by_position(accepted)] == [
            ("first000", ["e2e4", "e7e5"]),
            ("second00", ["d2d4", "d7d5"]),
        ]


def test_tag_like_lines_inside_an_open_comment_do_not_start_a_game() -> None:
    """A comment spanning lines may quote tags or clocks at a line's start: still one game, as for python-chess."""
    movetext = '1. e4 { engine log:\n[%clk 0:03:00]\n[White "not a tag"]\n[Event "nor this"]\n} e5 2. Nf3 1-0'
    text = game(movetext) + game(SCHOLARS_MATE, site="https://lichess.org/after000")
    assert [uci_moves(parsed) for parsed in python_chess_games(text)] == [["e2e4", "e7e5", "g1f3"], SCHOLARS_MATE_UCI]
    for chunk_bytes in (5, 64, None):
        accepted, quarantined = read(text, chunk_bytes)
        assert quarantined == [], f"chunk_bytes={chunk_bytes}"
        assert [row["moves"] for row in by_position(accepted)] == [["e2e4", "e7e5", "g1f3"], SCHOLARS_MATE_UCI]


def test_two_blank_lines_inside_a_tag_section_do_not_end_it_unlike_python_chess() -> None:
    """Our rule: blank lines never end a tag section. python-chess ends it at two in a row (a game without moves)."""
    text = (
        '[Event "Tata Steel Masters"]\n[Site "Wijk aan Zee NED"]\n[White "Carlsen, Magnus"]\n\n\n'
        '[Black "Giri, Anish"]\n[Result "1-0"]\n\n1.e4 e5 2.Nf3 1-0\n'
    )
    assert [uci_moves(parsed) for parsed in python_chess_games(text)] == [[], ["e2e4", "e7e5", "g1f3"]]
    for chunk_bytes in (16, 64, None):
        accepted, quarantined = read(text, chunk_bytes)
        assert quarantined == [], f"chunk_bytes={chunk_bytes}"
        assert [(row["white"], row["black"], row["moves"]) for row in accepted] == [
            ("Carlsen, Magnus", "Giri, Anish", ["e2e4", "e7e5", "g1f3"])
        ]


def test_tags_right_after_a_result_start_a_game_unlike_python_chess() -> None:
    """Our rule: `1-0` then `[Event ...]` on the next line is two games, the second with its tags.

    python-chess reads the second game's tags as the first game's movetext and gives the second game none.
    """
    first = game(LEGALS_MATE, site="https://lichess.org/first000").rstrip("\n")
    second = game("1. d4 d5 0-1", site="https://lichess.org/second00", result="0-1", White="carol")
    text = first + "\n" + second
    assert [parsed.headers["White"] for parsed in python_chess_games(text)] == ["alice", "?"]
    for chunk_bytes in (16, 100, None):
        accepted, quarantined = read(text, chunk_bytes)
        assert quarantined == [], f"chunk_bytes={chunk_bytes}"
        assert [(row["game_id"], row["white"], row["result"], len(row["moves"])) for row in by_position(accepted)] == [
            ("first000", "alice", "1-0", 13),
            ("second00", "carol", "0-1", 2),
        ]


# --- positions and game ids -----------------------------------------------------------------------------------


def test_accepted_and_quarantined_games_share_one_numbering_in_stream_order() -> None:
    """The accepted table's `position` numbers games with the quarantined ones, from the chunk's first game."""
    texts = [
        game(SCHOLARS_MATE, site="https://lichess.org/good0000"),
        game("1. e4 e5 2. Ke3 1-0", site="https://lichess.org/illegal0"),
        game(SCHOLARS_MATE, site="https://lichess.org/good0002"),
        game("1. e4 -- 2. d4 1-0", site="https://lichess.org/nullmove"),
        game(SCHOLARS_MATE, site="https://lichess.org/good0004"),
    ]
    games, rejected = parse_chunk(PgnChunk("".join(texts).encode(), ends_stream=True), MONTH)
    assert pa.types.is_integer(games.schema.field("position").type)
    assert list(zip(games.column("position").to_pylist(), games.column("game_id").to_pylist(), strict=True)) == [
        (0, "good0000"),
        (2, "good0002"),
        (4, "good0004"),
    ]
    assert list(zip(rejected.column("position").to_pylist(), rejected.column("reason").to_pylist(), strict=True)) == [
        (1, "illegal_move"),
        (3, "null_move"),
    ]


def test_game_id_is_a_url_last_segment_or_else_a_hash_of_the_game_text() -> None:
    """A Site that is no URL (an OTB venue, `?`, none) cannot tell one event's games apart: its game's text can."""
    texts = [
        game(SCHOLARS_MATE, site="https://lichess.org/abcd1234"),
        game(SCHOLARS_MATE, site="https://www.chess.com/game/live/123"),
        game(SCHOLARS_MATE, site="Wijk aan Zee NED", Round="1.1"),
        game(LEGALS_MATE, site="Wijk aan Zee NED", Round="1.2"),
        game(SCHOLARS_MATE, site="?"),
        game(SCHOLARS_MATE, site=None),
    ]
    accepted, quarantined = read("".join(texts))
    assert quarantined == []
    game_ids = [row["game_id"] for row in by_position(accepted)]
    assert game_ids[:2] == ["abcd1234", "123"]
    assert all(game_ids) and len(set(game_ids)) == len(texts)
    assert not {"Wijk aan Zee NED", "?"} & set(game_ids)
    assert [row["game_id"] for row in by_position(read("".join(texts), 200)[0])] == game_ids  # not chunk-dependent


def test_a_repeated_game_id_is_quarantined_month_wide(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ingest keeps a game id's first game and quarantines every later one, even chunks apart.

    A Lichess URL repeats (an exact copy, and another game under the same URL); an OTB game repeats exactly,
    while another game of the same event and Site is a different game.
    """
    repeated_url = game(SCHOLARS_MATE, site="https://lichess.org/dupl1234")
    otb = game(SCHOLARS_MATE, site="Wijk aan Zee NED", Round="1.1", White="Carlsen, Magnus")
    otb_other = game(LEGALS_MATE, site="Wijk aan Zee NED", Round="1.2", White="Giri, Anish")
    fillers = [game(LEGALS_MATE, site=f"https://lichess.org/fill{index:04d}") for index in range(30)]
    same_url_other_game = game("1. d4 d5 2. c4 1-0", site="https://lichess.org/dupl1234")
    texts = [repeated_url, otb, *fillers[:15], otb_other, repeated_url, *fillers[15:], otb, same_url_other_game]
    dump = tmp_path / "month.pgn"
    dump.write_text("".join(texts))

    chunks: list[PgnChunk] = []

    def small_chunks(pieces, *args, **kwargs):
        """Chunks of ~4 games, so the repeats land in other chunks than their first games."""
        for chunk in pgn.game_aligned_chunks(pieces, chunk_bytes=1_000):
            chunks.append(chunk)
            yield chunk

    monkeypatch.setattr(ingest_module, "game_aligned_chunks", small_chunks)
    warehouse = tmp_path / "w.duckdb"
    result = ingest_month(dump, MONTH, warehouse, staging_dir=tmp_path / "staging")
    assert len(chunks) >= 5
    assert (result.games_read, result.games_accepted, result.games_quarantined) == (36, 33, 3)
    assert result.quarantine_reasons == {"duplicate_game_id": 3}
    with open_warehouse(warehouse, read_only=True) as connection:
        quarantined = connection.execute(
            "SELECT position, reason FROM games_quarantine WHERE month = ? ORDER BY position", [MONTH]
        ).fetchall()
        per_id = connection.execute("SELECT game_id, count(*) FROM games WHERE month = ? GROUP BY game_id", [MONTH])
        counts = dict(per_id.fetchall())
        (kept,) = connection.execute("SELECT moves FROM games WHERE game_id = 'dupl1234'").fetchone()
        otb_ids = connection.execute("SELECT white, game_id FROM games WHERE site = 'Wijk aan Zee NED'").fetchall()
    assert quarantined == [(18, "duplicate_game_id"), (34, "duplicate_game_id"), (35, "duplicate_game_id")]
    assert len(counts) == 33 and set(counts.values()) == {1}
    assert list(kept) == SCHOLARS_MATE_UCI  # the first game under the URL, not the last
    assert sorted(white for white, _ in otb_ids) == ["Carlsen, Magnus", "Giri, Anish"]
    assert len({game_id for _, game_id in otb_ids}) == 2


# --- property-based -------------------------------------------------------------------------------------------


def random_game(seed: int, plies: int) -> tuple[list[str], str, str]:
    """A legal game of at most `plies` moves from a seeded random walk: (UCI moves, movetext, result)."""
    rng = random.Random(seed)
    board = chess.Board()
    for _ in range(plies):
        moves = sorted(board.legal_moves, key=chess.Move.uci)
        if not moves:
            break
        board.push(rng.choice(moves))
    pgn_game = chess.pgn.Game.from_board(board)
    result = board.result() if board.is_game_over() else rng.choice(["1-0", "0-1", "1/2-1/2", "*"])
    pgn_game.headers["Result"] = result
    movetext = pgn_game.accept(chess.pgn.StringExporter(headers=False, columns=80))
    return [move.uci() for move in board.move_stack], movetext, result


@st.composite
def tagged_game(draw: st.DrawFn, index: int) -> tuple[str, list[str]]:
    """Game `index` of a stream, its tags in any order (any may come first), maybe a blank line among them."""
    moves, movetext, result = random_game(draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 40)))
    site = draw(st.sampled_from([f"https://lichess.org/rand{index:04d}", "?", "Budapest HUN", None]))
    tags = {
        "Event": draw(st.sampled_from(["Rated Blitz game", "Tata Steel Masters", "?"])),
        "Site": site,
        "Round": str(index + 1),  # no two games of a stream are the same text
        "White": draw(st.sampled_from(["alice", "Carlsen, Magnus", "Stockfish 16"])),
        "Black": "bob",
        "Result": result,
        "ECO": "A00",
        "TimeControl": draw(st.sampled_from(["180+2", "300", "40/5400+30:1800+30", "-", "?"])),
        "Variant": "Standard" if draw(st.booleans()) else None,
    }
    lines = draw(st.permutations([f'[{name} "{value}"]' for name, value in tags.items() if value is not None]))
    if draw(st.booleans()):
        lines.insert(draw(st.integers(1, len(lines) - 1)), "")
    return "\n".join(lines) + "\n\n" + movetext, moves


@st.composite
def pgn_streams(draw: st.DrawFn) -> tuple[bytes, list[list[str]]]:
    """1-12 distinct games, one or two blank lines between them, maybe CRLF: (the text, each game's moves)."""
    games = [draw(tagged_game(index)) for index in range(draw(st.integers(1, 12)))]
    text = games[0][0]
    for game_text, _ in games[1:]:
        text += draw(st.sampled_from(["\n\n", "\n\n\n"])) + game_text
    text += "\n"
    if draw(st.booleans()):
        text = text.replace("\n", "\r\n")
    return text.encode(), [moves for _, moves in games]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=pgn_streams(), chunk_bytes=st.integers(1, 4096))
def test_random_games_with_tags_in_any_order_are_each_read_once(
    stream: tuple[bytes, list[list[str]]], chunk_bytes: int
) -> None:
    data, moves = stream
    accepted, quarantined = read(data, chunk_bytes)
    assert quarantined == []
    assert [row["moves"] for row in by_position(accepted)] == moves
