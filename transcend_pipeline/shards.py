"""Training sets on disk: games tokenised into memory-mapped shards, and the batches training reads from them.

Games (UCI move lists) are replayed once, every position featurised (board, legal moves and their features, the
played move's slot), and stored as plain ``.npy`` arrays per shard, so training reads them with
``np.load(mmap_mode="r")`` and spends no CPU on chess. A ``manifest.json`` lists shards and counts and a content
hash that checkpoints record. Each DDP rank reads its own contiguous range of training shards (and its own slice of
the validation games).

Batches of exactly ``batch_positions`` positions (move tokens): games are packed into a batch in a seeded random
order and the last one is cut to fit, so arms of a study whose games differ in length still see equally many
positions per step (:class:`TrainBatches`).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path

import chess
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from transcend_pipeline import features, vocab

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
    # Spawned, not forked: a forked worker inherits the parent's threads and sockets (Dagster's, a Celery client's
    # connection pool), whose after-fork hooks can block it forever.
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=spawn) if workers > 1 else _InlineExecutor() as pool:
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


def chance_accuracy(shards_dir: str | os.PathLike, split: str = "val") -> float:
    """Top-1 accuracy of a uniform guess among the legal moves, averaged over a split's positions."""
    manifest = ShardManifest.load(shards_dir)
    total = positions = 0.0
    for shard in manifest.splits[split]:
        offsets = np.load(Path(shards_dir) / shard["path"] / "legal_offsets.npy")
        total += float((1.0 / np.diff(offsets)).sum())
        positions += len(offsets) - 1
    return total / positions
