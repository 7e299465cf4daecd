"""Where the low-temperature gain comes from: the exact expected reward of the model's policy, position by position.

Stockfish scores every legal move of a position; the reward R(a) is the mover's Lichess win probability after it.
From the model's distribution over the legal moves at temperature τ the expected reward is exact,
E_τ = Σ p_τ(a)·R(a) (the paper sampled 100 moves per position instead), and the gain F_τ = E_τ − E_1 says how much
sharpening the policy helps in that position. The paper's claim, which this module measures rather than assumes:
the mean gain is positive at low τ, and most of it sits in a small share of the positions.

Positions come from the model's own evaluation games (only those where the model is to move, as in the paper) and
from held-out test games: the bucket's, or for an arm of the diversity study (a variant panel's bucket) the arm's
own and the default bucket's (`BUCKET_HELD_OUT`: seeded sampling gives every arm the same positions there). Each
keeps its history, because the model's context is the game so far. Intervals resample whole games: positions of one
game share its opening, players and style, so they are not independent.

For example::

    analyses = analyse_positions(model, positions, stockfish, temperatures=(0.001, 1.0), depth=8)
    summarise(analyses, 0.001, experiment="cap1000", source="own_games").mean_gain

`argmax_comparison` asks, on the same positions, why the quality bar and the games disagree and whether the panel
itself transcends: the model at τ → 0 against the best expert's clone and own policy, the mixture argmax of the
arm's experts (weighted by their share of the training moves) and every expert's policy and argmax, under the
panel's depth-1 Q-regret, the expected reward R, a deeper regret and blunder rates. The paper's condition for
low-temperature transcendence is that the mixture's argmax beats every expert (`transcendence_condition`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import chess
import numpy as np

from transcend_pipeline.model_quality import MoveDistributions
from transcend_pipeline.panel.players import Panel, PanelConfig, QSource, clone, consensus, player
from transcend_pipeline.plots import Figure
from transcend_pipeline.settings import PAPER_TEMPERATURES

if TYPE_CHECKING:
    import duckdb

    from transcend_pipeline.engine import Engine
    from transcend_pipeline.experiments import Experiment
    from transcend_pipeline.model import ChessFormer

OWN_GAMES = "own_games"
#: The experiment's own test split: its bucket's, or for an arm of the diversity study the arm's variant bucket's.
HELD_OUT = "held_out"
#: For an arm: the default cap bucket's test split, the positions every arm is measured on.
BUCKET_HELD_OUT = "bucket_held_out"
SOURCES = (OWN_GAMES, HELD_OUT, BUCKET_HELD_OUT)

#: MultiPV that lists every legal move (a chess position has at most 218).
ALL_MOVES = 256


@dataclass(frozen=True)
class Position:
    """A position to be judged, with the game that led to it (`board.move_stack` from the standard start)."""

    source: str
    game: str
    board: chess.Board

    @property
    def ply(self) -> int:
        return len(self.board.move_stack)

    @property
    def history(self) -> str:
        return " ".join(move.uci() for move in self.board.move_stack)


@dataclass(frozen=True)
class SourceGame:
    """A game that positions are drawn from: its UCI moves, and the side whose positions count (None: both)."""

    game: str
    moves: Sequence[str]
    colour: chess.Color | None = None


def sample_positions(
    games: Iterable[SourceGame], source: str, size: int, *, seed: int, skip_plies: int = 0
) -> list[Position]:
    """A seeded sample of `size` distinct positions (distinct histories: low-τ games repeat their openings) in
    which the game's `colour` (anyone, when None) is to move; only the chosen ones are replayed into boards.
    The first `skip_plies` plies are left out: an opening book's or the panel's random opening moves are nobody's
    choice."""
    games = list(games)
    candidates: dict[int, tuple[int, int]] = {}  # history key -> (game, ply) of its first occurrence
    for index, game in enumerate(games):
        history = 0
        for ply, uci in enumerate(game.moves):
            # games start from the standard position, so White moves at even plies
            if ply >= skip_plies and (game.colour is None or (ply % 2 == 0) == (game.colour == chess.WHITE)):
                candidates.setdefault(history, (index, ply))
            history = hash((history, uci))
    places = list(candidates.values())
    chosen = np.random.default_rng(seed).choice(len(places), size=min(size, len(places)), replace=False)
    return [_replay(games[index], ply, source) for index, ply in (places[i] for i in sorted(chosen.tolist()))]


def _replay(game: SourceGame, ply: int, source: str) -> Position:
    board = chess.Board()
    for uci in game.moves[:ply]:
        board.push_uci(uci)
    return Position(source, game.game, board)


def sample_sources(
    games: Mapping[str, Sequence[SourceGame]],
    size: int,
    *,
    seed: int,
    skip_plies: Mapping[str, int] | None = None,
) -> list[Position]:
    """`sample_positions` of every source in `SOURCES` order, `size` each; a source missing from `games` or without
    games is skipped. `skip_plies` by source (missing: 0)."""
    return [
        position
        for source in SOURCES
        if games.get(source)
        for position in sample_positions(
            games[source], source, size, seed=seed, skip_plies=(skip_plies or {}).get(source, 0)
        )
    ]


def load_source_games(
    connection: duckdb.DuckDBPyConnection,
    experiment: str,
    cap: int,
    months: Sequence[str],
    *,
    held_out_games: int,
    phase: str | None = None,
    variant: str | None = None,
) -> dict[str, list[SourceGame]]:
    """The model's evaluation games (its own side; of one `phase` only, if given) and up to `held_out_games`
    test-split games (both sides), by source.

    Without `variant`: `OWN_GAMES` and `HELD_OUT`, the cap bucket's test split. For an arm of the diversity study
    (`variant`, the arm's name): `HELD_OUT` is the arm's own test split (`ablation_bucket_games`) and
    `BUCKET_HELD_OUT` the default cap bucket's, the same games for every arm. Held-out games are a stable
    pseudo-random pick (by the hash of their id), so a real month's test split is never read whole."""
    from transcend_pipeline.queries import model_games, test_split_games

    own = [
        SourceGame(f"pairing {pairing} game {index}", moves.split(), chess.WHITE if colour == "white" else chess.BLACK)
        for pairing, index, moves, colour in model_games(connection, experiment, phase)
    ]
    bucket = [SourceGame(game, moves) for game, moves in test_split_games(connection, cap, months, held_out_games)]
    if variant is None:
        return {OWN_GAMES: own, HELD_OUT: bucket}
    arm = [
        SourceGame(game, moves)
        for game, moves in test_split_games(connection, cap, months, held_out_games, arm=variant)
    ]
    return {OWN_GAMES: own, HELD_OUT: arm, BUCKET_HELD_OUT: bucket}


def score_positions(
    boards: Sequence[chess.Board], stockfish_path: str, *, depth: int, workers: int = 2
) -> list[dict[chess.Move, float]]:
    """R(a) for every legal move of each board (the mover's win probability), on `workers` engines at once.

    Each position is scored after `ucinewgame`, so a score does not depend on which engine had which position
    before it: reruns and any number of workers give the same rewards.
    """
    from transcend_pipeline.engine import Engine
    from transcend_pipeline.opponents import EnginePool

    with EnginePool.start(lambda: Engine(stockfish_path, depth=depth, multipv=ALL_MOVES), size=workers) as pool:
        return pool.map(_fresh_scores, list(boards))


def _fresh_scores(engine: Engine, board: chess.Board) -> dict[chess.Move, float]:
    engine.new_game()
    return engine.score_moves(board)


@dataclass(frozen=True)
class PositionAnalysis:
    """One position's legal moves, their rewards and the model's probabilities per temperature (aligned arrays)."""

    position: Position
    moves: list[chess.Move]
    rewards: np.ndarray
    probs: Mapping[float, np.ndarray]

    def expected_reward(self, temperature: float) -> float:
        return float(self.probs[temperature] @ self.rewards)

    def gain(self, temperature: float) -> float:
        """F_τ = E_τ − E_1: what sharpening (or flattening) the policy to τ earns here; exactly 0 at τ = 1."""
        return self.expected_reward(temperature) - self.expected_reward(1.0)

    @property
    def best_move(self) -> chess.Move:
        return self.moves[int(np.argmax(self.rewards))]

    @property
    def model_move(self) -> chess.Move:
        """The model's argmax (the same at every τ > 0: temperature rescales the logits, it does not reorder them)."""
        return self.moves[int(np.argmax(self.probs[1.0]))]

    @property
    def agrees(self) -> bool:
        """The model's argmax is a move Stockfish scores best (ties, common at low depth, all count as best)."""
        return bool(self.rewards[self.moves.index(self.model_move)] >= self.rewards.max())


def analyse_positions(
    model: ChessFormer,
    positions: Sequence[Position],
    stockfish_path: str,
    *,
    temperatures: Sequence[float] = PAPER_TEMPERATURES,
    depth: int = 8,
    workers: int = 2,
    batch_size: int = 128,
) -> list[PositionAnalysis]:
    """Rewards from Stockfish and the model's masked distributions (batched) for every position."""
    rewards = score_positions([position.board for position in positions], stockfish_path, depth=depth, workers=workers)
    probs = model_probabilities(model, [position.board for position in positions], temperatures, batch_size)
    analyses = []
    for i, (position, scores) in enumerate(zip(positions, rewards, strict=True)):
        moves = probs[1.0][i][0]
        analyses.append(
            PositionAnalysis(
                position,
                moves,
                np.array([scores[move] for move in moves]),
                {temperature: probs[temperature][i][1] for temperature in probs},
            )
        )
    return analyses


def model_probabilities(
    model: ChessFormer, boards: Sequence[chess.Board], temperatures: Sequence[float], batch_size: int = 128
) -> dict[float, list[tuple[list[chess.Move], np.ndarray]]]:
    """Per temperature (τ = 1 always included, it is the baseline), each board's legal moves and p_τ over them.

    One forward pass at τ = 1: softmax(logits / τ) = softmax(log p_1 / τ), since log p_1 differs from the logits
    by a constant per position; τ = 0 is the argmax, as in :func:`legal_move_distribution`.
    """
    from transcend_pipeline.inference import legal_move_distribution

    baseline: list[tuple[list[chess.Move], np.ndarray]] = []
    for start in range(0, len(boards), batch_size):
        distribution = legal_move_distribution(model, boards[start : start + batch_size], 1.0)
        probs = distribution.probs.double().cpu().numpy()
        baseline += [(moves, row[: len(moves)]) for moves, row in zip(distribution.moves, probs, strict=True)]
    return {
        temperature: [(moves, _sharpen(probs, temperature)) for moves, probs in baseline]
        for temperature in sorted({*temperatures, 1.0})
    }


def _sharpen(probs: np.ndarray, temperature: float) -> np.ndarray:
    """p_τ from p_1 (float64; an underflowed 0 stays the least likely move)."""
    if temperature == 1.0:
        return probs
    if temperature == 0:
        return np.eye(len(probs))[int(np.argmax(probs))]
    scaled = np.log(np.maximum(probs, np.finfo(np.float64).tiny)) / temperature
    weights = np.exp(scaled - scaled.max())
    return weights / weights.sum()


def game_bootstrap_interval(
    values: Sequence[float], games: Sequence[str], *, seed: int, resamples: int = 2000, level: float = 0.95
) -> tuple[float, float]:
    """The percentile interval of the mean over positions when whole games are resampled (with all their
    positions): positions of one game are not independent, so resampling positions would understate the width."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return math.nan, math.nan
    _, game_of = np.unique(np.asarray(games), return_inverse=True)
    sums, counts = np.bincount(game_of, weights=values), np.bincount(game_of)
    draws = np.random.default_rng(seed).integers(0, len(sums), size=(resamples, len(sums)))
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    tail = (1.0 - level) / 2
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def top_share(gains: Sequence[float], fraction: float = 0.1) -> float | None:
    """The share of the total gain carried by the `fraction` of positions with the largest gains (None when the
    total is not positive: a share of a loss means nothing). Above 1 when the rest lose in sum."""
    gains = np.sort(np.asarray(gains, dtype=float))[::-1]
    total = gains.sum()
    if len(gains) == 0 or total <= 0:
        return None
    return float(gains[: max(1, math.ceil(fraction * len(gains)))].sum() / total)


@dataclass(frozen=True)
class GainSummary:
    """One (experiment, source, temperature) cell; rewards and gains in win probability (0..1). The intervals (95%)
    resample whole games: `mean_reward` is E_τ averaged over positions, `mean_gain` F_τ = E_τ − E_1."""

    experiment: str
    source: str
    temperature: float
    positions: int
    games: int  # distinct games the positions come from: the bootstrap's unit
    mean_reward: float
    reward_low: float
    reward_high: float
    mean_gain: float
    gain_low: float
    gain_high: float
    top10_share: float | None
    agreement: float

    def as_row(self) -> dict:
        return asdict(self)


def summarise(
    analyses: Sequence[PositionAnalysis], temperature: float, *, experiment: str, source: str, seed: int = 0
) -> GainSummary:
    """The cell's means with game-bootstrap intervals (`game_bootstrap_interval` over `position.game`)."""
    games = [analysis.position.game for analysis in analyses]
    rewards = [analysis.expected_reward(temperature) for analysis in analyses]
    gains = [analysis.gain(temperature) for analysis in analyses]
    reward_low, reward_high = game_bootstrap_interval(rewards, games, seed=seed)
    gain_low, gain_high = game_bootstrap_interval(gains, games, seed=seed)
    return GainSummary(
        experiment=experiment,
        source=source,
        temperature=temperature,
        positions=len(analyses),
        games=len(set(games)),
        mean_reward=float(np.mean(rewards)),
        reward_low=reward_low,
        reward_high=reward_high,
        mean_gain=float(np.mean(gains)),
        gain_low=gain_low,
        gain_high=gain_high,
        top10_share=top_share(gains),
        agreement=float(np.mean([analysis.agrees for analysis in analyses])),
    )


def summary_table(analyses: Sequence[PositionAnalysis], *, experiment: str, seed: int = 0) -> list[GainSummary]:
    """Every (source, temperature) cell of one experiment, sources in `SOURCES` order, τ ascending."""
    table = []
    for source in SOURCES:
        mine = [analysis for analysis in analyses if analysis.position.source == source]
        if mine:
            table += [
                summarise(mine, temperature, experiment=experiment, source=source, seed=seed)
                for temperature in sorted(mine[0].probs)
            ]
    return table


def position_rows(analyses: Sequence[PositionAnalysis], *, experiment: str) -> list[dict]:
    """One row per (position, temperature), for the warehouse."""
    rows = []
    for index, analysis in enumerate(analyses):
        position = analysis.position
        common = {
            "experiment": experiment,
            "source": position.source,
            "position": index,
            "game": position.game,
            "ply": position.ply,
            "fen": position.board.fen(),
            "history": position.history,
            "legal_moves": len(analysis.moves),
            "best_move": analysis.best_move.uci(),
            "best_reward": float(analysis.rewards.max()),
            "model_move": analysis.model_move.uci(),
            "agrees": analysis.agrees,
        }
        rows += [
            {**common, "temperature": t, "expected_reward": analysis.expected_reward(t), "gain": analysis.gain(t)}
            for t in sorted(analysis.probs)
        ]
    return rows


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: Path) -> Figure:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, format="png")
    _pyplot().close(figure)
    return Figure(path)


