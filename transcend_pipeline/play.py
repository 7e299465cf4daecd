"""The match engine: many games in flight, one batched `distributions()` call per policy per step.

The reference code played one game at a time with one forward pass per move. Here every game waiting on the same
policy object joins one call, so a model scores all its positions in a single forward pass and a Stockfish
opponent spreads its positions over an engine pool (`transcend_pipeline.opponents`). The rules a game ends by —
draw claims, resignation, the ply cap, and the remedy for deterministic-vs-deterministic repetition — are a
`Rules` value recorded in every game, never hard-coded.

For example::

    records = play_matches([Pairing(model, opponent, games=20)], rules=Rules.paper(), rng_seed=0)
    records[0].termination, records[0].pgn
"""

from __future__ import annotations

import functools
import itertools
import operator
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import chess
import chess.pgn
import numpy as np

from transcend_pipeline.policy import Policy, sample
from transcend_pipeline.ratings import win_probability

if TYPE_CHECKING:
    from transcend_pipeline.inference import LegalMoveDistribution
    from transcend_pipeline.model import ChessFormer
    from transcend_pipeline.panel.players import PanelConfig

TERMINATIONS = (
    "checkmate",
    "stalemate",
    "insufficient",
    "fifty_moves",
    "threefold",
    "resign",
    "ply_cap",
    "adjudicated",
)

#: Short, common ECO lines (2–4 plies, SAN): games at low temperature differ because their openings do.
OPENINGS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("C44", "King's Knight Opening: Normal Variation", ("e4", "e5", "Nf3", "Nc6")),
    ("C42", "Petrov's Defense", ("e4", "e5", "Nf3", "Nf6")),
    ("C30", "King's Gambit", ("e4", "e5", "f4")),
    ("C23", "Bishop's Opening", ("e4", "e5", "Bc4")),
    ("C25", "Vienna Game", ("e4", "e5", "Nc3")),
    ("B50", "Sicilian Defense", ("e4", "c5", "Nf3", "d6")),
    ("B30", "Sicilian Defense: Old Sicilian", ("e4", "c5", "Nf3", "Nc6")),
    ("B40", "Sicilian Defense: French Variation", ("e4", "c5", "Nf3", "e6")),
    ("B23", "Sicilian Defense: Closed", ("e4", "c5", "Nc3")),
    ("C00", "French Defense: Normal Variation", ("e4", "e6", "d4", "d5")),
    ("B12", "Caro-Kann Defense", ("e4", "c6", "d4", "d5")),
    ("B01", "Scandinavian Defense: Mieses-Kotroc Variation", ("e4", "d5", "exd5", "Qxd5")),
    ("B07", "Pirc Defense", ("e4", "d6", "d4", "Nf6")),
    ("B02", "Alekhine Defense", ("e4", "Nf6", "e5", "Nd5")),
    ("B06", "Modern Defense", ("e4", "g6", "d4", "Bg7")),
    ("D30", "Queen's Gambit Declined", ("d4", "d5", "c4", "e6")),
    ("D20", "Queen's Gambit Accepted", ("d4", "d5", "c4", "dxc4")),
    ("D10", "Slav Defense", ("d4", "d5", "c4", "c6")),
    ("D02", "Queen's Pawn Game: Symmetrical Variation", ("d4", "d5", "Nf3", "Nf6")),
    ("D00", "Queen's Pawn Game: London System", ("d4", "d5", "Bf4")),
    ("E60", "King's Indian Defense", ("d4", "Nf6", "c4", "g6")),
    ("E00", "Indian Defense: Normal Variation", ("d4", "Nf6", "c4", "e6")),
    ("A46", "Indian Defense: Knights Variation", ("d4", "Nf6", "Nf3")),
    ("A80", "Dutch Defense", ("d4", "f5")),
    ("A20", "English Opening: King's English Variation", ("c4", "e5")),
    ("A15", "English Opening: Anglo-Indian Defense", ("c4", "Nf6")),
    ("A30", "English Opening: Symmetrical Variation", ("c4", "c5")),
    ("A07", "King's Indian Attack", ("Nf3", "d5", "g3")),
    ("A00", "Hungarian Opening", ("g3", "d5", "Bg2")),
    ("A01", "Nimzo-Larsen Attack", ("b3", "e5", "Bb2")),
    ("A02", "Bird Opening", ("f4", "d5")),
    ("A40", "Englund Gambit", ("d4", "e5")),
)


