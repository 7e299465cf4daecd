"""The warehouse through Dagster: SQL models as assets, GX gates as blocking checks that keep bad buckets from training."""

from __future__ import annotations

import random
from pathlib import Path

import dagster as dg
import pytest
from fixtures import SAMPLE_2021_10, build_month, random_game

from transcend_pipeline.defs.resources import PanelSource, TranscendHome
from transcend_pipeline.defs.training import training_set
from transcend_pipeline.defs.warehouse import sql_model_assets
from transcend_pipeline.sql_models import PROJECT_ROOT, load_vars
from transcend_pipeline.warehouse import open_warehouse


def one_player_month(seed: int = 7) -> list[str]:
    """Sub-1000 games nearly all played by one player; a diverse pool between 1000 and 1300."""
    rng = random.Random(seed)
    texts = []
    for index in range(240):  # cap 1000: 'Dominator' is in every game
        opponent = f"novice{rng.randrange(12)}"
        texts.append(random_game(rng, "Dominator", opponent, 950, rng.randrange(700, 1000), index))
    for index in range(240, 1000):  # cap 1300: 40 players, none dominant
        white, black = rng.sample(range(40), 2)
        texts.append(
            random_game(
                rng, f"club{white}", f"club{black}", rng.randrange(1050, 1300), rng.randrange(1050, 1300), index
            )
        )
    return texts


@pytest.mark.slow
def test_a_one_player_bucket_fails_its_diversity_gate_and_cannot_be_trained_on(transcend_home: Path) -> None:
    built = build_month(transcend_home, one_player_month())
    source, resources, instance, buckets = built.source, built.resources, built.instance, built.buckets
    assert built.ingest.asset_materializations_for_node("games")[0].metadata["games_read"].value == 1000

    evaluations = {
        (evaluation.asset_key.path[-1], evaluation.check_name): evaluation
        for evaluation in buckets.get_asset_check_evaluations()
    }
    diversity_1000 = evaluations[("bucket_diversity", "cap_1000")]
    assert not diversity_1000.passed
    assert diversity_1000.metadata["top_player_share"].value["passed"] is False
    assert diversity_1000.metadata["top_player_share"].value["observed"] == pytest.approx(1.0)
    threshold = load_vars(PROJECT_ROOT, target=source.label)["max_top_player_share"]
    assert diversity_1000.metadata["top_player_share"].value["expected"] == f"<= {threshold:g}"
    assert evaluations[("bucket_diversity", "cap_1300")].passed
    assert evaluations[("bucket_games", "cap_1000")].passed  # the bucket is well formed, just not diverse
    with open_warehouse(transcend_home / "warehouse.duckdb", read_only=True) as connection:
        (max_elo,) = connection.execute("SELECT max(max_elo) FROM bucket_games WHERE cap = 1000").fetchone()
    assert max_elo <= 1000

    blocked = dg.materialize(
        [training_set], partition_key="cap1000", resources=resources, instance=instance, raise_on_error=False
    )
    assert not blocked.success
    failure = next(event for event in blocked.all_events if event.is_step_failure)
    assert "bucket_diversity:cap_1000 failed" in str(failure.step_failure_data.error)
    assert not (transcend_home / "training_sets" / "cap1000").exists()

    allowed = dg.materialize([training_set], partition_key="cap1300", resources=resources, instance=instance)
    metadata = allowed.asset_materializations_for_node("training_set")[0].metadata
    assert metadata["games_train"].value > 500
    assert (transcend_home / "training_sets" / "cap1300" / "manifest.json").exists()


def test_a_backfill_of_a_month_range_runs_the_monthly_sql_models_in_one_run(
    transcend_home: Path, lichess_samples: Path
) -> None:
    from transcend_pipeline.ingest import ingest_month

    warehouse = transcend_home / "warehouse.duckdb"
    for month, sample in (("2021-09", "lichess_2013-01_dump_excerpt_10games.pgn"), ("2021-10", SAMPLE_2021_10)):
        ingest_month(lichess_samples / sample, month, warehouse, staging_dir=transcend_home / "staging")
    (stg_games,) = [asset for asset in sql_model_assets if asset.key.path[-1] == "stg_games"]
    assert stg_games.backfill_policy == dg.BackfillPolicy.single_run()

    result = dg.materialize(
        [stg_games],
        resources={"home": TranscendHome(path=str(transcend_home)), "dump_source": PanelSource(profile="smoke")},
        tags={"dagster/asset_partition_range_start": "2021-09-01", "dagster/asset_partition_range_end": "2021-10-01"},
    )
    assert result.success
    assert {event.partition for event in result.asset_materializations_for_node("stg_games")} == {
        "2021-09-01",
        "2021-10-01",
    }
    with open_warehouse(warehouse, read_only=True) as connection:
        months = dict(connection.execute("SELECT month, count(*) FROM stg_games GROUP BY month").fetchall())
        staged = connection.execute("SELECT count(*) FROM games WHERE white_elo IS NOT NULL").fetchone()[0]
    assert set(months) == {"2021-09", "2021-10"}
    assert 0 < sum(months.values()) <= staged
