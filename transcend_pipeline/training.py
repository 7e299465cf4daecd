"""Training sets as memory-mapped shards, and the Lightning loop that trains ChessFormer on them.

Shards: games (UCI move lists) are replayed once, every position featurised (board, legal moves and their
features, the played move's slot), and stored as plain ``.npy`` arrays per shard, so training reads them with
``np.load(mmap_mode="r")`` and spends no CPU on chess. A ``manifest.json`` lists shards and counts and a content
hash that checkpoints record. Each DDP rank reads its own contiguous range of training shards (and its own slice of the validation games).

Checkpoints: ``last.ckpt`` (where training stands: weights, optimiser, step) and ``best.ckpt`` (the weights at the
lowest validation loss so far: the model every later asset uses) in the run directory, written atomically
(temporary file + ``os.replace``), holding only tensors, dicts, lists, strings and numbers
(``torch.load(weights_only=True)`` works), plus a ``transcend`` entry: experiment, model config, training config,
data hash, code version, budget. ``train(..., resume=True)`` continues from ``last.ckpt``.

Budget: a run trains for a number of optimiser steps, each on exactly ``TrainConfig.batch_positions`` positions
(move tokens), so arms of a study whose games differ in length still see equally many steps and tokens: games are
packed into a batch in a seeded random order and the last one is cut to fit. The budget, the batch size in
positions and the seed are recorded in every checkpoint.

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
import shutil
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from itertools import islice
from pathlib import Path

import chess
import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from torch.utils.data import DataLoader, Dataset, Sampler

from transcend_pipeline import features, vocab
from transcend_pipeline.model import ChessFormer, config_for

SHARD_FORMAT = 1
_ARRAYS = (
    "game_offsets",
    "move_tokens",
    "target_slot",
    "boards",
    "state",
    "legal_offsets",
    "legal_tokens",
    "move_features",
)


class InvalidGameError(ValueError):
    """A game whose move list is not legal chess from the standard starting position."""


class NotEnoughShardsError(ValueError):
    """Fewer shards in a split than data-parallel ranks: some rank would read nothing."""


# ---------------------------------------------------------------------------------------------------- shards


@dataclass(frozen=True)
class ShardManifest:
    """What a shard directory holds; ``content_hash`` identifies the data in checkpoints."""

    splits: dict[str, list[dict]]  # split -> shards: {"path", "games", "positions", "legal_moves", "sha256"}
    max_plies: int
    content_hash: str
    format: int = SHARD_FORMAT

    def count(self, split: str, key: str = "games") -> int:
        return sum(shard[key] for shard in self.splits.get(split, []))

    @classmethod
    def load(cls, shards_dir: str | os.PathLike) -> ShardManifest:
        return cls(**json.loads((Path(shards_dir) / "manifest.json").read_text()))


def tokenise_games(games: Sequence[Sequence[str]], max_plies: int) -> dict[str, np.ndarray]:
    """The shard arrays of some games: every position (cut after ``max_plies``) with its legal-move features."""
    builder = features.FeatureBuilder()
    tokens, slots, lengths = [], [], []
    for index, game in enumerate(games):
        board = chess.Board()
        for uci in game[:max_plies]:
            legal = builder.add(board)
            try:
                move = chess.Move.from_uci(uci)
                slots.append(legal.index(move))
            except ValueError:
                raise InvalidGameError(f"game {index}: move {uci!r} is not legal in {board.fen()}") from None
            tokens.append(vocab.token_of(move))
            board.push(move)
        lengths.append(min(len(game), max_plies))
    built = builder.build()
    return {
        "game_offsets": np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]),
        "move_tokens": np.array(tokens, dtype=np.int16),
        "target_slot": np.array(slots, dtype=np.uint8),
        "boards": built.boards,
        "state": built.state,
        "legal_offsets": built.legal_offsets,
        "legal_tokens": built.legal_tokens,
        "move_features": built.move_features,
    }


def _write_shard(games: Sequence[Sequence[str]], directory: Path, max_plies: int) -> dict:
    arrays = tokenise_games(games, max_plies)
    digest = hashlib.sha256()
    directory.mkdir(parents=True)
    for name in _ARRAYS:
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{array.dtype}:{array.shape}".encode())
        digest.update(array.tobytes())
        np.save(directory / f"{name}.npy", array)
    return {
        "path": f"{directory.parent.name}/{directory.name}",
        "games": len(games),
        "positions": len(arrays["move_tokens"]),
        "legal_moves": len(arrays["legal_tokens"]),
        "sha256": digest.hexdigest(),
    }


def build_shards(
    splits: Mapping[str, Iterable[Sequence[str]]],
    out_dir: str | os.PathLike,
    *,
    games_per_shard: int = 1024,
    max_plies: int = 256,
    workers: int = 1,
) -> ShardManifest:
    """Tokenise each split's games (UCI move lists) into shards under ``out_dir/<split>/``; replaces ``out_dir``.

    Built in a sibling temporary directory and renamed into place, so a crash never leaves half a training set.
    """
    out_dir = Path(out_dir)
    staging = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    manifest_splits: dict[str, list[dict]] = {}
    with ProcessPoolExecutor(workers) if workers > 1 else _InlineExecutor() as pool:
        for split, games in splits.items():
            games, jobs = iter(games), []
            while chunk := [list(game) for game in islice(games, games_per_shard)]:
                jobs.append(pool.submit(_write_shard, chunk, staging / split / f"shard-{len(jobs):05d}", max_plies))
            manifest_splits[split] = [job.result() for job in jobs]
    digest = hashlib.sha256(f"format {SHARD_FORMAT} max_plies {max_plies} {list(features.MOVE_FEATURES)}".encode())
    for split in sorted(manifest_splits):
        for shard in manifest_splits[split]:
            digest.update(f"{split}:{shard['sha256']}".encode())
    manifest = ShardManifest(splits=manifest_splits, max_plies=max_plies, content_hash=digest.hexdigest()[:16])
    (staging / "manifest.json").write_text(json.dumps(asdict(manifest), indent=1))
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(staging, out_dir)
    return manifest


class _InlineExecutor:
    """The executor interface, run in this process: one worker needs no pickling or process start."""

    def __enter__(self) -> _InlineExecutor:
        return self

    def __exit__(self, *exc_info) -> None:
        return None

    def submit(self, function, *args) -> Future:
        future = Future()
        future.set_result(function(*args))
        return future


def rank_shards(manifest: ShardManifest, split: str, rank: int, world_size: int) -> list[dict]:
    """The contiguous range of a split's shards that one data-parallel rank reads."""
    shards = manifest.splits.get(split, [])
    if len(shards) < world_size:
        raise NotEnoughShardsError(f"split {split!r} has {len(shards)} shards for {world_size} ranks")
    bounds = np.linspace(0, len(shards), world_size + 1).round().astype(int)
    return shards[bounds[rank] : bounds[rank + 1]]


