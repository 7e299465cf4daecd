"""Panel speed: Q per position through the raw UCI pipe vs python-chess's `engine.analyse` (the baseline), and
dump generation in games/s on 2 workers for the prototype's settings vs the current defaults.

    .venv/bin/python benchmarks/bench_panel.py            # 300 positions, 600 games per variant
    .venv/bin/python benchmarks/bench_panel.py --quick    # 60 positions, 60 games per variant
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import chess
import chess.engine
import numpy as np

from transcend_pipeline.engine import Engine
from transcend_pipeline.panel import PanelConfig, write_month_dump
from transcend_pipeline.panel.tactical import TacticalQ
from transcend_pipeline.settings import find_stockfish

# The prototype's settings: every move scored (MultiPV ≥ legal moves), resign at 800 cp held 6 plies, 200-ply cap.
PROTOTYPE = dataclasses.replace(PanelConfig(), multipv=256, resign_cp=800, resign_plies=6, max_plies=200)


def sample_positions(count: int, seed: int = 0) -> list[chess.Board]:
    """Positions from random games (plies 0-60): a spread of openings and middlegames."""
    rng = np.random.default_rng(seed)
    positions = []
    while len(positions) < count:
        board = chess.Board()
        for _ in range(int(rng.integers(0, 60))):
            moves = list(board.legal_moves)
            if not moves:
                break
            board.push(moves[int(rng.integers(len(moves)))])
        if not board.is_game_over():
            positions.append(board)
    return positions


def time_per_position(score, positions: list[chess.Board]) -> float:
    start = time.perf_counter()
    for board in positions:
        score(board)
    return (time.perf_counter() - start) / len(positions) * 1000


def bench_q(stockfish: str, positions: list[chess.Board]) -> None:
    print(
        f"Q per position, depth 1, {len(positions)} positions (mean {statistics.mean(b.legal_moves.count() for b in positions):.0f} legal moves)"
    )
    with chess.engine.SimpleEngine.popen_uci(stockfish) as engine:
        engine.configure({"Threads": 1, "Hash": 1})

        def analyse(board: chess.Board) -> list:
            return engine.analyse(board, chess.engine.Limit(depth=1), multipv=board.legal_moves.count())

        baseline = time_per_position(analyse, positions)
    print(f"  python-chess engine.analyse, all moves   {baseline:6.2f} ms   (baseline)")
    for multipv in (256, 12, 6):
        with Engine(stockfish, depth=1, multipv=multipv) as raw:
            cost = time_per_position(raw.score_moves, positions)
        label = "all moves" if multipv == 256 else f"top {multipv} + floor"
        print(f"  raw UCI pipe, {label:<26} {cost:6.2f} ms   ({baseline / cost:.1f}x the baseline's speed)")
    cost = time_per_position(TacticalQ().q_values, positions)
    print(f"  tactical Q (pure Python, no engine)      {cost:6.2f} ms   ({baseline / cost:.1f}x the baseline's speed)")


def bench_games(stockfish: str, games: int, workers: int) -> None:
    print(f"dump generation: {games} games per variant, {workers} workers (demo panel, one month)")
    variants = {
        "prototype (all moves, resign 800cp/6 plies)": PROTOTYPE,
        "current defaults (top 6 + floor, resign 600cp/4)": PanelConfig(),
        "current defaults, q_source='tactical'": PanelConfig(q_source="tactical"),
    }
    baseline = None
    for label, config in variants.items():
        config = dataclasses.replace(config, games_per_month=games)
        with tempfile.TemporaryDirectory() as scratch:
            result = write_month_dump(config, "2024-01", Path(scratch), stockfish_path=stockfish, workers=workers)
        rate = result.games / result.seconds
        baseline = baseline or rate
        print(f"  {label:<52} {rate:6.1f} games/s   ({rate / baseline:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few seconds: CI smoke run")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    stockfish = find_stockfish()
    bench_q(stockfish, sample_positions(60 if args.quick else 300))
    bench_games(stockfish, 60 if args.quick else 600, args.workers)


if __name__ == "__main__":
    main()