@dataclass(frozen=True)
class Opening:
    eco: str
    name: str
    moves: tuple[chess.Move, ...]
    sans: tuple[str, ...]  # as python-chess writes them (check suffixes included)


def opening_book() -> list[Opening]:
    """The fixed set of openings, with their moves parsed (a typo in the table fails here, not mid-match)."""
    book = []
    for eco, name, sans in OPENINGS:
        board = chess.Board()
        moves = tuple(board.push_san(san) for san in sans)
        replay = chess.Board()
        book.append(Opening(eco, name, moves, tuple(replay.san_and_push(move) for move in moves)))
    return book


def book_from_games(games: Sequence[Sequence[str]], *, count: int, plies: int) -> list[Opening]:
    """The first `count` distinct `plies`-ply beginnings of `games` (UCI move lists, in the order given), as a book.

    Evaluation samples its book from a bucket's own games (in a seeded order): every rated player meets the same
    openings, in positions the bucket's players actually reach. Lines after which the game is over, and games
    shorter than `plies`, are skipped; fewer than `count` distinct lines is an error, not a smaller design."""
    book: dict[tuple[str, ...], Opening] = {}
    for game in games:
        line = tuple(game[:plies])
        if len(line) < plies or line in book:
            continue
        board = chess.Board()
        sans = tuple(board.san_and_push(chess.Move.from_uci(uci)) for uci in line)
        if board.is_game_over():
            continue
        book[line] = Opening("?", f"book {len(book) + 1}: {' '.join(sans)}", tuple(board.move_stack), sans)
        if len(book) == count:
            return list(book.values())
    raise MatchError(f"only {len(book)} distinct {plies}-ply openings in {len(games)} games; {count} wanted")


class MatchError(ValueError):
    """A pairing or rule set the engine cannot play (e.g. resignation asked for without an evaluator)."""


@dataclass(frozen=True)
class Rules:
    """How a game ends. Draw claims (threefold, fifty moves), stalemate and insufficient material always apply.

    max_plies: the ply cap (opening plies included). At the cap the game is a draw — the paper's "past move 90"
        rule is `max_plies=180` — unless `adjudicate_cp` is set.
    adjudicate_cp: at the cap, the evaluator's best move for the mover decides: beyond ±adjudicate_cp a win or a
        loss, else a draw (termination 'adjudicated').
    resign_cp, resign_plies: a side resigns after `resign_plies` own moves whose best option is below −resign_cp.
    tiebreak_temperature: the remedy for deterministic play against a deterministic opponent, which otherwise
        ends in threefold repetition (35–45% of argmax games in our prototype): in a position that occurred
        before, the rated player samples at max(τ, tiebreak_temperature). Only a `ModelPolicy` has a temperature
        to raise; every game records how many moves the remedy changed.
    """

    max_plies: int = 300
    adjudicate_cp: int | None = None
    resign_cp: int | None = None
    resign_plies: int = 6
    tiebreak_temperature: float | None = None

    @classmethod
    def paper(cls) -> Rules:
        """Zhang et al.'s protocol: games cut at move 90 and scored as draws, no resignation, no remedy."""
        return cls(max_plies=180)

    @classmethod
    def of_panel(cls, config: PanelConfig) -> Rules:
        """The rules the panel's dump plays by (its ply cap, resignation and adjudication), so that ratings fitted
        in evaluation games and the Elos written into the dump describe games that end the same way."""
        return cls(
            max_plies=config.max_plies,
            adjudicate_cp=config.adjudicate_cp,
            resign_cp=config.resign_cp,
            resign_plies=config.resign_plies,
        )

    @property
    def needs_evaluator(self) -> bool:
        return self.adjudicate_cp is not None or self.resign_cp is not None

    def needs_value(self, board: chess.Board) -> bool:
        """Whether `ending` needs the mover's best value in this position (to resign, or to adjudicate at the cap)."""
        return self.resign_cp is not None or (self.adjudicate_cp is not None and board.ply() >= self.max_plies)

    def ending(self, board: chess.Board, best: float | None, losing_streak: dict[bool, int]) -> tuple[str, str] | None:
        """(result, termination) if a game not over by the laws of chess ends before the mover's move, by resignation
        or at the ply cap, else None: one rule for evaluation games and the panel's dumps. `best` is the mover's
        expected score of its best move, where `needs_value`; `losing_streak` counts each side's run of own moves
        below −resign_cp, and is brought up to date for the mover here."""
        mover_wins, mover_loses = ("1-0", "0-1") if board.turn == chess.WHITE else ("0-1", "1-0")
        if self.resign_cp is not None:
            losing = best < float(win_probability(-self.resign_cp))
            losing_streak[board.turn] = losing_streak[board.turn] + 1 if losing else 0
            if losing_streak[board.turn] >= self.resign_plies:
                return (mover_loses, "resign")
        if board.ply() < self.max_plies:
            return None
        if self.adjudicate_cp is None:
            return ("1/2-1/2", "ply_cap")
        if best > float(win_probability(self.adjudicate_cp)):
            return (mover_wins, "adjudicated")
        if best < float(win_probability(-self.adjudicate_cp)):
            return (mover_loses, "adjudicated")
        return ("1/2-1/2", "adjudicated")

    @property
    def remedy(self) -> str:
        """The repetition remedy in force, as recorded in each game row."""
        parts = []
        if self.adjudicate_cp is not None:
            parts.append(f"adjudicate_cp={self.adjudicate_cp}")
        if self.tiebreak_temperature is not None:
            parts.append(f"tiebreak_temperature={self.tiebreak_temperature:g}")
        return ", ".join(parts) or "none"


