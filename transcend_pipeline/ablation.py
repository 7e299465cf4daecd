"""The diversity arms: the same cap and the same number of games, played by a variant of the bucket's players.

Transcendence is a majority vote over experts whose errors do not coincide. An arm (`variant:` in experiments.yaml,
see `experiments.Variant`) swaps its bucket for as many games in which only diversity changed:

- panel, `rho`: the bucket's own pairings (same players, same matchmaking, same count) replayed by the same players
  whose quirk tables share a component ρ — correlated errors at unchanged skill;
- panel, `equal_players`: k players with the skill of the bucket's best player, differing only in their quirk
  seeds, in distinct random pairings (k = 1: that player's self-play);
- Lichess, `players`: the bucket's games in which one of its k most active players took part.

The arm's games go to `ablation_staging` (shaped like `stg_games`, keyed by `variant`, the arm's name); its bucket,
players and diversity are then built by the very SQL models that build every bucket (refs pointed at the arm's
tables), into `ablation_bucket_games` / `ablation_bucket_players` / `ablation_bucket_diversity`, and checked by the
very same Great Expectations suites. Only the expectations an experiment names in `waive` may fail.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np

from transcend_pipeline.experiments import Experiment, Variant
from transcend_pipeline.panel.players import PanelConfig
from transcend_pipeline.quality import ExpectationOutcome, run_suite
from transcend_pipeline.sql_models import SqlModel, render, sql_literal
from transcend_pipeline.warehouse import replace_partition

STAGING_TABLE = "ablation_staging"
BUCKET_MODELS = ("bucket_games", "bucket_players", "bucket_diversity")
GATED_MODELS = ("bucket_games", "bucket_diversity")


def ablation_table(model: str) -> str:
    """Where the arms' rows of a bucket model live: `ablation_bucket_games` for `bucket_games`."""
    return f"ablation_{model}"


def best_player(rows: Sequence[Mapping], cap: float) -> Mapping:
    """The bucket's best player: the highest written rating at or below the cap (panel_players rows)."""
    bucket = [row for row in rows if row["rating"] is not None and row["rating"] <= cap]
    if not bucket:
        raise ValueError(f"no rated panel player at or below the cap {cap:g}")
    return max(bucket, key=lambda row: row["rating"])


def variant_config(config: PanelConfig, variant: Variant, best_index: int) -> PanelConfig:
    """The panel an arm's games are played by: the same world with correlated quirks, or k equal-skill players."""
    if variant.rho is not None:
        return dataclasses.replace(config, rho=variant.rho)
    if variant.equal_players is not None:
        return dataclasses.replace(config, equal_players=variant.equal_players, equal_to=best_index)
    raise ValueError(f"{variant.label} is a Lichess variant, not a panel one")


def arm_panel(
    config: PanelConfig, variant: Variant | None, panel_rows: Sequence[Mapping], cap: float
) -> tuple[PanelConfig, list[dict]]:
    """The panel an experiment's games were played by, and its players as `panel_players`-like rows of that panel
    (player, player_index, rating), the bucket's best first. Without a variant: the panel itself, players <= cap.

    A `rho` arm's players keep their index and written Elo (their names change: they are other policies); an
    equal-skill arm's k players all carry the best player's Elo, and the first of them is that player."""
    bucket = sorted(
        (row for row in panel_rows if row["rating"] is not None and row["rating"] <= cap),
        key=lambda row: -row["rating"],
    )
    if not bucket:
        raise ValueError(f"no rated panel player at or below the cap {cap:g}")
    if variant is None:
        return config, [dict(row) for row in bucket]
    from transcend_pipeline.panel.players import Panel

    best = bucket[0]
    arm_config = variant_config(config, variant, int(best["player_index"]))
    names = Panel(arm_config).names
    if variant.rho is not None:
        return arm_config, [{**row, "player": names[int(row["player_index"])]} for row in bucket]
    return arm_config, [{"player": name, "player_index": i, "rating": best["rating"]} for i, name in enumerate(names)]


@dataclass(frozen=True)
class Pairing:
    """One game of an arm: the (white, black) players as indices of the arm's panel, their written Elos, a month."""

    white: int
    black: int
    white_elo: int
    black_elo: int
    month: str


