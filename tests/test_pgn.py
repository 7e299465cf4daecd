"""The PGN reader on real Lichess files, hand-written adversarial games and random legal games."""

from __future__ import annotations

from pathlib import Path

import chess
import chess.pgn
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transcend_pipeline.pgn import PgnChunk, _parse_moves, game_aligned_chunks, parse_chunk

DUMP_2021 = "lichess_2021-10_dump_excerpt_999games.pgn"
DUMP_2013 = "lichess_2013-01_dump_excerpt_10games.pgn"
API_EXPORT = "lichess_api_export_cubicinfinity_2019-2022_866games.pgn"

HEADERS = (
    '[Event "Rated Blitz game"]\n[Site "https://lichess.org/{id}"]\n[White "alice"]\n[Black "bob"]\n'
    '[Result "{result}"]\n[UTCDate "2024.01.02"]\n[UTCTime "03:04:05"]\n[WhiteElo "1200"]\n[BlackElo "?"]\n'
    '[WhiteRatingDiff "+7"]\n[BlackRatingDiff "-7"]\n[TimeControl "180+2"]\n[Termination "Normal"]\n\n'
)
SCHOLARS_MATE = "1. e4 e5 2. Qh5 Nc6 3. Bc4 Nf6 4. Qxf7# 1-0"
SCHOLARS_MATE_UCI = ["e2e4", "e7e5", "d1h5", "b8c6", "f1c4", "g8f6", "h5f7"]


def game(movetext: str, *, game_id: str = "game0001", result: str = "1-0") -> str:
    return HEADERS.format(id=game_id, result=result) + movetext + "\n\n"


def read(data: bytes | str, chunk_bytes: int = 1 << 16, **options) -> tuple[list[dict], list[dict]]:
    """Cut a whole PGN text into game-aligned chunks and parse them the way ingest does: (accepted, quarantined) rows."""
    data = data.encode() if isinstance(data, str) else data
    pieces = [data[start : start + chunk_bytes] for start in range(0, len(data), chunk_bytes)]
    accepted: list[dict] = []
    quarantined: list[dict] = []
    for chunk in game_aligned_chunks(pieces, chunk_bytes=chunk_bytes):
        games, rejected = parse_chunk(chunk, "2024-01", **options)
        games_before = len(accepted) + len(quarantined)
        accepted += [row | {"position": row["position"] + games_before} for row in games.to_pylist()]
        quarantined += [row | {"position": row["position"] + games_before} for row in rejected.to_pylist()]
    return accepted, quarantined


def read_whole(data: bytes, **options) -> tuple[list[dict], list[dict]]:
    """The whole stream as one chunk: what any cut into chunks must reproduce."""
    (chunk,) = game_aligned_chunks([data], chunk_bytes=len(data) + 2)  # the chunk gains a leading newline
    games, rejected = parse_chunk(chunk, "2024-01", **options)
    return games.to_pylist(), rejected.to_pylist()


def python_chess_games(path: Path) -> list[chess.pgn.Game]:
    games = []
    with path.open(encoding="utf-8") as handle:
        while (parsed := chess.pgn.read_game(handle)) is not None:
            games.append(parsed)
    return games


# --- real Lichess files ---------------------------------------------------------------------------------------


def test_2021_dump_head_reads_every_game_with_its_quirks(lichess_samples: Path) -> None:
    accepted, quarantined = read((lichess_samples / DUMP_2021).read_bytes())
    assert (len(accepted), quarantined) == (999, [])
    first = accepted[0]
    assert first["game_id"] == "NRafdioG" and first["site"] == "https://lichess.org/NRafdioG"
    assert (first["white_elo"], first["black_elo"], first["white_rating_diff"], first["black_rating_diff"]) == (
        1703,
        1698,
        6,
        -6,
    )
    assert (first["speed"], first["base_seconds"], first["increment_seconds"]) == ("bullet", 60, 0)
    assert first["moves"][:3] == ["e2e4", "c7c5", "g1f3"] and first["ply_count"] == 65
    assert str(first["utc_time"]) == "2021-10-01 00:00:14"
    assert all(row["rated"] and row["variant"] == "Standard" for row in accepted)
    assert sum(row["has_clock"] for row in accepted) == 986
    assert sum(row["has_eval"] for row in accepted) == 96
    bots = [row for row in accepted if row["white_title"] == "BOT"]
    assert [(row["game_id"], row["black_title"]) for row in bots] == [("rraHlL72", "BOT")]
    abandoned = [row for row in accepted if row["termination"] == "Abandoned"]
    assert len(abandoned) == 17 and all(row["ply_count"] <= 1 for row in abandoned)
    assert sum(row["ply_count"] == 0 and row["moves"] == [] for row in accepted) == 13