class Evaluator(Protocol):
    """The mover's expected score (0..1) of its best move in each position (for resignation and adjudication)."""

    def evaluate(self, boards: Sequence[chess.Board]) -> list[float]: ...


@dataclass(frozen=True, eq=False)
class Player:
    """A named policy in a match: the rated side (no rating, usually a temperature) or a fixed-rating opponent."""

    name: str
    policy: Policy
    kind: str = "model"  # model / panel / best_player / clone / consensus / stockfish / random
    rating: float | None = None
    temperature: float | None = None


@dataclass(frozen=True)
class Pairing:
    """`games` games of `player` (the side being rated) against `opponent`; `player` is White in even games.

    Game g opens with the book's line (opening_offset + g // 2) mod its length, so two pairings with the same
    offset play the same openings in the same colours: a paired design when the offset belongs to the opponent."""

    player: Player
    opponent: Player
    games: int
    opening_offset: int = 0


@dataclass(frozen=True)
class GameRecord:
    """One finished game, flat so it becomes a table row (`asdict`); `pgn` opens in any chess GUI."""

    pairing: int
    game: int
    player: str
    player_kind: str
    temperature: float | None
    opponent: str
    opponent_kind: str
    opponent_rating: float | None
    player_colour: str  # 'white' or 'black'
    white: str
    black: str
    result: str  # '1-0', '0-1', '1/2-1/2'
    score: float  # the player's: 1, 0.5 or 0
    termination: str  # one of TERMINATIONS
    plies: int
    opening_eco: str
    opening: str
    moves: str  # UCI, space-separated, from the standard start
    pgn: str
    illegal_mass: float | None  # summed over the player's moves, when its policy reports it
    tiebreak_moves: int
    remedy: str

    def as_row(self) -> dict:
        return asdict(self)


@dataclass
class _Game:
    """A game in flight."""

    pairing: int
    index: int
    player: Player
    opponent: Player
    opening: Opening
    rng: np.random.Generator
    board: chess.Board = field(default_factory=chess.Board)
    last_san: str = ""  # the last move's SAN: its '+' or '#' saves a search for the end of the game
    losing_streak: dict[bool, int] = field(default_factory=lambda: {chess.WHITE: 0, chess.BLACK: 0})
    illegal_mass: float | None = None
    tiebreak_moves: int = 0

    @property
    def player_is_white(self) -> bool:
        return self.index % 2 == 0

    def side(self, colour: bool) -> Player:
        return self.player if colour == self.player_is_white else self.opponent

    @property
    def players_turn(self) -> bool:
        return self.board.turn == self.player_is_white


