"""Quality gates: expectations from schema.yml, validated by real Great Expectations suites on DuckDB summaries."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest
from fixtures import build_models, generate_games, insert_games

from transcend_pipeline.quality import ExpectationConfigError, SuiteResult, load_expectations, run_suite
from transcend_pipeline.sql_models import load_vars

PROJECT = Path(__file__).resolve().parents[1] / "dbt_like_sql"
REQUIRED_GUARDS = {
    "stg_games": {"game_id_unique", "valid_results"},
    "bucket_games": {"rating_cap", "game_id_unique", "valid_results", "splits_disjoint", "min_games"},
    "bucket_diversity": {"distinct_players", "top_player_share", "player_entropy"},
}


@pytest.fixture()
def connection(tmp_path: Path):
    connection = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def expectations() -> dict[str, list[dict]]:
    return load_expectations(PROJECT)


def failures(result: SuiteResult) -> dict[tuple[str, int | None], object]:
    return {(o.name, o.cap): o.observed for o in result.outcomes if not o.success}


def outcome(result: SuiteResult, name: str, cap: int | None):
    (found,) = [o for o in result.outcomes if o.name == name and o.cap == cap]
    return found


def test_the_required_guards_are_declared_beside_the_models(expectations):
    for model, guards in REQUIRED_GUARDS.items():
        assert guards <= {e["name"] for e in expectations[model]}, model


@pytest.mark.parametrize(
    ("declaration", "message"),
    [
        ({"name": "x", "metric": "count(*)"}, "min"),
        ({"name": "x", "metric": "count(*)", "min": 1, "colour": "red"}, "unknown keys"),
        ({"name": "x", "metric": "count(*)", "min": "lots"}, "threshold"),
        ({"name": "x", "metric": "count(*)", "min": {"per_cap": {1000: 1}}}, "per-cap"),
        ({"name": "x", "column": "result"}, "either"),
        ({"metric": "count(*)", "min": 1}, "name"),
        ({"name": 'a" OR 1', "metric": "count(*)", "min": 1}, "identifier"),
    ],
)
def test_malformed_expectations_fail_when_loaded(tmp_path: Path, declaration: dict, message: str):
    project = Path(shutil.copytree(PROJECT, tmp_path / "dbt_like_sql"))
    schema = project / "marts" / "schema.yml"
    schema.write_text(json.dumps({"models": [{"name": "bucket_games", "expectations": [declaration]}]}))
    with pytest.raises(ExpectationConfigError, match=message):
        load_expectations(project)


def test_good_data_passes_every_gate(connection, expectations):
    generate_games(connection, 15_000, players=600)
    variables = load_vars(PROJECT)
    build_models(connection, PROJECT, variables, ["2021-10"])
    for model in REQUIRED_GUARDS:
        result = run_suite(connection, model, expectations[model], variables)
        assert result.success, failures(result)
        caps = {o.cap for o in result.outcomes}
        assert caps == ({None} if model == "stg_games" else {1000, 1300, 1500})
    rating_cap = outcome(
        run_suite(connection, "bucket_games", expectations["bucket_games"], variables), "rating_cap", 1300
    )
    assert 1250 < rating_cap.observed <= 1300 and rating_cap.expected == "<= 1300"
    json.dumps([o.__dict__ for o in result.outcomes])  # observed values are plain, for Dagster metadata


def test_one_player_dominating_a_bucket_fails_its_diversity_gate_only(connection, expectations):
    # Sub-1000 games: "whale" plays 1,900 of 2,000. Above 1000, 20,000 games among 500 players dilute it.
    generate_games(connection, 2000, players=200, id_prefix="low")
    connection.execute("UPDATE games SET white_elo = 600 + white_elo % 400, black_elo = 600 + black_elo % 400")
    connection.execute("UPDATE games SET white = 'whale' WHERE CAST(split_part(game_id, '-', 4) AS INTEGER) < 1900")
    generate_games(connection, 20_000, players=500, id_prefix="high")
    connection.execute("UPDATE games SET white_elo = 1001 + white_elo % 300 WHERE game_id LIKE 'high%'")
    variables = load_vars(PROJECT)
    build_models(connection, PROJECT, variables, ["2021-10"])

    cap1000 = run_suite(connection, "bucket_diversity", expectations["bucket_diversity"], variables, cap=1000)
    assert not cap1000.success
    top_share = outcome(cap1000, "top_player_share", 1000)
    assert not top_share.success
    assert top_share.observed == pytest.approx(0.95, abs=0.02)
    assert top_share.expected == "<= 0.2"
    cap1300 = run_suite(connection, "bucket_diversity", expectations["bucket_diversity"], variables, cap=1300)
    assert cap1300.success, failures(cap1300)
    assert {o.cap for o in cap1300.outcomes} == {1300}
    # A player is in at most every game, half the appearances: entropy alone drops only to ~0.65 here.
    entropy = outcome(cap1000, "player_entropy", 1000).observed
    assert entropy < outcome(cap1300, "player_entropy", 1300).observed
    stricter = variables | {"min_player_entropy": 0.8}
    strict = run_suite(connection, "bucket_diversity", expectations["bucket_diversity"], stricter, cap=1000)
    assert failures(strict)[("player_entropy", 1000)] == entropy


def test_an_elo_over_the_cap_fails_the_rating_gate_of_that_cap(connection, expectations):
    generate_games(connection, 3000)
    variables = load_vars(PROJECT, {"min_bucket_games": 1})
    build_models(connection, PROJECT, variables, ["2021-10"])
    connection.execute(
        "UPDATE bucket_games SET max_elo = 1450 "
        "WHERE cap = 1300 AND game_id = (SELECT min(game_id) FROM bucket_games WHERE cap = 1300)"
    )
    result = run_suite(connection, "bucket_games", expectations["bucket_games"], variables)
    assert failures(result) == {("rating_cap", 1300): 1450}
    assert outcome(result, "rating_cap", 1300).expected == "<= 1300"


def test_duplicate_game_ids_fail_uniqueness(connection, expectations):
    insert_games(connection, [{"game_id": "twice"}, {"game_id": "twice"}, {"game_id": "once", "white": "carol"}])
    variables = load_vars(PROJECT)
    build_models(connection, PROJECT, variables, ["2021-10"])
    staging = run_suite(connection, "stg_games", expectations["stg_games"], variables)
    assert failures(staging) == {("game_id_unique", None): 1}
    buckets = run_suite(connection, "bucket_games", expectations["bucket_games"], variables, cap=1000)
    assert failures(buckets)[("game_id_unique", 1000)] == 1


def test_invalid_results_and_crossed_splits_are_reported_with_the_offending_values(connection, expectations):
    generate_games(connection, 3000)
    variables = load_vars(PROJECT, {"min_bucket_games": 1})
    build_models(connection, PROJECT, variables, ["2021-10"])
    connection.execute(
        "UPDATE bucket_games SET result = '*' "
        "WHERE cap = 1500 AND game_id = (SELECT min(game_id) FROM bucket_games WHERE cap = 1500)"
    )
    connection.execute(  # a game copied into a second split
        "INSERT INTO bucket_games SELECT * REPLACE ('val' AS split) FROM bucket_games "
        "WHERE cap = 1500 AND split = 'train' LIMIT 1"
    )
    result = run_suite(connection, "bucket_games", expectations["bucket_games"], variables, cap=1500)
    assert failures(result) == {
        ("valid_results", 1500): ["*"],
        ("splits_disjoint", 1500): 1,
        ("game_id_unique", 1500): 1,
    }


def test_a_bucket_too_small_to_train_on_fails(connection, expectations):
    generate_games(connection, 3000)
    variables = load_vars(PROJECT, {"caps": [600, 1000, 1500]})
    build_models(connection, PROJECT, variables, ["2021-10"])
    result = run_suite(connection, "bucket_games", expectations["bucket_games"], variables)
    small = outcome(result, "min_games", 1000)
    assert not small.success and 0 < small.observed < 1000 and small.expected == ">= 1000"
    empty = outcome(result, "min_games", 600)
    assert (empty.success, empty.observed) == (False, 0)
    assert outcome(result, "min_games", 1500).success
    # The same data passes once the threshold var is lowered (e.g. by a smoke profile).
    relaxed = run_suite(connection, "bucket_games", expectations["bucket_games"], variables | {"min_bucket_games": 1})
    assert outcome(relaxed, "min_games", 1000).success


def test_per_cap_thresholds_override_the_default(connection):
    generate_games(connection, 3000)
    variables = load_vars(PROJECT)
    build_models(connection, PROJECT, variables, ["2021-10"])
    declared = [{"name": "min_games", "metric": "count(*)", "min": {"default": 1, "per_cap": {1300: 10**9}}}]
    result = run_suite(connection, "bucket_games", declared, variables)
    assert set(failures(result)) == {("min_games", 1300)}
    assert outcome(result, "min_games", 1300).expected == ">= 1000000000"


def test_a_cap_cannot_be_asked_of_a_model_without_caps(connection, expectations):
    generate_games(connection, 100)
    build_models(connection, PROJECT, load_vars(PROJECT), ["2021-10"])
    with pytest.raises(ValueError, match="no 'cap' column"):
        run_suite(connection, "stg_games", expectations["stg_games"], load_vars(PROJECT), cap=1000)
