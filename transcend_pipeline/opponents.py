"""Opponents behind one interface (`play.Player`): panel players, panel baselines, Stockfish levels, random play.

Every opponent with a fixed rating anchors the scale a model is rated on: panel players carry the rating fitted
from the dump's own results (the `panel_players` table), Stockfish levels carry configurable anchors (the paper's
1554 / 1867 / 2148 for `Skill Level` 1 / 3 / 5). Stockfish is limited by depth or nodes, never by wall time, so
its strength does not depend on the machine. All engines run in an `EnginePool`: each policy call spreads its
positions over one Stockfish process per core.

For example::

    with EnginePool.start(lambda: SkillEngine(path), size=2) as pool:
        opponents = stockfish_opponents(pool, levels=(1, 3, 5))
"""

from __future__ import annotations

import collections
import itertools
import os
import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import chess

from transcend_pipeline.engine import Engine, EngineError
from transcend_pipeline.followed_games import FollowedGame, GameMemo
from transcend_pipeline.play import Player
from transcend_pipeline.policy import Policy

if TYPE_CHECKING:
    from transcend_pipeline.panel.players import PanelConfig, PanelPolicy

#: The paper's Glicko-2 anchors for Stockfish `Skill Level` 1 / 3 / 5 (measured there at 0.1 s per move).
STOCKFISH_ANCHORS: dict[int, float] = {1: 1554.0, 3: 1867.0, 5: 2148.0}

#: Bytes of questions an engine may hold unanswered: half a pipe's buffer (64 KiB on Linux), some 250 searches of
#: real games (125 bytes a question, its `ucinewgame` included).
QUEUED_BYTES = 1 << 15

T = TypeVar("T")
R = TypeVar("R")


class EnginePool:
    """Stockfish processes shared by threads: `map` runs its items on as many engines as are free.

    Engine calls block on a pipe (which releases the GIL), so threads keep every process busy at once.
    """

    def __init__(self, engines: Sequence[Engine]) -> None:
        if not engines:
            raise ValueError("an engine pool needs at least one engine")
        self.engines = list(engines)
        self._free: queue.SimpleQueue[Engine] = queue.SimpleQueue()
        for engine in self.engines:
            self._free.put(engine)
        self._threads = ThreadPoolExecutor(len(self.engines), thread_name_prefix="stockfish")

    @classmethod
    @contextmanager
    def start(cls, factory: Callable[[], Engine], size: int) -> Iterator[EnginePool]:
        """`size` engines from `factory`, all quit when the block ends (also on error)."""
        engines: list[Engine] = []
        try:
            engines.extend(factory() for _ in range(size))
            pool = cls(engines)
            with pool._threads:
                yield pool
        finally:
            for engine in engines:
                engine.close()

    def map(self, function: Callable[[Engine, T], R], items: Sequence[T]) -> list[R]:
        """`function(engine, item)` for every item, results in order.

        One worker per engine (the calling thread is one of them) takes the next item as soon as its engine is
        done with the last, so a slow search does not hold up the others; there is no per-item hand-off between
        threads (a future and a thread switch per search, in the match engine's hot loop)."""
        results: list = [None] * len(items)
        indices = itertools.count()

        def work() -> None:
            engine = self._free.get()
            try:
                while (i := next(indices)) < len(items):
                    results[i] = function(engine, items[i])
            finally:
                self._free.put(engine)

        helpers = [self._threads.submit(work) for _ in range(min(len(self.engines), len(items)) - 1)]
        try:
            work()
        finally:
            for helper in helpers:
                helper.result()
        return results


@dataclass(eq=False)
class _Search:
    """Positions asked of one engine in one go, and the answers read so far (in the order asked)."""

    boards: Sequence[chess.Board]
    sizes: list[int]  # bytes of each position's question
    answers: list[bytes] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return len(self.answers) == len(self.boards)