def pairings_against(player: Player, opponents: Sequence[Player], games: int, *, book_size: int) -> list[Pairing]:
    """`games` games of `player` spread evenly over `opponents` (an even number against each, rounded up, so
    colours balance). Opponent i's games start at book line i·book_size/len(opponents): every rated player meets
    opponent i in the same openings and colours (a paired design), and the opponents together cover the book."""
    if not opponents:
        raise MatchError("an evaluation needs at least one opponent")
    per_opponent = 2 * -(-games // (2 * len(opponents)))
    return [
        Pairing(player, opponent, per_opponent, opening_offset=i * book_size // len(opponents))
        for i, opponent in enumerate(opponents)
    ]


def round_robin(players: Sequence[Player], games_per_pair: int, *, book_size: int) -> list[Pairing]:
    """Every pair of `players` meets `games_per_pair` times (rounded up to even: both colours of each opening), each
    pair from its own place in the book."""
    per_pair = 2 * -(-games_per_pair // 2)
    pairs = [(a, b) for i, a in enumerate(players) for b in players[i + 1 :]]
    return [
        Pairing(a, b, per_pair, opening_offset=k * book_size // max(len(pairs), 1)) for k, (a, b) in enumerate(pairs)
    ]


def play_matches(
    pairings: Sequence[Pairing],
    *,
    rules: Rules,
    rng_seed: int,
    evaluator: Evaluator | None = None,
    max_in_flight: int = 256,
    book: Sequence[Opening] | None = None,
) -> list[GameRecord]:
    """Play every pairing's games, up to `max_in_flight` at once, and return them in (pairing, game) order.

    Each step, the games waiting on one policy object are scored in one `distributions()` call; moves are
    sampled with each game's own generator (seeded by `rng_seed`, pairing and game index), so a game does not
    depend on which others shared its batches (Stockfish's skill levels draw their own randomness). Openings come
    from `book` (default `opening_book()`) as `Pairing` says, each played twice with colours reversed.

    The games where the rated players move and those where their opponents move advance as two halves, one
    step apart: the opponents' calls (Stockfish searches, in the engine pool's processes) run while this thread
    runs the players' calls (the model's forward pass) and the bookkeeping of every move (rules, sampling, SAN),
    so neither the engines nor the model wait for the other's half. A policy that `AsksAhead` gets its positions
    as soon as they are known and is read when its moves are needed; any other opponent is called in a thread.
    """
    if rules.needs_evaluator and evaluator is None:
        raise MatchError(f"rules {rules} resign or adjudicate, which needs an evaluator")
    if any(pairing.games < 0 for pairing in pairings):
        raise MatchError("a pairing cannot have a negative number of games")
    pending = _games(pairings, rng_seed, list(book) if book is not None else opening_book())
    finished: list[GameRecord] = []
    tiebreak: dict[int, Policy] = {}  # per policy object, its copy at the tie-break temperature
    players_turn: list[_Game] = []
    replies: list[tuple[list[_Game], Callable[[], list[chess.Move]]]] = []  # the opponents' calls in progress
    with ThreadPoolExecutor(thread_name_prefix="opponent") as threads:
        while True:
            in_flight = len(players_turn) + sum(len(games) for games, _ in replies)
            fresh = _unfinished(list(itertools.islice(pending, max_in_flight - in_flight)), rules, evaluator, finished)
            players_turn += [game for game in fresh if game.players_turn]
            waiting = [game for game in fresh if not game.players_turn]
            replies += _ask_opponents(waiting, rules, tiebreak, threads if replies or players_turn else None)
            if not (players_turn or replies):
                break
            for policy, games in _groups(players_turn, rules, tiebreak):
                _push(games, _choose(policy, games))
            moved = _unfinished(players_turn, rules, evaluator, finished)
            asked = _ask_opponents(moved, rules, tiebreak, threads if replies else None)
            players_turn = []
            for games, reply in replies:
                _push(games, reply())
                players_turn += _unfinished(games, rules, evaluator, finished)
            replies = asked
    return sorted(finished, key=lambda record: (record.pairing, record.game))


def _games(pairings: Sequence[Pairing], rng_seed: int, book: Sequence[Opening]) -> Iterator[_Game]:
    """The games to play, created lazily (a long evaluation never holds all its boards at once)."""
    for p, pairing in enumerate(pairings):
        for g in range(pairing.games):
            opening = book[(pairing.opening_offset + g // 2) % len(book)]
            game = _Game(p, g, pairing.player, pairing.opponent, opening, np.random.default_rng([rng_seed, p, g, 1]))
            for move in opening.moves:
                game.board.push(move)
            game.last_san = opening.sans[-1]
            yield game


def _unfinished(
    games: Sequence[_Game], rules: Rules, evaluator: Evaluator | None, finished: list[GameRecord]
) -> list[_Game]:
    """The games that go on; the others are recorded in `finished`."""
    going_on = []
    for game, termination in zip(games, _terminations(games, rules, evaluator), strict=True):
        if termination is None:
            going_on.append(game)
        else:
            finished.append(_record(game, *termination, rules))
    return going_on


def _terminations(games: Sequence[_Game], rules: Rules, evaluator: Evaluator | None) -> list[tuple[str, str] | None]:
    """(result, termination) for each game that ends before its next move, else None."""
    ended: list[tuple[str, str] | None] = [_ended_by_rule(game.board, game.last_san) for game in games]
    evaluate = [i for i, game in enumerate(games) if ended[i] is None and rules.needs_value(game.board)]
    values = (
        dict(zip(evaluate, evaluator.evaluate([games[i].board for i in evaluate]), strict=True)) if evaluate else {}
    )
    for i, game in enumerate(games):
        if ended[i] is None:
            ended[i] = rules.ending(game.board, values.get(i), game.losing_streak)
    return ended


def _ended_by_rule(board: chess.Board, last_san: str | None = None) -> tuple[str, str] | None:
    """The game's end by the laws of chess (draws claimed at once), in python-chess's order, or None.

    One search for a legal move answers both checkmate and stalemate (python-chess's `is_checkmate` and
    `is_stalemate` search once each), and most positions need none (`_can_move`); the SAN of the move that led here
    (its '+' or '#'), where given, already says whether the side to move is in check and, if so, can answer it."""
    if last_san is None:
        in_check = board.is_check()
        can_move = _can_move(board, in_check)
    else:
        in_check = last_san[-1] in "+#"
        can_move = last_san[-1] == "+" or (not in_check and _can_move(board, in_check))
    if not can_move and in_check:
        return ("0-1" if board.turn == chess.WHITE else "1-0", "checkmate")
    if board.is_insufficient_material():
        return ("1/2-1/2", "insufficient")
    if not can_move:
        return ("1/2-1/2", "stalemate")
    if board.halfmove_clock >= 100:
        return ("1/2-1/2", "fifty_moves")
    if _repeated(board, 3):
        return ("1/2-1/2", "threefold")
    return None


#: Per king square, its rank and diagonals: a pawn off them can be pinned only along its file, where it still pushes.
_PIN_LINES = [
    functools.reduce(operator.or_, (chess.BB_RAYS[king][square] for square in chess.SQUARES if square & 7 != king & 7))
    for king in chess.SQUARES
]


def _can_move(board: chess.Board, in_check: bool) -> bool:
    """``any(board.generate_legal_moves())``, answered at once where the side to move, not in check, has a pawn that
    can push and cannot be pinned off its file (that push is legal): python-chess's search sets up its pins and
    attacks first, which costs more than the move's push (this halves the end-of-game check, measured)."""
    if not in_check:
        pawns, empty = board.pawns & board.occupied_co[board.turn], ~board.occupied
        pushers = ((pawns << 8) & empty) >> 8 if board.turn == chess.WHITE else ((pawns >> 8) & empty) << 8
        if pushers & ~_PIN_LINES[board.king(board.turn)]:
            return True
    return any(board.generate_legal_moves())


def _repeated(board: chess.Board, count: int) -> bool:
    """``board.is_repetition(count)``, answered at once while too few reversible plies have been played for it: a
    position recurs after at least four of them (python-chess scans the whole game otherwise, on every ply)."""
    return board.halfmove_clock >= 4 * (count - 1) and board.is_repetition(count)


def _groups(games: Sequence[_Game], rules: Rules, tiebreak: dict[int, Policy]) -> list[tuple[Policy, list[_Game]]]:
    """The games to move, grouped by the policy object that moves them (one `distributions()` call each)."""
    groups: dict[int, tuple[Policy, list[_Game]]] = {}
    for game in games:
        mover = game.side(game.board.turn)
        policy = mover.policy
        if (
            rules.tiebreak_temperature is not None
            and mover is game.player
            and isinstance(policy, ModelPolicy)
            and _repeated(game.board, 2)
        ):
            if id(policy) not in tiebreak:
                tiebreak[id(policy)] = policy.with_temperature(max(policy.temperature, rules.tiebreak_temperature))
            policy = tiebreak[id(policy)]
            game.tiebreak_moves += 1
        groups.setdefault(id(policy), (policy, []))[1].append(game)
    return list(groups.values())


@runtime_checkable
class AsksAhead(Protocol):
    """A policy whose moves are worked out outside this process (Stockfish's): `ask` hands the positions over at
    once and returns what collects their distributions later, or None where it cannot queue them (then it is
    called in a thread like any other policy). Asked and collected from this thread, the positions leave as soon as
    they are known (a thread would first have to win the GIL from the model's bookkeeping) and the answers wait in
    the pipes, waking no reader: about 5% less CPU a model move than the same pipelined engines read in threads,
    Stockfish's own included (measured)."""

    def ask(self, boards: Sequence[chess.Board]) -> Callable[[], list[dict[chess.Move, float]]] | None: ...


def _ask_opponents(
    games: Sequence[_Game], rules: Rules, tiebreak: dict[int, Policy], threads: ThreadPoolExecutor | None
) -> list[tuple[list[_Game], Callable[[], list[chess.Move]]]]:
    """The opponents' calls for `games`: asked ahead, started in `threads`, or made here when no other call is in
    progress to overlap them with (None: one game in flight waits for each reply anyway); the caller collects and
    pushes their moves."""
    asked = []
    for policy, members in _groups(games, rules, tiebreak):
        collect = policy.ask([game.board for game in members]) if isinstance(policy, AsksAhead) else None
        if collect is not None:
            asked.append((members, functools.partial(_sampled, collect, members)))
        elif threads is None:
            asked.append((members, functools.partial(list, _choose(policy, members))))
        else:
            asked.append((members, threads.submit(_choose, policy, members).result))
    return asked


def _sampled(collect: Callable[[], list[dict[chess.Move, float]]], games: Sequence[_Game]) -> list[chess.Move]:
    """One move per game from distributions, each sampled with its game's generator (one draw per move)."""
    return [
        sample(list(distribution), np.fromiter(distribution.values(), np.float64, len(distribution)), game.rng)
        for distribution, game in zip(collect(), games, strict=True)
    ]


def _choose(policy: Policy, games: Sequence[_Game]) -> list[chess.Move]:
    """One move per game from one call of `policy`, each sampled with its game's generator (one draw per move)."""
    boards = [game.board for game in games]
    if not isinstance(policy, ModelPolicy):
        return _sampled(functools.partial(policy.distributions, boards), games)
    distribution = policy.legal_distribution(boards)
    masses = [0.0] * len(games) if distribution.illegal_mass is None else distribution.illegal_mass.tolist()
    for game, mass in zip(games, masses, strict=True):
        if game.side(game.board.turn) is game.player:
            game.illegal_mass = (game.illegal_mass or 0.0) + mass
    slots = _sample_rows(distribution.probs.double().cpu().numpy(), [game.rng.random() for game in games])
    return [moves[min(slot, len(moves) - 1)] for moves, slot in zip(distribution.moves, slots.tolist(), strict=True)]


def _push(games: Sequence[_Game], moves: Sequence[chess.Move]) -> None:
    for game, move in zip(games, moves, strict=True):
        game.last_san = _san_and_push(game.board, move)


def _san_and_push(board: chess.Board, move: chess.Move) -> str:
    """``board.san_and_push(move)`` for a legal move. python-chess searches the legal moves of the other pieces of
    the moving kind for one that also reaches the destination (to disambiguate), even where none attacks it; that
    search, made for nearly every move, is asked of python-chess here only where one does (and for castling)."""
    turn, from_square, to_square = board.turn, move.from_square, move.to_square
    piece = board.piece_type_at(from_square)
    if (piece == chess.KING and board.is_castling(move)) or (
        chess.PAWN < piece < chess.KING
        and board.attackers_mask(turn, to_square) & board.pieces_mask(piece, turn) & ~chess.BB_SQUARES[from_square]
    ):
        return board.san_and_push(move)
    capture = board.is_capture(move)
    if piece == chess.PAWN:
        san = chess.FILE_NAMES[chess.square_file(from_square)] + "x" if capture else ""
    else:
        san = chess.PIECE_SYMBOLS[piece].upper() + ("x" if capture else "")
    san += chess.SQUARE_NAMES[to_square]
    if move.promotion:
        san += "=" + chess.PIECE_SYMBOLS[move.promotion].upper()
    board.push(move)
    if board.is_check():
        san += "+" if any(board.generate_legal_moves()) else "#"
    return san


def _sample_rows(probabilities: np.ndarray, uniforms: Sequence[float]) -> np.ndarray:
    """`policy.sample` for every row of a [B, max_legal] array at once (zeros past each row's moves): the slot where
    each row's cumulative mass first exceeds its uniform draw times the row's total."""
    cumulative = np.cumsum(probabilities, axis=1)
    return (cumulative <= (np.asarray(uniforms) * cumulative[:, -1])[:, None]).sum(axis=1)


def _record(game: _Game, result: str, termination: str, rules: Rules) -> GameRecord:
    white, black = game.side(chess.WHITE), game.side(chess.BLACK)
    white_score = {"1-0": 1.0, "0-1": 0.0}.get(result, 0.5)
    return GameRecord(
        pairing=game.pairing,
        game=game.index,
        player=game.player.name,
        player_kind=game.player.kind,
        temperature=game.player.temperature,
        opponent=game.opponent.name,
        opponent_kind=game.opponent.kind,
        opponent_rating=game.opponent.rating,
        player_colour="white" if game.player_is_white else "black",
        white=white.name,
        black=black.name,
        result=result,
        score=white_score if game.player_is_white else 1.0 - white_score,
        termination=termination,
        plies=game.board.ply(),
        opening_eco=game.opening.eco,
        opening=game.opening.name,
        moves=" ".join(move.uci() for move in game.board.move_stack),
        pgn=_pgn(game, white, black, result, termination, rules),
        illegal_mass=game.illegal_mass,
        tiebreak_moves=game.tiebreak_moves,
        remedy=rules.remedy,
    )


def _pgn(game: _Game, white: Player, black: Player, result: str, termination: str, rules: Rules) -> str:
    """The game as python-chess writes it (80 columns), with the tags that say who played it and how it ended."""
    pgn = chess.pgn.Game.from_board(game.board)
    pgn.headers.update(
        Event="transcend evaluation",
        Round=f"{game.pairing}.{game.index + 1}",
        White=white.name,
        Black=black.name,
        Result=result,
        ECO=game.opening.eco,
        Opening=game.opening.name,
        Termination=termination,
        Remedy=rules.remedy,
    )
    for tag, player in (("WhiteElo", white), ("BlackElo", black)):
        if player.rating is not None:
            pgn.headers[tag] = str(round(player.rating))
    if game.player.temperature is not None:
        pgn.headers["Temperature"] = f"{game.player.temperature:g}"
    return pgn.accept(chess.pgn.StringExporter()) + "\n"


class ModelPolicy(Policy):
    """A trained ChessFormer at temperature τ, through the model's one sampling function (masked to legal moves).

    A move-feature head has no mass outside the legal moves by construction; a transcript head (full-vocabulary
    logits) reports the mass it put on illegal tokens, which the reference code resampled and then forfeited.
    """

    def __init__(self, model: ChessFormer, temperature: float, *, incremental: bool = True) -> None:
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        self.model = model.eval()  # play is inference: no dropout, whatever state training left it in
        self.temperature = temperature
        self.incremental = incremental  # False recomputes every game's history per call, as the reference code

    def __repr__(self) -> str:
        return f"ModelPolicy(τ={self.temperature:g})"

    def with_temperature(self, temperature: float) -> ModelPolicy:
        return ModelPolicy(self.model, temperature, incremental=self.incremental)

    def distributions(self, boards: Sequence[chess.Board]) -> list[dict[chess.Move, float]]:
        return self.distributions_and_illegal_mass(boards)[0]

    def legal_distribution(self, boards: Sequence[chess.Board]) -> LegalMoveDistribution:
        """The model's batched distribution as arrays (the match engine samples every row at once from them)."""
        from transcend_pipeline.inference import legal_move_distribution

        return legal_move_distribution(self.model, boards, self.temperature, incremental=self.incremental)

    def distributions_and_illegal_mass(
        self, boards: Sequence[chess.Board]
    ) -> tuple[list[dict[chess.Move, float]], list[float]]:
        """The distributions and, from the same forward pass, the mass a transcript head put on illegal tokens."""
        distribution = self.legal_distribution(boards)
        if distribution.illegal_mass is None:
            return distribution.as_dicts(), [0.0] * len(boards)
        return distribution.as_dicts(), distribution.illegal_mass.tolist()
