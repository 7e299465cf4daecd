"""The Lightning loop that trains ChessFormer on shards (:mod:`transcend_pipeline.shards`), its checkpoints and
their lineage.

Checkpoints: ``last.ckpt`` (where training stands: weights, optimiser, step) and ``best.ckpt`` (the weights at the
lowest validation loss so far: the model every later asset uses) in the run directory, written atomically
(temporary file + ``os.replace``), holding only tensors, dicts, lists, strings and numbers
(``torch.load(weights_only=True)`` works), plus a ``transcend`` entry: experiment, model config, training config,
data hash, code version, budget. ``train(..., resume=True)`` continues from ``last.ckpt``.

Budget: a run trains for a number of optimiser steps, each on exactly ``TrainConfig.batch_positions`` positions
(move tokens), so arms of a study whose games differ in length still see equally many steps and tokens. The
budget, the batch size in positions and the seed are recorded in every checkpoint.

Why the best and not the last weights: a cap bucket of a few thousand games is seen many times in a CPU budget, and
the model then learns the games rather than the players. On the demo's 1000 bucket the held-out loss bottoms out
after ~300 steps and then rises, and the consensus agreement of the last weights fell from 39% to 29% while the loss
rose (issue 5's note). So a run trains to its budget and ``best.ckpt`` holds the weights at the lowest validation
loss within it; ``TrainConfig.patience`` can stop a run early instead, but then arms stop at different steps.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from torch.utils.data import DataLoader

from transcend_pipeline.model import ChessFormer, config_for
from transcend_pipeline.shards import (
    ShardDataset,
    ShardManifest,
    TrainBatches,
    collate,
    rank_shards,
    smallest_rank_count,
)


@dataclass
class TrainConfig:
    """Everything a run needs besides data and budget; stored in every checkpoint."""

    experiment: str = "default"
    model_size: str = "tiny"
    model_overrides: dict = field(default_factory=dict)
    batch_positions: int | None = 2048  # positions (move tokens) per optimiser step and rank; None: batch_games
    batch_games: int = 32  # whole games per validation batch, and per training batch where batch_positions is None
    learning_rate: float = 2e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.99)
    warmup_steps: int = 50
    val_every_steps: int = 100
    val_batches: int = 8
    patience: int | None = None  # validations without a new best loss before training stops; None: to the budget
    checkpoint_every_steps: int = 100
    seed: int = 0  # the weights' initialisation and the order of the games
    devices: int | str = 1
    strategy: str = "auto"  # "ddp" for several devices or nodes
    num_nodes: int = 1
    precision: str | None = None  # None: bf16-mixed on CUDA, 32-true on CPU
    compile: bool | None = None  # torch.compile the trunk; None: on CUDA only (on CPU it pays the compile for little)
    num_workers: int = 0
    cpu_threads: int = 1  # intra-op threads on CPU: small models lose far more to thread sync than they gain


@dataclass
class TrainResult:
    checkpoint: Path  # best.ckpt: the weights at the lowest validation loss (last.ckpt's when there is no val split)
    steps: int
    best_step: int  # the step whose weights `checkpoint` holds
    positions_seen: int  # one move token per position; steps × batch_positions × world size where that is set
    parameters: int
    train_curve: list[tuple[int, float]]
    val_curve: list[tuple[int, float]]
    val_top1: float | None  # of the best weights
    val_illegal_mass: float | None
    wall_seconds: float  # all sessions of the run together
    positions_per_second: float  # this session
    data_hash: str
    shards_read: list[str]  # the training shards this process's rank read


def code_version() -> str:
    """A hash of the modules that define the data and the model, so a checkpoint names the code that made it.

    Not :mod:`transcend_pipeline.inference`: it plays a trained model and changes nothing that gets trained, so
    editing it leaves every checkpoint resumable. Nor the tests' toy games, which train no model of the pipeline.
    """
    digest = hashlib.sha256()
    package = Path(__file__).parent
    for name in ("vocab.py", "features.py", "model.py", "shards.py", "training.py"):
        digest.update((package / name).read_bytes())
    return digest.hexdigest()[:16]


class ChessFormerModule(L.LightningModule):
    """Training, validation and the checkpoint's lineage record for one ChessFormer."""

    def __init__(self, config: TrainConfig, lineage: dict) -> None:
        super().__init__()
        self.config, self.lineage = config, lineage
        self.model = ChessFormer(config_for(config.model_size, **config.model_overrides))

    def training_step(self, batch: dict, batch_index: int) -> torch.Tensor:
        loss, _, _ = self.model.loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["query"]))
        return loss

    def validation_step(self, batch: dict, batch_index: int) -> None:
        loss, logits, vocab_logits = self.model.loss(batch)
        size = len(batch["query"])
        top1 = (logits.argmax(dim=-1) == batch["target_slot"]).float().mean()
        if vocab_logits is None:
            illegal = torch.zeros((), device=logits.device)
        else:  # probability outside the legal moves = 1 - exp(logsumexp(legal) - logsumexp(all))
            legal_mass = torch.exp(torch.logsumexp(logits.float(), -1) - torch.logsumexp(vocab_logits.float(), -1))
            illegal = (1 - legal_mass).mean()
        metrics = {"val/loss": loss, "val/top1": top1, "val/illegal_mass": illegal}
        self.log_dict(metrics, sync_dist=True, batch_size=size)

    def configure_optimizers(self):
        c = self.config
        optimizer = self.model.configure_optimizers(c.weight_decay, c.learning_rate, c.betas, self.device.type)
        warmup = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: min(1.0, (step + 1) / max(c.warmup_steps, 1))
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": warmup, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["transcend"] = {**self.lineage, "config": self.model.config.to_dict()}