def test_2013_dump_head_without_date_and_round(lichess_samples: Path) -> None:
    accepted, quarantined = read((lichess_samples / DUMP_2013).read_bytes())
    assert (len(accepted), quarantined) == (10, [])
    first = accepted[0]
    assert (first["game_id"], first["speed"], str(first["utc_time"])) == ("j1dkb5dw", "rapid", "2012-12-31 23:01:03")
    assert first["moves"][-1] == "f7e8" and first["result"] == "1-0"
    assert all(row["has_clock"] is False for row in accepted)


def test_api_export_quarantines_variants_and_nulls_unknown_elos(lichess_samples: Path) -> None:
    accepted, quarantined = read((lichess_samples / API_EXPORT).read_bytes())
    assert len(accepted) + len(quarantined) == 866
    assert len(quarantined) == 75 and {row["reason"] for row in quarantined} == {"non_standard_start"}
    assert all(row["variant"] == "Standard" for row in accepted)
    standard = [
        parsed.headers
        for parsed in python_chess_games(lichess_samples / API_EXPORT)
        if parsed.headers.get("Variant") == "Standard" and "FEN" not in parsed.headers
    ]
    assert [row["site"] for row in accepted] == [headers["Site"] for headers in standard]
    assert [(row["white_elo"], row["black_elo"]) for row in accepted] == [
        tuple(None if headers[tag] == "?" else int(headers[tag]) for tag in ("WhiteElo", "BlackElo"))
        for headers in standard
    ]
    assert sum(row["white_elo"] is None or row["black_elo"] is None for row in accepted) > 50
    assert any(not row["rated"] for row in accepted) and any(row["speed"] == "correspondence" for row in accepted)
    chess960 = next(row for row in quarantined if "Chess960" in row["detail"])
    assert chess960["site"].startswith("https://lichess.org/") and chess960["excerpt"].startswith("[Event ")


@pytest.mark.slow
@pytest.mark.parametrize("name", [DUMP_2021, DUMP_2013, API_EXPORT])
def test_moves_match_python_chess_on_every_sample_game(lichess_samples: Path, name: str) -> None:
    accepted, _ = read((lichess_samples / name).read_bytes())
    ours = {row["site"]: row["moves"] for row in accepted}
    theirs = {
        parsed.headers["Site"]: [move.uci() for move in parsed.mainline_moves()]
        for parsed in python_chess_games(lichess_samples / name)
        if parsed.headers.get("Variant", "Standard") == "Standard" and "FEN" not in parsed.headers
    }
    assert ours == theirs


# --- adversarial games ----------------------------------------------------------------------------------------


def only_game(text: str | bytes) -> tuple[list[dict], list[dict]]:
    accepted, quarantined = read(text)
    assert len(accepted) + len(quarantined) == 1
    return accepted, quarantined


@pytest.mark.parametrize("chunk_bytes", [5, 333, 1 << 16])
def test_event_tag_inside_a_comment_does_not_start_a_game(chunk_bytes: int) -> None:
    text = game('1. e4 { a comment that quotes\n[Event "Fake game"]\nin the middle } e5 1-0') + game(SCHOLARS_MATE)
    accepted, quarantined = read(text, chunk_bytes)
    assert quarantined == [] and [row["moves"] for row in accepted] == [["e2e4", "e7e5"], SCHOLARS_MATE_UCI]


