"""Opponents behind one interface (`play.Player`): panel players, panel baselines, Stockfish levels, random play.

Every opponent with a fixed rating anchors the scale a model is rated on: panel players carry the rating fitted
from the dump's own results (the `panel_players` table), Stockfish levels carry configurable anchors (the paper's
1554 / 1867 / 2148 for `Skill Level` 1 / 3 / 5). Stockfish is limited by depth or nodes, never by wall time, so
its strength does not depend on the machine. All engines run in an `EnginePool`: each policy call spreads its
positions over one Stockfish process per core.

>>> with EnginePool.start(lambda: SkillEngine(path), size=2) as pool:
...     opponents = stockfish_opponents(pool, levels=(1, 3, 5))
"""

from __future__ import annotations

import itertools
import queue
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import chess
import numpy as np

from transcend_pipeline.followed_games import FollowedGame, GameMemo
from transcend_pipeline.panel.engine import Engine, EngineError
from transcend_pipeline.panel.players import Panel, PanelConfig, PanelPolicy, Policy, clone, consensus, player
from transcend_pipeline.play import Player

#: The paper's Glicko-2 anchors for Stockfish `Skill Level` 1 / 3 / 5 (measured there at 0.1 s per move).
STOCKFISH_ANCHORS: dict[int, float] = {1: 1554.0, 3: 1867.0, 5: 2148.0}

#: Searches asked of one engine ahead of its answers (a few commands of under 2 kB each: far below a pipe's buffer).
QUEUED_SEARCHES = 8

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


class SkillEngine(Engine):
    """A Stockfish that plays moves at a `Skill Level`, searching to a fixed depth or node count."""

    def __init__(self, path: str) -> None:
        super().__init__(path, depth=1, multipv=1)
        self.skill_level: int | None = None

    def best_move(self, board: chess.Board, skill_level: int, go: str) -> chess.Move:
        """The move Stockfish plays at `skill_level` after `go` (e.g. 'go depth 2'), knowing the game's history."""
        return self.best_moves([board], skill_level, go)[0]

    def best_moves(self, boards: Sequence[chess.Board], skill_level: int, go: str, queued: int = 1) -> list[chess.Move]:
        """`best_move` for each board, with up to `queued` searches asked for ahead of the answers: Stockfish reads
        the next `position` and `go` while it searches, so it goes from one search to the next without waiting
        for this process to read the answer and write the next question (which, on a busy machine, can wait for
        a CPU or for the GIL). Stockfish replays a position's moves when it reads the command, counting them as
        nodes of the search in progress, so only searches without a node limit may be queued."""
        if skill_level != self.skill_level:
            self._send(f"setoption name Skill Level value {skill_level}")
            self.skill_level = skill_level
        answers: list[str] = []
        asked = 0
        for answered in range(len(boards)):
            while asked < min(len(boards), answered + queued):
                self._send(f"{_position_command(boards[asked])}\n{go}")
                asked += 1
            while True:  # Engine._read_until drops the line it stops at, and here that line is the answer
                line = self._process.stdout.readline()
                if not line:
                    raise EngineError(f"Stockfish (pid {self.pid}) closed its output during a search")
                if line.startswith("bestmove"):
                    answers.append(line.split()[1])
                    break
        # read every answer before any can fail, so that none is left queued for the engine's next caller
        for board, answer in zip(boards, answers, strict=True):
            if answer == "(none)":
                raise EngineError(f"Stockfish has no move in a finished game: {board.fen()}")
        return [chess.Move.from_uci(answer) for answer in answers]


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

    Skill levels below 20 pick a random weaker move; Stockfish seeds that choice from the clock, so these
    games are not reproducible move for move (their strength is).
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
        """The positions go out in interleaved shares, two per engine (a share that searches longer than the others
        holds up little), each with its searches queued ahead when the limit is a depth."""
        shares = min(2 * len(self.pool.engines), len(boards))
        queued = QUEUED_SEARCHES if self.go.startswith("go depth") else 1
        answers = self.pool.map(
            lambda engine, share: engine.best_moves(share, self.level, self.go, queued),
            [boards[i::shares] for i in range(shares)],
        )
        moves: list = [None] * len(boards)
        for i, share in enumerate(answers):
            moves[i::shares] = share
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

    `prefetch` scores a batch of positions in parallel; `q_values` then answers from the memo, so a panel
    policy's per-position loop costs no engine time. Also the `Evaluator` for resignation and adjudication.
    """

    def __init__(self, pool: EnginePool, max_memo: int = 200_000) -> None:
        self.pool = pool
        self.max_memo = max_memo
        self._memo: dict[str, dict[chess.Move, float]] = {}

    @classmethod
    def engine_factory(cls, config: PanelConfig, stockfish_path: str) -> Callable[[], Engine]:
        """Engines that score as the panel's did when it wrote its dumps (same depth, MultiPV and floor)."""
        return lambda: Engine(stockfish_path, depth=config.depth, multipv=config.multipv, floor_cp=config.floor_cp)

    def prefetch(self, boards: Sequence[chess.Board]) -> None:
        missing = {_position_key(board): board for board in boards if _position_key(board) not in self._memo}
        if len(self._memo) + len(missing) > self.max_memo:
            self._memo.clear()
        scored = self.pool.map(lambda engine, board: engine.score_moves(board), list(missing.values()))
        self._memo.update(zip(missing, scored, strict=True))

    def q_values(self, board: chess.Board) -> dict[chess.Move, float]:
        """From the memo, else scored now (the memo may be cleared by another thread's prefetch at any time: the
        match engine's evaluator and its opponents' calls share it)."""
        key = _position_key(board)
        values = self._memo.get(key)
        if values is None:
            values = self._memo[key] = self.pool.map(lambda engine, board: engine.score_moves(board), [board])[0]
        return values

    def evaluate(self, boards: Sequence[chess.Board]) -> list[float]:
        """The mover's expected score of its best move in each (unfinished) position."""
        self.prefetch(boards)
        return [max(self.q_values(board).values()) for board in boards]


