"""The match engine: legal, complete, reproducible games; balanced colours; batching; rules and remedies."""

from __future__ import annotations

import io
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence

import chess
import chess.pgn
import numpy as np
import pytest
import torch

from transcend_pipeline import play
from transcend_pipeline.inference import legal_move_distribution
from transcend_pipeline.model import ChessFormer, config_for
from transcend_pipeline.opponents import RandomPolicy
from transcend_pipeline.panel.players import PanelConfig
from transcend_pipeline.play import (
    TERMINATIONS,
    GameRecord,
    MatchError,
    ModelPolicy,
    Pairing,
    Player,
    Rules,
    book_from_games,
    opening_book,
    pairings_against,
    play_matches,
    round_robin,
)
from transcend_pipeline.policy import Policy, sample


class FirstMove(Policy):
    """Deterministic: always the alphabetically first legal move (UCI)."""

    def distributions(self, boards: Sequence[chess.Board]) -> list[dict[chess.Move, float]]:
        return [{min(board.legal_moves, key=chess.Move.uci): 1.0} for board in boards]


class CountingPolicy(Policy):
    """Wraps a policy and records the size of every `distributions()` call."""

    def __init__(self, inner: Policy) -> None:
        self.inner = inner
        self.calls: list[int] = []

    def distributions(self, boards: Sequence[chess.Board]) -> list[dict[chess.Move, float]]:
        self.calls.append(len(boards))
        return self.inner.distributions(boards)


class ConstantEvaluator:
    """Every position is worth `value` to the side to move."""

    def __init__(self, value: float) -> None:
        self.value = value
        self.positions = 0

    def evaluate(self, boards: Sequence[chess.Board]) -> list[float]:
        self.positions += len(boards)
        return [self.value] * len(boards)


def random_player(name: str, rating: float | None = None) -> Player:
    return Player(name, RandomPolicy(), "random", rating)


def replay(record: GameRecord) -> chess.Board:
    """The record's moves replayed from the start, each checked for legality."""
    board = chess.Board()
    for uci in record.moves.split():
        move = chess.Move.from_uci(uci)
        assert move in board.legal_moves, f"illegal {uci} in game {record.game}"
        board.push(move)
    return board


def player_moves(record: GameRecord) -> int:
    """How many moves the rated player chose (the opening's plies are not chosen)."""
    opening_plies = {opening.name: len(opening.moves) for opening in opening_book()}[record.opening]
    first = 0 if record.player_colour == "white" else 1
    return sum(1 for ply in range(opening_plies, record.plies) if ply % 2 == first)


def assert_consistent(record: GameRecord, rules: Rules) -> None:
    """The result and termination follow from the final position, and the PGN says the same."""
    board = replay(record)
    assert board.ply() == record.plies
    assert record.termination in TERMINATIONS
    white_score = {"1-0": 1.0, "0-1": 0.0, "1/2-1/2": 0.5}[record.result]
    assert record.score == (white_score if record.player_colour == "white" else 1.0 - white_score)
    if record.termination == "checkmate":
        assert board.is_checkmate()
        assert record.result == ("0-1" if board.turn == chess.WHITE else "1-0")
    elif record.termination == "stalemate":
        assert board.is_stalemate() and record.result == "1/2-1/2"
    elif record.termination == "insufficient":
        assert board.is_insufficient_material() and record.result == "1/2-1/2"
    elif record.termination == "fifty_moves":
        assert board.halfmove_clock >= 100 and record.result == "1/2-1/2"
    elif record.termination == "threefold":
        assert board.is_repetition(3) and record.result == "1/2-1/2"
    elif record.termination == "ply_cap":
        assert board.ply() == rules.max_plies and board.outcome(claim_draw=False) is None
        assert record.result == "1/2-1/2"
    # No earlier position of the game had already ended it.
    earlier = chess.Board()
    for move in board.move_stack[:-1]:
        earlier.push(move)
        assert not earlier.is_game_over() and not earlier.is_repetition(3) and earlier.halfmove_clock < 100
    game = chess.pgn.read_game(io.StringIO(record.pgn))
    assert [move.uci() for move in game.mainline_moves()] == record.moves.split()
    assert game.headers["Result"] == record.result
    assert game.headers["White"] == record.white and game.headers["Black"] == record.black