class SkillEngine(Engine):
    """A Stockfish that plays moves at a `Skill Level`, searching to a fixed depth or node count.

    Every search is asked after a `ucinewgame`, which clears the hash and history tables: a move then depends only
    on the position (with its history) and the limit, not on what the engine searched before, so the same positions
    get the same moves in any order, among any others, on any engine of a pool. (Without it, at depth 4 or 8 or at
    200 to 10,000 nodes, 7 to 17 of 40 positions of real games changed their move with what was searched before.)

    Searches are pipelined: `ask` writes a batch of questions at once and returns, and `answers` reads them back, so
    several callers (the match engine's two halves) can keep one engine's input queue full and Stockfish goes from
    one search to the next without waiting for this process, which may be waiting for a CPU or for the GIL.
    Stockfish answers in the order asked, so whichever caller reads hands each answer to its search. Node-limited
    searches are pipelined too: Stockfish counts the moves it replays for a `position` command as nodes of the
    search running meanwhile, but it runs `ucinewgame` only once that search is over, so the `position` after it is
    never read during a search. The pipes are used through their file descriptors: one write per batch and one read
    for whatever answers have arrived, instead of a flush and a line read per command and answer.
    """

    def __init__(self, path: str) -> None:
        super().__init__(path, depth=1, multipv=1)
        self.skill_level: int | None = None
        self._writing = threading.Lock()  # questions go out in order, one caller at a time
        self._reading = threading.Lock()  # one caller reads, handing answers to the searches in order
        self._searches: collections.deque[_Search] = collections.deque()  # asked and not yet fully answered
        self._written = 0  # bytes of questions written, and of those answered (each counted by one lock's holder)
        self._answered = 0
        self._unread = b""  # the start of an output line a read cut off

    def best_move(self, board: chess.Board, skill_level: int, go: str) -> chess.Move:
        """The move Stockfish plays at `skill_level` after `go` (e.g. 'go depth 2'), knowing the game's history."""
        return self.best_moves([board], skill_level, go)[0]

    def best_moves(self, boards: Sequence[chess.Board], skill_level: int, go: str) -> list[chess.Move]:
        """`best_move` for each board."""
        return self.answers(self.ask(boards, skill_level, go))

    def ask(self, boards: Sequence[chess.Board], skill_level: int, go: str) -> _Search:
        """Write the questions for a search of each board; `answers` returns the moves."""
        with self._writing:
            self._set_skill_level(skill_level)
            return self._write(boards, go)

    def answers(self, search: _Search) -> list[chess.Move]:
        """The moves of an `ask`, in order; every answer is read before any can fail, so none is left queued."""
        with self._reading:
            while not search.complete:
                self._read_answers()
        return self._moves(search)

    def _moves(self, search: _Search) -> list[chess.Move]:
        for board, answer in zip(search.boards, search.answers, strict=True):
            if answer == b"(none)":
                raise EngineError(f"Stockfish has no move in a finished game: {board.fen()}")
        return [chess.Move.from_uci(answer.decode()) for answer in search.answers]

    def _set_skill_level(self, skill_level: int) -> None:
        """Change the level once every search asked before is over (a search reads it when it starts)."""
        if skill_level != self.skill_level:
            with self._reading:
                while self._searches:
                    self._read_answers()
            self._send(f"setoption name Skill Level value {skill_level}")
            self.skill_level = skill_level

    def _write(self, boards: Sequence[chess.Board], go: str) -> _Search:
        """Write the questions (holding `_writing`), never more than `QUEUED_BYTES` unanswered: below a pipe's
        buffer, so a write never waits for Stockfish, which may itself wait for its answers to be read."""
        questions = [f"ucinewgame\n{_position_command(board)}\n{go}\n".encode() for board in boards]
        search = _Search(boards, [len(question) for question in questions])
        if questions:  # an empty search is complete already, and no answer is handed to it
            self._searches.append(search)
        start = 0
        while start < len(questions):
            end, size, unanswered = start, 0, self._written - self._answered
            while end < len(questions) and (
                unanswered + size + len(questions[end]) <= QUEUED_BYTES or unanswered + size == 0
            ):
                size += len(questions[end])
                end += 1
            if end == start:  # the queue is full: read answers (anyone's) until there is room
                with self._reading:
                    if self._written > self._answered:
                        self._read_answers()
                continue
            data = b"".join(questions[start:end])
            try:
                while data:
                    data = data[os.write(self._process.stdin.fileno(), data) :]
            except OSError as error:
                raise EngineError(f"Stockfish (pid {self.pid}) is gone: {error}") from error
            self._written += size
            start = end
        return search

    def _read_answers(self) -> None:
        """Read what the engine has written (at least one byte; holding `_reading`, with a search unanswered) and
        hand each `bestmove` to the earliest search still missing answers."""
        chunk = os.read(self._process.stdout.fileno(), 1 << 16)
        if not chunk:
            raise EngineError(f"Stockfish (pid {self.pid}) closed its output during a search")
        *lines, self._unread = (self._unread + chunk).split(b"\n")
        for line in lines:
            if line.startswith(b"bestmove"):
                search = self._searches[0]
                self._answered += search.sizes[len(search.answers)]
                search.answers.append(line.split()[1])
                if search.complete:
                    self._searches.popleft()


