"""The diversity ablation: the same cap and the same number of games, played by far fewer players.

Transcendence is a majority vote over experts whose errors do not coincide; a bucket of one expert's clones leaves
the vote nothing to cancel. An ablation experiment (`variant: {players: k}` in experiments.yaml) therefore swaps
its bucket for as many games as the bucket holds, played by k players only:

- panel data: new games, since the dump has no self-play — the bucket's best player against itself (k = 1,
  "clones") or a round robin of k players spread over the bucket's ratings, the best included;
- Lichess data: the bucket's games in which one of its k most active players took part.

The variant's games go to `ablation_staging` (shaped like `stg_games`); its bucket, players and diversity are then
built by the very SQL models that build every bucket (refs pointed at the variant's tables), into
`ablation_bucket_games` / `ablation_bucket_players` / `ablation_bucket_diversity`, and checked by the very same
Great Expectations suites. Only the expectations an experiment names in `waive` may fail.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import duckdb
import numpy as np

from transcend_pipeline.quality import ExpectationOutcome, run_suite
from transcend_pipeline.sql_models import SqlModel, render, sql_literal
from transcend_pipeline.warehouse import replace_partition

STAGING_TABLE = "ablation_staging"
BUCKET_MODELS = ("bucket_games", "bucket_players", "bucket_diversity")
GATED_MODELS = ("bucket_games", "bucket_diversity")


def ablation_table(model: str) -> str:
    """Where the variant's rows of a bucket model live: `ablation_bucket_games` for `bucket_games`."""
    return f"ablation_{model}"


def choose_players(rows: Sequence[Mapping], cap: float, k: int) -> list[Mapping]:
    """The bucket's best player and k − 1 others spread evenly down its ratings (panel_players rows, best first).

    Keeping the best player makes the bar the same as the full bucket's: the variant changes diversity, not the
    strongest expert.
    """
    bucket = sorted(
        (row for row in rows if row["rating"] is not None and row["rating"] <= cap),
        key=lambda row: -row["rating"],
    )
    if len(bucket) < k:
        raise ValueError(f"the {cap:g} bucket has {len(bucket)} rated players; the variant needs {k}")
    picks = np.unique(np.rint(np.linspace(0, len(bucket) - 1, k)).astype(int))
    return [bucket[i] for i in picks]


def variant_pairs(k: int, n_games: int, rng: np.random.Generator) -> np.ndarray:
    """(white, black) indices into the chosen players: self-play for one player, distinct random pairs otherwise."""
    if k == 1:
        return np.zeros((n_games, 2), dtype=int)
    white = rng.integers(k, size=n_games)
    black = (white + rng.integers(1, k, size=n_games)) % k
    return np.c_[white, black]


def panel_variant_games(
    config,
    chosen: Sequence[Mapping],
    n_games: int,
    *,
    experiment: str,
    month: str,
    stockfish_path: str,
    workers: int = 2,
    progress: Callable[[int, float], None] | None = None,
) -> list[dict]:
    """Play the variant's games among `chosen` panel players; rows shaped like `stg_games` (UCI moves).

    Every game's randomness comes from (panel seed, experiment, index), so a rerun writes the same games.
    """
    from transcend_pipeline.panel.games import play_pairs
    from transcend_pipeline.panel.pool import chunked, worker_pool

    started = time.perf_counter()
    rng = np.random.default_rng(config.derived_seed("ablation", experiment))
    local = variant_pairs(len(chosen), n_games, rng)
    by_index = {int(row["player_index"]): row for row in chosen}
    pairs = np.array(list(by_index))[local].tolist()
    chunks = list(chunked(pairs, config.chunk_games))
    firsts = (config.chunk_games * np.arange(len(chunks))).tolist()
    rows: list[dict] = []
    with worker_pool(config, stockfish_path, workers) as run:
        for chunk, played in zip(
            chunks, run(play_pairs, [f"ablation:{experiment}"] * len(chunks), firsts, chunks), strict=True
        ):
            for (white, black), (game, _) in zip(chunk, played, strict=True):
                rows.append(_game_row(experiment, month, len(rows), by_index[white], by_index[black], game))
            if progress is not None:
                progress(len(rows), time.perf_counter() - started)
    return rows