def variant_pairings(
    variant: Variant,
    bucket_games: Sequence[Mapping],
    panel_rows: Sequence[Mapping],
    cap: float,
    rng: np.random.Generator,
) -> list[Pairing]:
    """The arm's games, one per game of the bucket (`bucket_games`: white, black, white_elo, black_elo, month).

    `rho`: the very pairings and Elos of the bucket, so only the players' quirks change. `equal_players`: distinct
    random pairs among the k players (self-play for one), each written at the best player's Elo."""
    if variant.rho is not None:
        index = {row["player"]: int(row["player_index"]) for row in panel_rows}
        return [
            Pairing(index[g["white"]], index[g["black"]], int(g["white_elo"]), int(g["black_elo"]), g["month"])
            for g in bucket_games
        ]
    k, elo = variant.equal_players, int(best_player(panel_rows, cap)["rating"])
    month = max(g["month"] for g in bucket_games)
    return [Pairing(int(w), int(b), elo, elo, month) for w, b in variant_pairs(k, len(bucket_games), rng)]


def variant_pairs(k: int, n_games: int, rng: np.random.Generator) -> np.ndarray:
    """(white, black) indices among k players: self-play for one player, distinct random pairs otherwise."""
    if k == 1:
        return np.zeros((n_games, 2), dtype=int)
    white = rng.integers(k, size=n_games)
    black = (white + rng.integers(1, k, size=n_games)) % k
    return np.c_[white, black]


def panel_variant_games(
    config: PanelConfig,
    variant: Variant,
    bucket_games: Sequence[Mapping],
    panel_rows: Sequence[Mapping],
    cap: float,
    *,
    arm: str,
    stockfish_path: str,
    workers: int = 2,
    progress: Callable[[int, float], None] | None = None,
) -> list[dict]:
    """Play the arm's games (see `variant_pairings`) on its panel; rows shaped like `stg_games` (UCI moves).

    Every game's randomness comes from (panel seed, arm, index), so a rerun writes the same games, and every
    training seed of the arm trains on them."""
    from transcend_pipeline.panel.games import play_pairs
    from transcend_pipeline.panel.players import Panel
    from transcend_pipeline.panel.pool import chunked, worker_pool

    started = time.perf_counter()
    arm_config = variant_config(config, variant, int(best_player(panel_rows, cap)["player_index"]))
    names = Panel(arm_config).names
    pairings = variant_pairings(
        variant, bucket_games, panel_rows, cap, np.random.default_rng(config.derived_seed("arm", arm))
    )
    chunks = list(chunked(pairings, config.chunk_games))
    firsts = (config.chunk_games * np.arange(len(chunks))).tolist()
    pairs = [[(p.white, p.black) for p in chunk] for chunk in chunks]
    rows: list[dict] = []
    with worker_pool(arm_config, stockfish_path, workers) as run:
        for chunk, played in zip(chunks, run(play_pairs, [f"arm:{arm}"] * len(chunks), firsts, pairs), strict=True):
            for pairing, (game, _) in zip(chunk, played, strict=True):
                rows.append(_game_row(arm, len(rows), pairing, names, game))
            if progress is not None:
                progress(len(rows), time.perf_counter() - started)
    return rows


def _game_row(arm: str, index: int, pairing: Pairing, names: Sequence[str], game) -> dict:
    return {
        "variant": arm,
        "month": pairing.month,
        "game_id": hashlib.sha256(f"{arm}:{index}".encode()).hexdigest()[:12],
        "white": names[pairing.white],
        "black": names[pairing.black],
        "white_elo": pairing.white_elo,
        "black_elo": pairing.black_elo,
        "max_elo": max(pairing.white_elo, pairing.black_elo),
        "result": game.result,
        "ply_count": len(game.moves),
        "moves": [move.uci() for move in game.moves],
    }