_STANDARD_START = chess.Board()

#: Moves a `position` command lists before it starts again from a FEN (see `_position_command`).
REPLAYED_MOVES = 12


def _position_command(board: chess.Board) -> str:
    """The UCI `position` of `board` with the game's moves since its start or since a position that follows a
    capture or pawn move: Stockfish needs the history for repetition draws, and no earlier position can recur.

    Stockfish replays every listed move (matching each against its legal moves), which cost as much as its
    search once games grew long; so once more than `REPLAYED_MOVES` would be listed, the history starts again
    from the position asked about if it follows an irreversible move (its FEN, which costs this process more than
    a few listed moves cost Stockfish). A game is asked about once per opponent move and its history only grows,
    so the command is kept per board and extended by the moves played since."""
    known = _POSITION_COMMANDS.follow(
        board,
        _PositionCommand,
        lambda known: (
            board.halfmove_clock != 0 or known.listed + len(board.move_stack) - len(known.moves) <= REPLAYED_MOVES
        ),
    )
    known.catch_up(board)
    return known.command


class _PositionCommand(FollowedGame):
    """One game's `position` command so far, forgotten with its board."""

    def __init__(self, board: chess.Board) -> None:
        super().__init__()
        if board.halfmove_clock == 0 and len(board.move_stack) > REPLAYED_MOVES:  # nothing before it can recur
            start, self.moves = board, list(board.move_stack)
        else:
            start, self.moves = board.root(), []
        # en_passant="fen": the en-passant square after every double push, as Stockfish sets it when it replays
        self.command = "position " + ("startpos" if start == _STANDARD_START else f"fen {start.fen(en_passant='fen')}")
        self.listed = 0  # moves written after `start`

    def catch_up(self, board: chess.Board) -> None:
        if new := self.new_moves(board):
            self.command += (" " if self.listed else " moves ") + " ".join(map(chess.Move.uci, new))
            self.listed += len(new)


#: The `position` commands of the games being played.
_POSITION_COMMANDS: GameMemo[_PositionCommand] = GameMemo()


class StockfishPolicy(Policy):
    """Stockfish at a `Skill Level`, depth- or node-limited; positions of one call run in parallel on the pool.

    At level 20 a move depends only on the position and the limit (every search starts from `ucinewgame`, see
    `SkillEngine`), so its games are reproducible. Levels below 20 pick a random weaker move, from a generator
    Stockfish seeds with the clock (`static PRNG rng(now())` in 15.1) and no UCI option can seed: those games are
    not reproducible move for move (their strength is).
    """

    def __init__(self, pool: EnginePool, level: int, *, depth: int | None = None, nodes: int | None = None) -> None:
        if (depth is None) == (nodes is None):
            raise ValueError("give exactly one of depth and nodes")
        self.pool = pool
        self.level = level
        self.go = f"go depth {depth}" if depth is not None else f"go nodes {nodes}"

    def __repr__(self) -> str:
        return f"StockfishPolicy(level={self.level}, {self.go!r})"

    def distributions(self, boards: Sequence[chess.Board]) -> list[dict[chess.Move, float]]:
        """The positions go out at once in interleaved shares, one per engine (`ask`)."""
        return self.ask(boards)()

    def ask(self, boards: Sequence[chess.Board]) -> Callable[[], list[dict[chess.Move, float]]]:
        """Write every position's search to the engines now, in interleaved shares, and return what reads the
        moves (`play.AsksAhead`: the match engine asks for one half of its games while the model plays the other)."""
        engines = self.pool.engines[: len(boards)]
        searches = [engine.ask(boards[i :: len(engines)], self.level, self.go) for i, engine in enumerate(engines)]
        return lambda: _interleaved(
            [engine.answers(search) for engine, search in zip(engines, searches, strict=True)], len(boards)
        )


def _interleaved(shares: Sequence[Sequence[chess.Move]], count: int) -> list[dict[chess.Move, float]]:
    """Each board's move as a one-move distribution, from shares dealt as ``boards[i :: len(shares)]``."""
    moves: list = [None] * count
    for i, share in enumerate(shares):
        moves[i :: len(shares)] = share
    return [{move: 1.0} for move in moves]