def _game_row(experiment: str, month: str, index: int, white_row: Mapping, black_row: Mapping, game) -> dict:
    white_elo, black_elo = int(white_row["rating"]), int(black_row["rating"])
    return {
        "experiment": experiment,
        "month": month,
        "game_id": hashlib.sha256(f"{experiment}:{index}".encode()).hexdigest()[:12],
        "white": white_row["player"],
        "black": black_row["player"],
        "white_elo": white_elo,
        "black_elo": black_elo,
        "max_elo": max(white_elo, black_elo),
        "result": game.result,
        "ply_count": len(game.moves),
        "moves": [move.uci() for move in game.moves],
    }


def most_active_players_sql(experiment: str, cap: int, months: Sequence[str], k: int, n_games: int) -> str:
    """The Lichess variant: up to `n_games` of the bucket's games in which one of its k most active players took
    part (a stable md5 sample), as `ablation_staging` rows."""
    bucket = f"b.cap = {int(cap)} AND list_contains({sql_literal(list(months))}::VARCHAR[], b.month)"
    return f"""
        WITH appearances AS (
            SELECT white AS player FROM bucket_games AS b WHERE {bucket}
            UNION ALL
            SELECT black AS player FROM bucket_games AS b WHERE {bucket}
        ),
        active AS (
            SELECT player FROM appearances GROUP BY player ORDER BY count(*) DESC, player LIMIT {int(k)}
        )
        SELECT {sql_literal(experiment)} AS experiment, s.month, s.game_id, s.white, s.black, s.white_elo,
               s.black_elo, s.max_elo, s.result, s.ply_count, s.moves
        FROM bucket_games AS b JOIN stg_games AS s USING (month, game_id)
        WHERE {bucket} AND (s.white IN (SELECT player FROM active) OR s.black IN (SELECT player FROM active))
        ORDER BY md5(s.game_id)
        LIMIT {int(n_games)}
    """


def build_variant_bucket(
    connection: duckdb.DuckDBPyConnection,
    experiment: str,
    cap: int,
    models: Mapping[str, SqlModel],
    variables: Mapping,
) -> dict[str, int]:
    """Build the bucket models over the variant's staged games, each into its `ablation_*` table (one experiment's
    rows replaced atomically), and leave `variant_<model>` temp tables for the gates. Returns rows per model."""
    variables = {**variables, "caps": [int(cap)]}
    relations = {"stg_games": "variant_stg_games", **{model: f"variant_{model}" for model in BUCKET_MODELS}}
    connection.execute(
        "CREATE OR REPLACE TEMP TABLE variant_stg_games AS "
        f"SELECT * EXCLUDE (experiment) FROM {STAGING_TABLE} WHERE experiment = {sql_literal(experiment)}"
    )
    counts = {}
    for model in BUCKET_MODELS:
        sql = render(models[model], variables, relations=relations)
        connection.execute(f"CREATE OR REPLACE TEMP TABLE variant_{model} AS {sql}")
        counts[model] = replace_partition(
            connection,
            ablation_table(model),
            "experiment",
            experiment,
            f"SELECT ?::VARCHAR AS experiment, * FROM variant_{model}",
            [experiment],
        )
    return counts


@dataclass(frozen=True)
class VariantGates:
    """The bucket's quality gates run on a variant, with the experiment's declared exceptions."""

    outcomes: list[ExpectationOutcome]
    waive: tuple[str, ...]
    failed: list[str] = field(init=False)
    waived: list[str] = field(init=False)

    def __post_init__(self) -> None:
        failing = [outcome.name for outcome in self.outcomes if not outcome.success]
        object.__setattr__(self, "waived", [name for name in failing if name in self.waive])
        object.__setattr__(self, "failed", [name for name in failing if name not in self.waive])

    @property
    def status(self) -> str:
        """'passed' (every guard holds), 'exception' (only waived guards fail) or 'failed' (training must not run)."""
        return "failed" if self.failed else "exception" if self.waived else "passed"


def variant_gates(
    connection: duckdb.DuckDBPyConnection,
    cap: int,
    expectations: Mapping[str, list[dict]],
    variables: Mapping,
    waive: Sequence[str],
) -> VariantGates:
    """Run the bucket models' GX suites on the variant tables that :func:`build_variant_bucket` left behind."""
    outcomes: list[ExpectationOutcome] = []
    for model in GATED_MODELS:
        suite = run_suite(connection, f"variant_{model}", expectations[model], {**variables, "caps": [cap]}, cap=cap)
        outcomes += suite.outcomes
    return VariantGates(outcomes, tuple(waive))
