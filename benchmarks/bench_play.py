"""Batched match engine vs a sequential batch-size-1 loop like the reference code's, in one run.

Both sides play the same ChessFormer (`tiny`, random weights: a trained one costs the same per move) against the
same Stockfish opponent through the same engine pool; the sequential baseline is the same engine with one game
in flight (`max_in_flight=1`), i.e. one forward pass per model move and one engine busy at a time. The two are
measured alternately `--repeats` times and the fastest run of each is reported: on a shared 2-core machine the
minimum is the figure least disturbed by other work. The model's CPU time per move (its calling thread's) is
printed too: it shows the batching gain without the overlapping Stockfish searches and the machine's other load.

    .venv/bin/python benchmarks/bench_play.py            # 64 batched games vs 6 sequential
    .venv/bin/python benchmarks/bench_play.py --quick    # smoke run: 8 vs 2
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

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


def measure(label: str, pairing: Pairing, rules: Rules, max_in_flight: int) -> dict:
    TimedModelPolicy.seconds, TimedModelPolicy.cpu_seconds, TimedModelPolicy.moves = 0.0, 0.0, 0
    start = time.perf_counter()
    records = play_matches([pairing], rules=rules, rng_seed=0, max_in_flight=max_in_flight)
    wall = time.perf_counter() - start
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
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few games only (CI smoke run)")
    parser.add_argument("--games", type=int, default=64, help="games for the batched engine (all in flight)")
    parser.add_argument("--sequential-games", type=int, default=6, help="games for the batch-size-1 baseline")
    parser.add_argument("--opponent", choices=("stockfish", "random"), default="stockfish")
    parser.add_argument("--level", type=int, default=1, help="Stockfish Skill Level (depth level + 1)")
    parser.add_argument("--engines", type=int, default=2, help="Stockfish processes in the pool")
    parser.add_argument("--max-plies", type=int, default=160)
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="alternate runs of each; the fastest is reported")
    args = parser.parse_args()
    if args.quick:
        args.games, args.sequential_games, args.max_plies, args.repeats = 8, 2, 60, 1
    torch.set_num_threads(args.torch_threads)
    torch.manual_seed(0)
    model = ChessFormer(config_for("tiny"))
    player = Player("chessformer-tiny", TimedModelPolicy(model, 1.0), temperature=1.0)
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
        runs: dict[str, list[dict]] = {"sequential": [], "batched": []}
        for _ in range(args.repeats):
            runs["sequential"].append(
                measure("sequential, 1 game in flight", Pairing(player, opponent, args.sequential_games), rules, 1)
            )
            runs["batched"].append(
                measure(f"batched, {args.games} in flight", Pairing(player, opponent, args.games), rules, args.games)
            )
        sequential, batched = (max(runs[kind], key=lambda row: row["model_moves_per_s"]) for kind in runs)
    print(
        f"{'':32} {'games':>6} {'plies':>6} {'model moves':>12} {'wall s':>8} {'moves/s':>9} {'games/min':>10} "
        f"{'model %':>8} {'model ms/move':>14} {'model CPU ms/move':>18}"
    )
    for row in (sequential, batched):
        print(
            f"{row['label']:32} {row['games']:6d} {row['plies']:6.1f} {row['model_moves']:12d} {row['wall_s']:8.1f} "
            f"{row['model_moves_per_s']:9.1f} {row['games_per_min']:10.1f} {100 * row['model_share']:7.0f}% "
            f"{row['model_ms_per_move']:14.2f} {row['model_cpu_ms_per_move']:18.2f}"
        )
    print(
        f"speed-up: {batched['model_moves_per_s'] / sequential['model_moves_per_s']:.1f}x model moves/s, "
        f"{batched['games_per_min'] / sequential['games_per_min']:.1f}x games/min (target >= 10x), "
        f"{sequential['model_ms_per_move'] / batched['model_ms_per_move']:.1f}x model time per move, "
        f"{sequential['model_cpu_ms_per_move'] / batched['model_cpu_ms_per_move']:.1f}x model CPU time per move"
    )


if __name__ == "__main__":
    main()