def smallest_rank_count(manifest: ShardManifest, split: str, world_size: int, key: str = "games") -> int:
    """The games (or positions) of the rank with the fewest: every rank draws that many per epoch, so all ranks run
    equally many batches."""
    return min(sum(s[key] for s in rank_shards(manifest, split, r, world_size)) for r in range(world_size))


class ShardDataset(Dataset):
    """The games of some shards, memory-mapped: item ``i`` is game i's arrays, item ``(i, plies)`` those of its first
    ``plies`` positions (a valid causal sequence on its own: the targets are the moves of that prefix)."""

    def __init__(self, shards_dir: str | os.PathLike, shards: Sequence[dict]) -> None:
        self.paths = [shard["path"] for shard in shards]
        self.arrays = [
            {name: np.load(Path(shards_dir) / shard["path"] / f"{name}.npy", mmap_mode="r") for name in _ARRAYS}
            for shard in shards
        ]
        self.starts = np.cumsum([0] + [shard["games"] for shard in shards])
        self.lengths = np.concatenate([np.zeros(0, np.int64), *(np.diff(a["game_offsets"]) for a in self.arrays)])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, np.ndarray]:
        index, plies = key if isinstance(key, tuple) else (key, None)
        shard = int(np.searchsorted(self.starts, index, side="right")) - 1
        a, game = self.arrays[shard], index - self.starts[shard]
        first, last = a["game_offsets"][game], a["game_offsets"][game + 1]
        if plies is not None:
            last = min(last, first + plies)
        legal_first, legal_last = a["legal_offsets"][first], a["legal_offsets"][last]
        return {
            "move_tokens": np.asarray(a["move_tokens"][first:last]),
            "target_slot": np.asarray(a["target_slot"][first:last]),
            "boards": np.asarray(a["boards"][first:last]),
            "state": np.asarray(a["state"][first:last]),
            "legal_counts": np.diff(a["legal_offsets"][first : last + 1]),
            "legal_tokens": np.asarray(a["legal_tokens"][legal_first:legal_last]),
            "move_features": np.asarray(a["move_features"][legal_first:legal_last]),
        }


