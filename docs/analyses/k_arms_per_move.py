"""Why do the k = 2 and k = 4 arms play worse than k = 1? Every model's argmax scored on the *same* positions.

An exploratory look (README, "The diversity study"), outside the run's Holm family. Positions come from the eight
equal-experts models' confirmatory games against the ladder (book plies left out) and from games like the training
data (the cap bucket's test split and each arm's own); Stockfish scores every legal move of each position once
(depth 8, the mover's expected score), and each model's argmax is looked up in those scores. A difference between two
models is paired, position by position, with a 95% interval that resamples whole games.

    .venv/bin/python docs/analyses/k_arms_per_move.py --home /path/to/study-home   # about 6 minutes on 2 cores

`--home` is a TRANSCEND_HOME after `make study` (its warehouse.duckdb and checkpoints/).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import chess
import duckdb
import numpy as np

from transcend_pipeline.model import ChessFormer
from transcend_pipeline.queries import model_games, test_split_games
from transcend_pipeline.settings import find_stockfish
from transcend_pipeline.state_advantage import (
    Position,
    SourceGame,
    game_bootstrap_interval,
    model_probabilities,
    sample_positions,
    score_positions,
)

CAP, MONTHS, BOOK_PLIES, DEPTH = 1300, ("2025-01",), 8, 8
K_VALUES, SEEDS = (1, 2, 4, 16), ("", "_seed1")
PLY_BANDS = ((8, 30), (30, 50), (50, 1000))


def arm(k: int, seed: str = "") -> str:
    return f"cap{CAP}_equal{k}{seed}"


def positions_by_source(connection: duckdb.DuckDBPyConnection, ladder_size: int, data_size: int) -> list[Position]:
    """`ladder_size` positions of each model's own confirmatory games (its side to move), and `data_size` of the
    cap bucket's test split and of each arm's (both sides): the same positions for every model."""
    sources: dict[str, list[SourceGame]] = {}
    for seed in SEEDS:
        for k in K_VALUES:
            sources[f"ladder games of {arm(k, seed)}"] = [
                SourceGame(f"{pairing}/{game}", moves.split(), chess.WHITE if colour == "white" else chess.BLACK)
                for pairing, game, moves, colour in model_games(connection, arm(k, seed), "confirm")
            ]
    data = {"cap bucket test split": test_split_games(connection, CAP, MONTHS, data_size)}
    data |= {f"{arm(k)} test split": test_split_games(connection, CAP, MONTHS, data_size, arm=arm(k)) for k in K_VALUES}
    sources |= {name: [SourceGame(game, moves) for game, moves in rows] for name, rows in data.items()}
    return [
        position
        for name, games in sources.items()
        for position in sample_positions(
            games, name, ladder_size if name.startswith("ladder") else data_size, seed=0, skip_plies=BOOK_PLIES
        )
    ]


def argmax_scores(positions: Sequence[Position], home: Path, stockfish: str) -> dict[str, np.ndarray]:
    """Each model's argmax's expected score at every position (Stockfish's score of that move, ×100)."""
    rewards = score_positions([position.board for position in positions], stockfish, depth=DEPTH)
    scores = {}
    for seed in SEEDS:
        for k in K_VALUES:
            model = ChessFormer.from_checkpoint(str(home / "checkpoints" / arm(k, seed) / "best.ckpt")).eval()
            chosen = model_probabilities(model, [position.board for position in positions], [1.0])[1.0]
            scores[arm(k, seed)] = np.array(
                [
                    100 * reward[moves[int(np.argmax(probs))]]
                    for reward, (moves, probs) in zip(rewards, chosen, strict=True)
                ]
            )
    return scores


def difference(scores: Mapping[str, np.ndarray], games: np.ndarray, chosen: np.ndarray, k: int, seed: str) -> str:
    """k's argmax − k = 1's (same seed) on the `chosen` positions: mean [95% game-bootstrap interval]."""
    diff = scores[arm(k, seed)][chosen] - scores[arm(1, seed)][chosen]
    low, high = game_bootstrap_interval(diff, games[chosen], seed=0)
    return f"{diff.mean():+.2f} [{low:+.2f}, {high:+.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--ladder-positions", type=int, default=400, help="per model's ladder games")
    parser.add_argument("--data-positions", type=int, default=300, help="per test split")
    args = parser.parse_args()
    with duckdb.connect(str(args.home / "warehouse.duckdb"), read_only=True) as connection:
        positions = positions_by_source(connection, args.ladder_positions, args.data_positions)
    scores = argmax_scores(positions, args.home, find_stockfish())
    source = np.array([position.source for position in positions])
    games = np.array([f"{position.source}|{position.game}" for position in positions])
    ply = np.array([position.ply for position in positions])
    ladder = np.char.startswith(source, "ladder")
    print(f"Argmax expected score per 100 moves, model − k = 1 of the same seed (seed 0 / seed 1); depth {DEPTH}.")
    print("| positions | " + " | ".join(f"k = {k} − k = 1" for k in K_VALUES[1:]) + " |")
    print("|---|" + "---|" * (len(K_VALUES) - 1))
    rows: list[tuple[str, Callable[..., np.ndarray]]] = [
        (f"{(~ladder).sum():,} like the training data (test splits)", lambda k, seed: ~ladder),
        (f"{ladder.sum():,} from the {len(K_VALUES) * len(SEEDS)} models' ladder games", lambda k, seed: ladder),
        (
            "those, neither compared model's own games",
            lambda k, seed: (
                ladder & ~np.isin(source, [f"ladder games of {arm(k, seed)}", f"ladder games of {arm(1, seed)}"])
            ),
        ),
        *(
            (
                f"ladder games, ply {low}–{high - 1}",
                lambda k, seed, low=low, high=high: ladder & (ply >= low) & (ply < high),
            )
            for low, high in PLY_BANDS
        ),
    ]
    for label, select in rows:
        cells = [
            " / ".join(difference(scores, games, select(k, seed), k, seed) for seed in SEEDS) for k in K_VALUES[1:]
        ]
        print(f"| {label} | " + " | ".join(cells) + " |")
    with duckdb.connect(str(args.home / "warehouse.duckdb"), read_only=True) as connection:
        print("\nConfirmatory games against the ladder's panel players: losses, and the mean plies of a lost game.")
        for name, games_played, losses, plies in connection.execute(
            "SELECT experiment, count(*), count(*) FILTER (WHERE score = 0), avg(plies) FILTER (WHERE score = 0) "
            "FROM evaluation_games WHERE phase = 'confirm' AND opponent_kind = 'panel' AND experiment LIKE ? "
            "GROUP BY experiment ORDER BY experiment",
            [f"cap{CAP}_equal%"],
        ).fetchall():
            print(f"{name}: {losses} of {games_played} lost, {plies:.1f} plies")


if __name__ == "__main__":
    main()
