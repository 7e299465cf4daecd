"""Playing a trained ChessFormer: each game's inputs, the key/value cache, and the one sampling function used
everywhere later, :func:`legal_move_distribution`.

A game's history (``board.move_stack``) is the model's context. Its inputs are extended by the moves played since
the game's last call, and the key/value cache runs the trunk on those new plies only, so a call costs about the
same at ply 80 as at ply 2. Nothing here is used in training: the batches it builds are the format of
:mod:`transcend_pipeline.model`, filled from boards instead of shards.
"""

from __future__ import annotations

import functools
import math
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import chess
import numpy as np
import torch
from torch.nn import functional as F

from transcend_pipeline import features, vocab
from transcend_pipeline.followed_games import FollowedGame, GameMemo
from transcend_pipeline.model import ChessFormer


@dataclass(frozen=True)
class LegalMoveDistribution:
    """Per position, its legal moves and their probabilities (row i: moves[i] in slots 0..len-1, zeros after).

    ``illegal_mass`` [B] is what a transcript head put outside the legal moves at the same temperature (τ = 0: 1
    where its top token is illegal), from the same forward pass; None for the move head, which has no such mass.
    """

    moves: list[list[chess.Move]]
    probs: torch.Tensor  # [B, max_legal], on the model's device
    illegal_mass: torch.Tensor | None = None  # [B], on the model's device

    def as_dicts(self) -> list[dict[chess.Move, float]]:
        rows = self.probs.float().cpu().numpy()
        return [
            dict(zip(moves, row[: len(moves)].tolist(), strict=True))
            for moves, row in zip(self.moves, rows, strict=True)
        ]


class _GameInputs(FollowedGame):
    """One game's model inputs for the plies seen so far: ``<bos>`` then the move tokens, and with board input the
    board planes of every position. A game in play is extended by the moves played since the last call, so a call
    costs the same at ply 80 as at ply 2 (replaying every history on every call made play slower as games grew).
    """

    def __init__(self, board: chess.Board, with_planes: bool) -> None:
        super().__init__()
        root = board.root()
        if root.board_fen() != chess.STARTING_BOARD_FEN or root.turn != chess.WHITE:
            raise ValueError("ChessFormer plays games from the standard starting position only")
        self.tokens: list[int] = [vocab.BOS]
        # the bitboards of the position after `moves`, to extend the planes from (features.bitboards_after)
        self.row = features.position_bitboards(root) if with_planes else None
        self.planes, self.state = _start_planes() if with_planes else (None, None)
        self._buffers: tuple[np.ndarray, np.ndarray] | None = None  # what `planes` and `state` view, once extended

    def catch_up(self, board: chess.Board) -> list[list[int]]:
        """Take in the moves played since; returns the bitboards of the positions they reach, whose planes
        :meth:`add_planes` takes."""
        positions = []
        for move in self.new_moves(board):
            self.tokens.append(vocab.token_of(move))
            if self.row is not None:
                self.row = features.bitboards_after(self.row, move)
                positions.append(self.row)
        return positions

    def add_planes(self, planes: np.ndarray, state: np.ndarray) -> None:
        """Append the new positions' planes; ``planes`` and ``state`` are views of buffers that double as they fill
        (a copy of the whole history on every call cost more than featurising the new plies)."""
        start, end = len(self.planes), len(self.planes) + len(planes)
        if self._buffers is None or end > len(self._buffers[0]):
            old = (self.planes, self.state)
            self._buffers = tuple(np.empty((2 * end, *array.shape[1:]), array.dtype) for array in old)
            for buffer, array in zip(self._buffers, old, strict=True):
                buffer[:start] = array
        self._buffers[0][start:end], self._buffers[1][start:end] = planes, state
        self.planes, self.state = self._buffers[0][:end], self._buffers[1][:end]


@functools.cache
def _start_planes() -> tuple[np.ndarray, np.ndarray]:
    """The planes of the standard starting position, every game's first (featurised once, not once a game)."""
    planes, state = features.board_planes([chess.Board()])
    planes.setflags(write=False)
    state.setflags(write=False)
    return planes, state