@pytest.mark.slow
def test_chunks_read_like_the_whole_stream(lichess_samples: Path) -> None:
    samples = b"".join((lichess_samples / name).read_bytes() for name in (API_EXPORT, DUMP_2013, DUMP_2021))
    adversarial = (
        game('1. e4 { quotes\n[Event "Fake game"]\nin a comment } e5 1-0')
        + game("1. e4 { open comment, [Event on the next line:\n")
        + game("1. e4 e5 2. Ke3 1-0")
        + game(SCHOLARS_MATE).replace("\n", "\r\n")
        + game(SCHOLARS_MATE, result="0-1")
        + game(SCHOLARS_MATE)[:200]
    )
    data = b"\xef\xbb\xbfjunk before the first game\n" + samples + adversarial.encode()
    expected = read_whole(data, moves_max_elo=1500)
    # The 2013 excerpt ends without a newline, so its last line runs into the next file's `[Event` tag: that game
    # is quarantined (no result at its end), and the next one starts at its second tag, without its Event.
    assert len(expected[0]) == 791 + 10 + 999 - 1 + 3 and len(expected[1]) == 75 + 5
    assert sum(row["event"] is None for row in expected[0]) == 1

    for chunk_bytes in (3_000, 300_000):  # a cut at most games; a few cuts
        assert read(data, chunk_bytes, moves_max_elo=1500) == expected


@pytest.mark.parametrize("piece_bytes", [1_000, 40_000])  # pieces smaller than a chunk; pieces of several chunks
def test_chunks_are_whole_games_of_about_chunk_bytes(lichess_samples: Path, piece_bytes: int) -> None:
    data = (lichess_samples / DUMP_2021).read_bytes()
    longest_game = max(len(text) for text in data.split(b"\n[Event "))
    pieces = [data[start : start + piece_bytes] for start in range(0, len(data), piece_bytes)]
    chunks = list(game_aligned_chunks(pieces, chunk_bytes=10_000))
    assert b"".join(chunk.text for chunk in chunks) == b"\n" + data
    assert [chunk.ends_stream for chunk in chunks] == [False] * (len(chunks) - 1) + [True]
    for chunk in chunks[:-1]:
        assert chunk.text.startswith(b"\n[Event ") and chunk.text.endswith(b"\n")
        assert 10_000 - longest_game < len(chunk.text) < 2 * 10_000 + piece_bytes
    assert len(chunks) > len(data) // 40_000  # a piece of several chunks' worth is cut into several


def test_a_tag_given_twice_keeps_its_last_value() -> None:
    accepted, _ = only_game(game(SCHOLARS_MATE).replace('[White "alice"]', '[White "alice"]\n[White "carol"]'))
    assert accepted[0]["white"] == "carol"


def test_speed_classes_follow_lichess_estimate_of_base_plus_40_increments() -> None:
    limits = {"29+0": "ultraBullet", "30+0": "bullet", "0+1": "bullet", "179+0": "bullet", "180+0": "blitz"}
    limits |= {"0+12": "rapid", "479+0": "blitz", "1499+0": "rapid", "1500+0": "classical", "-": "correspondence"}
    text = "".join(
        game(SCHOLARS_MATE, game_id=f"speed{index:03d}").replace('TimeControl "180+2"', f'TimeControl "{control}"')
        for index, control in enumerate(limits)
    )
    accepted, quarantined = read(text)
    assert quarantined == [] and [row["speed"] for row in accepted] == list(limits.values())
    (no_control,) = read(game(SCHOLARS_MATE).replace('[TimeControl "180+2"]\n', ""))[0]
    assert (no_control["speed"], no_control["base_seconds"]) == (None, None)


def test_crlf_line_ends_and_byte_order_mark() -> None:
    text = "\ufeff" + (game("1. e4 e5\n2. Qh5 Nc6 3. Bc4 Nf6\n4. Qxf7# 1-0") * 2).replace("\n", "\r\n")
    for chunk_bytes in (3, 64, 1 << 16):  # a chunk may end between \r and \n
        accepted, quarantined = read(text.encode(), chunk_bytes)
        assert quarantined == [] and [row["moves"] for row in accepted] == [SCHOLARS_MATE_UCI] * 2
        assert accepted[0]["event"] == "Rated Blitz game" and accepted[0]["white"] == "alice"


