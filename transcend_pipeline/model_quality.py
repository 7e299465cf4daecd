"""The quality bar a trained model must clear before match time is spent on it (issue 5, design §5).

On held-out positions of a cap bucket, with Q(s,a) for every legal move computed once per position, each policy
is scored three ways:

- **consensus agreement**: how often it picks the oracle majority vote of the bucket (the argmax of the mean of
  the bucket players' π_r) — the move a transcending model should learn to play;
- **Q-regret**: mean(max Q − Q(chosen)), in expected score per move;
- **top-1**: how often it picks the move actually played.

Every policy is a distribution per position and every figure is an exact expectation under it: an argmax policy
(a clone, the model at τ → 0, the consensus) puts all its mass on one move; a softmax policy (a player, the model at
τ = 1) is scored by E_π[·], so nothing is sampled and the figures are deterministic given the positions.

The bar is the bucket's best player's argmax (its clone): the model at τ → 0 passes when it beats that clone on
both agreement and Q-regret, the two gates whose ordering matched match results in the prototype.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import chess
import numpy as np

from transcend_pipeline.panel.players import Panel, PanelConfig, QSource

if TYPE_CHECKING:
    from transcend_pipeline.experiments import Experiment
    from transcend_pipeline.model import ChessFormer

MODEL_BATCH_POSITIONS = 256  # positions per forward pass: bounds memory, keeps the batch efficient


class EmptyBucketError(ValueError):
    """The bucket has no rated player, so it has neither a consensus nor a bar."""


class MoveDistributions(Protocol):
    """Anything with a distribution over each position's legal moves (a panel `Policy`, a model stand-in)."""

    def distributions(self, boards: Sequence[chess.Board]) -> list[dict[chess.Move, float]]: ...


@dataclass(frozen=True)
class PolicyQuality:
    """One policy's figures over the sampled positions; `cross_entropy` only for softmax policies."""

    policy: str
    kind: str  # 'model', 'consensus', 'clone' (a player's argmax) or 'player' (its softmax π_r)
    agreement: float
    q_regret: float
    top1: float
    cross_entropy: float | None = None
    rating: float | None = None  # the player's written rating; None for the model and the consensus


@dataclass(frozen=True)
class QualityReport:
    positions: int
    model_argmax: PolicyQuality  # the model at τ → 0
    model_sampling: PolicyQuality  # the model at τ = 1
    consensus: PolicyQuality
    bar: PolicyQuality  # the bucket's best player's clone
    players: tuple[PolicyQuality, ...]  # every bucket player's clone and softmax, best player first

    @property
    def passes_bar(self) -> bool:
        """The model at τ → 0 agrees with the consensus more often, and loses less expected score, than the bar."""
        return self.model_argmax.agreement > self.bar.agreement and self.model_argmax.q_regret < self.bar.q_regret

    def rows(self) -> list[dict]:
        """One dict per policy (policy, kind, agreement, q_regret, top1, cross_entropy, rating): the model first."""
        ordered = (self.model_argmax, self.model_sampling, self.consensus, *self.players)
        return [asdict(quality) for quality in ordered]


def sample_positions(
    games: Sequence[Sequence[str]], count: int, seed: int, skip_plies: int = 0
) -> list[tuple[chess.Board, chess.Move]]:
    """`count` (board with its history, played move) pairs drawn without replacement from the games' positions.

    The first `skip_plies` plies of each game are left out: the panel plays them as random near-best openings,
    not as its players, so the move played there says nothing about any player.
    """
    candidates = [(g, ply) for g, game in enumerate(games) for ply in range(skip_plies, len(game))]
    if not candidates:
        raise ValueError(f"no position after ply {skip_plies} in {len(games)} games")
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(candidates), size=min(count, len(candidates)), replace=False).tolist())
    wanted: dict[int, set[int]] = {}
    for index in chosen:
        g, ply = candidates[index]
        wanted.setdefault(g, set()).add(ply)
    samples = []
    for g in sorted(wanted):
        board = chess.Board()
        for ply, uci in enumerate(games[g]):
            move = chess.Move.from_uci(uci)
            if ply in wanted[g]:
                samples.append((board.copy(), move))
            board.push(move)
    return samples


def rated_bucket(players_rows: Sequence[Mapping]) -> list[Mapping]:
    """The bucket's rated players, best first: the first is the player whose clone is the bar."""
    bucket = sorted((row for row in players_rows if row["rating"] is not None), key=lambda row: -row["rating"])
    if not bucket:
        raise EmptyBucketError("no rated player in the bucket")
    return bucket


