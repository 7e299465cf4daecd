"""Speed of the training path: featurisation, shard building, and training positions/s for `tiny` and `paper`.

    .venv/bin/python benchmarks/bench_training.py [--quick]

Each figure is printed beside a baseline measured in the same run (timings on a shared machine are noisy; the
ratios are what to compare). Runs unchanged on CPU or CUDA; on CUDA it adds the paper size's tokens/s and MFU
with bf16 autocast and torch.compile, naming the card.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import chess
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "tests")]

from fixtures import greedy_capture_games  # noqa: E402

from transcend_pipeline.features import MOVE_FEATURES, featurise  # noqa: E402
from transcend_pipeline.model import ChessFormer, config_for, peak_flops  # noqa: E402
from transcend_pipeline.shards import ShardDataset, ShardManifest, build_shards, collate  # noqa: E402
from transcend_pipeline.training import TrainConfig, train  # noqa: E402


def positions_of(games: list[list[str]]) -> list[chess.Board]:
    boards = []
    for game in games:
        board = chess.Board()
        for uci in game:
            boards.append(board.copy(stack=False))
            board.push_uci(uci)
    return boards


def timed(function, *args, **kwargs) -> tuple[float, object]:
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - started, result


def bench_features(boards: list[chess.Board]) -> None:
    seconds, _ = timed(featurise, boards)
    legal_seconds, _ = timed(lambda: [list(board.generate_legal_moves()) for board in boards])
    sample = boards[: max(1, len(boards) // 10)]

    def python_chess_reference() -> None:  # the per-move python-chess way to get a few of the same facts
        for board in sample:
            for move in board.generate_legal_moves():
                board.gives_check(move), board.attackers_mask(not board.turn, move.to_square)
                board.push(move)
                board.attackers_mask(not board.turn, move.to_square), board.attackers_mask(board.turn, move.to_square)
                board.pop()

    reference_seconds, _ = timed(python_chess_reference)
    per = 1e6 / len(boards)
    print(f"featurise            {seconds * per:8.1f} µs/position ({len(boards)} positions)")
    print(f"  baseline: python-chess legal move generation alone {legal_seconds * per:8.1f} µs/position")
    print(
        f"  baseline: python-chess per-move push/attackers/gives_check (4 of {len(MOVE_FEATURES)} features) {reference_seconds * 1e6 / len(sample):8.1f} µs/position"
    )


def bench_shards(games: list[list[str]], directory: Path) -> Path:
    split = int(len(games) * 0.9)
    splits = {"train": games[:split], "val": games[split:]}
    one, _ = timed(build_shards, splits, directory / "one", games_per_shard=max(8, len(games) // 8))
    two, manifest = timed(build_shards, splits, directory / "two", games_per_shard=max(8, len(games) // 8), workers=2)
    positions = manifest.count("train", "positions") + manifest.count("val", "positions")
    print(f"build shards         {len(games) / two:8.1f} games/s with 2 workers ({positions / two:,.0f} positions/s)")
    print(f"  baseline: 1 worker {len(games) / one:8.1f} games/s")
    size = sum(f.stat().st_size for f in (directory / "two").rglob("*.npy"))
    print(f"  on disk: {size / positions:.0f} bytes/position")
    return directory / "two"


def raw_positions_per_second(model: ChessFormer, batches: list[dict], device: torch.device, steps: int) -> float:
    """Forward + backward + AdamW step on ready batches: the model's own speed, without the loader."""
    model.to(device).train()
    optimizer = model.configure_optimizers(0.01, 1e-3, (0.9, 0.99), device.type)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step(batch: dict) -> None:
        with autocast:
            loss, _, _ = model.loss(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    on_device = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in b.items()} for b in batches]
    step(on_device[0])  # warm-up (and compilation)
    if device.type == "cuda":
        torch.cuda.synchronize()
    started, positions = time.perf_counter(), 0
    for index in range(steps):
        batch = on_device[index % len(on_device)]
        step(batch)
        positions += len(batch["query"])
    if device.type == "cuda":
        torch.cuda.synchronize()
    return positions / (time.perf_counter() - started)


def bench_training(shards: Path, quick: bool) -> None:
    dataset = ShardDataset(shards, ShardManifest.load(shards).splits["train"])
    cpu = torch.device("cpu")
    tiny_batches = [collate([dataset[i % len(dataset)] for i in range(j * 32, (j + 1) * 32)]) for j in range(4)]
    paper_batches = [collate([dataset[i % len(dataset)] for i in range(j * 4, (j + 1) * 4)]) for j in range(2)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    tiny = raw_positions_per_second(ChessFormer(config_for("tiny")), tiny_batches, cpu, 4 if quick else 20)
    transcript = ChessFormer(config_for("tiny", move_features=False, board_input=False))
    transcript_speed = raw_positions_per_second(transcript, tiny_batches, cpu, 4 if quick else 20)
    torch.set_num_threads(threads)
    tiny_threads = raw_positions_per_second(ChessFormer(config_for("tiny")), tiny_batches, cpu, 4 if quick else 20)
    paper = raw_positions_per_second(ChessFormer(config_for("paper")), paper_batches, cpu, 1 if quick else 3)
    print(f"train tiny (CPU, 1 thread)   {tiny:10,.0f} positions/s (= move tokens/s)")
    print(f"  baseline: {threads} threads         {tiny_threads:10,.0f} positions/s")
    print(f"  baseline: tiny trunk, transcript head (no move features) {transcript_speed:10,.0f} positions/s")
    print(f"train paper (CPU, {threads} threads) {paper:10,.1f} positions/s")

    with tempfile.TemporaryDirectory() as run:
        steps = 10 if quick else 60
        config = TrainConfig(val_every_steps=steps, val_batches=1, checkpoint_every_steps=steps)
        result = train(shards, config, run, max_steps=steps)
    print(
        f"train() end to end, tiny   {result.positions_per_second:10,.0f} positions/s (Lightning, loader, checkpoints)"
    )

    if torch.cuda.is_available():
        device = torch.device("cuda")
        name = torch.cuda.get_device_name()
        gpu_batches = [collate([dataset[i % len(dataset)] for i in range(j * 64, (j + 1) * 64)]) for j in range(2)]
        model = ChessFormer(config_for("paper"))
        eager = raw_positions_per_second(model, gpu_batches, device, 3 if quick else 20)
        model.trunk = torch.compile(model.trunk, dynamic=True)  # as train() does
        compiled = raw_positions_per_second(model, gpu_batches, device, 3 if quick else 20)
        tokens_per_game = gpu_batches[0]["tokens"].shape[1]
        peak = peak_flops(name)
        for label, speed in (("eager", eager), ("compiled", compiled)):
            mfu = f"MFU {model.estimate_mfu(speed, tokens_per_game, peak):.1%}" if peak else "MFU n/a (unknown card)"
            print(f"train paper ({name}, bf16, {label}) {speed:12,.0f} positions/s, {mfu}")
        print(f"  baseline: paper on CPU {paper:10,.1f} positions/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run (CI)")
    parser.add_argument("--games", type=int, default=None, help="games to generate (default 400, quick 40)")
    args = parser.parse_args()
    games = greedy_capture_games(args.games or (40 if args.quick else 400), seed=0, max_plies=120)
    bench_features(positions_of(games[: 10 if args.quick else 60]))
    with tempfile.TemporaryDirectory() as directory:
        shards = bench_shards(games, Path(directory))
        bench_training(shards, args.quick)


if __name__ == "__main__":
    main()
