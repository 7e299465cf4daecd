"""Does a `tiny` ChessFormer trained on a cap bucket clear the quality bar (issue 5)? End to end on a panel month.

    .venv/bin/python benchmarks/model_quality.py --quick                          # smoke panel, seconds of training
    .venv/bin/python benchmarks/model_quality.py --profile demo --games 3000 --minutes 5

Generates a month dump with the panel, reads its games, splits them into cap buckets (max Elo <= cap), holds out
every tenth game of each bucket, trains a `tiny` model per cap for `--minutes`, and prints the quality table per
cap: the model at τ→0 and τ=1 next to every bucket player's clone and softmax, the consensus, and the bar (the
bucket's best player's clone), all measured in the same run on the same held-out positions.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import tempfile
import time
from pathlib import Path

import chess.pgn
import zstandard

from transcend_pipeline.model import ChessFormer
from transcend_pipeline.model_quality import format_table, measure_policy_quality
from transcend_pipeline.opponents import EnginePool, PooledQ
from transcend_pipeline.panel import PanelConfig, TacticalQ, panel_players, write_month_dump
from transcend_pipeline.settings import find_stockfish
from transcend_pipeline.training import TrainConfig, build_shards, train

MONTH = "2024-01"
HELD_OUT_EVERY = 10


def read_games(dump_path: Path) -> list[tuple[int, list[str]]]:
    """(max Elo, UCI moves) of every game in a dump."""
    games = []
    with zstandard.open(dump_path, "rt", encoding="utf-8") as text:
        stream = io.StringIO(text.read())
    while (game := chess.pgn.read_game(stream)) is not None:
        elo = max(int(game.headers["WhiteElo"]), int(game.headers["BlackElo"]))
        games.append((elo, [move.uci() for move in game.mainline_moves()]))
    return games


def measure_cap(cap, games, config, rows, q, args, work: Path) -> None:
    bucket = [moves for elo, moves in games if elo <= cap]
    bucket_rows = [row for row in rows if row["rating"] is not None and row["rating"] <= cap]
    held_out = bucket[::HELD_OUT_EVERY]
    training = [moves for i, moves in enumerate(bucket) if i % HELD_OUT_EVERY]
    print(
        f"\n=== cap {cap}: {len(bucket)} games ({len(training)} train, {len(held_out)} held out), "
        f"{len(bucket_rows)} rated players"
    )
    if not bucket_rows or not held_out or len(training) < 2:
        print("    skipped: the bucket is too small")
        return
    shards = work / f"shards-{cap}"
    build_shards({"train": training, "val": held_out}, shards, games_per_shard=512)
    train_config = TrainConfig(
        experiment=f"cap{cap}", batch_games=min(32, len(training)), val_every_steps=100, cpu_threads=args.threads
    )
    started = time.perf_counter()
    result = train(shards, train_config, work / f"run-{cap}", max_minutes=args.minutes)
    print(
        f"    trained {result.steps} steps, {result.positions_seen} positions in {time.perf_counter() - started:.0f} s"
        f" ({result.positions_per_second:.0f} pos/s); val top-1 {result.val_top1}"
    )
    curve = ", ".join(f"{step}: {loss:.2f}" for step, loss in result.val_curve)
    print(f"    held-out loss by step (overfitting shows here): {curve}")
    model = ChessFormer.from_checkpoint(str(result.checkpoint))
    started = time.perf_counter()
    report = measure_policy_quality(model, held_out, config, bucket_rows, q, positions=args.positions, seed=0)
    print(f"    measured in {time.perf_counter() - started:.0f} s")
    print(format_table(report))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=("smoke", "demo"), default="demo")
    parser.add_argument("--games", type=int, help="games in the month (default: the profile's)")
    parser.add_argument("--q-source", choices=("stockfish", "tactical"), help="default: the profile's")
    parser.add_argument("--minutes", type=float, default=3.0, help="training budget per cap")
    parser.add_argument("--positions", type=int, default=2000, help="held-out positions measured per cap")
    parser.add_argument("--caps", type=int, nargs="+", default=[1000, 1300, 1500])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for training")
    parser.add_argument("--quick", action="store_true", help="smoke panel, 0.1 minute per cap, 200 positions")
    args = parser.parse_args()
    if args.quick:
        args.profile, args.minutes, args.positions = "smoke", 0.1, 200
    config = PanelConfig.for_profile(args.profile)
    overrides = {"games_per_month": args.games, "q_source": args.q_source}
    config = dataclasses.replace(config, **{key: value for key, value in overrides.items() if value is not None})
    stockfish = str(find_stockfish())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        dump = write_month_dump(config, MONTH, work / "raw", stockfish_path=stockfish, workers=args.workers)
        print(
            f"panel {args.profile} ({config.n_players} players, Q {config.q_source}): {dump.games} games "
            f"in {dump.seconds:.0f} s"
        )
        games = read_games(dump.path)
        rows = panel_players(config, MONTH, dump.path)
        if config.q_source == "tactical":
            for cap in args.caps:
                measure_cap(cap, games, config, rows, TacticalQ(), args, work)
            return
        with EnginePool.start(PooledQ.engine_factory(config, stockfish), args.workers) as pool:
            for cap in args.caps:
                measure_cap(cap, games, config, rows, PooledQ(pool), args, work)


if __name__ == "__main__":
    main()