def measure_policy_quality(
    model: ChessFormer | MoveDistributions,
    games: Sequence[Sequence[str]],
    panel_config: PanelConfig,
    players_rows: Sequence[Mapping],
    q_source: QSource,
    *,
    positions: int = 2000,
    seed: int = 0,
) -> QualityReport:
    """Score the model against the bucket's players and their consensus on positions of held-out `games`.

    `players_rows` are `panel_players` rows of the bucket (rating <= cap; rows without a rating are ignored);
    `q_source` is the panel's Q (a `PooledQ` is prefetched in parallel). `model` is a ChessFormer (read at
    τ = 1; its τ → 0 is the argmax of the same logits) or anything with `distributions(boards)` at τ = 1.
    """
    bucket = rated_bucket(players_rows)
    members = [int(row["player_index"]) for row in bucket]
    samples = sample_positions(games, positions, seed, skip_plies=panel_config.opening_plies[1])
    boards = [board for board, _ in samples]
    if hasattr(q_source, "prefetch"):
        q_source.prefetch(boards)
    model_pi = _model_distributions(model, boards)

    panel = Panel(panel_config)
    n_players = len(members)
    # Per position: agreement, regret, top-1 and log-likelihood of [model τ→0, model τ=1, consensus,
    # each clone, each player].
    n_policies = 3 + 2 * n_players
    agreement, regret, top1, loglik = (np.zeros(n_policies) for _ in range(4))
    for (board, played), model_row in zip(samples, model_pi, strict=True):
        q = q_source.q_values(board)
        moves, pi = panel.policies(board, q, members)
        values = np.fromiter(q.values(), dtype=np.float64, count=len(moves))
        model_probs = np.array([model_row.get(move, 0.0) for move in moves])
        mean = pi.mean(axis=0)
        one_hot = np.eye(len(moves))
        distributions = np.vstack(
            [
                one_hot[np.argmax(model_probs)],
                model_probs / model_probs.sum(),
                one_hot[np.argmax(mean)],
                one_hot[np.argmax(pi, axis=1)],
                pi,
            ]
        )
        agreement += distributions[:, np.argmax(mean)]
        regret += values.max() - distributions @ values
        played_slot = moves.index(played)
        top1 += distributions[:, played_slot]
        loglik += np.log(np.maximum(distributions[:, played_slot], 1e-12))

    count = len(samples)

    def quality(i: int, policy: str, kind: str, softmax: bool, rating: float | None = None) -> PolicyQuality:
        cross_entropy = float(-loglik[i] / count) if softmax else None
        figures = (float(agreement[i] / count), float(regret[i] / count), float(top1[i] / count))
        return PolicyQuality(policy, kind, *figures, cross_entropy, rating)

    clones = [quality(3 + k, f"clone({row['player']})", "clone", False, row["rating"]) for k, row in enumerate(bucket)]
    softmaxes = [
        quality(3 + n_players + k, f"player({row['player']})", "player", True, row["rating"])
        for k, row in enumerate(bucket)
    ]
    return QualityReport(
        positions=count,
        model_argmax=quality(0, "model τ→0", "model", False),
        model_sampling=quality(1, "model τ=1", "model", True),
        consensus=quality(2, f"consensus({n_players} players)", "consensus", False),
        bar=clones[0],
        players=tuple(q for pair in zip(clones, softmaxes, strict=True) for q in pair),
    )


def _model_distributions(
    model: ChessFormer | MoveDistributions, boards: Sequence[chess.Board]
) -> list[dict[chess.Move, float]]:
    """The model's τ = 1 distribution for every board, in batches."""
    if hasattr(model, "distributions"):
        return model.distributions(boards)
    from transcend_pipeline.inference import legal_move_distribution

    result = []
    for start in range(0, len(boards), MODEL_BATCH_POSITIONS):
        result.extend(legal_move_distribution(model, boards[start : start + MODEL_BATCH_POSITIONS], 1.0).as_dicts())
    return result


def format_table(report: QualityReport) -> str:
    """The figures as a fixed-width table, the bar marked, for benchmark and CLI output."""
    lines = [f"{'policy':<28} {'kind':<9} {'rating':>6} {'agree':>7} {'Q-regret':>9} {'top-1':>7} {'CE':>6}"]
    for row in report.rows():
        marker = " <- bar" if row["policy"] == report.bar.policy else ""
        rating = "" if row["rating"] is None else f"{row['rating']:.0f}"
        ce = "" if row["cross_entropy"] is None else f"{row['cross_entropy']:.3f}"
        lines.append(
            f"{row['policy']:<28} {row['kind']:<9} {rating:>6} {row['agreement']:>7.1%} {row['q_regret']:>9.4f}"
            f" {row['top1']:>7.1%} {ce:>6}{marker}"
        )
    verdict = "PASSES" if report.passes_bar else "does not pass"
    lines.append(f"{report.positions} positions; the model at τ→0 {verdict} the bar ({report.bar.policy})")
    return "\n".join(lines)


def bucket_quality_bar(
    warehouse_path: Path,
    experiment: Experiment,
    months: Sequence[str],
    checkpoint: Path,
    panel: PanelConfig,
    stockfish: str,
    *,
    positions: int = 1000,
    lake: Path | str | None = None,
) -> QualityReport:
    """The quality bar of a trained model on its bucket's test split (the arm's own for a diversity arm), against
    the players of that bucket as the panel knows them, with Q from node-limited Stockfish; with `lake`, the
    games' moves come from its `stg_games`."""
    from transcend_pipeline.model import ChessFormer
    from transcend_pipeline.opponents import EnginePool, PooledQ
    from transcend_pipeline.queries import bucket_moves, experiment_panel
    from transcend_pipeline.warehouse import open_warehouse

    with open_warehouse(warehouse_path, read_only=True, lake=lake) as connection:
        games = bucket_moves(connection, experiment, "test", months)
        config, players = experiment_panel(connection, experiment, panel, months)
    model = ChessFormer.from_checkpoint(str(checkpoint)).eval()
    with EnginePool.start(PooledQ.engine_factory(config, stockfish), size=2) as pool:
        return measure_policy_quality(
            model, games, config, players, PooledQ(pool, independent=True), positions=positions, seed=0
        )