def test_importing_the_evaluation_modules_loads_neither_torch_nor_matplotlib():
    """The Dagster definitions import these modules; torch and matplotlib must wait until a game or figure."""
    code = (
        "import sys; import transcend_pipeline.play, transcend_pipeline.opponents, transcend_pipeline.evaluation; "
        "print(sorted({'torch', 'matplotlib'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_opening_book_is_short_and_legal():
    book = opening_book()
    assert 20 <= len(book) <= 50
    assert all(2 <= len(opening.moves) <= 4 for opening in book)
    assert len({opening.moves for opening in book}) == len(book)


def test_random_games_are_legal_complete_and_consistent():
    rules = Rules(max_plies=160)
    pairings = [Pairing(random_player("a"), random_player("b", 1000.0), games=24)]
    records = play_matches(pairings, rules=rules, rng_seed=3)
    assert [record.game for record in records] == list(range(24))
    for record in records:
        assert_consistent(record, rules)
    terminations = Counter(record.termination for record in records)
    assert terminations["ply_cap"] > 0 and len(terminations) >= 2  # random play also mates or runs out of material


def test_colours_alternate_and_each_opening_is_played_from_both_sides():
    pairings = [Pairing(random_player("a"), random_player("b", 1000.0), games=10)]
    records = play_matches(pairings, rules=Rules(max_plies=30), rng_seed=0)
    assert Counter(record.player_colour for record in records) == {"white": 5, "black": 5}
    for first, second in zip(records[::2], records[1::2], strict=True):
        assert (first.white, second.white) == ("a", "b")
        assert first.opening == second.opening
        assert first.moves.split()[:2] == second.moves.split()[:2]
    assert len({record.opening for record in records}) == 5


def test_same_seed_same_games_other_seed_other_games():
    def games(seed: int) -> list[str]:
        pairing = Pairing(random_player("a"), random_player("b", 1000.0), games=6)
        return [record.moves for record in play_matches([pairing], rules=Rules(max_plies=40), rng_seed=seed)]

    assert games(1) == games(1)
    assert games(1) != games(2)


def test_one_distributions_call_per_policy_per_step():
    player = CountingPolicy(RandomPolicy())
    opponents = [CountingPolicy(RandomPolicy()) for _ in range(3)]
    pairings = [
        Pairing(Player("p", player), Player(f"o{i}", opponent, "random", 1000.0), games=8)
        for i, opponent in enumerate(opponents)
    ]
    rules = Rules(max_plies=50)
    records = play_matches(pairings, rules=rules, rng_seed=0)
    assert sum(player.calls) == sum(player_moves(record) for record in records)  # each move asked for once
    assert len(player.calls) <= rules.max_plies  # one call per step, not one per game
    assert max(player.calls) >= 12  # games of all three pairings shared a call
    for opponent in opponents:
        assert len(opponent.calls) <= rules.max_plies and max(opponent.calls) >= 4


def test_paper_rules_cut_games_at_move_90_as_draws():
    records = play_matches(
        [Pairing(Player("a", FirstMove()), random_player("b", 1000.0), games=4)], rules=Rules.paper(), rng_seed=0
    )
    assert all(record.plies <= 180 for record in records)
    assert all(record.result == "1/2-1/2" for record in records if record.termination == "ply_cap")
    assert all(record.remedy == "none" and record.tiebreak_moves == 0 for record in records)


def test_adjudication_at_the_cap_and_resignation_follow_the_evaluator():
    pairing = Pairing(random_player("a"), random_player("b", 1000.0), games=4)
    winning = play_matches(
        [pairing], rules=Rules(max_plies=20, adjudicate_cp=300), rng_seed=0, evaluator=ConstantEvaluator(0.9)
    )
    for record in winning:
        assert record.termination == "adjudicated" and record.plies == 20
        assert record.result == "1-0"  # White moves at ply 20 and its best move is worth 0.9
        assert record.remedy == "adjudicate_cp=300"
    even = play_matches(
        [pairing], rules=Rules(max_plies=20, adjudicate_cp=300), rng_seed=0, evaluator=ConstantEvaluator(0.5)
    )
    assert {(record.termination, record.result) for record in even} == {("adjudicated", "1/2-1/2")}
    resigning = play_matches(
        [pairing], rules=Rules(resign_cp=800, resign_plies=2), rng_seed=0, evaluator=ConstantEvaluator(0.01)
    )
    for record in resigning:
        board = replay(record)
        assert record.termination == "resign"
        assert record.result == ("0-1" if board.turn == chess.WHITE else "1-0")  # the side to move resigned


def test_rules_needing_an_evaluator_refuse_to_run_without_one():
    with pytest.raises(MatchError):
        play_matches(
            [Pairing(random_player("a"), random_player("b", 1.0), games=1)], rules=Rules(resign_cp=800), rng_seed=0
        )


@pytest.fixture(scope="module")
def tiny_model() -> ChessFormer:
    torch.manual_seed(0)
    return ChessFormer(config_for("tiny"))


def test_model_policy_is_a_distribution_over_legal_moves(tiny_model):
    boards = [chess.Board(), chess.Board()]
    for san in ("e4", "e5", "Nf3", "Nc6"):
        boards[1].push_san(san)
    policy = ModelPolicy(tiny_model, 1.0)
    distributions, masses = policy.distributions_and_illegal_mass(boards)
    for board, distribution in zip(boards, distributions, strict=True):
        assert set(distribution) == set(board.legal_moves)
        assert sum(distribution.values()) == pytest.approx(1.0, abs=1e-5)
    assert masses == [0.0, 0.0]  # a move-feature head has no mass outside the legal moves
    argmax = ModelPolicy(tiny_model, 0.0).distributions(boards)
    assert all(sorted(distribution.values())[-1] == 1.0 for distribution in argmax)


def test_transcript_model_reports_its_illegal_mass():
    torch.manual_seed(0)
    model = ChessFormer(config_for("tiny", move_features=False, board_input=False))
    pairing = Pairing(Player("m", ModelPolicy(model, 1.0), temperature=1.0), random_player("r", 1000.0), games=2)
    records = play_matches([pairing], rules=Rules(max_plies=12), rng_seed=0)
    for record in records:
        assert (
            0 < record.illegal_mass < player_moves(record)
        )  # an untrained head spreads mass over the whole vocabulary


def test_transcript_policy_reports_the_illegal_mass_of_its_distribution_pass():
    torch.manual_seed(0)
    model = ChessFormer(config_for("tiny", move_features=False, board_input=False))
    boards = [chess.Board(), chess.Board()]
    boards[1].push_san("d4")
    for temperature in (0.0, 1.0):
        distributions, masses = ModelPolicy(model, temperature).distributions_and_illegal_mass(boards)
        expected = legal_move_distribution(model, boards, temperature)
        assert masses == pytest.approx(expected.illegal_mass.tolist())
        assert distributions == expected.as_dicts()
    assert all(0 < mass < 1 for mass in masses)  # an untrained head spreads mass over the whole vocabulary


@pytest.mark.slow
def test_tiebreak_temperature_breaks_repetitions_and_is_recorded(tiny_model):
    def play(rules: Rules) -> list[GameRecord]:
        model = Player("tiny", ModelPolicy(tiny_model, 0.0), temperature=0.0)
        return play_matches(
            [Pairing(model, Player("first", FirstMove(), "first", 1000.0), games=4)], rules=rules, rng_seed=0
        )

    plain = play(Rules(max_plies=60))
    assert Counter(record.termination for record in plain)["threefold"] >= 3  # argmax against a fixed reply repeats
    assert all(record.tiebreak_moves == 0 for record in plain)
    remedied = play(Rules(max_plies=60, tiebreak_temperature=1.0))
    assert sum(record.tiebreak_moves for record in remedied) > 0
    assert all(record.remedy == "tiebreak_temperature=1" for record in remedied)
    assert np.mean([r.plies for r in remedied]) > np.mean([r.plies for r in plain])


def test_every_rated_player_meets_each_opponent_in_the_same_openings_and_colours():
    """The paired design: the opening of game g against opponent i depends on i and g only, never on who is rated."""
    book = opening_book()
    opponents = [random_player("a", 1000.0), random_player("b", 1200.0), random_player("c", 1400.0)]
    first = pairings_against(random_player("x"), opponents, 10, book_size=len(book))
    second = pairings_against(random_player("y"), opponents, 10, book_size=len(book))
    assert [pairing.games for pairing in first] == [4, 4, 4]  # 10 over 3, rounded up to even: both colours
    assert [pairing.opening_offset for pairing in first] == [0, len(book) // 3, 2 * len(book) // 3]
    records = play_matches([*first, *second], rules=Rules(max_plies=20), rng_seed=0, book=book)
    seen = {}
    for record in records:
        seen.setdefault(record.player, []).append((record.opponent, record.player_colour, record.opening))
    assert seen["x"] == seen["y"]
    assert len({opening for _, _, opening in seen["x"]}) == 6  # each opponent its own part of the book
    with pytest.raises(MatchError):
        pairings_against(random_player("x"), [], 10, book_size=len(book))


def test_round_robin_meets_every_pair_in_both_colours():
    players = [random_player(name, 1000.0) for name in "abcd"]
    pairings = round_robin(players, 3, book_size=30)
    assert [(p.player.name, p.opponent.name) for p in pairings] == [
        ("a", "b"),
        ("a", "c"),
        ("a", "d"),
        ("b", "c"),
        ("b", "d"),
        ("c", "d"),
    ]
    assert {p.games for p in pairings} == {4} and len({p.opening_offset for p in pairings}) == 6


def test_a_book_from_games_keeps_the_first_distinct_lines_and_refuses_too_few():
    games = [
        ["e2e4", "e7e5", "g1f3", "b8c6"],
        ["e2e4", "e7e5", "g1f3", "b8c6", "f1b5"],  # the same first four plies: not a new line
        ["d2d4", "d7d5"],  # too short
        ["f2f3", "e7e5", "g2g4", "d8h4"],  # mate: no game left to play
        ["d2d4", "g8f6", "c2c4", "e7e6"],
    ]
    book = book_from_games(games, count=2, plies=4)
    assert [opening.sans for opening in book] == [("e4", "e5", "Nf3", "Nc6"), ("d4", "Nf6", "c4", "e6")]
    assert book[1].name == "book 2: d4 Nf6 c4 e6"
    with pytest.raises(MatchError, match="only 2 distinct 4-ply openings"):
        book_from_games(games, count=3, plies=4)


def test_evaluation_ends_games_by_the_panel_dumps_rules():
    config = PanelConfig.for_profile("demo")
    rules = Rules.of_panel(config)
    assert (rules.max_plies, rules.resign_cp, rules.resign_plies, rules.adjudicate_cp) == (
        config.max_plies,
        config.resign_cp,
        config.resign_plies,
        config.adjudicate_cp,
    )


def test_the_repetition_shortcut_answers_as_python_chess() -> None:
    """Games that shuffle pieces back and forth (and now and then push a pawn or capture) repeat often; the check
    that skips python-chess's scan while too few reversible plies were played must agree with it on every ply."""
    rng = np.random.default_rng(4)
    repeats = Counter()
    for _ in range(6):
        board = chess.Board()
        for _ in range(120):
            moves = list(board.legal_moves)
            if not moves:
                break
            back = [m for m in moves if board.move_stack[-2:-1] and m.to_square == board.move_stack[-2].from_square]
            pool = back if back and rng.random() < 0.7 else moves
            board.push(pool[int(rng.integers(len(pool)))])
            for count in (2, 3):
                assert play._repeated(board, count) == board.is_repetition(count)
                repeats[count] += board.is_repetition(count)
    assert repeats[2] > 10 and repeats[3] > 3


def test_pgn_reads_back_to_the_same_game_and_tags() -> None:
    """python-chess reads the PGN back to the record's moves and result, with every tag the game was written with
    (checks, mates and promotions in the movetext, wrapped at 80 columns)."""
    rules = Rules(max_plies=200, tiebreak_temperature=0.5)
    rated = Player("a", RandomPolicy(), "random", temperature=0.3)
    records = play_matches([Pairing(rated, random_player("b", 1234.4), games=16)], rules=rules, rng_seed=8)
    for record in records:
        game = chess.pgn.read_game(io.StringIO(record.pgn))
        assert [move.uci() for move in game.mainline_moves()] == record.moves.split()
        assert list(game.headers.items()) == [
            ("Event", "transcend evaluation"),
            ("Site", "?"),
            ("Date", "????.??.??"),
            ("Round", f"0.{record.game + 1}"),
            ("White", record.white),
            ("Black", record.black),
            ("Result", record.result),
            ("ECO", record.opening_eco),
            ("Opening", record.opening),
            ("Termination", record.termination),
            ("Remedy", rules.remedy),
            ("BlackElo" if record.player_colour == "white" else "WhiteElo", "1234"),
            ("Temperature", "0.3"),
        ]
        movetext = record.pgn.split("\n\n", 1)[1]
        assert record.pgn.endswith(f" {record.result}\n") and max(map(len, movetext.splitlines())) <= 80
    assert any("#" in record.pgn for record in records) and any("=Q" in record.pgn for record in records)


def test_san_is_python_chess_san_on_every_kind_of_move() -> None:
    """The SAN written while playing (python-chess asked only where another piece of the kind reaches the same
    square) equals ``board.san_and_push`` on random games biased towards the rare cases, and leaves the same board."""
    rng = np.random.default_rng(4)
    seen: Counter[str] = Counter()
    for _ in range(40):
        ours, theirs = chess.Board(), chess.Board()
        while not theirs.is_game_over() and theirs.ply() < 300:
            moves = list(theirs.legal_moves)
            rare = [
                m
                for m in moves
                if theirs.is_capture(m) or m.promotion or theirs.is_castling(m) or theirs.gives_check(m)
            ]
            pool = rare if rare and rng.random() < 0.6 else moves
            move = pool[int(rng.integers(len(pool)))]
            san = play._san_and_push(ours, move)
            assert san == theirs.san_and_push(move)
            assert ours == theirs and ours.move_stack == theirs.move_stack
            seen.update(kind for kind, marker in SAN_MARKERS.items() if marker(san))
    assert seen.keys() == set(SAN_MARKERS)


SAN_MARKERS = {
    "mate": lambda san: san.endswith("#"),
    "check": lambda san: san.endswith("+"),
    "promotion": lambda san: "=" in san,
    "underpromotion": lambda san: any(f"={piece}" in san for piece in "RBN"),
    "short castling": lambda san: san.startswith("O-O") and not san.startswith("O-O-O"),
    "long castling": lambda san: san.startswith("O-O-O"),
    "pawn capture": lambda san: san[0].islower() and "x" in san,
    "disambiguated": lambda san: san[0] in "NBRQ" and len(san.rstrip("+#").replace("x", "")) > 3,
}


def test_the_end_of_a_game_is_found_as_python_chess_finds_it() -> None:
    """One legal-move search answers checkmate and stalemate, most positions need none (a pawn that can push and
    cannot be pinned off its file), and the last move's SAN tells check and mate; the verdict, read from the board
    alone or with that SAN, must be python-chess's on every ply of random games (which mate, stalemate and run out
    of material now and then), and on hand-made corner cases."""
    expected = {
        chess.Termination.CHECKMATE: "checkmate",
        chess.Termination.STALEMATE: "stalemate",
        chess.Termination.INSUFFICIENT_MATERIAL: "insufficient",
    }
    corner_cases = ["7k/5K2/6Q1/8/8/8/8/8 b - - 0 1", "k7/2K5/8/8/4B3/8/8/8 b - - 0 1", "8/8/8/8/8/8/8/K1k5 w - - 0 1"]
    positions = [(chess.Board(fen), None) for fen in corner_cases]
    rng = np.random.default_rng(0)
    for _ in range(20):
        board = chess.Board()
        while not board.is_game_over() and board.ply() < 400:
            moves = list(board.legal_moves)
            san = board.san_and_push(moves[int(rng.integers(len(moves)))])
            positions.append((board.copy(stack=False), san))
    seen = Counter()
    for board, san in positions:
        assert play._can_move(board, board.is_check()) == any(board.legal_moves)
        outcome = board.outcome(claim_draw=False)
        verdict = play._ended_by_rule(board)
        assert play._ended_by_rule(board, san) == verdict
        if outcome is not None and outcome.termination in expected:
            assert verdict == (outcome.result(), expected[outcome.termination])
            seen[verdict[1]] += 1
        elif board.halfmove_clock < 100:
            assert verdict is None
    assert seen.keys() == {"checkmate", "stalemate", "insufficient"}


def test_rows_are_sampled_as_one_distribution_at_a_time() -> None:
    """The batched sampler picks, for the same uniform draw, the move the per-game sampler picks."""
    rng = np.random.default_rng(1)
    counts = rng.integers(1, 40, size=300)
    probabilities = np.zeros((len(counts), counts.max()))
    for row, count in enumerate(counts):
        weights = rng.random(count) ** 8  # peaked, with near-zero entries
        weights[rng.random(count) < 0.2] = 0.0
        weights[0] += 1e-12
        probabilities[row, :count] = weights / weights.sum()
    probabilities[0, : counts[0]] = 0.0
    probabilities[0, counts[0] - 1] = 1.0  # one-hot at the last slot (τ = 0)
    uniforms = rng.random(len(counts))
    uniforms[1] = 0.0
    slots = play._sample_rows(probabilities, uniforms)
    moves = [chess.Move(0, square) for square in range(1, 64)]
    for row, count in enumerate(counts):
        expected = sample(moves[:count], probabilities[row, :count], _Fixed(uniforms[row]))
        assert moves[min(int(slots[row]), count - 1)] == expected


class _Fixed:
    """A generator whose next uniform draw is fixed."""

    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


@pytest.mark.slow
def test_model_games_do_not_depend_on_the_games_in_flight(tiny_model):
    """Each game samples with its own generator: one, three or all games in flight play the same games."""
    pairings = [
        Pairing(Player("m", ModelPolicy(tiny_model, 1.0), temperature=1.0), random_player("r", 1000.0), games=3),
        Pairing(Player("a", ModelPolicy(tiny_model, 0.0), temperature=0.0), random_player("r", 1000.0), games=2),
    ]
    games = {
        in_flight: [
            record.moves
            for record in play_matches(pairings, rules=Rules(max_plies=30), rng_seed=2, max_in_flight=in_flight)
        ]
        for in_flight in (1, 3, 256)
    }
    assert games[1] == games[3] == games[256]