#: The inputs of the games in play; each drops out with its board.
_GAMES: GameMemo[_GameInputs] = GameMemo()


def _game_inputs(boards: Sequence[chess.Board], with_planes: bool) -> list[_GameInputs]:
    """Each game's inputs up to its current position; the new positions of all games are featurised in one go."""
    games, positions, counts = [], [], []
    for board in boards:
        # a game followed without board planes is rebuilt for a model that reads them
        game = _GAMES.follow(
            board, lambda b: _GameInputs(b, with_planes), lambda g: g.row is not None or not with_planes
        )
        games.append(game)
        new = game.catch_up(board)
        positions.extend(new)
        counts.append(len(new))
    if positions:
        planes, state = features.planes_of_bitboards(positions)
        ends = np.cumsum(counts)
        for game, start, end in zip(games, ends - counts, ends, strict=True):
            if end > start:
                game.add_planes(planes[start:end], state[start:end])
    return games


def position_batch(model: ChessFormer, boards: Sequence[chess.Board]) -> tuple[dict, list[list[chess.Move]]]:
    """The batch that scores the current position of each game (its history read from ``board.move_stack``,
    cropped to the last ``block_size`` plies; only the plies new since the game's last call are featurised)."""
    device = next(model.parameters()).device
    games = _game_inputs(boards, with_planes=model.config.board_input)
    legal, moves = _legal_batch(games, boards, device)
    return {**_history_batch(model, games, device), **legal}, moves


def _history_batch(model: ChessFormer, games: Sequence[_GameInputs], device: torch.device) -> dict:
    """Tokens (and board planes) of each game's whole history, cropped to ``block_size``; ``query`` is its last."""
    config = model.config
    plies = [min(len(game.tokens), config.block_size) for game in games]
    length = max(plies)
    tokens = np.zeros((len(games), length), dtype=np.int64)
    for row, (game, n) in enumerate(zip(games, plies, strict=True)):
        tokens[row, :n] = game.tokens[-n:]
    batch = {"tokens": tokens, "query": np.arange(len(games)) * length + np.array(plies) - 1}
    if config.board_input:
        batch["boards"] = np.zeros((len(games), length, 64), dtype=np.int8)
        batch["state"] = np.zeros((len(games), length, len(features.STATE_FEATURES)), dtype=np.int8)
        for row, (game, n) in enumerate(zip(games, plies, strict=True)):
            batch["boards"][row, :n], batch["state"][row, :n] = game.planes[-n:], game.state[-n:]
    return {key: torch.as_tensor(value, device=device) for key, value in batch.items()}


def _legal_batch(
    games: Sequence[_GameInputs], boards: Sequence[chess.Board], device: torch.device
) -> tuple[dict, list[list[chess.Move]]]:
    """The legal moves of each current position, flattened as the heads take them, and the moves themselves
    (featurised from the bitboards the games' inputs followed, where they keep them)."""
    rows = [
        features.position_bitboards(board) if game.row is None else game.row
        for game, board in zip(games, boards, strict=True)
    ]
    current = features.featurise_bitboards(rows)
    counts = np.diff(current.legal_offsets)
    if (counts == 0).any():
        raise ValueError("a position without legal moves has no move distribution (the game is over)")
    batch = {
        "legal_query": np.repeat(np.arange(len(boards)), counts),
        "legal_slot": np.arange(counts.sum()) - np.repeat(current.legal_offsets[:-1], counts),
        "legal_tokens": current.legal_tokens.astype(np.int64),
        "move_features": current.move_features.astype(np.int64),
    }
    tensors = {key: torch.as_tensor(value, device=device) for key, value in batch.items()}
    return {**tensors, "max_legal": int(counts.max())}, current.moves