def test_nags_glyphs_and_variations_keep_the_main_line() -> None:
    movetext = "1. e4 $1 e5 $2 (1... c5 2. Nf3 (2. c3 d5) d6) 2. Qh5!? Nc6?? 3. Bc4 { [%eval 1.2] } Nf6?! 4. Qxf7# 1-0"
    accepted, _ = only_game(game(movetext))
    assert accepted[0]["moves"] == SCHOLARS_MATE_UCI and accepted[0]["has_eval"] and not accepted[0]["has_clock"]


def test_clock_and_eval_flags_come_from_the_movetext_not_the_tags() -> None:
    quoting = game("1. e4 { [%clk 0:03:00] } e5 1-0").replace("[Termination", '[Opening "[%eval [%clk"]\n[Termination')
    evaluated = game("1. e4 { [%eval 0.2] } e5 1-0", game_id="evalgame")
    accepted, _ = read(quoting + evaluated)
    assert [(row["has_clock"], row["has_eval"]) for row in accepted] == [(True, False), (False, True)]


def test_a_clock_far_into_the_movetext_is_found() -> None:
    late = game("1. e4 { " + "a long comment " * 8 + "} e5 { [%clk 0:03:00] } 1-0", game_id="lateclck")
    without = game("1. e4 { [%cl } e5 { k 0:03:00] } 1-0", game_id="noclock0")
    accepted, _ = read(late + without)
    assert [(row["game_id"], row["has_clock"]) for row in accepted] == [("lateclck", True), ("noclock0", False)]


def test_draw_offer_comment_and_promotion_and_castling() -> None:
    movetext = (
        "1. e4 { White offers draw } d5 2. exd5 c6 3. dxc6 Nf6 4. cxb7 Nbd7 5. bxa8=Q Qc7 6. Nf3 e5 7. Be2 Bc5 "
        "8. O-O O-O 1/2-1/2"
    )
    accepted, _ = only_game(game(movetext, result="1/2-1/2"))
    assert accepted[0]["moves"][8] == "b7a8q" and accepted[0]["moves"][-2:] == ["e1g1", "e8g8"]
    assert accepted[0]["result"] == "1/2-1/2"


@pytest.mark.parametrize(
    ("text", "reason", "detail"),
    [
        (game("1. e4 e5 2. Ke3 Nc6 1-0"), "illegal_move", "Ke3"),
        (game("1. e4 e5 2. Zz9 Nc6 1-0"), "unparsable_movetext", "Zz9"),
        (game("1. e4 e5 2. Nf3"), "missing_result", "without a result"),
        (game("1. e4 e5 0-1"), "result_mismatch", "0-1"),
        (game("1. e4 e5 1-0").replace('[Result "1-0"]\n', ""), "missing_result", "None"),
        (game("1. e4 e5 1-0").replace('[White "alice"]', '[White "alice"'), "broken_tags", '[White "alice"'),
        (game("1. e4 e5 1-0").replace('[White "alice"]', "[White alice]"), "broken_tags", "White alice"),
        (game("1. e4 e5 1-0").replace('WhiteElo "1200"', 'WhiteElo "12x0"'), "broken_tags", "WhiteElo"),
        (game("1. e4 e5 1-0").replace('TimeControl "180+2"', 'TimeControl "3 min"'), "broken_tags", "TimeControl"),
        (
            game("1. Rh2+ 1-0").replace(
                "[Termination", '[FEN "8/8/8/8/8/8/k7/K6R w - - 0 1"]\n[SetUp "1"]\n[Termination'
            ),
            "non_standard_start",
            "FEN",
        ),
        (
            game("1. e4 e5 1-0").replace("[Termination", '[Variant "Atomic"]\n[Termination'),
            "non_standard_start",
            "Atomic",
        ),
        (game("1. e4 e5 2. -- Nf6 1-0"), "null_move", "(--) at ply 3"),
        (game("1. e4 e5 2. Z0 Nf6 1-0"), "null_move", "at ply 3"),
        (game("1. e4 e5 2. 0000 Nf6 1-0"), "null_move", "(0000)"),
        (game("1. e2e4 e7e5 2. g1f3 b8c6 1-0"), "uci_notation", "(g1f3) at ply 3"),
    ],
)
def test_bad_games_are_quarantined_with_their_reason(text: str, reason: str, detail: str) -> None:
    accepted, quarantined = read(text + game(SCHOLARS_MATE, game_id="goodgame"))  # the good game after it is read
    assert [row["game_id"] for row in accepted] == ["goodgame"]
    assert [(row["position"], row["reason"]) for row in quarantined] == [(0, reason)]
    assert detail in quarantined[0]["detail"]
    assert quarantined[0]["site"] == "https://lichess.org/game0001" or reason == "broken_tags"
    assert quarantined[0]["excerpt"] == text[:300].rstrip()


