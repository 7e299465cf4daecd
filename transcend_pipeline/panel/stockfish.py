"""The panel's Q from Stockfish (`q_source='stockfish'`): the engine's scores of every legal move, memoised."""

from __future__ import annotations

import chess
import chess.polyglot

from transcend_pipeline.engine import Engine


class StockfishQ:
    """The `QSource` of the panel: an engine's scores, remembered per position until `reset`.

    Openings repeat across games, and a player and its opponent's resignation check ask for the same position,
    so the memo saves a third of the engine calls. `reset` also clears the engine's tables: scores after it depend
    only on the positions asked since, which makes a chunk of games reproducible on any worker.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._memo: dict[int, dict[chess.Move, float]] = {}

    def q_values(self, board: chess.Board) -> dict[chess.Move, float]:
        key = chess.polyglot.zobrist_hash(board)  # 5x cheaper than a FEN; the engine gets the FEN on a miss only
        values = self._memo.get(key)
        if values is None:
            values = self._memo[key] = self.engine.score_moves(board)
        return values

    def reset(self) -> None:
        self.engine.new_game()
        self._memo.clear()