class TrainBatches(Sampler[list[tuple[int, int]]]):
    """One rank's training batches, as lists of ``(game, plies)`` keys of :class:`ShardDataset`: the games in a
    seeded random order (a new one every epoch), ``batches`` per epoch, as many on every data-parallel rank.

    With ``positions``, games are packed into a batch until it holds exactly that many positions, the last one cut to
    fit (the rest of that game is not trained on this epoch); where the games run out before the epoch ends, a new
    order starts. Otherwise each batch holds ``games`` whole games.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batches: int,
        generator: torch.Generator,
        *,
        games: int | None = None,
        positions: int | None = None,
    ) -> None:
        if (games is None) == (positions is None):
            raise ValueError("give games or positions per batch, not both")
        self.lengths, self.batches, self.generator = np.asarray(lengths, dtype=np.int64), batches, generator
        self.games, self.positions = games, positions
        if positions is not None and not self.lengths.sum():
            raise ValueError("no positions to fill a batch with")

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = self._order()
        for _ in range(self.batches):
            if self.positions is None:
                yield [(game, int(self.lengths[game])) for game in islice(order, self.games)]
                continue
            batch, room = [], self.positions
            while room:
                game = next(order)
                plies = min(int(self.lengths[game]), room)
                if plies:
                    batch.append((game, plies))
                    room -= plies
            yield batch

    def _order(self) -> Iterator[int]:
        while True:
            yield from torch.randperm(len(self.lengths), generator=self.generator).tolist()


#: Training batches are padded to sizes from a small set: plies to a multiple of 32, legal-move rows to a multiple of
#: 8,192 (rows that score a dummy position, see :meth:`ChessFormer.heads`). With exact sizes, every step's tensors
#: differed a little from the last one's and glibc's heap kept growing around them: 400 steps of `tiny` on the demo's
#: 1000 bucket peaked at 3.38 GB resident, 1.16 GB padded (flat from step 100), for 1% fewer positions/s (2026-11-28).
PLIES_MULTIPLE = 32
LEGAL_ROWS_MULTIPLE = 8192


def collate(games: list[dict[str, np.ndarray]], max_plies: int | None = None) -> dict:
    """Pad games (or their first plies: see :class:`ShardDataset`) to the longest one, rounded up to a multiple of
    `PLIES_MULTIPLE` (at most `max_plies`), and flatten their legal moves, padded to a multiple of
    `LEGAL_ROWS_MULTIPLE` rows (the batch format of :mod:`model`)."""
    lengths = np.array([len(game["move_tokens"]) for game in games])
    B, T = len(games), int(lengths.max())
    if max_plies is not None:  # games are cut to the shards' max_plies, so this never shortens the batch
        T = min(-(-T // PLIES_MULTIPLE) * PLIES_MULTIPLE, max_plies)
    tokens = np.full((B, T), vocab.PAD, dtype=np.int64)
    boards = np.zeros((B, T, 64), dtype=np.int8)
    state = np.zeros((B, T, len(features.STATE_FEATURES)), dtype=np.int8)
    for row, game in enumerate(games):
        n = lengths[row]
        tokens[row, 0] = vocab.BOS
        tokens[row, 1:n] = game["move_tokens"][: n - 1]
        boards[row, :n], state[row, :n] = game["boards"], game["state"]
    counts = np.concatenate([game["legal_counts"] for game in games])
    query = np.concatenate([row * T + np.arange(n) for row, n in enumerate(lengths)])
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    padding = -counts.sum() % LEGAL_ROWS_MULTIPLE

    def legal_rows(arrays: list[np.ndarray], pad_value: int = 0) -> torch.Tensor:
        rows = np.concatenate(arrays).astype(np.int64)
        return torch.from_numpy(np.concatenate([rows, np.full((padding, *rows.shape[1:]), pad_value, np.int64)]))

    return {
        "tokens": torch.from_numpy(tokens),
        "boards": torch.from_numpy(boards),
        "state": torch.from_numpy(state),
        "query": torch.from_numpy(query),
        "legal_query": legal_rows([np.repeat(np.arange(len(counts)), counts)], pad_value=len(counts)),
        "legal_slot": legal_rows([np.arange(counts.sum()) - starts]),
        "legal_tokens": legal_rows([g["legal_tokens"] for g in games]),
        "move_features": legal_rows([g["move_features"] for g in games]),
        "max_legal": int(counts.max()),
        "target_slot": torch.from_numpy(np.concatenate([g["target_slot"] for g in games]).astype(np.int64)),
        "target_token": torch.from_numpy(np.concatenate([g["move_tokens"] for g in games]).astype(np.int64)),
    }


# ---------------------------------------------------------------------------------------------------- training


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
    editing it leaves every checkpoint resumable.
    """
    digest = hashlib.sha256()
    package = Path(__file__).parent
    for name in ("vocab.py", "features.py", "model.py", "training.py"):
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