def plot_gain_histogram(
    analyses: Sequence[PositionAnalysis], temperatures: Sequence[float], path: Path, *, title: str
) -> Figure:
    """The paper's figure: the distribution of F_τ over positions for a few low temperatures, overlaid."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6.5, 4), dpi=110)
    gains = {t: 100 * np.array([analysis.gain(t) for analysis in analyses]) for t in temperatures}
    everything = np.concatenate(list(gains.values()))
    bins = np.linspace(min(everything.min(), 0.0), max(everything.max(), 0.0) + 1e-9, 41)
    for t, values in gains.items():
        axes.hist(values, bins=bins, alpha=0.45, label=f"τ = {t:g} (mean {values.mean():+.2f})")
    axes.axvline(0, color="black", linewidth=0.8)
    axes.set_yscale("log")
    axes.set(xlabel="gain F_τ = E_τ − E_1 (win-probability points)", ylabel="positions", title=title)
    axes.legend(fontsize="small")
    axes.grid(alpha=0.3)
    return _save(figure, path)


def plot_gain_concentration(
    analyses: Sequence[PositionAnalysis], temperatures: Sequence[float], path: Path, *, title: str
) -> Figure:
    """Cumulative share of the total gain against the share of positions, sorted by gain (largest first), one curve
    per temperature."""
    curves = {f"τ = {t:g}": [analysis.gain(t) for analysis in analyses] for t in temperatures}
    return plot_concentration_curves(curves, path, title=title)


def plot_concentration_curves(curves: Mapping[str, Sequence[float]], path: Path, *, title: str) -> Figure:
    """Concentration curves on one figure, one per label (an arm of the diversity study, a temperature): its
    per-position gains sorted largest first, the share of positions against the cumulative share of the total
    gain. A curve whose gains sum to a net loss (or nothing) has no shares; it is named in the legend, not drawn."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(5.5, 4), dpi=110)
    for label, values in curves.items():
        gains = np.sort(np.asarray(values, dtype=float))[::-1]
        if len(gains) and gains.sum() > 0:
            share = np.arange(1, len(gains) + 1) / len(gains)
            axes.plot(
                np.r_[0, share], np.r_[0, np.cumsum(gains) / gains.sum()], label=f"{label} ({len(gains)} positions)"
            )
        else:  # a share of a net loss means nothing
            axes.plot([], [], linestyle="none", label=f"{label}: no net gain")
    if curves:
        axes.legend(fontsize="small")
    axes.axvline(0.1, color="grey", linestyle=":", linewidth=1)
    axes.axhline(1.0, color="grey", linewidth=0.8)
    axes.set(xlabel="share of positions (largest gain first)", ylabel="share of total gain", title=title)
    axes.grid(alpha=0.3)
    return _save(figure, path)