#: Memory one model's key/value cache may fill before it evicts the least recently scored games (a call whose own
#: games need more takes more): ~8,000 games of `tiny` (fp32), ~120 of `paper` in bf16 at block_size 256.
KV_CACHE_BYTES = 1 << 30


class KVCache:
    """Every layer's keys and values for the plies each game in play has been through, so that a call runs the
    trunk on the plies new since the game's last call only (the reference code recomputed the whole history on
    every move, and so did we: 4-6x instead of 10x over batch size 1).

    Games own slots of one tensor per model; a slot is freed with its game's inputs (when the board is dropped or
    taken back to another line), or, past :data:`KV_CACHE_BYTES`, taken from the least recently scored game, which
    is then recomputed if it comes back. Games longer than ``block_size`` (cropped, so their positions shift) are
    not cached. The cache holds for unchanged weights only: :func:`_kv_cache` drops it when any parameter is
    modified in place (an optimiser step, ``load_state_dict``) or moved.
    """

    def __init__(self, model: ChessFormer) -> None:
        config, parameter = model.config, next(model.parameters())
        self.fingerprint = _weights_fingerprint(model)
        self.lock = threading.Lock()  # a model shared by policies whose calls run in threads fills one cache
        shape = (config.n_layer, 0, config.n_head, config.block_size, config.n_embd // config.n_head)
        self.keys, self.values = parameter.new_zeros(shape), parameter.new_zeros(shape)
        slot_bytes = 2 * math.prod(shape[:1] + shape[2:]) * parameter.element_size()  # 0 for a trunk of no layers
        self.max_slots = max(1, KV_CACHE_BYTES // max(slot_bytes, 1))
        self.slot_of: weakref.WeakKeyDictionary[_GameInputs, int] = weakref.WeakKeyDictionary()
        self.owners: list[weakref.ref | None] = []
        self.done: list[int] = []  # plies of its game already in each slot
        self.last_used: list[int] = []
        self.free: list[int] = []
        self.released: list[tuple[int, weakref.ref]] = []  # appended by the owners' weakref callbacks, any thread
        self.calls = 0

    def step(self, games: Sequence[_GameInputs], device: torch.device) -> tuple[dict, CacheStep]:
        """The batch of each game's uncached plies (at least its last, so a repeated call still scores it) and
        the step that lets the trunk read and extend the cache; :meth:`commit` it once the trunk has run."""
        self.calls += 1
        slots = [self.slot_of.get(game) for game in games]
        for slot in slots:
            if slot is not None:
                self.last_used[slot] = self.calls  # not to be evicted by this call's new games
        for row, game in enumerate(games):
            if slots[row] is None:
                slots[row] = self._allocate(game)
        lengths = np.array([len(game.tokens) for game in games])
        starts = np.minimum([self.done[slot] for slot in slots], lengths - 1)
        counts = lengths - starts
        width = int(counts.max())
        rows, columns = np.nonzero(np.arange(width) < counts[:, None])
        positions = starts[:, None] + np.arange(width)

        def new_plies(per_game: list) -> np.ndarray:
            return np.concatenate([values[start:] for values, start in zip(per_game, starts, strict=True)])

        tokens = np.zeros((len(games), width), dtype=np.int64)
        tokens[rows, columns] = new_plies([game.tokens for game in games])
        block_size = self.keys.shape[3]
        batch = {"tokens": tokens, "positions": np.minimum(positions, block_size - 1)}  # padding stays in range
        if games[0].planes is not None:
            batch["boards"] = np.zeros((len(games), width, 64), dtype=np.int8)
            batch["state"] = np.zeros((len(games), width, len(features.STATE_FEATURES)), dtype=np.int8)
            batch["boards"][rows, columns] = new_plies([game.planes for game in games])
            batch["state"][rows, columns] = new_plies([game.state for game in games])
        length = int((starts + counts).max())
        step = CacheStep(
            cache=self,
            slots=torch.as_tensor(slots, device=device),
            write=tuple(torch.as_tensor(i, device=device) for i in (np.array(slots)[rows], positions[rows, columns])),
            new=(torch.as_tensor(rows, device=device), torch.as_tensor(columns, device=device)),
            length=length,
            mask=torch.as_tensor(np.arange(length) <= positions[:, None, :, None], device=device),
            last=torch.as_tensor(counts - 1, device=device),
            plies=list(zip(slots, lengths.tolist(), strict=True)),
        )
        return {key: torch.as_tensor(value, device=device) for key, value in batch.items()}, step

    def commit(self, step: CacheStep) -> None:
        """Count the step's plies as cached (after the trunk wrote them, so a failed call leaves no holes)."""
        for slot, plies in step.plies:
            self.done[slot] = plies

    def _allocate(self, game: _GameInputs) -> int:
        while self.released:  # a slot goes back to the free list only here, under the cache's lock
            slot, owner = self.released.pop()
            if self.owners[slot] is owner:  # not handed to another game since
                self.owners[slot] = None
                self.free.append(slot)
        if self.free:
            slot = self.free.pop()
        else:
            idle = [slot for slot, used in enumerate(self.last_used) if used < self.calls]
            if len(self.owners) < self.max_slots or not idle:
                self._grow()
                slot = self.free.pop()
            else:  # evict the least recently scored game
                slot = min(idle, key=self.last_used.__getitem__)
                owner = self.owners[slot]()
                if owner is not None:
                    del self.slot_of[owner]
        self.owners[slot] = weakref.ref(game, lambda ref, slot=slot: self.released.append((slot, ref)))
        self.slot_of[game] = slot
        self.done[slot], self.last_used[slot] = 0, self.calls
        return slot

    def _grow(self) -> None:
        old = len(self.owners)
        new = max(old + 1, min(max(8, 2 * old), self.max_slots))
        extra = list(self.keys.shape)
        extra[1] = new - old
        self.keys = torch.cat([self.keys, self.keys.new_zeros(extra)], dim=1)
        self.values = torch.cat([self.values, self.values.new_zeros(extra)], dim=1)
        self.owners += [None] * (new - old)
        self.done += [0] * (new - old)
        self.last_used += [0] * (new - old)
        self.free += reversed(range(old, new))


@dataclass(frozen=True)
class CacheStep:
    """One call's view of a :class:`KVCache`: which slots its games use, where their new plies go, and the mask
    that lets each new ply see its game's plies up to itself (padding rows see the first ply and are ignored)."""

    cache: KVCache
    slots: torch.Tensor  # [B]
    write: tuple[torch.Tensor, torch.Tensor]  # slot and ply of each new ply
    new: tuple[torch.Tensor, torch.Tensor]  # its row and column in the batch
    length: int  # plies to read back
    mask: torch.Tensor  # [B, 1, T, length]
    last: torch.Tensor  # [B] the column of each game's current position
    plies: list[tuple[int, int]]  # (slot, plies of its game) once the step has run

    def layer(self, index: int) -> LayerCache:
        return LayerCache(self, self.cache.keys[index], self.cache.values[index])


@dataclass(frozen=True)
class LayerCache:
    step: CacheStep
    keys: torch.Tensor  # [slots, n_head, block_size, head size]
    values: torch.Tensor

    @property
    def mask(self) -> torch.Tensor:
        return self.step.mask

    def extend(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new plies' keys and values [B, H, T, D]; return all of the games' [B, H, length, D] (gathered
        with ``index_select`` from the plies in use: five times faster on CPU than advanced indexing)."""
        step, (rows, columns) = self.step, self.step.new
        self.keys[step.write[0], :, step.write[1]] = k[rows, :, columns].to(self.keys.dtype)
        self.values[step.write[0], :, step.write[1]] = v[rows, :, columns].to(self.values.dtype)
        return tuple(cache[:, :, : step.length].index_select(0, step.slots) for cache in (self.keys, self.values))


def _weights_fingerprint(model: ChessFormer) -> tuple:
    """Changes when any parameter is modified in place (its version counter) or replaced (its storage)."""
    return tuple((parameter.data_ptr(), parameter._version) for parameter in model.parameters())


#: Each model's cache; it goes with the model.
_KV_CACHES: weakref.WeakKeyDictionary[ChessFormer, KVCache] = weakref.WeakKeyDictionary()
_KV_CACHES_LOCK = threading.Lock()


def _kv_cache(model: ChessFormer) -> KVCache:
    with _KV_CACHES_LOCK:
        cache = _KV_CACHES.get(model)
        if cache is None or cache.fingerprint != _weights_fingerprint(model):
            cache = _KV_CACHES[model] = KVCache(model)
        return cache


def _contexts(
    model: ChessFormer, games: Sequence[_GameInputs], device: torch.device, incremental: bool
) -> torch.Tensor:
    """The trunk's output [B, C] at each game's current position: through the cache for games within
    ``block_size`` (when ``incremental``), else by recomputing the whole (cropped) history."""
    cached = [row for row, game in enumerate(games) if incremental and len(game.tokens) <= model.config.block_size]
    full = sorted(set(range(len(games))) - set(cached))
    parts = []
    if cached:
        cache = _kv_cache(model)
        with cache.lock:
            batch, step = cache.step([games[row] for row in cached], device)
            x = model.trunk(batch, step)
            cache.commit(step)
        parts.append(x[torch.arange(len(cached), device=device), step.last])
    if full:
        batch = _history_batch(model, [games[row] for row in full], device)
        parts.append(model.trunk(batch).flatten(0, 1)[batch["query"]])
    if not (cached and full):
        return parts[0]
    return torch.cat(parts)[torch.as_tensor(np.argsort(cached + full), device=device)]


@torch.inference_mode()
def legal_move_distribution(
    model: ChessFormer, boards: Sequence[chess.Board], temperature: float, *, incremental: bool = True
) -> LegalMoveDistribution:
    """The model's distribution over each position's legal moves at temperature τ, in one batched forward pass.

    τ = 0 is the argmax (all mass on the highest logit; the first legal move on ties); small τ approaches it.
    Games must start from the standard position; their history (``board.move_stack``) is the model's context.
    With ``incremental`` (the default) each game's earlier plies come from the model's :class:`KVCache`;
    ``incremental=False`` recomputes every history, as the reference code did (the benchmark's baseline).
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        games = _game_inputs(boards, with_planes=model.config.board_input)
        legal, moves = _legal_batch(games, boards, device)
        logits, vocab_logits = model.heads(_contexts(model, games, device, incremental), legal)
    finally:
        model.train(was_training)
    probs, illegal_mass = _sample_probs(logits.float(), temperature), None
    if vocab_logits is not None:
        mask = torch.zeros_like(vocab_logits, dtype=torch.bool)
        mask[legal["legal_query"], legal["legal_tokens"]] = True
        illegal_mass = 1.0 - (_sample_probs(vocab_logits.float(), temperature) * mask).sum(dim=-1).clamp(max=1.0)
    return LegalMoveDistribution(moves=moves, probs=probs, illegal_mass=illegal_mass)


def _sample_probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(logits / τ) by row, the one-hot argmax at τ = 0."""
    if temperature == 0:
        return F.one_hot(logits.argmax(dim=-1), logits.shape[-1]).float()
    return torch.softmax(logits / temperature, dim=-1)


def choose_moves(
    model: ChessFormer, boards: Sequence[chess.Board], temperature: float, generator: torch.Generator | None = None
) -> list[chess.Move]:
    """One move per position, sampled from :func:`legal_move_distribution` (argmax at τ = 0)."""
    distribution = legal_move_distribution(model, boards, temperature)
    if temperature == 0:
        slots = distribution.probs.argmax(dim=-1)
    else:
        slots = torch.multinomial(distribution.probs, 1, generator=generator).squeeze(-1)
    return [moves[slot] for moves, slot in zip(distribution.moves, slots.tolist(), strict=True)]