def most_active_players_sql(arm: str, cap: int, months: Sequence[str], k: int, n_games: int) -> str:
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
        SELECT {sql_literal(arm)} AS variant, s.month, s.game_id, s.white, s.black, s.white_elo,
               s.black_elo, s.max_elo, s.result, s.ply_count, s.moves
        FROM bucket_games AS b JOIN stg_games AS s USING (month, game_id)
        WHERE {bucket} AND (s.white IN (SELECT player FROM active) OR s.black IN (SELECT player FROM active))
        ORDER BY md5(s.game_id)
        LIMIT {int(n_games)}
    """


def build_variant_bucket(
    connection: duckdb.DuckDBPyConnection,
    arm: str,
    cap: int,
    models: Mapping[str, SqlModel],
    variables: Mapping,
) -> dict[str, int]:
    """Build the bucket models over the variant's staged games, each into its `ablation_*` table (one arm's
    rows replaced atomically), and leave `variant_<model>` temp tables for the gates. Returns rows per model."""
    variables = {**variables, "caps": [int(cap)]}
    relations = {"stg_games": "variant_stg_games", **{model: f"variant_{model}" for model in BUCKET_MODELS}}
    connection.execute(
        "CREATE OR REPLACE TEMP TABLE variant_stg_games AS "
        f"SELECT * EXCLUDE (variant) FROM {STAGING_TABLE} WHERE variant = {sql_literal(arm)}"
    )
    counts = {}
    for model in BUCKET_MODELS:
        sql = render(models[model], variables, relations=relations)
        connection.execute(f"CREATE OR REPLACE TEMP TABLE variant_{model} AS {sql}")
        counts[model] = replace_partition(
            connection,
            ablation_table(model),
            "variant",
            arm,
            f"SELECT ?::VARCHAR AS variant, * FROM variant_{model}",
            [arm],
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


@dataclass(frozen=True)
class ArmBucket:
    """What `build_arm` made: the arm's bucket row counts, its gates, its diversity beside the full bucket's, and
    its players (most games first)."""

    counts: dict[str, int]
    gates: VariantGates
    diversity: dict
    full_bucket_diversity: dict
    players: list[str]

    @property
    def exception(self) -> str | None:
        """The gate's declared exception, worded for the UI, or None."""
        if self.gates.status != "exception":
            return None
        return f"{', '.join(self.gates.waived)} fail by design and are waived; every other guard holds"


def build_arm(
    warehouse_path,
    experiment: Experiment,
    months: Sequence[str],
    variables: Mapping,
    models: Mapping[str, SqlModel],
    expectations: Mapping[str, list[dict]],
    *,
    panel: PanelConfig | None,
    stockfish_path: str,
    workers: int,
    log: Callable[[str], None] = print,
    lake: Path | str | None = None,
) -> ArmBucket:
    """A diversity arm's games in `ablation_staging` (played on the panel, or the Lichess bucket's games of its most
    active players), its bucket built by the bucket SQL and checked by the bucket gates with its waivers; with
    `lake`, the cap bucket's games are read from its `stg_games`."""
    from transcend_pipeline.queries import arm_players, cap_bucket_pairings, diversity_row, latest_panel_roster
    from transcend_pipeline.warehouse import open_warehouse, replace_with_rows

    variant = experiment.variant
    if (panel is not None) != variant.panel_only:
        raise ValueError(
            f"{experiment.arm}: the variant '{variant.label}' needs {'panel' if variant.panel_only else 'Lichess'} "
            f"data, but the source is {'the panel' if panel is not None else 'Lichess'}"
        )
    with open_warehouse(warehouse_path, read_only=True, lake=lake) as connection:
        bucket = cap_bucket_pairings(connection, experiment.cap, months)
        full_bucket = diversity_row(connection, dataclasses.replace(experiment, variant=None))
        panel_rows = latest_panel_roster(connection, months) if panel is not None else []
    if panel is not None:
        log(f"{experiment.arm}: playing {len(bucket):,} games ({variant.label}), the bucket's count")
        logged = [0]

        def progress(done: int, seconds: float) -> None:
            if done - logged[0] >= 1000 or done == len(bucket):
                logged[0] = done
                log(f"{done:,}/{len(bucket):,} games, {done / seconds:.1f}/s")

        rows = panel_variant_games(
            panel,
            variant,
            bucket,
            panel_rows,
            experiment.cap,
            arm=experiment.arm,
            stockfish_path=stockfish_path,
            workers=workers,
            progress=progress,
        )
    with open_warehouse(warehouse_path, lake=lake) as connection:
        if panel is not None:
            replace_with_rows(connection, STAGING_TABLE, rows, partition=("variant", experiment.arm))
        else:
            replace_partition(
                connection,
                STAGING_TABLE,
                "variant",
                experiment.arm,
                most_active_players_sql(experiment.arm, experiment.cap, months, variant.players, len(bucket)),
            )
        counts = build_variant_bucket(connection, experiment.arm, experiment.cap, models, variables)
        gates = variant_gates(connection, experiment.cap, expectations, variables, variant.waive)
        diversity = diversity_row(connection, experiment)
        players = arm_players(connection, experiment.arm)
    return ArmBucket(counts, gates, diversity, full_bucket, players)
