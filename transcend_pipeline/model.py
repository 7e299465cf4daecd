"""ChessFormer: a causal transformer over a game's move tokens with a legal-move scoring head, in one file.

Read top to bottom: the config (sizes ``tiny`` and ``paper``), the trunk (nanoGPT's blocks), the two heads, the
loss, then the optimiser and MFU helpers. Playing a trained model (each game's inputs, the key/value cache, the
legal-move distribution) is :mod:`transcend_pipeline.inference`.

Position i of a game (the board before its i-th move) sees the token of move i-1 (``<bos>`` at the start), its
ply, and optionally the board itself; the trunk's output there scores move i.

- ``move_features=True``: each legal move's logit = MLP(context at the ply + embedding of the move's own features)
  (:mod:`transcend_pipeline.features`). The output is a distribution over legal moves by construction.
- ``move_features=False`` (the paper's transcript setting): logits over the whole vocabulary, trained with full
  cross-entropy; sampling renormalises over the legal moves (the reference code resampled illegal ones instead).

A batch is a dict of tensors (the training loader and :func:`transcend_pipeline.inference.legal_move_distribution`
both build it):
``tokens`` [B, T] input tokens; ``boards`` [B, T, 64] and ``state`` [B, T, 3] (only with ``board_input``);
``query`` [P] flattened indices (b * T + t) of the positions to score; the legal moves of those positions,
flattened: ``legal_query`` [M] (which query), ``legal_slot`` [M] (slot in that query's row), ``legal_tokens`` [M],
``move_features`` [M, F] (training pads them with rows of ``legal_query`` = P, see :meth:`ChessFormer.heads`);
``max_legal`` (an int, the row width); for training ``target_slot`` and ``target_token`` [P], the played move's slot
among the legal moves and its token.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn as nn
from torch.nn import functional as F

from transcend_pipeline import features, vocab

if TYPE_CHECKING:
    from transcend_pipeline.inference import CacheStep, LayerCache


@dataclass
class ChessFormerConfig:
    block_size: int = 256  # plies of context; longer games are cut (training) or cropped to the last plies (play)
    vocab_size: int = vocab.VOCAB_SIZE
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    dropout: float = 0.0
    bias: bool = True
    board_input: bool = True  # embed the board (pieces, castling, en passant, side to move) at every ply
    move_features: bool = True  # score legal moves from their features; False = full-vocabulary transcript head
    move_hidden: int = 128  # width of the per-move scorer

    @classmethod
    def from_dict(cls, values: dict) -> ChessFormerConfig:
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)


#: Named sizes: ``tiny`` trains in CPU minutes (the move features carry most of the work);
#: ``paper`` is Zhang et al.'s 16 layers x 8 heads x 512 on transcripts alone.
SIZES: dict[str, dict] = {
    "tiny": dict(n_layer=1, n_head=4, n_embd=64, move_hidden=64, board_input=True, move_features=True),
    "paper": dict(n_layer=16, n_head=8, n_embd=512, board_input=False, move_features=False),
}


def config_for(size: str, **overrides) -> ChessFormerConfig:
    """The config of a named size, with overrides (e.g. ``config_for("paper", move_features=True)``)."""
    if size not in SIZES:
        raise KeyError(f"unknown model size {size!r}; known: {sorted(SIZES)}")
    return ChessFormerConfig(**{**SIZES[size], **overrides})


class CausalSelfAttention(nn.Module):
    def __init__(self, config: ChessFormerConfig) -> None:
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head, self.dropout = config.n_head, config.dropout

    def forward(self, x: torch.Tensor, cache: LayerCache | None = None) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in self.c_attn(x).split(C, 2))
        if cache is None:
            dropout = self.dropout if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
        else:  # inference on the new plies of games whose earlier keys and values are cached
            k, v = cache.extend(k, v)
            y = F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype), attn_mask=cache.mask)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C)))


class MLP(nn.Module):
    def __init__(self, config: ChessFormerConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config: ChessFormerConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cache: LayerCache | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache)
        return x + self.mlp(self.ln_2(x))


def _offsets(sizes: Sequence[int]) -> torch.Tensor:
    """Where each categorical column starts in one shared embedding table."""
    return torch.tensor(np.concatenate([[0], np.cumsum(sizes)[:-1]]), dtype=torch.long)


#: The move features are embedded as crossed groups: one lookup sees a group's interaction, e.g. the piece, what it
#: captures and its destination's cheapest attacker and defender afterwards (a static-exchange table), or the
#: piece and its destination (the panel players' quirks are per piece type and destination, design §4).
MOVE_FEATURE_GROUPS: tuple[tuple[str, ...], ...] = (
    ("piece", "captured", "to_attacked_after", "to_defended_after"),
    ("to_attacked_before", "from_attacked", "from_defended", "check"),
    ("promotion", "own_hanging_after", "their_hanging_after"),
    ("material_swing", "check", "their_hanging_after"),
    ("material_swing",),  # the same columns alone too: their main effects are learnt from every move, not per cell
    ("check",),
    ("piece", "from"),
    ("piece", "to"),
)


class LegalMoveHead(nn.Module):
    """logit(move) = v . GELU(W . GELU(context + embed(crossed move features))).

    A move is known by its features only, not by its vocabulary token as well: a table of 1,968 token vectors,
    each trained by the few positions where that move was played, drowned the shared signal of the features
    (on the demo's 1000 bucket, consensus agreement 41% with it, 43% without; issue 5's note).
    """

    def __init__(self, config: ChessFormerConfig) -> None:
        super().__init__()
        columns, sizes = list(features.MOVE_FEATURES), list(features.MOVE_FEATURES.values())
        self.groups = [[columns.index(name) for name in group] for group in MOVE_FEATURE_GROUPS]
        self.radices = [
            [math.prod(sizes[c] for c in group[i + 1 :]) for i in range(len(group))] for group in self.groups
        ]
        table_sizes = [math.prod(sizes[c] for c in group) for group in self.groups]
        self.register_buffer("group_offsets", _offsets(table_sizes), persistent=False)
        self.move_embedding = nn.EmbeddingBag(sum(table_sizes), config.move_hidden, mode="sum")
        self.context = nn.Linear(config.n_embd, config.move_hidden)
        self.hidden = nn.Linear(config.move_hidden, config.move_hidden)
        self.score = nn.Linear(config.move_hidden, 1)

    def forward(self, context: torch.Tensor, batch: dict) -> torch.Tensor:
        columns = batch["move_features"].long()
        crossed = [
            sum(columns[:, c] * r for c, r in zip(group, radix, strict=True))
            for group, radix in zip(self.groups, self.radices, strict=True)
        ]
        ids = torch.stack(crossed, dim=1) + self.group_offsets
        x = F.gelu(self.context(context)[batch["legal_query"]] + self.move_embedding(ids))
        return self.score(F.gelu(self.hidden(x))).squeeze(-1)


class ChessFormer(nn.Module):
    def __init__(self, config: ChessFormerConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        if config.board_input:
            sizes = [features.BOARD_CODES] * 64 + list(features.STATE_FEATURES.values())
            self.register_buffer("board_offsets", _offsets(sizes), persistent=False)
            self.board_embedding = nn.EmbeddingBag(sum(sizes), config.n_embd, mode="sum")
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        if config.move_features:
            self.move_head = LegalMoveHead(config)
        else:
            self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
            self.lm_head.weight = self.wte.weight  # weight tying, as nanoGPT
        self.apply(self._init_weights)
        for name, parameter in self.named_parameters():  # GPT-2's scaled init of residual projections
            if name.endswith("c_proj.weight"):
                torch.nn.init.normal_(parameter, mean=0.0, std=0.02 / math.sqrt(2 * max(config.n_layer, 1)))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding | nn.EmbeddingBag):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def get_num_params(self, non_embedding: bool = True) -> int:
        """Parameters; without the position embedding by default (as nanoGPT counts)."""
        count = sum(p.numel() for p in self.parameters())
        return count - self.wpe.weight.numel() if non_embedding else count

    def trunk(self, batch: dict, cache: CacheStep | None = None) -> torch.Tensor:
        """Context vectors [B, T, C] for every position of every game.

        With a ``cache`` the tokens are the plies new since each game's last call, at the plies in
        ``batch["positions"]`` [B, T], attending to the keys and values the cache holds for the earlier ones.
        """
        tokens = batch["tokens"]
        B, T = tokens.shape
        if cache is None:
            if self.config.block_size < T:
                raise ValueError(f"sequence of {T} plies exceeds block_size {self.config.block_size}")
            positions = torch.arange(T, device=tokens.device)
        else:
            positions = batch["positions"]
        x = self.wte(tokens) + self.wpe(positions)
        if self.config.board_input:
            ids = torch.cat([batch["boards"].long(), batch["state"].long()], dim=-1).view(B * T, -1)
            x = x + self.board_embedding(ids + self.board_offsets).view(B, T, -1)
        x = self.drop(x)
        for layer, block in enumerate(self.h):
            x = block(x, None if cache is None else cache.layer(layer))
        return self.ln_f(x)

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits of the queried positions' legal moves [P, max_legal] (-inf in empty slots), and with the
        transcript head also the full-vocabulary logits [P, vocab_size] (None with the move head)."""
        return self.heads(self.trunk(batch).flatten(0, 1)[batch["query"]], batch)

    def heads(self, context: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`forward`'s logits from the context vectors [P, C] of the queried positions.

        Legal-move rows with ``legal_query`` = P pad a training batch to a stable size: they score a zero context
        into a row that is dropped.
        """
        queries = context.shape[0]
        context = F.pad(context, (0, 0, 0, 1))
        if self.config.move_features:
            vocab_logits = None
            legal = self.move_head(context, batch)
        else:
            vocab_logits = self.lm_head(context)
            legal = vocab_logits[batch["legal_query"], batch["legal_tokens"]]
            vocab_logits = vocab_logits[:queries]
        logits = legal.new_full((queries + 1, batch["max_legal"]), float("-inf"))
        logits[batch["legal_query"], batch["legal_slot"]] = legal
        return logits[:queries], vocab_logits

    def loss(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Cross-entropy of the played moves (over legal moves, or over the vocabulary for the transcript head),
        returned with the logits from :meth:`forward`."""
        logits, vocab_logits = self(batch)
        if vocab_logits is None:
            return F.cross_entropy(logits.float(), batch["target_slot"]), logits, None
        return F.cross_entropy(vocab_logits.float(), batch["target_token"]), logits, vocab_logits

    def configure_optimizers(
        self, weight_decay: float, learning_rate: float, betas: tuple[float, float], device_type: str
    ) -> torch.optim.AdamW:
        """AdamW with weight decay on matrices only (nanoGPT); fused on CUDA."""
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
        fused = device_type == "cuda" and "fused" in inspect.signature(torch.optim.AdamW).parameters
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, **({"fused": True} if fused else {}))

    def flops_per_position(self, tokens_per_game: int, legal_moves_per_position: float = 31.0) -> float:
        """Training FLOPs per scored position: 6N for the matrices, attention (PaLM appendix B), the move head."""
        cfg = self.config
        head = 0
        if cfg.move_features:
            head = legal_moves_per_position * 6 * (cfg.move_hidden * cfg.move_hidden + 2 * cfg.move_hidden)
        trunk = sum(p.numel() for n, p in self.named_parameters() if p.dim() >= 2 and not n.startswith("move_head"))
        trunk -= self.wpe.weight.numel() + (0 if not cfg.board_input else self.board_embedding.weight.numel())
        if cfg.move_features:
            trunk -= self.wte.weight.numel()  # embeddings are lookups, not matmuls; tied with lm_head otherwise
        return 6 * trunk + 12 * cfg.n_layer * cfg.n_embd * tokens_per_game + head

    def estimate_mfu(self, positions_per_second: float, tokens_per_game: int, peak_flops: float) -> float:
        """Model FLOPs utilisation: achieved training FLOP/s over the device's peak (e.g. 989e12 for H100 bf16)."""
        return self.flops_per_position(tokens_per_game) * positions_per_second / peak_flops

    @classmethod
    def from_checkpoint(cls, path: str, map_location: str | torch.device = "cpu") -> ChessFormer:
        """The model stored in a training checkpoint (loaded with ``weights_only=True``)."""
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
        model = cls(ChessFormerConfig.from_dict(checkpoint["transcend"]["config"]))
        model.load_state_dict({key.removeprefix("model."): value for key, value in checkpoint["state_dict"].items()})
        return model


#: Peak dense bf16 FLOP/s by accelerator name fragment, for :meth:`ChessFormer.estimate_mfu`.
PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


def peak_flops(device_name: str) -> float | None:
    """Peak bf16 FLOP/s of a named accelerator, None when unknown."""
    return next((flops for key, flops in PEAK_BF16_FLOPS.items() if key in device_name), None)
