"""What a caller keeps about each game in play, so that a call about a board extends it by the moves played since
the last call instead of reading the whole game again (the model's inputs in :mod:`model`, Stockfish's
``position`` command in :mod:`opponents`): in a match both are asked about every game at every move.

A board is taken to change by ``push`` and ``pop`` (or a reset, which clears its move stack), as in the match engine.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

import chess


class FollowedGame:
    """The record of one game: the board it follows (weakly, so it is forgotten with the board) and the moves seen."""

    board: weakref.ref | None = None  # set by GameMemo.follow

    def __init__(self) -> None:
        self.moves: list[chess.Move] = []

    def continued_by(self, board: chess.Board) -> bool:
        """Whether ``board`` is this game played on (not another board, a take-back or another line). A board reset
        to another position clears its stack, so a record with no move seen yet is rebuilt to read its root again."""
        seen = len(self.moves)
        # identical Move objects compare at C speed
        return seen > 0 and self.board() is board and board.move_stack[:seen] == self.moves

    def new_moves(self, board: chess.Board) -> list[chess.Move]:
        """The moves played on ``board`` since the last call, now counted as seen."""
        new = board.move_stack[len(self.moves) :]
        self.moves.extend(new)
        return new


G = TypeVar("G", bound=FollowedGame)


class GameMemo(Generic[G]):
    """The records of the games in play, by ``id`` of their board (boards are unhashable)."""

    def __init__(self) -> None:
        self._records: dict[int, G] = {}

    def __contains__(self, board_id: int) -> bool:
        """Whether a record is kept for the board with this ``id`` (it goes when the board does)."""
        return board_id in self._records

    def follow(
        self, board: chess.Board, make: Callable[[chess.Board], G], keep: Callable[[G], bool] | None = None
    ) -> G:
        """The record of the game ``board`` plays; made afresh by ``make(board)`` when there is none, when ``board``
        does not continue it, or when ``keep(record)`` says it no longer serves."""
        key = id(board)
        record = self._records.get(key)
        if record is None or not record.continued_by(board) or (keep is not None and not keep(record)):
            record = self._records[key] = make(board)
            record.board = weakref.ref(board, lambda _: self._records.pop(key, None))
        return record