# ---------------------------------------------------------------------------------------------------- toy data

_CAPTURE_ORDER = {chess.QUEEN: 5, chess.ROOK: 4, chess.BISHOP: 3, chess.KNIGHT: 2, chess.PAWN: 1}


def greedy_capture_games(count: int, seed: int = 0, max_plies: int = 120) -> list[list[str]]:
    """Toy games with a learnable rule, for tests and benchmarks: capture the most valuable piece when possible
    (ties broken at random), otherwise play a uniformly random legal move."""
    rng = np.random.default_rng(seed)
    games = []
    for _ in range(count):
        board, moves = chess.Board(), []
        while len(moves) < max_plies and not board.is_game_over(claim_draw=False):
            legal = list(board.generate_legal_moves())
            captures = [m for m in legal if board.piece_type_at(m.to_square)]
            if captures:
                best = max(_CAPTURE_ORDER[board.piece_type_at(m.to_square)] for m in captures)
                legal = [m for m in captures if _CAPTURE_ORDER[board.piece_type_at(m.to_square)] == best]
            move = legal[int(rng.integers(len(legal)))]
            moves.append(move.uci())
            board.push(move)
        games.append(moves)
    return games


def chance_accuracy(shards_dir: str | os.PathLike, split: str = "val") -> float:
    """Top-1 accuracy of a uniform guess among the legal moves, averaged over a split's positions."""
    manifest = ShardManifest.load(shards_dir)
    total = positions = 0.0
    for shard in manifest.splits[split]:
        offsets = np.load(Path(shards_dir) / shard["path"] / "legal_offsets.npy")
        total += float((1.0 / np.diff(offsets)).sum())
        positions += len(offsets) - 1
    return total / positions