@pytest.mark.parametrize("cut", [40, 200, len(game(SCHOLARS_MATE)) - 10])
def test_game_cut_off_at_end_of_file_is_truncated(cut: int) -> None:
    text = game(SCHOLARS_MATE, game_id="complete") + game(SCHOLARS_MATE, game_id="cutoff00")[:cut]
    accepted, quarantined = read(text)
    assert [row["game_id"] for row in accepted] == ["complete"]
    assert [(row["position"], row["reason"]) for row in quarantined] == [(1, "truncated")]


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    accepted, quarantined = only_game(game(SCHOLARS_MATE).encode().replace(b"alice", b"al\xe9ice"))
    assert quarantined == [] and accepted[0]["white"] == "al\ufffdice"


def test_text_after_the_result_is_not_read_as_another_game() -> None:
    accepted, quarantined = read(game("1. e4 e5 1-0\n\n1. d4 d5 1-0") + game(SCHOLARS_MATE, game_id="after000"))
    assert quarantined == [] and [row["moves"] for row in accepted] == [["e2e4", "e7e5"], SCHOLARS_MATE_UCI]


def test_a_text_the_move_parser_reads_as_no_game_cannot_shift_the_others() -> None:
    moves, valid, errors = _parse_moves(pa.array(["1. e4 1-0", "", "1. d4 0-1"], pa.large_string()))
    assert moves.to_pylist() == [["e2e4"], [], ["d2d4"]]
    assert valid.tolist() == [True, False, True] and errors[1] == "the movetext reads as 0 games"


# Pieces of PGN that test where games start: after movetext, whatever the first tag; not inside a comment; across
# blank lines in a tag section; with no blank line before the next game; CRLF; junk lines.
PIECES = [
    game(SCHOLARS_MATE),
    game(SCHOLARS_MATE).replace("[Event", '[Variant "Standard"]\n[Event'),
    game(SCHOLARS_MATE).replace("[White", "\n[White"),
    game('1. e4 { a comment\n[White "not a tag"]\nthat goes on } e5 1-0'),
    game("1. e4 { open comment, [Event on the next line:\n"),
    game(SCHOLARS_MATE).rstrip("\n") + "\n",
    game(SCHOLARS_MATE).replace("\n", "\r\n"),
    "junk between games\n",
    game("1. e4 e5 2. Ke3 1-0"),
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pieces=st.lists(st.sampled_from(range(len(PIECES))), min_size=1, max_size=12),
    chunk_bytes=st.integers(1, 2048),
)
def test_any_cut_into_chunks_reads_like_the_whole_stream(pieces: list[int], chunk_bytes: int) -> None:
    data = "".join(PIECES[index] for index in pieces).encode()
    assert read(data, chunk_bytes) == read_whole(data)


def test_empty_input_gives_no_games() -> None:
    assert read(b"") == ([], [])
    assert read(b"\n\n  \n") == ([], [])


