"""Batched match engine vs a sequential batch-size-1 loop like the reference code's, in one run.

Both sides play the same ChessFormer (`tiny`, random weights: a trained one costs the same per move) against the
same Stockfish opponent through the same engine pool; the sequential baseline is the same engine with one game
in flight (`max_in_flight=1`), i.e. one forward pass per model move and one engine busy at a time, and like the
reference code it recomputes the whole history at every move (`incremental=False`). The batched engine reads the
earlier plies from the model's key/value cache; a third row, sequential with that cache, shows how much of the
gain is the cache and how much the batching. The runs alternate `--repeats` times and the fastest of each is
reported: on a shared 2-core machine the minimum is the figure least disturbed by other work. The model's CPU time
per move (its calling thread's) is printed too: it shows the batching gain without the overlapping Stockfish
searches and the machine's other load.

The batched engine plays more games than it keeps in flight, as a full evaluation does, so its batches stay full
until the last games (with exactly as many games as slots, the long games' tail runs at tiny batch sizes). CPU
per model move is split into the model's calls, the rest of this process (the match loop: rules, sampling, PGN,
engine I/O) and the Stockfish processes (read from /proc), which says what limits each mode.

    .venv/bin/python benchmarks/bench_play.py            # 512 batched games (256 in flight) vs 12 sequential
    .venv/bin/python benchmarks/bench_play.py --quick    # smoke run: 8 (4 in flight) vs 2
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from pathlib import Path

import chess
import torch

from transcend_pipeline.model import ChessFormer, config_for
from transcend_pipeline.opponents import EnginePool, RandomPolicy, SkillEngine, stockfish_opponents
from transcend_pipeline.play import ModelPolicy, Pairing, Player, Rules, play_matches
from transcend_pipeline.settings import find_stockfish


class TimedModelPolicy(ModelPolicy):
    """Counts the model's moves and the wall and CPU seconds spent in its batched calls.

    The CPU seconds are the calling thread's (torch runs single-threaded here), so they leave out the Stockfish
    searches that overlap the call and most of the other load on a shared machine: the batching gain on its own.
    """

    seconds = 0.0
    cpu_seconds = 0.0
    moves = 0

    def distributions_and_illegal_mass(self, boards: Sequence[chess.Board]):
        start, cpu_start = time.perf_counter(), time.thread_time()
        try:
            return super().distributions_and_illegal_mass(boards)
        finally:
            TimedModelPolicy.seconds += time.perf_counter() - start
            TimedModelPolicy.cpu_seconds += time.thread_time() - cpu_start
            TimedModelPolicy.moves += len(boards)


def engine_cpu_seconds(pool: EnginePool) -> float:
    """CPU seconds the pool's Stockfish processes have used (Linux /proc; 0 where it cannot be read)."""
    total = 0.0
    for engine in pool.engines:
        try:
            fields = Path(f"/proc/{engine.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    return total


def measure(label: str, pairing: Pairing, rules: Rules, max_in_flight: int, pool: EnginePool) -> dict:
    TimedModelPolicy.seconds, TimedModelPolicy.cpu_seconds, TimedModelPolicy.moves = 0.0, 0.0, 0
    start, process_start, engine_start = time.perf_counter(), time.process_time(), engine_cpu_seconds(pool)
    records = play_matches([pairing], rules=rules, rng_seed=0, max_in_flight=max_in_flight)
    wall = time.perf_counter() - start
    process, engines = time.process_time() - process_start, engine_cpu_seconds(pool) - engine_start
    return {
        "label": label,
        "games": len(records),
        "plies": sum(record.plies for record in records) / len(records),
        "model_moves": TimedModelPolicy.moves,
        "wall_s": wall,
        "model_moves_per_s": TimedModelPolicy.moves / wall,
        "games_per_min": 60 * len(records) / wall,
        "model_share": TimedModelPolicy.seconds / wall,
        "model_ms_per_move": 1000 * TimedModelPolicy.seconds / TimedModelPolicy.moves,
        "model_cpu_ms_per_move": 1000 * TimedModelPolicy.cpu_seconds / TimedModelPolicy.moves,
        # CPU per model move: the model's calls, the rest of this process (match loop, engine I/O), Stockfish
        "cpu_ms": [1000 * s / TimedModelPolicy.moves for s in (TimedModelPolicy.cpu_seconds, process, engines)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few games only (CI smoke run)")
    parser.add_argument("--games", type=int, default=512, help="games for the batched engine")
    parser.add_argument("--in-flight", type=int, default=256, help="games in flight (play_matches' default)")
    parser.add_argument("--sequential-games", type=int, default=12, help="games for the batch-size-1 baseline")
    parser.add_argument("--opponent", choices=("stockfish", "random"), default="stockfish")
    parser.add_argument("--level", type=int, default=1, help="Stockfish Skill Level (depth level + 1)")
    parser.add_argument("--engines", type=int, default=2, help="Stockfish processes in the pool")
    parser.add_argument("--max-plies", type=int, default=160)
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="alternate runs of each; the fastest is reported")
    args = parser.parse_args()
    if args.quick:
        args.games, args.in_flight, args.sequential_games, args.max_plies, args.repeats = 8, 4, 2, 60, 1
    torch.set_num_threads(args.torch_threads)
    torch.manual_seed(0)
    model = ChessFormer(config_for("tiny"))
    player = Player("chessformer-tiny", TimedModelPolicy(model, 1.0), temperature=1.0)
    reference = Player("chessformer-tiny", TimedModelPolicy(model, 1.0, incremental=False), temperature=1.0)
    rules = Rules(max_plies=args.max_plies)
    print(
        f"ChessFormer tiny ({sum(p.numel() for p in model.parameters()):,} parameters, random weights, τ=1) "
        f"vs {args.opponent}; torch threads {args.torch_threads}; ply cap {args.max_plies}; best of {args.repeats}"
    )
    with EnginePool.start(lambda: SkillEngine(find_stockfish()), size=args.engines) as pool:
        if args.opponent == "stockfish":
            opponent = stockfish_opponents(pool, anchors={args.level: 1554.0})[0]
        else:
            opponent = Player("random", RandomPolicy(), "random", 0.0)
        configurations = {
            "sequential, recomputed": (reference, args.sequential_games, 1),
            "sequential, KV cache": (player, args.sequential_games, 1),
            f"batched ({args.in_flight} in flight), KV cache": (player, args.games, args.in_flight),
        }
        runs: dict[str, list[dict]] = {label: [] for label in configurations}
        for _ in range(args.repeats):
            for label, (side, games, in_flight) in configurations.items():
                runs[label].append(measure(label, Pairing(side, opponent, games), rules, in_flight, pool))
        sequential, cached, batched = (max(runs[label], key=lambda row: row["model_moves_per_s"]) for label in runs)
    print(
        f"{'':32} {'games':>6} {'plies':>6} {'model moves':>12} {'wall s':>8} {'moves/s':>9} {'games/min':>10} "
        f"{'model %':>8} {'model ms/move':>14} {'model CPU ms/move':>18}  CPU ms/move: model / loop / Stockfish"
    )
    for row in (sequential, cached, batched):
        print(
            f"{row['label']:32} {row['games']:6d} {row['plies']:6.1f} {row['model_moves']:12d} {row['wall_s']:8.1f} "
            f"{row['model_moves_per_s']:9.1f} {row['games_per_min']:10.1f} {100 * row['model_share']:7.0f}% "
            f"{row['model_ms_per_move']:14.2f} {row['model_cpu_ms_per_move']:18.2f}  "
            f"{row['cpu_ms'][0]:.2f} / {row['cpu_ms'][1] - row['cpu_ms'][0]:.2f} / {row['cpu_ms'][2]:.2f}"
        )
    print(
        f"speed-up: {batched['model_moves_per_s'] / sequential['model_moves_per_s']:.1f}x model moves/s, "
        f"{batched['games_per_min'] / sequential['games_per_min']:.1f}x games/min (target >= 10x), "
        f"{sequential['model_ms_per_move'] / batched['model_ms_per_move']:.1f}x model time per move, "
        f"{sequential['model_cpu_ms_per_move'] / batched['model_cpu_ms_per_move']:.1f}x model CPU time per move"
    )
    print(
        f"over sequential with the KV cache: {batched['model_moves_per_s'] / cached['model_moves_per_s']:.1f}x "
        f"model moves/s, {batched['games_per_min'] / cached['games_per_min']:.1f}x games/min"
    )


if __name__ == "__main__":
    main()
