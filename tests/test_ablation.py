"""The diversity ablation: variant buckets built by the bucket SQL, gated by the same suites with explicit exceptions."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import chess
import dagster as dg
import numpy as np
import pytest
from test_warehouse_assets import build_month, random_game

from transcend_pipeline.ablation import (
    STAGING_TABLE,
    build_variant_bucket,
    choose_players,
    most_active_players_sql,
    panel_variant_games,
    variant_gates,
    variant_pairs,
)
from transcend_pipeline.defs.ablation import ablation_games
from transcend_pipeline.defs.training import EXPERIMENTS, training_set
from transcend_pipeline.defs.warehouse import DBT_ROOT, EXPECTATIONS, MODELS
from transcend_pipeline.experiments import Variant
from transcend_pipeline.panel import PanelConfig
from transcend_pipeline.sql_models import load_vars, materialize
from transcend_pipeline.warehouse import open_warehouse, replace_with_rows

MONTH = "2025-01"
WAIVED = ("distinct_players", "top_player_share", "player_entropy")


def panel_rows(count: int = 16) -> list[dict]:
    return [{"player": f"club{i}", "player_index": i, "rating": 1000 + 20 * i, "month": MONTH} for i in range(count)]


def staged_game(experiment: str, index: int, white: str, black: str, moves: list[str], elo: int = 1200) -> dict:
    return {
        "experiment": experiment,
        "month": MONTH,
        "game_id": f"{experiment}{index:05d}",
        "white": white,
        "black": black,
        "white_elo": elo,
        "black_elo": elo,
        "max_elo": elo,
        "result": "1-0",
        "ply_count": len(moves),
        "moves": moves,
    }


def test_choose_players_keeps_the_best_and_spreads_the_rest_under_the_cap() -> None:
    rows = [*panel_rows(), {"player": "strong", "player_index": 99, "rating": 1800}]
    assert [row["player"] for row in choose_players(rows, 1300, 1)] == ["club15"]
    assert [row["player"] for row in choose_players(rows, 1300, 4)] == ["club15", "club10", "club5", "club0"]
    with pytest.raises(ValueError, match="needs 20"):
        choose_players(rows, 1300, 20)


def test_variant_pairs_are_self_play_for_one_player_and_distinct_players_otherwise() -> None:
    rng = np.random.default_rng(0)
    assert (variant_pairs(1, 50, rng) == 0).all()
    pairs = variant_pairs(4, 400, rng)
    assert (pairs[:, 0] != pairs[:, 1]).all()
    assert set(pairs.ravel().tolist()) == {0, 1, 2, 3}


def test_a_variant_bucket_is_built_by_the_bucket_sql_and_measured_like_any_bucket(tmp_path: Path) -> None:
    """The same rows give the same diversity whether they enter as a month of stg_games or as a variant."""
    variables = load_vars(DBT_ROOT, target="panel-smoke")
    rng = random.Random(3)
    openings = [["e2e4", "e7e5"], ["d2d4", "d7d5"], ["e2e4", "c7c5"], ["c2c4", "e7e5"]]
    players = [f"p{i}" for i in range(6)]
    diverse = [staged_game("diverse", i, *rng.sample(players, 2), rng.choice(openings)) for i in range(120)]
    clones = [staged_game("clones", i, "p0", "p0", rng.choice(openings)) for i in range(120)]
    with open_warehouse(tmp_path / "w.duckdb") as connection:
        for rows in (diverse, clones):
            replace_with_rows(connection, STAGING_TABLE, rows, partition=("experiment", rows[0]["experiment"]))
            build_variant_bucket(connection, rows[0]["experiment"], 1300, MODELS, variables)
        build_variant_bucket(connection, "clones", 1300, MODELS, variables)  # a rebuild replaces, never duplicates
        # The reference: the diverse rows as an ordinary month of stg_games, through the ordinary models.
        connection.execute(
            f"CREATE TABLE stg_games AS SELECT * EXCLUDE (experiment) FROM {STAGING_TABLE} WHERE experiment = 'diverse'"
        )
        for model in ("bucket_games", "bucket_players", "bucket_diversity"):
            materialize(connection, MODELS[model], {**variables, "caps": [1300]})
        reference = connection.execute("SELECT * FROM bucket_diversity").fetchall()
        variant = connection.execute(
            "SELECT * EXCLUDE (experiment) FROM ablation_bucket_diversity WHERE experiment = 'diverse'"
        ).fetchall()
        clone = connection.execute(
            "SELECT games, players, top_player, top_player_share, player_entropy FROM ablation_bucket_diversity "
            "WHERE experiment = 'clones'"
        ).fetchone()
        (staged,) = connection.execute(
            "SELECT count(*) FROM ablation_bucket_games WHERE experiment = 'clones'"
        ).fetchone()
        clone_players = connection.execute(
            "SELECT player, games, game_share, share FROM ablation_bucket_players WHERE experiment = 'clones'"
        ).fetchall()
        strict = variant_gates(connection, 1300, EXPECTATIONS, variables, waive=())
        waived = variant_gates(connection, 1300, EXPECTATIONS, variables, waive=WAIVED)
    assert variant == [pytest.approx(row) for row in reference]  # float sums may differ in the last bit
    assert clone == (120, 1, "p0", pytest.approx(1.0), pytest.approx(0.0))
    assert staged == 120
    assert clone_players == [("p0", 120, pytest.approx(1.0), pytest.approx(1.0))]  # self-play counts once per game
    # The temp tables the gates read belong to the last build: the clones.
    assert strict.status == "failed" and set(strict.failed) >= {"distinct_players", "top_player_share"}
    assert waived.status == "exception" and not waived.failed and set(waived.waived) == set(strict.failed)


def test_the_lichess_variant_keeps_only_games_of_the_most_active_players(tmp_path: Path) -> None:
    with open_warehouse(tmp_path / "w.duckdb") as connection:
        connection.execute(
            "CREATE TABLE stg_games AS SELECT * FROM (VALUES "
            "('2025-01', 'g1', 'busy', 'a', 1000, 1000, 1000, '1-0', 10, ['e2e4']),"
            "('2025-01', 'g2', 'b', 'busy', 1000, 1000, 1000, '1-0', 10, ['e2e4']),"
            "('2025-01', 'g3', 'busy', 'c', 1000, 1000, 1000, '1-0', 10, ['e2e4']),"
            "('2025-01', 'g4', 'd', 'e', 1000, 1000, 1000, '1-0', 10, ['e2e4']),"
            "('2025-01', 'g5', 'f', 'g', 1000, 1000, 1000, '1-0', 10, ['d2d4'])"
            ") AS t(month, game_id, white, black, white_elo, black_elo, max_elo, result, ply_count, moves)"
        )
        connection.execute("CREATE TABLE bucket_games AS SELECT 1000 AS cap, *, 'train' AS split FROM stg_games")
        rows = connection.execute(most_active_players_sql("top1", 1000, [MONTH], k=1, n_games=10)).fetchall()
        limited = connection.execute(most_active_players_sql("top1", 1000, [MONTH], k=1, n_games=2)).fetchall()
    assert sorted(row[2] for row in rows) == ["g1", "g2", "g3"]
    assert len(limited) == 2


@pytest.mark.slow
def test_panel_clones_play_themselves_legally_and_reproducibly(stockfish_path: str) -> None:
    config = PanelConfig.for_profile("smoke")
    chosen = choose_players(panel_rows(), 1300, 1)
    first = panel_variant_games(
        config, chosen, 6, experiment="x", month=MONTH, stockfish_path=stockfish_path, workers=1
    )
    again = panel_variant_games(
        config, chosen, 6, experiment="x", month=MONTH, stockfish_path=stockfish_path, workers=2
    )
    assert first == again
    assert {(row["white"], row["black"]) for row in first} == {("club15", "club15")}
    for row in first:
        board = chess.Board()
        for move in row["moves"]:
            board.push_uci(move)  # raises on an illegal move
        assert row["ply_count"] == len(row["moves"]) and row["max_elo"] == 1300


def diverse_month() -> list[str]:
    """200 games between 30 players rated 700-1280: every cap's bucket passes the smoke gates."""
    rng = random.Random(11)
    texts = []
    for index in range(200):
        white, black = rng.sample(range(30), 2)
        texts.append(random_game(rng, f"c{white}", f"c{black}", 700 + 20 * white, 700 + 20 * black, index))
    return texts


