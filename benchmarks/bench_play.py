"""Batched match engine vs a sequential batch-size-1 loop like the reference code's, in one run, at two sizes.

Both sides play the same ChessFormer (random weights: a trained one costs the same per move) against the same
Stockfish opponent through the same engine pool; the sequential baseline is the same engine with one game in
flight (`max_in_flight=1`), i.e. one forward pass per model move and one engine busy at a time, every call made
in the calling thread as a plain loop makes it, and like the reference code it recomputes the whole history at
every move (`incremental=False`). With many games in flight the engine plays the model's half of the games while
Stockfish searches for the other half (`play_matches`): every search of a half is written to the engines at once,
behind the other half's, so they go from one search to the next without waiting for this process. The batched
engine reads the earlier plies from the model's key/value cache; a third row, sequential with that cache, shows
how much of the gain is the cache and how much the batching. The runs alternate `--repeats` times and the fastest
of each is reported: on a shared 2-core machine the minimum is the figure least disturbed by other work. The
model's CPU time per move (its calling thread's) is printed too: it shows the batching gain without the
overlapping Stockfish searches and the machine's other load.

Two sizes, each with its own baseline: `tiny` (~650k parameters, what the pipeline trains on CPU), where Stockfish
and the Python match loop cost more than the model per move and so cap the ratio, and `paper` (`config_for("paper")`:
the reference's 16 layers x 8 heads x 512, ~50M parameters), where the model dominates as it did in the reference.
The paper size plays fewer games (a batch-1 move there recomputes up to 160 plies of a 50M-parameter model) and
keeps 64 games in flight, as many as the key/value cache holds at that size (`KV_CACHE_BYTES`, 16 MiB a game); a
model call scores the games where it is the model's turn, about half of those in flight.

The batched engine plays more games than it keeps in flight, as a full evaluation does, so its batches stay full
until the last games (with exactly as many games as slots, the long games' tail runs at tiny batch sizes). CPU
per model move is split into the model's calls, the rest of the main thread (the match loop: rules, sampling, SAN,
PGN, and the pipes to the engines: Stockfish's searches are written and read by the main thread, see
`play.AsksAhead`), this process's other threads (opponents called in threads; none here) and the Stockfish
processes (read from /proc), which says what limits each mode: the main thread is the model plus the match loop,
and it shares this machine's two cores with Stockfish.

    .venv/bin/python benchmarks/bench_play.py                # tiny: 512 (256 in flight) vs 48; paper: 128 (64) vs 8
    .venv/bin/python benchmarks/bench_play.py --model paper  # one size
    .venv/bin/python benchmarks/bench_play.py --quick        # smoke run: a few short games of each size
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
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

    def legal_distribution(self, boards: Sequence[chess.Board]):
        start, cpu_start = time.perf_counter(), time.thread_time()
        try:
            return super().legal_distribution(boards)
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
    thread_start = time.thread_time()
    records = play_matches([pairing], rules=rules, rng_seed=0, max_in_flight=max_in_flight)
    wall, main_thread = time.perf_counter() - start, time.thread_time() - thread_start
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
        # CPU per model move: the model's calls, the main thread, this process (threads talking to the engines
        # too), the Stockfish processes
        "cpu_ms": [
            1000 * s / TimedModelPolicy.moves for s in (TimedModelPolicy.cpu_seconds, main_thread, process, engines)
        ],
    }


@dataclass(frozen=True)
class Size:
    """How much each mode plays at one model size: enough batched games to keep the batches full, few sequential."""

    games: int
    in_flight: int
    sequential_games: int
    repeats: int


SIZES = {"tiny": Size(512, 256, 48, 3), "paper": Size(128, 64, 8, 1)}
QUICK = {"tiny": Size(8, 4, 2, 1), "paper": Size(4, 4, 1, 1)}


def compare(size: str, plan: Size, opponent: Player, rules: Rules, pool: EnginePool) -> tuple[dict, dict, dict]:
    """The fastest of `plan.repeats` runs of each mode at one model size: recomputed and cached batch-1, batched."""
    torch.manual_seed(0)
    model = ChessFormer(config_for(size))
    player = Player(f"chessformer-{size}", TimedModelPolicy(model, 1.0), temperature=1.0)
    reference = Player(f"chessformer-{size}", TimedModelPolicy(model, 1.0, incremental=False), temperature=1.0)
    print(
        f"\nChessFormer {size} ({sum(p.numel() for p in model.parameters()):,} parameters, random weights, τ=1) "
        f"vs {opponent.name}; ply cap {rules.max_plies}; best of {plan.repeats}"
    )
    configurations = {
        "sequential, recomputed": (reference, plan.sequential_games, 1),
        "sequential, KV cache": (player, plan.sequential_games, 1),
        f"batched ({plan.in_flight} in flight), KV cache": (player, plan.games, plan.in_flight),
    }
    runs: dict[str, list[dict]] = {label: [] for label in configurations}
    for _ in range(plan.repeats):
        for label, (side, games, in_flight) in configurations.items():
            runs[label].append(measure(label, Pairing(side, opponent, games), rules, in_flight, pool))
    sequential, cached, batched = (max(runs[label], key=lambda row: row["model_moves_per_s"]) for label in runs)
    print(
        f"{'':32} {'games':>6} {'plies':>6} {'model moves':>12} {'wall s':>8} {'moves/s':>9} {'games/min':>10} "
        f"{'model %':>8} {'model ms/move':>14} {'model CPU ms/move':>18}  "
        "CPU ms/move: model / match loop / other threads / Stockfish"
    )
    for row in (sequential, cached, batched):
        model, main, process, engines = row["cpu_ms"]
        print(
            f"{row['label']:32} {row['games']:6d} {row['plies']:6.1f} {row['model_moves']:12d} {row['wall_s']:8.1f} "
            f"{row['model_moves_per_s']:9.1f} {row['games_per_min']:10.1f} {100 * row['model_share']:7.0f}% "
            f"{row['model_ms_per_move']:14.2f} {row['model_cpu_ms_per_move']:18.2f}  "
            f"{model:.2f} / {main - model:.2f} / {process - main:.2f} / {engines:.2f}"
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
    return sequential, cached, batched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=tuple(SIZES), action="append", help="model size(s); default: both")
    parser.add_argument("--quick", action="store_true", help="a few short games of each size (CI smoke run)")
    parser.add_argument("--games", type=int, help="games for the batched engine (default: per size)")
    parser.add_argument("--in-flight", type=int, help="games in flight (default: per size)")
    parser.add_argument("--sequential-games", type=int, help="games for the batch-size-1 baselines (default: per size)")
    parser.add_argument("--repeats", type=int, help="alternate runs of each, the fastest reported (default: per size)")
    parser.add_argument("--opponent", choices=("stockfish", "random"), default="stockfish")
    parser.add_argument("--level", type=int, default=1, help="Stockfish Skill Level (depth level + 1)")
    parser.add_argument("--engines", type=int, default=2, help="Stockfish processes in the pool")
    parser.add_argument("--max-plies", type=int, help="ply cap, the same for every mode (default: 160, quick: 40)")
    parser.add_argument("--torch-threads", type=int, default=1)
    args = parser.parse_args()
    overrides = {
        field: value
        for field in ("games", "in_flight", "sequential_games", "repeats")
        if (value := getattr(args, field)) is not None
    }
    plans = {
        size: dataclasses.replace((QUICK if args.quick else SIZES)[size], **overrides) for size in args.model or SIZES
    }
    rules = Rules(max_plies=args.max_plies or (40 if args.quick else 160))
    torch.set_num_threads(args.torch_threads)
    load = " ".join(f"{minutes:.1f}" for minutes in os.getloadavg())
    print(f"torch threads {args.torch_threads}; {args.engines} Stockfish processes; load average {load}")
    results = {}
    with EnginePool.start(lambda: SkillEngine(find_stockfish()), size=args.engines) as pool:
        if args.opponent == "stockfish":
            opponent = stockfish_opponents(pool, anchors={args.level: 1554.0})[0]
        else:
            opponent = Player("random", RandomPolicy(), "random", 0.0)
        for size, plan in plans.items():
            results[size] = compare(size, plan, opponent, rules, pool)
    print(f"\nsummary (random weights, vs {opponent.name}): batch-1 recomputed baseline vs batched with the KV cache")
    print(
        f"{'model':6} {'baseline moves/s':>17} {'batched moves/s':>16} {'speed-up':>9} "
        f"{'baseline games/min':>19} {'batched games/min':>18} {'speed-up':>9}"
    )
    for size, (sequential, _, batched) in results.items():
        print(
            f"{size:6} {sequential['model_moves_per_s']:17.1f} {batched['model_moves_per_s']:16.1f} "
            f"{batched['model_moves_per_s'] / sequential['model_moves_per_s']:8.1f}x "
            f"{sequential['games_per_min']:19.2f} {batched['games_per_min']:18.2f} "
            f"{batched['games_per_min'] / sequential['games_per_min']:8.1f}x"
        )


if __name__ == "__main__":
    main()