GLYPHS = dict(zip("KQRBNPkqrbnp", "♔♕♖♗♘♙♚♛♜♝♞♟", strict=True))


def _draw_board(axes, board: chess.Board, arrows: Sequence[tuple[chess.Move, str]]) -> None:
    """An 8×8 diagram (White at the bottom) with unicode pieces and coloured arrows for the given moves."""
    for square in chess.SQUARES:
        file, rank = chess.square_file(square), chess.square_rank(square)
        light = (file + rank) % 2 == 1
        axes.add_patch(_pyplot().Rectangle((file, rank), 1, 1, color="#f0d9b5" if light else "#b58863"))
        piece = board.piece_at(square)
        if piece:
            axes.text(file + 0.5, rank + 0.45, GLYPHS[piece.symbol()], ha="center", va="center", fontsize=19)
    for move, colour in arrows:
        start, end = move.from_square, move.to_square
        x, y = chess.square_file(start) + 0.5, chess.square_rank(start) + 0.5
        dx, dy = chess.square_file(end) + 0.5 - x, chess.square_rank(end) + 0.5 - y
        axes.arrow(x, y, dx, dy, width=0.08, color=colour, alpha=0.7, length_includes_head=True)
    axes.set_xlim(0, 8)
    axes.set_ylim(0, 8)
    axes.set_xticks(np.arange(8) + 0.5, list("abcdefgh"))
    axes.set_yticks(np.arange(8) + 0.5, list("12345678"))
    axes.tick_params(length=0, labelsize=7)
    axes.set_aspect("equal")