@pytest.mark.slow
def test_an_ablation_trains_only_as_a_labelled_exception_and_other_failures_still_block(
    transcend_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = build_month(transcend_home, diverse_month())
    resources, instance = built.resources, built.instance
    assert all(evaluation.passed for evaluation in built.buckets.get_asset_check_evaluations())
    with open_warehouse(transcend_home / "warehouse.duckdb") as connection:
        replace_with_rows(connection, "panel_players", panel_rows())
        (bucket,) = connection.execute("SELECT count(*) FROM bucket_games WHERE cap = 1300").fetchone()

    name = "cap1300_clones"
    # Without its declared exception the clone bucket fails the diversity gate like any bucket, and blocks.
    monkeypatch.setitem(EXPERIMENTS, name, dataclasses.replace(EXPERIMENTS[name], variant=Variant(1)))
    strict = dg.materialize(
        [ablation_games], partition_key=name, resources=resources, instance=instance, raise_on_error=False
    )
    (check,) = strict.get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert set(check.metadata["failed"].value.split(", ")) >= {"distinct_players", "top_player_share"}
    blocked = dg.materialize(
        [training_set], partition_key=name, resources=resources, instance=instance, raise_on_error=False
    )
    assert not blocked.success
    failure = next(event for event in blocked.all_events if event.is_step_failure)
    assert f"ablation_games[{name}] failed" in str(failure.step_failure_data.error)

    # With it, the same bucket trains, and the exception is written on the check and on the training set.
    monkeypatch.undo()
    waived = dg.materialize([ablation_games], partition_key=name, resources=resources, instance=instance)
    (check,) = waived.get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["failed"].value == "none"
    assert "EXCEPTION" in check.metadata["exception"].value
    assert check.metadata["distinct_players"].value["waived"] is True
    materialization = waived.asset_materializations_for_node("ablation_games")[0]
    assert materialization.metadata["players"].value == ["club15"]
    with open_warehouse(transcend_home / "warehouse.duckdb", read_only=True) as connection:
        (staged, distinct) = connection.execute(
            f"SELECT count(*), count(DISTINCT white || black) FROM {STAGING_TABLE} WHERE experiment = ?", [name]
        ).fetchone()
    assert (staged, distinct) == (bucket, 1)  # the bucket's game count, once (the rerun replaced the first run)

    trained = dg.materialize([training_set], partition_key=name, resources=resources, instance=instance)
    metadata = trained.asset_materializations_for_node("training_set")[0].metadata
    assert "EXCEPTION" in metadata["quality_gate"].value
    assert metadata["games_train"].value + metadata["games_val"].value < bucket