def test_text_before_the_first_game_is_quarantined_not_dropped() -> None:
    accepted, quarantined = read("garbage line\n" + game(SCHOLARS_MATE))
    assert len(accepted) == 1 and [row["reason"] for row in quarantined] == ["broken_tags"]
    for junk in ("x", "1-0", "junk\n\n*"):  # shorter than the longest result: the check must not read past it
        accepted, quarantined = read(junk)
        assert accepted == [] and [(row["position"], row["excerpt"]) for row in quarantined] == [(0, junk)]


def test_positions_count_across_chunks() -> None:
    text = "".join(game(SCHOLARS_MATE, game_id=f"g{index:07d}") for index in range(20))
    text += game("1. e4 e5 2. Ke2 Ke7 3. Kd3 Kd6 4. Kxd6 1-0", game_id="illegal0")
    accepted, quarantined = read(text, chunk_bytes=1000)  # about two games a chunk
    assert len(accepted) == 20 and [row["position"] for row in quarantined] == [20]


def test_moves_max_elo_keeps_moves_only_for_games_under_the_cap() -> None:
    high = game(SCHOLARS_MATE, game_id="highelo0").replace('BlackElo "?"', 'BlackElo "2100"')
    low = game(SCHOLARS_MATE, game_id="lowelo00").replace('BlackElo "?"', 'BlackElo "900"')
    unknown = game(SCHOLARS_MATE, game_id="unknown0")
    accepted, quarantined = read(high + low + unknown, moves_max_elo=1500)
    assert quarantined == []
    assert {row["game_id"]: (row["moves"], row["ply_count"]) for row in accepted} == {
        "highelo0": (None, None),
        "lowelo00": (SCHOLARS_MATE_UCI, 7),
        "unknown0": (None, None),
    }


# --- property-based -------------------------------------------------------------------------------------------


@st.composite
def random_games(draw: st.DrawFn) -> chess.pgn.Game:
    """A random legal game (python-chess picks the legal moves), with comments, clocks and NAGs here and there."""
    board = chess.Board()
    for _ in range(draw(st.integers(0, 90))):
        moves = list(board.legal_moves)
        if not moves:
            break
        board.push(draw(st.sampled_from(moves)))
    pgn_game = chess.pgn.Game.from_board(board)
    pgn_game.headers["Site"] = f"https://lichess.org/{draw(st.text('abcdefgh12345678', min_size=8, max_size=8))}"
    pgn_game.headers["Result"] = board.result() if board.is_game_over() else draw(st.sampled_from(["1-0", "0-1", "*"]))
    node = pgn_game
    while node.variations:
        node = node.variations[0]
        if draw(st.booleans()):
            node.comment = draw(st.sampled_from(["[%clk 0:01:00]", "White offers draw", "[%eval 0.3] [%clk 0:00:59]"]))
        if draw(st.integers(0, 9)) == 0:
            node.nags.add(draw(st.sampled_from([1, 2, 3, 4, 5, 6])))
    return pgn_game


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(games=st.lists(random_games(), min_size=1, max_size=3), chunk_bytes=st.integers(1, 4096))
def test_random_legal_games_come_back_move_for_move(games: list[chess.pgn.Game], chunk_bytes: int) -> None:
    text = "".join(str(pgn_game) + "\n\n" for pgn_game in games)
    accepted, quarantined = read(text, chunk_bytes)
    assert quarantined == []
    assert [row["moves"] for row in accepted] == [[move.uci() for move in g.mainline_moves()] for g in games]
    assert [row["result"] for row in accepted] == [g.headers["Result"] for g in games]


def test_a_chunk_without_accepted_games_keeps_the_column_types() -> None:
    games, rejected = parse_chunk(PgnChunk(game("1. e4 e5 2. Ke3 1-0").encode(), ends_stream=True), "2024-01")
    assert games.num_rows == 0 and rejected.num_rows == 1
    assert games.schema.field("moves").type == pa.list_(pa.dictionary(pa.int16(), pa.string()))
    assert games.schema.field("white_elo").type == pa.int16()