def plot_top_positions(
    analyses: Sequence[PositionAnalysis], temperature: float, path: Path, *, count: int = 3, moves: int = 6
) -> Figure:
    """The `count` positions with the largest gain at `temperature`: the board (green: Stockfish's best move,
    red: the model's argmax) beside the model's top moves at τ = 1 and at `temperature`, each with its reward."""
    plt = _pyplot()
    top = sorted(analyses, key=lambda analysis: analysis.gain(temperature), reverse=True)[:count]
    figure, grid = plt.subplots(max(1, len(top)), 2, figsize=(9, 0.4 + 3.2 * max(1, len(top))), dpi=100, squeeze=False)
    figure.suptitle(
        f"Largest gains at τ = {temperature:g}. Arrows: Stockfish's best move (green), the model's argmax (red, on top)",
        fontsize=10,
    )
    for (board_axes, bar_axes), analysis in zip(grid, top, strict=False):
        board = analysis.position.board
        _draw_board(board_axes, board, [(analysis.best_move, "green"), (analysis.model_move, "red")])
        side = "White" if board.turn == chess.WHITE else "Black"
        board_axes.set_title(f"{side} to move, ply {analysis.position.ply}", fontsize=9)
        order = np.argsort(-np.maximum(analysis.probs[1.0], analysis.probs[temperature]))[:moves][::-1]
        labels = [f"{board.san(analysis.moves[i])}  R={analysis.rewards[i]:.2f}" for i in order]
        y = np.arange(len(order))
        bar_axes.barh(y + 0.2, analysis.probs[1.0][order], height=0.4, label="τ = 1")
        bar_axes.barh(y - 0.2, analysis.probs[temperature][order], height=0.4, label=f"τ = {temperature:g}")
        bar_axes.set_yticks(y, labels, fontsize=8)
        bar_axes.set_xlim(0, 1)
        bar_axes.set_xlabel("model probability")
        bar_axes.set_title(
            f"E_1 = {analysis.expected_reward(1.0):.3f} → E_τ = {analysis.expected_reward(temperature):.3f} "
            f"(gain {100 * analysis.gain(temperature):+.1f} pts)",
            fontsize=9,
        )
        bar_axes.legend(fontsize="x-small", loc="lower right")
    for board_axes, bar_axes in grid[len(top) :]:
        board_axes.axis("off")
        bar_axes.axis("off")
    return _save(figure, path)