class _AtomicCheckpointIO(TorchCheckpointIO):
    """Write to a temporary file in the same directory, then rename: a crash leaves the previous checkpoint."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        torch.save(checkpoint, temporary)
        os.replace(temporary, path)


class _RunRecord(L.Callback):
    """Loss curves, positions seen, wall time, periodic checkpoints, the best weights and the early stop; its state
    travels in the checkpoint, so a resumed run keeps its best and its patience."""

    def __init__(self, checkpoint_path: Path, best_path: Path, every_steps: int, patience: int | None) -> None:
        self.checkpoint_path, self.best_path = checkpoint_path, best_path
        self.every_steps, self.patience = every_steps, patience
        self.train_curve: list[list[float]] = []
        self.val_curve: list[list[float]] = []
        self.best: list[float] | None = None  # [step, validation loss] of the weights in best.ckpt
        self.positions_seen = 0
        self.wall_before = 0.0
        self.session_positions = 0
        self.session_seconds = 0.0
        self._started = time.perf_counter()

    def on_train_start(self, trainer, module) -> None:
        self._started = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_index) -> None:
        positions = len(batch["query"]) * trainer.world_size
        self.positions_seen += positions
        self.session_positions += positions
        self.train_curve.append([trainer.global_step, float(outputs["loss"])])
        if trainer.global_step % self.every_steps == 0:
            trainer.save_checkpoint(self.checkpoint_path, weights_only=False)

    def on_train_end(self, trainer, module) -> None:
        self.session_seconds = time.perf_counter() - self._started

    def on_validation_end(self, trainer, module) -> None:
        seen = bool(self.val_curve) and self.val_curve[-1][0] == trainer.global_step
        if trainer.sanity_checking or seen or "val/loss" not in trainer.callback_metrics:
            return
        step, loss = trainer.global_step, float(trainer.callback_metrics["val/loss"])
        self.val_curve.append([step, loss])
        if self.best is None or loss < self.best[1]:
            self.best = [step, loss]
            trainer.save_checkpoint(self.best_path, weights_only=True)
        elif self.patience is not None and sum(s > self.best[0] for s, _ in self.val_curve) >= self.patience:
            trainer.should_stop = True

    def state_dict(self) -> dict:
        wall = self.wall_before + time.perf_counter() - self._started
        return {
            "train_curve": self.train_curve,
            "val_curve": self.val_curve,
            "best": self.best,
            "positions_seen": self.positions_seen,
            "wall_seconds": wall,
        }

    def load_state_dict(self, state: dict) -> None:
        self.train_curve, self.val_curve = state["train_curve"], state["val_curve"]
        self.best = state.get("best")
        self.positions_seen, self.wall_before = state["positions_seen"], state["wall_seconds"]


def train(
    shards_dir: str | os.PathLike,
    config: TrainConfig,
    out_dir: str | os.PathLike,
    *,
    max_steps: int | None = None,
    max_minutes: float | None = None,
    resume: bool = True,
    devices: int | str | None = None,
    strategy: str | None = None,
    num_nodes: int | None = None,
    precision: str | None = None,
) -> TrainResult:
    """Train (or continue training) a ChessFormer on shards; writes ``out_dir/last.ckpt``, ``best.ckpt`` and
    ``metrics.json``.

    Stops at ``max_steps`` optimiser steps or after ``max_minutes`` of this session, whichever comes first (at
    least one is required), or earlier when the validation loss has not improved for ``config.patience``
    validations. Only a step budget is reproducible: where a time budget stops depends on the machine's speed. With
    ``config.batch_positions`` every step trains on that many positions per rank, so a step budget is also one of
    positions (``max_positions`` in the checkpoint's budget).
    With ``resume`` an existing ``last.ckpt`` is continued from its step (so ``max_steps`` counts from the start of
    the run, not of this session). The device arguments override the config's.
    """
    if max_steps is None and max_minutes is None:
        raise ValueError("give max_steps, max_minutes or both")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = ShardManifest.load(shards_dir)
    cuda = torch.cuda.is_available()
    if not cuda:
        torch.set_num_threads(config.cpu_threads)
    precision = precision or config.precision or ("bf16-mixed" if cuda else "32-true")
    checkpoint, best = out_dir / "last.ckpt", out_dir / "best.ckpt"
    record = _RunRecord(checkpoint, best, config.checkpoint_every_steps, config.patience)
    trainer = L.Trainer(
        accelerator="gpu" if cuda else "cpu",
        devices=devices or config.devices,
        num_nodes=num_nodes or config.num_nodes,
        strategy=strategy or config.strategy,
        precision=precision,
        max_steps=-1 if max_steps is None else max_steps,
        max_time=None if max_minutes is None else timedelta(minutes=max_minutes),
        max_epochs=-1,
        val_check_interval=config.val_every_steps,
        check_val_every_n_epoch=None,
        limit_val_batches=config.val_batches,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        enable_checkpointing=False,
        plugins=[_AtomicCheckpointIO()],
        callbacks=[record],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=out_dir,
    )
    rank, world = trainer.global_rank, trainer.world_size
    positions = None if max_steps is None or config.batch_positions is None else max_steps * config.batch_positions
    lineage = {
        "experiment": config.experiment,
        "seed": config.seed,
        "train_config": {key: list(v) if isinstance(v, tuple) else v for key, v in asdict(config).items()},
        "data_hash": manifest.content_hash,
        "data": {
            split: {"games": manifest.count(split), "positions": manifest.count(split, "positions")}
            for split in manifest.splits
        },
        "code_version": code_version(),
        "budget": {
            "max_steps": max_steps,
            "max_minutes": max_minutes,
            "batch_positions": config.batch_positions,  # per rank
            "max_positions": None if positions is None else positions * world,  # all ranks together
        },
    }
    L.seed_everything(config.seed, workers=True, verbose=False)
    module = ChessFormerModule(config, lineage)
    if config.compile or (config.compile is None and cuda):  # the trunk; the head's ragged indexing stays eager
        module.model.trunk = torch.compile(module.model.trunk, dynamic=True)
    train_shards = rank_shards(manifest, "train", rank, world)
    train_set = ShardDataset(shards_dir, train_shards)
    generator = torch.Generator().manual_seed(config.seed + rank)
    if config.batch_positions is None:
        epoch_games = smallest_rank_count(manifest, "train", world)
        if epoch_games < config.batch_games:
            raise ValueError(f"{epoch_games} training games per rank cannot fill a batch of {config.batch_games}")
        sampler = TrainBatches(
            train_set.lengths, epoch_games // config.batch_games, generator, games=config.batch_games
        )
    else:  # a training set smaller than a batch is drawn again within the batch
        epoch_batches = max(1, smallest_rank_count(manifest, "train", world, "positions") // config.batch_positions)
        sampler = TrainBatches(train_set.lengths, epoch_batches, generator, positions=config.batch_positions)
    batches = functools.partial(collate, max_plies=manifest.max_plies)
    loader_args = dict(collate_fn=batches, num_workers=config.num_workers)
    train_loader = DataLoader(train_set, batch_sampler=sampler, **loader_args)
    val_loader = None
    if manifest.count("val"):  # validation is small: ranks split its games (whole ones), not its shards
        val_set = ShardDataset(shards_dir, manifest.splits["val"])
        share = len(val_set) // world
        validation = range(rank * share, (rank + 1) * share)
        val_loader = DataLoader(val_set, sampler=validation, batch_size=config.batch_games, **loader_args)
    resume_from = checkpoint if resume and checkpoint.exists() else None
    trainer.fit(module, train_loader, val_loader, ckpt_path=resume_from, weights_only=True)
    if val_loader is not None:  # the last weights' loss joins the curve (and may be the best)
        trainer.validate(module, val_loader, verbose=False)
    trainer.save_checkpoint(checkpoint, weights_only=False)
    if record.best is None:  # no validation split: the last weights are the best we know
        trainer.save_checkpoint(best, weights_only=True)
    else:  # report the best weights' figures, measured again on them
        module.load_state_dict(torch.load(best, map_location=module.device, weights_only=True)["state_dict"])
        trainer.validate(module, val_loader, verbose=False)
    metrics = trainer.callback_metrics
    state = record.state_dict()
    result = TrainResult(
        checkpoint=best,
        steps=trainer.global_step,
        best_step=trainer.global_step if record.best is None else int(record.best[0]),
        positions_seen=record.positions_seen,
        parameters=module.model.get_num_params(),
        train_curve=[(int(s), v) for s, v in record.train_curve],
        val_curve=[(int(s), v) for s, v in record.val_curve],
        val_top1=float(metrics["val/top1"]) if "val/top1" in metrics else None,
        val_illegal_mass=float(metrics["val/illegal_mass"]) if "val/illegal_mass" in metrics else None,
        wall_seconds=state["wall_seconds"],
        positions_per_second=record.session_positions / max(record.session_seconds, 1e-9),
        data_hash=manifest.content_hash,
        shards_read=[shard["path"] for shard in train_shards],
    )
    if trainer.is_global_zero:
        summary = {**asdict(result), "checkpoint": str(result.checkpoint)}
        (out_dir / "metrics.json").write_text(json.dumps(summary, indent=1))
    return result


def discard_stale_checkpoint(out_dir: Path, data_hash: str) -> str | None:
    """Resume only a run on the same data and code: a checkpoint of an older training set would leak into the new
    model, and one of older code may not even fit it (another feature set, another head). Deletes `last.ckpt` and
    `best.ckpt` of any other run and says so; None when there is nothing to discard."""
    checkpoint = out_dir / "last.ckpt"
    if not checkpoint.exists():
        return None
    lineage = torch.load(checkpoint, map_location="cpu", weights_only=True).get("transcend", {})
    made_by = (lineage.get("data_hash"), lineage.get("code_version"))
    if made_by == (data_hash, code_version()):
        return None
    for stale in (checkpoint, out_dir / "best.ckpt"):
        stale.unlink(missing_ok=True)
    return f"{checkpoint} was made from (data, code) {made_by}, not {data_hash}: starting afresh"