def _position_key(board: chess.Board) -> str:
    return board.fen().rsplit(" ", 2)[0]


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


def panel_opponents(config: PanelConfig, rows: Sequence[Mapping], q: PooledQ) -> list[Player]:
    """Panel players as fixed-rating opponents, from `panel_players` rows (`player`, `player_index`, `rating`);
    rows without a rating (players absent from the month) are skipped."""
    panel = Panel(config)
    return [
        Player(
            row["player"], PanelOpponentPolicy(player(panel, q, int(row["player_index"])), q), "panel", row["rating"]
        )
        for row in rows
        if row["rating"] is not None
    ]


def panel_baselines(config: PanelConfig, rows: Sequence[Mapping], q: PooledQ, cap: float) -> list[Player]:
    """The players a model trained on bucket `cap` is compared with on the same scale: the bucket's best player
    (as it plays in the dump), its clone (its argmax) and the oracle consensus of every player in the bucket.

    The clone and the consensus are rated like the model (no fixed rating); the best player keeps its own.
    """
    bucket = [row for row in rows if row["rating"] is not None and row["rating"] <= cap]
    if not bucket:
        raise ValueError(f"no rated panel player at or below the cap {cap}")
    panel = Panel(config)
    best = max(bucket, key=lambda row: row["rating"])
    index = int(best["player_index"])
    members = sorted(int(row["player_index"]) for row in bucket)
    return [
        Player(best["player"], PanelOpponentPolicy(player(panel, q, index), q), "best_player", best["rating"]),
        Player(f"clone({best['player']})", PanelOpponentPolicy(clone(panel, q, index), q), "clone"),
        Player(
            f"consensus(≤{cap:g}, {len(members)} players)",
            PanelOpponentPolicy(consensus(panel, q, members), q),
            "consensus",
        ),
    ]


def opponents_around(opponents: Sequence[Player], cap: float, count: int) -> list[Player]:
    """The `count` fixed-rating opponents rated closest to `cap` (where a pooled rating is most informative
    for the verdict), sorted by rating."""
    rated = [opponent for opponent in opponents if opponent.rating is not None]
    distance = np.array([abs(opponent.rating - cap) for opponent in rated])
    chosen = [rated[i] for i in np.argsort(distance, kind="stable")[:count]]
    return sorted(chosen, key=lambda opponent: opponent.rating)