def markdown_section(summaries: Sequence[GainSummary], figures: Mapping[str, str | Path] | None = None) -> str:
    """The report's section: per experiment, source and temperature other than 1 (the baseline, its gain is 0 by
    definition), the mean expected reward E_τ and the mean gain, each with its 95% interval over whole games, the
    top-10% share and the agreement; then the figures (label → link target) as images. Rows read back from the
    `state_advantage` table: `GainSummary(**row)`."""
    lines = [
        "## Where the gain comes from (state advantage)",
        "",
        "Per position, Stockfish scores every legal move as the mover's win probability R(a); the model's exact "
        "expected reward at temperature τ is E_τ = Σ p_τ(a)·R(a) and its gain is F_τ = E_τ − E_1 (both in "
        "win-probability points, means over positions). The 95% intervals resample whole games, since positions of "
        "one game are not independent. *Top-10% share*: the part of the total gain carried by the 10% of positions "
        "that gain most (above 100% when the other positions lose in sum). *Agreement*: the model's argmax is "
        "Stockfish's best move.",
        "",
        "| experiment | positions from | τ | positions (games) | E_τ [95%] | gain F_τ [95%] | top-10% share "
        "| agreement |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in summaries:
        if row.temperature == 1.0:
            continue
        share = "—" if row.top10_share is None else f"{row.top10_share:.0%}"
        lines.append(
            f"| {row.experiment} | {row.source.replace('_', ' ')} | {row.temperature:g} | {row.positions} "
            f"({row.games}) | {100 * row.mean_reward:.2f} [{100 * row.reward_low:.2f}, {100 * row.reward_high:.2f}] | "
            f"{100 * row.mean_gain:+.2f} [{100 * row.gain_low:+.2f}, {100 * row.gain_high:+.2f}] | {share} | "
            f"{row.agreement:.0%} |"
        )
    for label, target in (figures or {}).items():
        lines += ["", f"![{label}]({target})"]
    return "\n".join(lines) + "\n"


# The model's argmax against the panel, on the same positions. Against the best expert's clone (review item 6): the
# quality bar ranks them by depth-1 Q-regret, games by results; a deeper reward and blunder counts say which one
# loses less. Against the panel's ground truth: every expert's own policy and argmax and the argmax of their mixture,
# whose expected reward says whether the panel can transcend at all (the paper's condition).

MODEL, CLONE, PLAYER, CONSENSUS = "model", "clone", "player", "consensus"
#: Every expert but the best: its own softmax policy π_r, and its argmax (its clone).
EXPERT, EXPERT_ARGMAX = "expert", "expert_argmax"
#: The kinds of an expert's own (sampling) policy: the best expert's and every other's.
EXPERT_POLICIES = (PLAYER, EXPERT)

#: Losses of expected score under the deep reward that count as a blunder: from an even position, 0.2 is about
#: 2.3 pawns (a piece) on Lichess's logistic, 0.1 about 1.1 (a pawn).
BLUNDER, SLIP = 0.2, 0.1


@dataclass(frozen=True)
class Expert:
    """An expert of an arm: its name, its index in the arm's `Panel` and its weight in the mixture (its share of
    the moves in the arm's training data)."""

    name: str
    index: int
    weight: float


@dataclass(frozen=True)
class ComparedPolicy:
    """A policy in the comparison: its name, its kind (`MODEL`, `CLONE`, `PLAYER`, `CONSENSUS`, `EXPERT` or
    `EXPERT_ARGMAX`) and its moves."""

    name: str
    kind: str
    policy: MoveDistributions


class ArgmaxModel:
    """The model at τ → 0 as a `MoveDistributions`: all mass on its most likely legal move, which is what it plays
    at τ = 0.001 (temperature rescales the logits, it does not reorder them)."""

    def __init__(self, model: ChessFormer, batch_size: int = 128) -> None:
        self.model = model
        self.batch_size = batch_size

    def distributions(self, boards: Sequence[chess.Board]) -> list[dict[chess.Move, float]]:
        from transcend_pipeline.inference import legal_move_distribution

        result: list[dict[chess.Move, float]] = []
        for start in range(0, len(boards), self.batch_size):
            result += legal_move_distribution(self.model, boards[start : start + self.batch_size], 0.0).as_dicts()
        return result


def panel_policies(
    model: MoveDistributions, panel: Panel, experts: Sequence[Expert], q_source: QSource
) -> list[ComparedPolicy]:
    """The model (as given: wrap a ChessFormer in `ArgmaxModel`), the best expert's (`experts[0]`) clone and own
    softmax, the argmax of the experts' mixture weighted by their `weight` (`CONSENSUS`), then every other expert's
    own softmax (`EXPERT`) and argmax (`EXPERT_ARGMAX`), named `player(name)` and `clone(name)`."""
    if not experts:
        raise ValueError("the comparison needs at least one expert")
    best = experts[0]
    mixture = consensus(panel, q_source, [e.index for e in experts], [e.weight for e in experts])
    policies = [
        ComparedPolicy("model τ→0", MODEL, model),
        ComparedPolicy(f"clone({best.name})", CLONE, clone(panel, q_source, best.index)),
        ComparedPolicy(f"player({best.name})", PLAYER, player(panel, q_source, best.index)),
        ComparedPolicy(mixture.label, CONSENSUS, mixture),
    ]
    for expert in experts[1:]:
        policies += [
            ComparedPolicy(f"player({expert.name})", EXPERT, player(panel, q_source, expert.index)),
            ComparedPolicy(f"clone({expert.name})", EXPERT_ARGMAX, clone(panel, q_source, expert.index)),
        ]
    return policies


@dataclass(frozen=True)
class ArgmaxComparison:
    """One policy on one source's positions, in expected score per move (0..1); softmax policies by exact
    expectation. The differences are this policy − the clone on the same positions, with 95% intervals from
    resampling whole games (positions of one game share its opening, opponent and style). The `CONSENSUS` row also
    carries the paper's condition: its reward − the reward of the expert policy that earns most on these positions
    (`best_expert_policy`, among `EXPERT_POLICIES`), with its interval; other rows leave these None."""

    experiment: str
    source: str
    policy: str
    kind: str
    positions: int
    games: int
    depth: int  # of the search behind R
    reward: float  # mean expected R of the chosen move: the policy's expected score per move under the deep search
    q1_regret: float  # max Q − Q(chosen) with the panel's depth-1 Q, as the quality bar measures it
    deep_regret: float  # max R − R(chosen), R from a deeper search of every legal move
    blunder_rate_02: float  # share of positions where the chosen move loses more than BLUNDER under R
    blunder_rate_01: float  # ... more than SLIP
    q_floor_rate: float  # share where Q gives the chosen move its floor (a non-best move scored lowest)
    agreement_with_model: float
    q1_regret_diff: float
    q1_diff_low: float
    q1_diff_high: float
    deep_regret_diff: float
    deep_diff_low: float
    deep_diff_high: float
    best_expert_policy: str | None = None
    condition_diff: float | None = None  # mixture argmax's reward − best_expert_policy's; > 0: the panel transcends
    condition_low: float | None = None
    condition_high: float | None = None

    def as_row(self) -> dict:
        return asdict(self)


def compare_policies(
    positions: Sequence[Position],
    policies: Sequence[ComparedPolicy],
    q_source: QSource,
    rewards: Sequence[Mapping[chess.Move, float]],
    *,
    experiment: str,
    depth: int,
    seed: int = 0,
) -> list[ArgmaxComparison]:
    """Every policy on the same positions: one row per (source, policy), sources in order of appearance.

    `rewards` holds R(a) for every legal move of each position (`score_positions` at `depth`); `q_source` is the panel's Q (a
    `PooledQ` is prefetched in parallel). Exactly one policy must be the `MODEL` and one the `CLONE`; with a
    `CONSENSUS` (at most one) and expert policies, its row carries the paper's condition.
    """
    kinds = [policy.kind for policy in policies]
    if kinds.count(MODEL) != 1 or kinds.count(CLONE) != 1 or kinds.count(CONSENSUS) > 1:
        raise ValueError(f"need exactly one {MODEL!r}, one {CLONE!r} and at most one {CONSENSUS!r}; got kinds {kinds}")
    model_at, clone_at = kinds.index(MODEL), kinds.index(CLONE)
    boards = [position.board for position in positions]
    if hasattr(q_source, "prefetch"):
        q_source.prefetch(boards)
    chosen = [policy.policy.distributions(boards) for policy in policies]
    # [policy, position, figure]: reward, Q-regret, deep regret, blunder, slip, at Q's floor, agreement with the model
    figures = np.zeros((len(policies), len(positions), 7))
    for i, (board, reward) in enumerate(zip(boards, rewards, strict=True)):
        q = q_source.q_values(board)
        moves = list(q)
        values = np.fromiter(q.values(), dtype=np.float64, count=len(moves))
        r = np.array([reward[move] for move in moves])
        deep = r.max() - r
        probs = np.array([[distribution[i].get(move, 0.0) for move in moves] for distribution in chosen])
        probs /= probs.sum(axis=1, keepdims=True)
        floor = (values == values.min()) & (values < values.max())
        per_move = np.stack([r, values.max() - values, deep, deep > BLUNDER, deep > SLIP, floor], axis=1)
        figures[:, i, :6] = probs @ per_move
        figures[:, i, 6] = probs @ probs[model_at]
    rows = []
    for source in dict.fromkeys(position.source for position in positions):
        mine = np.array([position.source == source for position in positions])
        games = [position.game for position in positions if position.source == source]
        condition = _condition(figures[:, mine, 0], kinds, policies, games, seed=seed)
        for k, policy in enumerate(policies):
            q_diff = figures[k, mine, 1] - figures[clone_at, mine, 1]
            deep_diff = figures[k, mine, 2] - figures[clone_at, mine, 2]
            rows.append(
                ArgmaxComparison(
                    experiment,
                    source,
                    policy.name,
                    policy.kind,
                    int(mine.sum()),
                    len(set(games)),
                    depth,
                    *(float(mean) for mean in figures[k, mine].mean(axis=0)),
                    float(q_diff.mean()),
                    *game_bootstrap_interval(q_diff, games, seed=seed),
                    float(deep_diff.mean()),
                    *game_bootstrap_interval(deep_diff, games, seed=seed),
                    **(condition if policy.kind == CONSENSUS else {}),
                )
            )
    return rows


def _condition(
    rewards: np.ndarray, kinds: Sequence[str], policies: Sequence[ComparedPolicy], games: Sequence[str], *, seed: int
) -> dict:
    """The consensus row's condition fields from per-position rewards [policy, position]: the mixture argmax −
    the expert policy with the highest mean reward, with its game-bootstrap interval ({} without either)."""
    experts = [k for k, kind in enumerate(kinds) if kind in EXPERT_POLICIES]
    if CONSENSUS not in kinds or not experts:
        return {}
    best = max(experts, key=lambda k: rewards[k].mean())
    diff = rewards[kinds.index(CONSENSUS)] - rewards[best]
    low, high = game_bootstrap_interval(diff, games, seed=seed)
    return {
        "best_expert_policy": policies[best].name,
        "condition_diff": float(diff.mean()),
        "condition_low": low,
        "condition_high": high,
    }


@dataclass(frozen=True)
class TranscendenceCondition:
    """The paper's condition for low-temperature transcendence on one source's positions: the argmax of the
    experts' mixture earns more than every expert's own policy, i.e. than the best of them here."""

    experiment: str
    source: str
    mixture: str
    best_expert: str
    mixture_reward: float
    best_expert_reward: float
    diff: float
    low: float
    high: float

    @property
    def verdict(self) -> str:
        """'holds' (the 95% interval is above 0), 'fails' (below 0) or 'unclear'."""
        return "holds" if self.low > 0 else "fails" if self.high < 0 else "unclear"


def transcendence_condition(rows: Sequence[ArgmaxComparison]) -> TranscendenceCondition | None:
    """The condition from one (experiment, source)'s rows of `compare_policies` (None without a consensus row that
    carries it, i.e. without a mixture or experts)."""
    if len({(row.experiment, row.source) for row in rows}) > 1:
        raise ValueError("transcendence_condition takes the rows of one experiment and source")
    mixture = next((row for row in rows if row.kind == CONSENSUS and row.best_expert_policy is not None), None)
    if mixture is None:
        return None
    best = next(row for row in rows if row.policy == mixture.best_expert_policy and row.kind in EXPERT_POLICIES)
    return TranscendenceCondition(
        mixture.experiment,
        mixture.source,
        mixture.policy,
        best.policy,
        mixture.reward,
        best.reward,
        mixture.condition_diff,
        mixture.condition_low,
        mixture.condition_high,
    )


def argmax_comparison(
    model: MoveDistributions,
    positions: Sequence[Position],
    config: PanelConfig,
    experts: Sequence[Expert],
    stockfish_path: str,
    *,
    experiment: str,
    depth: int = 8,
    workers: int = 2,
    seed: int = 0,
) -> list[ArgmaxComparison]:
    """`compare_policies` for the model and the panel's policies (`panel_policies` on `Panel(config)`; `config` may
    be an arm's variant, its `experts` indices into that panel): Q as the panel's players see it (each position
    scored after `ucinewgame`, as the quality bar does) and R from Stockfish at `depth`."""
    from transcend_pipeline.opponents import EnginePool, PooledQ

    rewards = score_positions([position.board for position in positions], stockfish_path, depth=depth, workers=workers)
    with EnginePool.start(PooledQ.engine_factory(config, stockfish_path), size=workers) as pool:
        q = PooledQ(pool, independent=True)
        policies = panel_policies(model, Panel(config), experts, q)
        return compare_policies(positions, policies, q, rewards, experiment=experiment, depth=depth, seed=seed)


def shown_rows(rows: Sequence[ArgmaxComparison]) -> list[ArgmaxComparison]:
    """The rows a report shows of one (experiment, source): model, clone, player and consensus, and of the other
    experts only the best own policy (the condition's `best_expert_policy`) and the best argmax, by reward."""
    argmaxes = [row for row in rows if row.kind == EXPERT_ARGMAX]
    best = {
        EXPERT: next((row.best_expert_policy for row in rows if row.kind == CONSENSUS), None),
        EXPERT_ARGMAX: max(argmaxes, key=lambda row: row.reward).policy if argmaxes else None,
    }
    return [row for row in rows if row.kind not in best or row.policy == best[row.kind]]


def argmax_comparison_section(rows: Sequence[ArgmaxComparison]) -> str:
    """The report's section: per (experiment, source) the model, the best player's clone and own policy, the
    mixture argmax and the best of the other experts' policies and argmaxes; then in words the model − clone
    differences and the paper's condition."""
    depths = ", ".join(str(depth) for depth in sorted({row.depth for row in rows}))
    lines = [
        "## The model's argmax against the best player's clone and the panel, on the same positions",
        "",
        "Every policy is asked for a move in the same positions. *Reward*: the expected score of its move under R, "
        f"Stockfish at depth {depths} over every legal move (softmax policies by exact expectation). *Q-regret*: "
        "max Q − Q(chosen) with the panel's depth-1 Q (Stockfish's top 6 lines, every other move at one floor), as "
        "the quality bar measures it. *Deep regret*: max R − R(chosen). *Blunders*: the chosen move loses more than "
        f"{BLUNDER:g} (or {SLIP:g}) expected score under R. *At Q's floor*: Q scores the chosen move at its floor, "
        "like every move outside the top lines. The panel: *clone*/*player* are the best expert's argmax and own "
        "policy, *consensus* the argmax of the experts' mixture weighted by their share of the training moves; of "
        "the other experts only the best own policy and the best argmax are shown. Intervals (95%) resample whole "
        "games.",
        "",
        "| experiment | positions from | policy | positions (games) | reward | Q-regret | deep regret | blunders > 0.2 "
        "| > 0.1 | at Q's floor | agrees with model | deep regret − clone [95%] |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups = [list(group) for _, group in itertools.groupby(rows, key=lambda row: (row.experiment, row.source))]
    for group in groups:
        for row in shown_rows(group):
            lines.append(
                f"| {row.experiment} | {row.source.replace('_', ' ')} | {row.policy} | {row.positions} ({row.games}) | "
                f"{row.reward:.4f} | {row.q1_regret:.4f} | {row.deep_regret:.4f} | {row.blunder_rate_02:.1%} | "
                f"{row.blunder_rate_01:.1%} | {row.q_floor_rate:.1%} | {row.agreement_with_model:.1%} | "
                f"{row.deep_regret_diff:+.4f} [{row.deep_diff_low:+.4f}, {row.deep_diff_high:+.4f}] |"
            )
    lines.append("")
    for group in groups:
        by_kind = {row.kind: row for row in group}
        model, bar = by_kind[MODEL], by_kind[CLONE]
        where = f"{model.experiment}, {model.source.replace('_', ' ')}"
        lines.append(
            f"- {where} ({model.positions} positions, {model.games} games): model − "
            f"clone is {model.q1_regret_diff:+.4f} [{model.q1_diff_low:+.4f}, {model.q1_diff_high:+.4f}] in Q-regret "
            f"and {model.deep_regret_diff:+.4f} [{model.deep_diff_low:+.4f}, {model.deep_diff_high:+.4f}] in deep "
            f"regret; blunders {model.blunder_rate_02:.1%} against {bar.blunder_rate_02:.1%}; the two argmaxes agree "
            f"on {bar.agreement_with_model:.1%} of positions."
        )
        condition = transcendence_condition(group)
        if condition is not None:
            experts = sum(row.kind in EXPERT_POLICIES for row in group)
            lines.append(
                f"- {where}: the paper's condition (the mixture's argmax beats every expert) {condition.verdict}: "
                f"{condition.mixture} earns {condition.mixture_reward:.4f} against {condition.best_expert_reward:.4f} "
                f"for {condition.best_expert}, the best of {experts} experts here: {condition.diff:+.4f} "
                f"[{condition.low:+.4f}, {condition.high:+.4f}]; the model τ→0 earns {model.reward:.4f}."
            )
    return "\n".join(lines) + "\n"


# --- The procedure the `state_advantage` asset runs ----------------------------------------------------------------


@dataclass(frozen=True)
class AnalysisPlan:
    """How much state analysis a run affords (the `StateAdvantageSettings` resource, per profile): positions per
    source, positions per source of the argmax comparison, the scoring depth, the temperatures and those the figures
    overlay, the boards drawn, Stockfish processes, the seed; and the book's plies (not analysed: shared openings)."""

    positions_per_source: int
    comparison_positions: int
    depth: int
    temperatures: tuple[float, ...]
    figure_temperatures: tuple[float, ...]
    top_positions: int
    workers: int
    seed: int
    book_plies: int


@dataclass(frozen=True)
class ExperimentAnalysis:
    """What `analyse_experiment` stored and drew for one experiment."""

    positions: int
    summaries: list[GainSummary]
    comparison: list[ArgmaxComparison]
    figures: dict[str, Figure]
    report: Path

    @property
    def comparison_section(self) -> str:
        if self.comparison:
            return argmax_comparison_section(self.comparison)
        return "No argmax comparison: it needs the panel's players (panel data) and positions to compare on.\n"


def analyse_experiment(
    warehouse_path: Path,
    experiment: Experiment,
    months: Sequence[str],
    checkpoint: Path,
    plan: AnalysisPlan,
    *,
    panel: PanelConfig | None,
    stockfish: str,
    out_dir: Path,
    log=print,
    lake: Path | str | None = None,
) -> ExperimentAnalysis:
    """The experiment's state advantage on positions of its own games and of held-out games (tables
    `state_advantage_positions` and `state_advantage`), on panel data the argmax comparison with the panel's ground
    truth (`argmax_comparison`), and the figures and `state_advantage.md` under `out_dir`. With `lake`, held-out
    games' moves come from its `stg_games`."""
    from transcend_pipeline.model import ChessFormer
    from transcend_pipeline.warehouse import open_warehouse, replace_with_rows, table_exists

    model = ChessFormer.from_checkpoint(str(checkpoint)).eval()
    with open_warehouse(warehouse_path, read_only=True, lake=lake) as connection:
        games = load_source_games(
            connection,
            experiment.name,
            experiment.cap,
            months,
            held_out_games=plan.positions_per_source,
            variant=experiment.arm if experiment.variant else None,
        )
    positions = sample_sources(games, plan.positions_per_source, seed=plan.seed)
    if not positions:
        raise ValueError(f"{experiment.name} has no evaluation games and no held-out games to draw positions from")
    log(f"{len(positions)} positions from {sum(map(len, games.values()))} games, depth {plan.depth}")
    analyses = analyse_positions(
        model, positions, stockfish, temperatures=plan.temperatures, depth=plan.depth, workers=plan.workers
    )
    summaries = summary_table(analyses, experiment=experiment.name, seed=plan.seed)
    comparison = (
        _compare_argmaxes(warehouse_path, experiment, months, ArgmaxModel(model), panel, plan, stockfish, log, lake)
        if panel is not None
        else []
    )
    with open_warehouse(warehouse_path) as connection:
        partition = ("experiment", experiment.name)
        rows = position_rows(analyses, experiment=experiment.name)
        replace_with_rows(connection, "state_advantage_positions", rows, partition=partition)
        replace_with_rows(connection, "state_advantage", [row.as_row() for row in summaries], partition=partition)
        if comparison:
            replace_with_rows(
                connection, "argmax_comparison", [row.as_row() for row in comparison], partition=partition
            )
        elif table_exists(connection, "argmax_comparison"):  # no stale rows from an earlier run
            connection.execute("DELETE FROM argmax_comparison WHERE experiment = ?", [experiment.name])
    lowest = min(plan.temperatures)
    shown = [t for t in plan.figure_temperatures if t in plan.temperatures] or [lowest]
    figures = {
        "gain histogram": plot_gain_histogram(
            analyses, shown, out_dir / "gain_histogram.png", title=f"{experiment.name}: gain per position"
        ),
        "gain concentration": plot_gain_concentration(
            analyses, shown, out_dir / "gain_concentration.png", title=f"{experiment.name}: where the gain sits"
        ),
        "largest gains": plot_top_positions(analyses, lowest, out_dir / "top_positions.png", count=plan.top_positions),
    }
    result = ExperimentAnalysis(len(analyses), summaries, comparison, figures, out_dir / "state_advantage.md")
    section = markdown_section(summaries, {label: figure.path.name for label, figure in figures.items()})
    result.report.write_text(f"{section}\n{result.comparison_section}")
    return result


def _compare_argmaxes(
    warehouse_path: Path,
    experiment: Experiment,
    months: Sequence[str],
    model: MoveDistributions,
    config: PanelConfig,
    plan: AnalysisPlan,
    stockfish: str,
    log,
    lake: Path | str | None,
) -> list[ArgmaxComparison]:
    """The model's argmax against its data's best expert's clone, the experts' own policies and argmaxes and their
    mixture's argmax (the panel's ground truth), on positions of the model's confirmatory games (its moves after
    the opening book), of its own held-out games and — for a diversity arm — of the cap bucket's held-out games
    (after the panel's random openings, as the quality bar samples them), the same positions for every arm."""
    from transcend_pipeline.evaluation import CONFIRM
    from transcend_pipeline.queries import experiment_panel
    from transcend_pipeline.warehouse import open_warehouse

    with open_warehouse(warehouse_path, read_only=True, lake=lake) as connection:
        games = load_source_games(
            connection,
            experiment.name,
            experiment.cap,
            months,
            held_out_games=plan.comparison_positions,
            phase=CONFIRM,
            variant=experiment.arm if experiment.variant else None,
        )
        try:
            arm_config, players = experiment_panel(connection, experiment, config, months)
        except ValueError as error:
            log(f"{experiment.name}: no expert to compare with ({error})")
            return []
    experts = [Expert(row["player"], int(row["player_index"]), row["share"]) for row in players]
    skip = {OWN_GAMES: plan.book_plies, HELD_OUT: config.opening_plies[1], BUCKET_HELD_OUT: config.opening_plies[1]}
    positions = sample_sources(games, plan.comparison_positions, seed=plan.seed, skip_plies=skip)
    if not positions:
        log(f"{experiment.name}: no positions for the argmax comparison")
        return []
    return argmax_comparison(
        model,
        positions,
        arm_config,
        experts,
        stockfish,
        experiment=experiment.name,
        depth=plan.depth,
        workers=plan.workers,
        seed=plan.seed,
    )
