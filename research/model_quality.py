"""Does a ChessFormer trained on a cap bucket clear the quality bar (issue 5)? End to end on a panel month.

    .venv/bin/python research/model_quality.py --quick                          # smoke panel, seconds of training
    .venv/bin/python research/model_quality.py --profile demo --games 3000 --minutes 5
    .venv/bin/python research/model_quality.py --dump data/raw/panel-demo/lichess_db_standard_rated_2025-01.pgn.zst \
        --caps 1000 1300 --targets mixture --minutes 2                           # the head's ceiling, on a demo month
    .venv/bin/python research/model_quality.py --dump ... --model paper --override board_input=true \
        --override move_features=true                                          # a board network, on a GPU

Generates a month dump with the panel (or reads `--dump`), reads its games, splits them into cap buckets (max Elo
<= cap), holds out every tenth game of each bucket, trains a model per cap (`--model`, default `tiny`, with `--override`s
of its config) for `--minutes` on CUDA with bf16 when present, else on the CPU, and prints the
quality table per cap: the model at τ→0 and τ=1 next to every bucket player's clone and softmax, the consensus, and
the bar (the bucket's best player's clone), all measured in the same run on the same held-out positions.

`--targets` says what the model learns from. `played` (the pipeline's way): the moves of the games. The other two
are the panel's ground truth, for a ceiling: noise-free targets on `--fit-positions` positions of the training
games. `mixture`: the bucket's players' policies, each weighted by its share of the bucket's games — what the
played moves are samples of. `q`: softmax(Q / 0.02), the shared skill signal itself. A model that misses the bar
on the mixture's exact probabilities would miss it with any amount of played games: its head must represent more.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import io
import json
import tempfile
import time
from pathlib import Path

import chess.pgn
import numpy as np
import torch
import zstandard

from transcend_pipeline.inference import position_batch
from transcend_pipeline.model import SIZES, ChessFormer, config_for
from transcend_pipeline.model_quality import format_table, measure_policy_quality, sample_positions
from transcend_pipeline.opponents import EnginePool, PooledQ
from transcend_pipeline.panel import Panel, PanelConfig, TacticalQ, panel_players, write_month_dump
from transcend_pipeline.settings import find_stockfish
from transcend_pipeline.shards import build_shards
from transcend_pipeline.training import TrainConfig, train

MONTH = "2024-01"
HELD_OUT_EVERY = 10
Q_TEMPERATURE = 0.02  # `--targets q`: sharp enough that the best moves carry the target, as the best players' do
FIT_BATCH = 256  # positions per step of the oracle-target fit


def read_games(dump_path: Path) -> list[tuple[int, list[str], tuple[str, str]]]:
    """(max Elo, UCI moves, (White, Black)) of every game in a dump."""
    games = []
    with zstandard.open(dump_path, "rt", encoding="utf-8") as text:
        stream = io.StringIO(text.read())
    while (game := chess.pgn.read_game(stream)) is not None:
        elo = max(int(game.headers["WhiteElo"]), int(game.headers["BlackElo"]))
        players = (game.headers["White"], game.headers["Black"])
        games.append((elo, [move.uci() for move in game.mainline_moves()], players))
    return games


def oracle_targets(boards, moves, config, rows, bucket_players, q, targets) -> list[np.ndarray]:
    """Per position, the target probability of each of its legal moves (in `moves`' order)."""
    if hasattr(q, "prefetch"):
        q.prefetch(boards)
    games_of = collections.Counter(bucket_players)
    members = [row for row in rows if games_of.get(row["player"])]
    weights = np.array([games_of[row["player"]] for row in members], dtype=np.float64)
    panel, indices = Panel(config), [int(row["player_index"]) for row in members]
    result = []
    for board, legal in zip(boards, moves, strict=True):
        values = q.q_values(board)
        if targets == "q":
            order = list(values)
            logits = np.array([values[move] for move in order]) / Q_TEMPERATURE
            probabilities = np.exp(logits - logits.max())
        else:
            order, policies = panel.policies(board, values, indices)
            probabilities = weights @ policies
        index = {move: i for i, move in enumerate(order)}
        target = probabilities[[index[move] for move in legal]]
        result.append(target / target.sum())
    return result


def fit_to_oracle(training, config, rows, bucket_players, q, args) -> ChessFormer:
    """A ChessFormer trained for `args.minutes` on noise-free targets (soft cross-entropy), not played moves."""
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    samples = sample_positions(training, args.fit_positions, seed=1, skip_plies=config.opening_plies[1])
    boards = [board for board, _ in samples]
    model = ChessFormer(config_for(args.model, **args.override)).to(device)
    moves = [position_batch(model, boards[i : i + FIT_BATCH])[1] for i in range(0, len(boards), FIT_BATCH)]
    moves = [legal for batch in moves for legal in batch]
    targets = oracle_targets(boards, moves, config, rows, bucket_players, q, args.targets)
    optimizer = model.configure_optimizers(0.01, 2e-3, (0.9, 0.99), device.type)
    rng, steps, started = np.random.default_rng(0), 0, time.perf_counter()
    model.train()
    while time.perf_counter() - started < args.minutes * 60:
        chosen = np.sort(rng.choice(len(boards), size=min(FIT_BATCH, len(boards)), replace=False))
        batch, _ = position_batch(model, [boards[i] for i in chosen])
        with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            logits, _ = model(batch)
        logits = logits.float()
        target = torch.zeros_like(logits)
        for row, i in enumerate(chosen):
            target[row, : len(targets[i])] = torch.from_numpy(targets[i]).to(device)
        log_p = torch.log_softmax(logits, dim=-1)
        loss = -torch.where(target > 0, target * log_p, torch.zeros_like(log_p)).sum(-1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps += 1
    print(f"    fitted to {args.targets} targets on {device}: {len(boards)} positions, {steps} steps of {FIT_BATCH}")
    return model.eval()


def measure_cap(cap, games, config, rows, q, args, work: Path) -> None:
    bucket = [moves for elo, moves, _ in games if elo <= cap]
    bucket_players = [name for elo, _, players in games if elo <= cap for name in players]
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
    if args.targets != "played":
        model = fit_to_oracle(training, config, bucket_rows, bucket_players, q, args)
        report = measure_policy_quality(model, held_out, config, bucket_rows, q, positions=args.positions, seed=0)
        print(format_table(report))
        return
    shards = work / f"shards-{cap}"
    build_shards({"train": training, "val": held_out}, shards, games_per_shard=512)
    train_config = TrainConfig(
        experiment=f"cap{cap}",
        model_size=args.model,
        model_overrides=args.override,
        batch_games=min(32, len(training)),
        val_every_steps=100,
        cpu_threads=args.threads,
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
    parser.add_argument("--dump", type=Path, help="read this panel month (of --profile's panel) instead of writing one")
    parser.add_argument("--targets", choices=("played", "mixture", "q"), default="played", help="see above")
    parser.add_argument("--fit-positions", type=int, default=20_000, help="positions fitted with oracle targets")
    parser.add_argument("--model", choices=sorted(SIZES), default="tiny", help="ChessFormer size")
    parser.add_argument(
        "--override", action="append", default=[], metavar="KEY=VALUE", help="a config field (VALUE as JSON)"
    )
    args = parser.parse_args()
    args.override = {key: json.loads(value) for key, value in (item.split("=", 1) for item in args.override)}
    config_for(args.model, **args.override)  # an unknown field fails here, before the panel month is made
    if args.quick:
        args.profile, args.minutes, args.positions = "smoke", 0.1, 200
    config = PanelConfig.for_profile(args.profile)
    overrides = {"games_per_month": args.games, "q_source": args.q_source}
    config = dataclasses.replace(config, **{key: value for key, value in overrides.items() if value is not None})
    stockfish = str(find_stockfish())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.dump is None:
            dump = write_month_dump(config, MONTH, work / "raw", stockfish_path=stockfish, workers=args.workers)
            print(
                f"panel {args.profile} ({config.n_players} players, Q {config.q_source}): {dump.games} games "
                f"in {dump.seconds:.0f} s"
            )
        dump_path = args.dump or dump.path
        games = read_games(dump_path)
        rows = panel_players(config, MONTH, dump_path)
        if config.q_source == "tactical":
            for cap in args.caps:
                measure_cap(cap, games, config, rows, TacticalQ(), args, work)
            return
        with EnginePool.start(PooledQ.engine_factory(config, stockfish), args.workers) as pool:
            for cap in args.caps:
                measure_cap(cap, games, config, rows, PooledQ(pool, independent=True), args, work)


if __name__ == "__main__":
    main()
