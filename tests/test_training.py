"""Shards, the Lightning loop, checkpoints, resume and two-process DDP, on games with a learnable rule."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import chess
import numpy as np
import pytest
import torch
from fixtures import greedy_capture_games

from transcend_pipeline import vocab
from transcend_pipeline.inference import legal_move_distribution
from transcend_pipeline.model import ChessFormer, config_for
from transcend_pipeline.shards import (
    LEGAL_ROWS_MULTIPLE,
    InvalidGameError,
    NotEnoughShardsError,
    ShardDataset,
    ShardManifest,
    TrainBatches,
    build_shards,
    chance_accuracy,
    collate,
    rank_shards,
)
from transcend_pipeline.training import TrainConfig, code_version, discard_stale_checkpoint, train

REPO_ROOT = Path(__file__).resolve().parents[1]
FAST = dict(
    batch_positions=768, batch_games=16, val_every_steps=20, val_batches=2, checkpoint_every_steps=20, warmup_steps=10
)
#: A model small enough that a few steps take well under a second, for tests of the loop rather than of learning.
SMALL = dict(model_overrides=dict(n_layer=1, n_head=2, n_embd=32), warmup_steps=1, val_batches=1)


@pytest.fixture(scope="module")
def games() -> list[list[str]]:
    return greedy_capture_games(120, seed=2, max_plies=60)


@pytest.fixture(scope="module")
def shards(games: list[list[str]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data") / "shards"
    build_shards({"train": games[:100], "val": games[100:]}, out, games_per_shard=25)
    return out


@pytest.fixture(scope="module")
def trained(shards: Path, tmp_path_factory: pytest.TempPathFactory):
    run = tmp_path_factory.mktemp("runs") / "greedy"
    return train(shards, TrainConfig(experiment="greedy", **FAST), run, max_steps=60), run


def test_manifest_counts_and_hash(games: list[list[str]], shards: Path, tmp_path: Path) -> None:
    manifest = ShardManifest.load(shards)
    assert manifest.count("train") == 100 and manifest.count("val") == 20
    assert len(manifest.splits["train"]) == 4
    assert manifest.count("train", "positions") == sum(len(game) for game in games[:100])
    rebuilt = build_shards({"train": games[:100], "val": games[100:]}, tmp_path / "again", games_per_shard=25)
    assert rebuilt.content_hash == manifest.content_hash
    spawned = build_shards(  # on two spawned worker processes: the same shards
        {"train": games[:100], "val": games[100:]}, tmp_path / "spawned", games_per_shard=25, workers=2
    )
    assert spawned.content_hash == manifest.content_hash
    changed = build_shards({"train": games[1:101], "val": games[100:]}, tmp_path / "other", games_per_shard=25)
    assert changed.content_hash != manifest.content_hash
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging directories left behind


def test_shards_hold_the_played_moves(games: list[list[str]], shards: Path) -> None:
    dataset = ShardDataset(shards, ShardManifest.load(shards).splits["train"])
    assert len(dataset) == 100
    for index in (0, 37, 99):
        game = dataset[index]
        played = [vocab.move_of(token).uci() for token in game["move_tokens"]]
        assert played == games[index]
        starts = np.concatenate([[0], np.cumsum(game["legal_counts"])[:-1]])
        assert (game["legal_tokens"][starts + game["target_slot"]] == game["move_tokens"]).all()


def test_collate_lines_up_inputs_targets_and_legal_moves(shards: Path) -> None:
    dataset = ShardDataset(shards, ShardManifest.load(shards).splits["val"])
    batch = collate([dataset[0], dataset[1]])
    lengths = [len(dataset[0]["move_tokens"]), len(dataset[1]["move_tokens"])]
    T = max(lengths)
    assert batch["tokens"].shape == (2, T) and (batch["tokens"][:, 0] == vocab.BOS).all()
    assert batch["tokens"][0, 1 : lengths[0]].tolist() == dataset[0]["move_tokens"][:-1].tolist()
    assert batch["query"].tolist() == list(range(lengths[0])) + [T + t for t in range(lengths[1])]
    played = batch["legal_tokens"][(batch["legal_query"] == 5) & (batch["legal_slot"] == batch["target_slot"][5])]
    assert played.tolist() == [batch["target_token"][5].item()]


@pytest.mark.parametrize("size", ["tiny", "paper"])
def test_padding_rows_leave_the_logits_and_loss_unchanged(shards: Path, size: str) -> None:
    dataset = ShardDataset(shards, ShardManifest.load(shards).splits["train"])
    games = [dataset[i] for i in range(3)]
    longest = max(len(game["move_tokens"]) for game in games)
    assert collate(games, max_plies=longest)["tokens"].shape[1] == longest  # never past what the model was built for
    batch = collate(games, max_plies=256)
    legal = int(sum(len(game["legal_tokens"]) for game in games))
    assert batch["tokens"].shape[1] == 32 * -(-longest // 32) > longest
    assert len(batch["legal_query"]) % LEGAL_ROWS_MULTIPLE == 0 and len(batch["legal_query"]) > legal
    assert (batch["legal_query"][legal:] == len(batch["query"])).all()  # the dummy position after the last query
    exact = {
        key: value[:legal] if key.startswith("legal") or key == "move_features" else value
        for key, value in batch.items()
    }
    model = ChessFormer(config_for(size, n_layer=1, n_head=2, n_embd=32)).eval()
    with torch.no_grad():
        padded_loss, padded_logits, _ = model.loss(batch)
        exact_loss, exact_logits, _ = model.loss(exact)
    assert padded_logits.shape == exact_logits.shape == (len(batch["query"]), batch["max_legal"])
    assert torch.allclose(padded_logits, exact_logits, atol=1e-6) and torch.allclose(padded_loss, exact_loss, atol=1e-6)


def test_position_batches_hold_exactly_batch_positions_the_last_game_cut(shards: Path) -> None:
    manifest = ShardManifest.load(shards)
    dataset = ShardDataset(shards, manifest.splits["train"])
    assert dataset.lengths.tolist() == [len(dataset[i]["move_tokens"]) for i in range(len(dataset))]
    batches = list(TrainBatches(dataset.lengths, 6, torch.Generator().manual_seed(0), positions=100))
    assert len(batches) == 6 and all(sum(plies for _, plies in batch) == 100 for batch in batches)
    assert batches == list(TrainBatches(dataset.lengths, 6, torch.Generator().manual_seed(0), positions=100))
    assert batches != list(TrainBatches(dataset.lengths, 6, torch.Generator().manual_seed(1), positions=100))
    for batch in batches:
        *whole, (game, plies) = batch
        assert all(plies == dataset.lengths[game] for game, plies in whole)
        assert 0 < plies <= dataset.lengths[game]
        cut, full = dataset[(game, plies)], dataset[game]
        assert len(cut["move_tokens"]) == len(cut["boards"]) == len(cut["legal_counts"]) == plies
        for key in ("move_tokens", "target_slot", "boards", "state", "legal_counts"):
            assert np.array_equal(cut[key], full[key][:plies]), key
        legal = int(cut["legal_counts"].sum())
        assert np.array_equal(cut["legal_tokens"], full["legal_tokens"][:legal])
        assert np.array_equal(cut["move_features"], full["move_features"][:legal])
        collated = collate([dataset[key] for key in batch], max_plies=manifest.max_plies)
        assert len(collated["query"]) == len(collated["target_slot"]) == len(collated["target_token"]) == 100
        assert collated["target_token"][-plies:].tolist() == full["move_tokens"][:plies].tolist()
        longest = max(plies for _, plies in batch)
        assert collated["tokens"].shape == (len(batch), min(32 * -(-longest // 32), manifest.max_plies))
        assert len(collated["legal_query"]) % LEGAL_ROWS_MULTIPLE == 0
        played = collated["legal_tokens"][collated["legal_query"] == 99][collated["target_slot"][99]]
        assert played == collated["target_token"][99]  # the cut game's last target lines up with its legal moves
    assert any(plies < dataset.lengths[game] for batch in batches for game, plies in batch[-1:])
    # Whole games, as with batch_positions=None: every game complete, the same count in every batch.
    whole = list(TrainBatches(dataset.lengths, 3, torch.Generator().manual_seed(0), games=16))
    assert [len(batch) for batch in whole] == [16] * 3 and all(p == dataset.lengths[g] for b in whole for g, p in b)


def test_equal_budgets_in_steps_and_positions_whatever_the_games_lengths(tmp_path: Path) -> None:
    # Two arms whose games differ a lot in length: with batch_positions both see the same steps and positions;
    # with whole-game batches the arm of long games sees far more positions in as many steps.
    arms = {plies: greedy_capture_games(24, seed=3, max_plies=plies) for plies in (40, 120)}
    mean_length = {plies: np.mean([len(game) for game in games]) for plies, games in arms.items()}
    assert mean_length[120] > 2 * mean_length[40]
    results = {}
    for plies, games in arms.items():
        build_shards({"train": games}, tmp_path / f"shards{plies}")
        for batch_positions in (200, None):
            config = TrainConfig(**{**SMALL, "batch_positions": batch_positions, "batch_games": 8})
            run = tmp_path / f"run{plies}-{batch_positions}"
            results[plies, batch_positions] = train(tmp_path / f"shards{plies}", config, run, max_steps=3)
            budget = torch.load(run / "last.ckpt", weights_only=True)["transcend"]["budget"]
            assert budget == {
                "max_steps": 3,
                "max_minutes": None,
                "batch_positions": batch_positions,
                "max_positions": None if batch_positions is None else 600,
            }
    assert results[40, 200].steps == results[120, 200].steps == 3
    assert results[40, 200].positions_seen == results[120, 200].positions_seen == 3 * 200
    assert results[40, None].steps == results[120, None].steps == 3
    assert results[120, None].positions_seen > 2 * results[40, None].positions_seen


def test_the_seed_is_in_the_lineage_and_decides_the_weights(shards: Path, tmp_path: Path) -> None:
    weights = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        config = TrainConfig(**{**FAST, **SMALL, "batch_positions": 128, "seed": seed})
        train(shards, config, tmp_path / name, max_steps=2)
        for checkpoint in ("last.ckpt", "best.ckpt"):
            assert torch.load(tmp_path / name / checkpoint, weights_only=True)["transcend"]["seed"] == seed
        weights[name] = torch.load(tmp_path / name / "last.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(weights["a"][key], value) for key, value in weights["b"].items())  # reproducible
    assert any(not torch.equal(weights["a"][key], value) for key, value in weights["c"].items())


def test_invalid_games_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidGameError, match="e2e5"):
        build_shards({"train": [["e2e4", "e7e5"], ["e2e5"]]}, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_each_rank_reads_its_own_shards(shards: Path) -> None:
    manifest = ShardManifest.load(shards)
    ranges = [rank_shards(manifest, "train", rank, 3) for rank in range(3)]
    paths = [shard["path"] for shards_of_rank in ranges for shard in shards_of_rank]
    assert sorted(paths) == sorted(shard["path"] for shard in manifest.splits["train"]) and len(set(paths)) == 4
    assert all(ranges)
    with pytest.raises(NotEnoughShardsError):
        rank_shards(manifest, "val", 0, 2)


@pytest.mark.slow
def test_training_learns_the_rule(trained, shards: Path) -> None:
    result, _ = trained
    assert result.steps == 60 and len(result.train_curve) == 60
    first, last = np.mean([v for _, v in result.train_curve[:5]]), np.mean([v for _, v in result.train_curve[-5:]])
    assert last < first - 0.5
    assert [step for step, _ in result.val_curve] == [20, 40, 60]
    assert result.val_curve[-1][1] < result.val_curve[0][1]
    assert result.val_top1 > 3 * chance_accuracy(shards)
    assert result.val_illegal_mass == 0.0  # the move head puts no mass outside legal moves, by construction
    assert result.positions_seen == 60 * 768  # every step trains on exactly batch_positions positions


@pytest.mark.slow
def test_checkpoint_loads_with_weights_only_and_records_lineage(trained, shards: Path) -> None:
    _, run = trained
    checkpoint = torch.load(run / "last.ckpt", weights_only=True)
    lineage = checkpoint["transcend"]
    assert lineage["experiment"] == "greedy" and lineage["data_hash"] == ShardManifest.load(shards).content_hash
    assert lineage["code_version"] == code_version() and lineage["config"]["move_features"]
    assert lineage["train_config"]["batch_positions"] == 768 and lineage["data"]["train"]["games"] == 100
    assert lineage["seed"] == 0 == lineage["train_config"]["seed"]
    assert lineage["budget"] == {
        "max_steps": 60,
        "max_minutes": None,
        "batch_positions": 768,
        "max_positions": 60 * 768,
    }
    assert checkpoint["global_step"] == 60
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 60 and metrics["checkpoint"] == str(run / "best.ckpt")
    model = ChessFormer.from_checkpoint(run / "last.ckpt")
    board = chess.Board()
    for uci in ("e2e4", "d7d5"):
        board.push_uci(uci)
    best = max(legal_move_distribution(model, [board], temperature=1.0).as_dicts()[0].items(), key=lambda kv: kv[1])
    assert best[0] == chess.Move.from_uci("e4d5")  # the rule: take the most valuable piece on offer


@pytest.mark.slow
def test_best_checkpoint_holds_the_weights_of_the_lowest_validation_loss(trained) -> None:
    result, run = trained
    best_step, _ = min(result.val_curve, key=lambda point: point[1])
    assert result.checkpoint == run / "best.ckpt" and result.best_step == best_step
    best = torch.load(run / "best.ckpt", weights_only=True)
    assert best["global_step"] == best_step and "optimizer_states" not in best  # weights only: not a resume point
    assert best["transcend"]["data_hash"] == result.data_hash
    last = torch.load(run / "last.ckpt", weights_only=True)
    if best_step != last["global_step"]:
        assert any(not torch.equal(best["state_dict"][k], v) for k, v in last["state_dict"].items())


def test_training_stops_when_the_validation_loss_stops_improving(shards: Path, tmp_path: Path) -> None:
    # With a learning rate of 0 the loss never improves on its first measurement: patience 2 ends the run after
    # the second validation without a new best, long before max_steps.
    config = TrainConfig(**{**FAST, "val_every_steps": 5, "learning_rate": 0.0, "patience": 2})
    result = train(shards, config, tmp_path, max_steps=200)
    assert result.steps == 15 and result.best_step == 5
    assert [step for step, _ in result.val_curve] == [5, 10, 15]
    assert torch.load(tmp_path / "best.ckpt", weights_only=True)["global_step"] == 5
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["global_step"] == 15


@pytest.mark.slow
def test_gpu_settings_train_on_cpu_and_the_checkpoint_loads_as_fp32(shards: Path, tmp_path: Path) -> None:
    # No GPU exists here: bf16 autocast and the compiled trunk, which train() uses on CUDA, run on CPU instead, so
    # that a dtype clash in the head or a checkpoint the eager model cannot load fails here rather than on a cluster.
    from torch._dynamo.utils import counters

    counters.clear()
    config = TrainConfig(**{**FAST, "compile": True, "precision": "bf16-mixed"})
    result = train(shards, config, tmp_path, max_steps=40)
    assert counters["stats"]["unique_graphs"] > 0  # the trunk did run compiled
    assert result.steps == 40 and result.val_curve[-1][1] < result.val_curve[0][1]
    checkpoint = torch.load(tmp_path / "last.ckpt", weights_only=True)
    model = ChessFormer.from_checkpoint(tmp_path / "last.ckpt")
    assert set(checkpoint["state_dict"]) == {f"model.{key}" for key in model.state_dict()}
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast keeps fp32 master weights
    distribution = legal_move_distribution(model, [chess.Board()], temperature=1.0).as_dicts()[0]
    assert len(distribution) == 20 and abs(sum(distribution.values()) - 1) < 1e-5


@pytest.mark.slow
def test_resume_continues_from_the_saved_step(shards: Path, tmp_path: Path) -> None:
    config = TrainConfig(**{**FAST, "checkpoint_every_steps": 10, "val_every_steps": 10})
    first = train(shards, config, tmp_path, max_steps=10)
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["global_step"] == 10
    resumed = train(shards, config, tmp_path, max_steps=20)
    assert resumed.steps == 20
    assert [step for step, _ in resumed.train_curve] == list(range(1, 21))  # the curve carries over, no restart
    assert resumed.train_curve[:10] == first.train_curve
    assert resumed.positions_seen > first.positions_seen and resumed.wall_seconds > first.wall_seconds
    fresh = train(shards, config, tmp_path, max_steps=5, resume=False)
    assert fresh.steps == 5


@pytest.mark.slow
def test_two_process_ddp_on_cpu_reads_different_shards(shards: Path, tmp_path: Path) -> None:
    script = tmp_path / "ddp_run.py"
    script.write_text(
        textwrap.dedent(f"""
        import json, os
        from transcend_pipeline.training import TrainConfig, train
        config = TrainConfig(
            batch_positions=128, batch_games=8, val_every_steps=5, val_batches=1, checkpoint_every_steps=5
        )
        result = train({str(shards)!r}, config, {str(tmp_path / "run")!r}, max_steps=6, devices=2, strategy="ddp")
        rank = int(os.environ.get("LOCAL_RANK", 0))
        with open({str(tmp_path)!r} + f"/rank{{rank}}.json", "w") as out:
            json.dump({{"shards": result.shards_read, "steps": result.steps, "positions": result.positions_seen}}, out)
        """)
    )
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    completed = subprocess.run(
        [sys.executable, str(script)], env=environment, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    assert ranks[0]["steps"] == ranks[1]["steps"] == 6
    assert ranks[0]["positions"] == ranks[1]["positions"] == 6 * 128 * 2  # both ranks' positions, on each rank
    assert ranks[0]["shards"] and ranks[1]["shards"] and not set(ranks[0]["shards"]) & set(ranks[1]["shards"])
    checkpoint = torch.load(tmp_path / "run" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 6 and checkpoint["transcend"]["budget"]["max_positions"] == 6 * 128 * 2


@pytest.mark.slow
def test_transcript_head_reports_its_mass_on_illegal_moves(shards: Path, tmp_path: Path) -> None:
    overrides = dict(board_input=False, move_features=False, n_layer=1, n_head=2, n_embd=32)
    config = TrainConfig(**{**FAST, "model_size": "paper", "model_overrides": overrides, "learning_rate": 1e-2})
    result = train(shards, config, tmp_path, max_steps=60)
    assert 0 < result.val_illegal_mass < 0.95  # untrained ~0.985 (about 30 legal of 1,968 moves); learns legality
    assert not torch.load(tmp_path / "last.ckpt", weights_only=True)["transcend"]["config"]["move_features"]


def test_a_checkpoint_of_other_data_or_code_is_discarded_and_one_of_this_run_kept(tmp_path: Path) -> None:
    """Resuming from another training set's (or older code's) checkpoint would leak it into the new model."""
    assert discard_stale_checkpoint(tmp_path, "data") is None  # nothing to resume: nothing to say
    for made_by, kept in (({"data_hash": "data", "code_version": code_version()}, True),
                          ({"data_hash": "other", "code_version": code_version()}, False),
                          ({"data_hash": "data", "code_version": "older"}, False)):  # fmt: skip
        for name in ("last.ckpt", "best.ckpt"):
            torch.save({"transcend": made_by}, tmp_path / name)
        message = discard_stale_checkpoint(tmp_path, "data")
        assert (message is None) == kept
        assert (tmp_path / "last.ckpt").exists() == (tmp_path / "best.ckpt").exists() == kept
        assert kept or "starting afresh" in message
