"""Stockfish through a raw UCI pipe: every legal move's value, for the panel's players, opponents and analysis.

python-chess's `engine.analyse` costs 5–6 ms per position in this loop (asyncio, one `info` object per line);
writing UCI to the pipe and splitting the `info` lines ourselves costs about 1 ms at depth 1. python-chess stays
for everything else. An engine is a context manager; every engine still alive at interpreter exit is quit too,
and Stockfish itself exits when its stdin closes, so a killed worker never leaves an engine behind.
"""

from __future__ import annotations

import atexit
import contextlib
import subprocess
import weakref
from collections.abc import Iterable

import chess
import numpy as np

from transcend_pipeline.ratings import win_probability

MATE_CP = 10_000


class EngineError(RuntimeError):
    """Stockfish died or answered something the pipe cannot parse."""


_live_engines: weakref.WeakSet[Engine] = weakref.WeakSet()


@atexit.register
def _quit_live_engines() -> None:
    for engine in list(_live_engines):
        engine.close()


class Engine:
    """One Stockfish process scoring every legal move of a position (`MultiPV` up to `multipv`, `go depth`).

    Moves beyond the `multipv` best get the lowest listed score minus `floor_cp` ("worse than anything shown"),
    which keeps the policy's support on all legal moves while asking Stockfish for fewer lines.
    """

    def __init__(self, path: str, *, depth: int = 1, multipv: int = 256, floor_cp: float = 50.0) -> None:
        self.depth = depth
        self.multipv = multipv
        self.floor_cp = floor_cp
        try:
            self._process = subprocess.Popen(
                [path],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                bufsize=1,
            )
        except OSError as error:
            raise EngineError(f"cannot start Stockfish at {path!r}: {error}") from error
        _live_engines.add(self)
        try:
            self._send("uci")
            self._read_until("uciok")
            self._send("setoption name Threads value 1")
            self._send("setoption name Hash value 1")
            self._send(f"setoption name MultiPV value {multipv}")
            self.new_game()
        except BaseException:
            self.close()
            raise

    @property
    def pid(self) -> int:
        return self._process.pid

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Quit Stockfish (killing it if it does not answer within a second); safe to call twice."""
        process = self._process
        if process.poll() is None:
            try:
                process.stdin.write("quit\n")
                process.stdin.flush()
                process.wait(timeout=1.0)
            except (OSError, subprocess.TimeoutExpired):
                process.kill()
                process.wait()
        for stream in (process.stdin, process.stdout):
            with contextlib.suppress(OSError):
                stream.close()
        _live_engines.discard(self)

    def new_game(self) -> None:
        """Clear hash and history tables, so the scores that follow depend only on the positions asked."""
        self._send("ucinewgame")
        self._send("isready")
        self._read_until("readyok")

    def score_moves(self, board: chess.Board) -> dict[chess.Move, float]:
        """Each legal move's value as the mover's expected score (0..1); empty when the game is over."""
        self._send(f"position fen {board.fen()}")
        self._send(f"go depth {self.depth}")
        centipawns: dict[str, float] = {}
        for line in self._read_until("bestmove"):
            if line.startswith("info") and " multipv " in line and " pv " in line:
                move, cp = _parse_info(line)
                centipawns[move] = cp
        if not centipawns:
            return {}
        floor = min(centipawns.values()) - self.floor_cp
        moves = list(board.legal_moves)
        values = win_probability(np.array([centipawns.get(move.uci(), floor) for move in moves]))
        return dict(zip(moves, values.tolist(), strict=True))

    def _send(self, command: str) -> None:
        try:
            self._process.stdin.write(command + "\n")
            self._process.stdin.flush()
        except OSError as error:
            raise EngineError(f"Stockfish (pid {self.pid}) is gone: {error}") from error

    def _read_until(self, prefix: str) -> Iterable[str]:
        lines = []
        while True:
            line = self._process.stdout.readline()
            if not line:
                raise EngineError(f"Stockfish (pid {self.pid}) closed its output while we waited for {prefix!r}")
            if line.startswith(prefix):
                return lines
            lines.append(line)


def _parse_info(line: str) -> tuple[str, float]:
    """(first PV move, centipawns for the mover) of one `info ... multipv k score ... pv ...` line."""
    tokens = line.split()
    score_at = tokens.index("score")
    kind, value = tokens[score_at + 1], int(tokens[score_at + 2])
    cp = (MATE_CP - abs(value)) * (1 if value > 0 else -1) if kind == "mate" else float(value)
    return tokens[tokens.index("pv") + 1], cp
