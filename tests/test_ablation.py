"""The diversity arms: variant panels that change only the dialled property, their games, and their buckets built by
the bucket SQL and gated by the same suites with explicit exceptions."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import chess
import dagster as dg
import numpy as np
import pytest
from fixtures import MONTH, build_month, random_game

from transcend_pipeline.ablation import (
    STAGING_TABLE,
    arm_panel,
    build_arm,
    build_variant_bucket,
    most_active_players_sql,
    panel_variant_games,
    variant_config,
    variant_gates,
    variant_pairings,
    variant_pairs,
)
from transcend_pipeline.defs.ablation import ablation_games
from transcend_pipeline.defs.partitions import ARMS, EXPECTATIONS, MODELS
from transcend_pipeline.defs.training import training_set
from transcend_pipeline.experiments import Variant
from transcend_pipeline.panel import Panel, PanelConfig
from transcend_pipeline.panel.players import player_name
from transcend_pipeline.sql_models import PROJECT_ROOT, load_vars, materialize
from transcend_pipeline.warehouse import open_warehouse, replace_with_rows

WAIVED = ("distinct_players", "top_player_share", "player_entropy")


SMOKE = PanelConfig.for_profile("smoke")


def panel_rows(count: int = 16) -> list[dict]:
    """`panel_players` rows of the smoke panel: player i is rated 1000 + 20 i (the best at or under 1300 is player 15)."""
    return [
        {"player": player_name(SMOKE, i), "player_index": i, "rating": 1000 + 20 * i, "month": MONTH}
        for i in range(count)
    ]


def staged_game(arm: str, index: int, white: str, black: str, moves: list[str], elo: int = 1200) -> dict:
    return {
        "variant": arm,
        "month": MONTH,
        "game_id": f"{arm}{index:05d}",
        "white": white,
        "black": black,
        "white_elo": elo,
        "black_elo": elo,
        "max_elo": elo,
        "result": "1-0",
        "ply_count": len(moves),
        "moves": moves,
    }


def test_a_rho_arm_keeps_every_players_skill_and_correlates_only_their_quirks() -> None:
    base = Panel(SMOKE)
    arms = {rho: Panel(variant_config(SMOKE, Variant(rho=rho), best_index=0)) for rho in (0.5, 1.0)}
    for rho, arm in arms.items():
        np.testing.assert_array_equal(arm.temperatures, base.temperatures)  # the same players' skill
        np.testing.assert_array_equal(arm.sigmas, base.sigmas)
        assert not np.allclose(arm.biases, base.biases)  # other quirks, so other names
        assert all(name.endswith(f"~rho{rho:g}") for name in arm.names) and set(arm.names).isdisjoint(base.names)
        # Each table keeps unit variance; between players, the correlation is about ρ.
        flat = arm.biases.reshape(len(arm.names), -1)
        pairs = np.corrcoef(flat)[np.triu_indices(len(flat), 1)]
        assert abs(pairs.mean() - rho) < 0.1
    assert np.allclose(arms[1.0].biases, arms[1.0].biases[0])  # ρ = 1: one quirk table for everyone
    again = Panel(variant_config(SMOKE, Variant(rho=0.5), best_index=0))
    np.testing.assert_array_equal(again.biases, arms[0.5].biases)  # deterministic


def test_an_equal_skill_arm_is_k_copies_of_the_best_players_skill_with_their_own_quirks() -> None:
    base = Panel(SMOKE)
    arm = Panel(variant_config(SMOKE, Variant(equal_players=4), best_index=9))
    assert len(arm.names) == 4
    np.testing.assert_array_equal(arm.temperatures, np.full(4, base.temperatures[9]))
    np.testing.assert_array_equal(arm.sigmas, np.full(4, base.sigmas[9]))
    # The first member is player 9 itself (same table, same name): the arms k = 1, 2, 4, 16 nest.
    np.testing.assert_array_equal(arm.biases[0], base.biases[9])
    assert arm.names[0] == base.names[9] and len(set(arm.names)) == 4
    assert all(not np.allclose(arm.biases[i], arm.biases[j]) for i in range(4) for j in range(i + 1, 4))
    bigger = Panel(variant_config(SMOKE, Variant(equal_players=16), best_index=9))
    np.testing.assert_array_equal(bigger.biases[:4], arm.biases)
    assert bigger.names[:4] == arm.names


def test_arm_panel_names_the_arms_players_and_ranks_the_best_first() -> None:
    rows = panel_rows()
    config, players = arm_panel(SMOKE, None, [*rows, {"player": "strong", "player_index": 99, "rating": 1800}], 1300)
    assert config == SMOKE and players[0]["player_index"] == 15 and players[0]["rating"] == 1300
    config, players = arm_panel(SMOKE, Variant(equal_players=3), rows, 1300)
    assert config.equal_players == 3 and config.equal_to == 15
    assert [row["player"] for row in players] == Panel(config).names and players[0]["player"] == rows[15]["player"]
    assert {row["rating"] for row in players} == {1300}
    config, players = arm_panel(SMOKE, Variant(rho=1.0), rows, 1300)
    assert [row["player_index"] for row in players] == list(range(15, -1, -1))
    assert players[0]["player"] == Panel(config).names[15] != rows[15]["player"]


def test_arm_pairings_replay_the_bucket_or_pair_the_equal_players_at_the_best_elo() -> None:
    rows = panel_rows()
    bucket = [
        {"white": rows[i]["player"], "black": rows[j]["player"], "white_elo": 1000 + i, "black_elo": 1000 + j,
         "month": MONTH}
        for i, j in [(3, 4), (14, 2), (7, 7)]
    ]  # fmt: skip
    replayed = variant_pairings(Variant(rho=0.5), bucket, rows, 1300, np.random.default_rng(0))
    assert [(p.white, p.black, p.white_elo, p.black_elo) for p in replayed] == [
        (3, 4, 1003, 1004),
        (14, 2, 1014, 1002),
        (7, 7, 1007, 1007),
    ]
    equal = variant_pairings(Variant(equal_players=2), bucket * 10, rows, 1300, np.random.default_rng(0))
    assert len(equal) == 30 and {(p.white_elo, p.black_elo) for p in equal} == {(1300, 1300)}
    assert all(p.white != p.black for p in equal)
    again = variant_pairings(Variant(equal_players=2), bucket * 10, rows, 1300, np.random.default_rng(0))
    assert again == equal


def test_variant_pairs_are_self_play_for_one_player_and_distinct_players_otherwise() -> None:
    rng = np.random.default_rng(0)
    assert (variant_pairs(1, 50, rng) == 0).all()
    pairs = variant_pairs(4, 400, rng)
    assert (pairs[:, 0] != pairs[:, 1]).all()
    assert set(pairs.ravel().tolist()) == {0, 1, 2, 3}


def test_a_variant_bucket_is_built_by_the_bucket_sql_and_measured_like_any_bucket(tmp_path: Path) -> None:
    """The same rows give the same diversity whether they enter as a month of stg_games or as a variant."""
    variables = load_vars(PROJECT_ROOT, target="panel-smoke")
    rng = random.Random(3)
    openings = [["e2e4", "e7e5"], ["d2d4", "d7d5"], ["e2e4", "c7c5"], ["c2c4", "e7e5"]]
    players = [f"p{i}" for i in range(6)]
    diverse = [staged_game("diverse", i, *rng.sample(players, 2), rng.choice(openings)) for i in range(120)]
    clones = [staged_game("clones", i, "p0", "p0", rng.choice(openings)) for i in range(120)]
    with open_warehouse(tmp_path / "w.duckdb") as connection:
        for rows in (diverse, clones):
            replace_with_rows(connection, STAGING_TABLE, rows, partition=("variant", rows[0]["variant"]))
            build_variant_bucket(connection, rows[0]["variant"], 1300, MODELS, variables)
        build_variant_bucket(connection, "clones", 1300, MODELS, variables)  # a rebuild replaces, never duplicates
        # The reference: the diverse rows as an ordinary month of stg_games, through the ordinary models.
        connection.execute(
            f"CREATE TABLE stg_games AS SELECT * EXCLUDE (variant) FROM {STAGING_TABLE} WHERE variant = 'diverse'"
        )
        for model in ("bucket_games", "bucket_players", "bucket_diversity"):
            materialize(connection, MODELS[model], {**variables, "caps": [1300]})
        reference = connection.execute("SELECT * FROM bucket_diversity").fetchall()
        variant = connection.execute(
            "SELECT * EXCLUDE (variant) FROM ablation_bucket_diversity WHERE variant = 'diverse'"
        ).fetchall()
        clone = connection.execute(
            "SELECT games, players, top_player, top_player_share, player_entropy FROM ablation_bucket_diversity "
            "WHERE variant = 'clones'"
        ).fetchone()
        (staged,) = connection.execute("SELECT count(*) FROM ablation_bucket_games WHERE variant = 'clones'").fetchone()
        clone_players = connection.execute(
            "SELECT player, games, game_share, share FROM ablation_bucket_players WHERE variant = 'clones'"
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
def test_arm_games_are_legal_reproducible_and_played_by_the_arms_players(stockfish_path: str) -> None:
    rows = panel_rows()
    bucket = [
        {"white": rows[i]["player"], "black": rows[j]["player"], "white_elo": 1000 + 20 * i,
         "black_elo": 1000 + 20 * j, "month": MONTH}
        for i, j in [(3, 4), (14, 2), (7, 9), (1, 0)]
    ]  # fmt: skip

    def play(variant: Variant, workers: int) -> list[dict]:
        return panel_variant_games(
            SMOKE, variant, bucket, rows, 1300, arm="x", stockfish_path=stockfish_path, workers=workers
        )

    clones = play(Variant(equal_players=1), workers=1)
    assert clones == play(Variant(equal_players=1), workers=2)  # the same games on any number of workers
    assert {(row["white"], row["black"]) for row in clones} == {(rows[15]["player"],) * 2}  # the best's self-play
    correlated = play(Variant(rho=1.0), workers=2)
    names = Panel(variant_config(SMOKE, Variant(rho=1.0), 15)).names
    assert [(row["white"], row["black"]) for row in correlated] == [
        (names[i], names[j]) for i, j in [(3, 4), (14, 2), (7, 9), (1, 0)]
    ]
    assert [row["max_elo"] for row in correlated] == [1080, 1280, 1180, 1020]
    for row in clones + correlated:
        board = chess.Board()
        for move in row["moves"]:
            board.push_uci(move)  # raises on an illegal move
        assert row["ply_count"] == len(row["moves"]) and row["variant"] == "x"


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

    name = "cap1300_equal1"
    # Without its declared exception the clone bucket fails the diversity gate like any bucket, and blocks.
    monkeypatch.setitem(ARMS, name, dataclasses.replace(ARMS[name], variant=Variant(equal_players=1)))
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
    assert materialization.metadata["players"].value == [player_name(SMOKE, 15)]  # the best at or under 1300
    with open_warehouse(transcend_home / "warehouse.duckdb", read_only=True) as connection:
        (staged, distinct) = connection.execute(
            f"SELECT count(*), count(DISTINCT white || black) FROM {STAGING_TABLE} WHERE variant = ?", [name]
        ).fetchone()
    assert (staged, distinct) == (bucket, 1)  # the bucket's game count, once (the rerun replaced the first run)

    trained = dg.materialize([training_set], partition_key=name, resources=resources, instance=instance)
    metadata = trained.asset_materializations_for_node("training_set")[0].metadata
    assert "EXCEPTION" in metadata["quality_gate"].value
    assert metadata["games_train"].value + metadata["games_val"].value < bucket


@pytest.mark.parametrize("arm", ["cap1300_rho1", "cap1300_equal1"])
def test_a_panel_dial_on_lichess_data_is_refused_before_anything_is_read(tmp_path: Path, arm: str) -> None:
    warehouse = tmp_path / "absent.duckdb"
    with pytest.raises(ValueError, match="needs panel data, but the source is Lichess"):
        build_arm(warehouse, ARMS[arm], ["2025-01"], {}, MODELS, EXPECTATIONS, panel=None, stockfish_path="", workers=1)
    assert not warehouse.exists()