def stockfish_opponents(
    pool: EnginePool,
    *,
    anchors: Mapping[int, float] = STOCKFISH_ANCHORS,
    depth: Callable[[int], int] | None = None,
    nodes: int | None = None,
) -> list[Player]:
    """One fixed-rating opponent per anchored level. By default level L searches to depth L + 1, the depth at
    which Stockfish makes its skill pick (0.7–5 ms a move here); `nodes` limits by node count instead."""
    opponents = []
    for level, rating in sorted(anchors.items()):
        limit = {"nodes": nodes} if nodes is not None else {"depth": (depth or (lambda lv: lv + 1))(level)}
        opponents.append(Player(f"stockfish-L{level}", StockfishPolicy(pool, level, **limit), "stockfish", rating))
    return opponents


class PooledQ:
    """The panel's Q source (every legal move scored by a depth-limited Stockfish) over an engine pool, memoised.

    `prefetch` scores a batch of positions in parallel; `q_values` then answers from the memo (keyed by
    `_position_key`, halfmove clock included), so a panel policy's per-position loop costs no engine time. Also the
    `Evaluator` for resignation and adjudication. With `independent`, every position is scored after `ucinewgame`:
    its Q then does not depend on which engine searched what before it (4 of 30 positions changed with the order
    they were asked in, otherwise), so a measurement gives the same figures on every run. It doubles the engine time
    of a position (0.8 ms against 0.4), which a thousand-position measurement does not notice and play would.
    """

    def __init__(self, pool: EnginePool, max_memo: int = 200_000, *, independent: bool = False) -> None:
        self.pool = pool
        self.max_memo = max_memo
        self.independent = independent
        self._memo: dict[str, dict[chess.Move, float]] = {}

    @classmethod
    def engine_factory(cls, config: PanelConfig, stockfish_path: str) -> Callable[[], Engine]:
        """Engines that score as the panel's did when it wrote its dumps (same depth, MultiPV and floor)."""
        return lambda: Engine(stockfish_path, depth=config.depth, multipv=config.multipv, floor_cp=config.floor_cp)

    def prefetch(self, boards: Sequence[chess.Board]) -> None:
        missing = {_position_key(board): board for board in boards if _position_key(board) not in self._memo}
        if len(self._memo) + len(missing) > self.max_memo:
            self._memo.clear()
        scored = self.pool.map(self._score, list(missing.values()))
        self._memo.update(zip(missing, scored, strict=True))

    def q_values(self, board: chess.Board) -> dict[chess.Move, float]:
        """From the memo, else scored now (the memo may be cleared by another thread's prefetch at any time: the
        match engine's evaluator and its opponents' calls share it)."""
        key = _position_key(board)
        values = self._memo.get(key)
        if values is None:
            values = self._memo[key] = self.pool.map(self._score, [board])[0]
        return values

    def _score(self, engine: Engine, board: chess.Board) -> dict[chess.Move, float]:
        if self.independent:
            engine.new_game()
        return engine.score_moves(board)

    def evaluate(self, boards: Sequence[chess.Board]) -> list[float]:
        """The mover's expected score of its best move in each (unfinished) position."""
        self.prefetch(boards)
        return [max(self.q_values(board).values()) for board in boards]


def _position_key(board: chess.Board) -> str:
    """The FEN without the move number, which Stockfish's search does not read; the halfmove clock stays, as
    Stockfish scales its evaluation down as the clock nears the fifty-move rule: one key for positions differing
    only in their clocks would memoise the Q of whichever was asked first."""
    return board.fen().rsplit(" ", 1)[0]


class PanelOpponentPolicy(Policy):
    """A panel policy whose positions are scored in parallel (one `prefetch` per call) before it decides."""

    def __init__(self, policy: PanelPolicy, q: PooledQ) -> None:
        self.policy = policy
        self.q = q

    def __repr__(self) -> str:
        return f"PanelOpponentPolicy({self.policy.label})"

    def distributions(self, boards: Sequence[chess.Board]) -> list[dict[chess.Move, float]]:
        self.q.prefetch(boards)
        return self.policy.distributions(boards)


class RandomPolicy(Policy):
    """Uniform over the legal moves: the floor of any rating scale."""

    def distributions(self, boards: Sequence[chess.Board]) -> list[dict[chess.Move, float]]:
        result = []
        for board in boards:
            moves = list(board.legal_moves)
            result.append(dict.fromkeys(moves, 1.0 / len(moves)))
        return result
