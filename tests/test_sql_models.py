"""The dbt-style SQL models: discovery, rendering, incremental months, nested buckets, splits, diversity."""

from __future__ import annotations

import hashlib
import math
import shutil
from collections import Counter
from pathlib import Path

import duckdb
import pytest
from fixtures import build_models, generate_games, insert_games

from transcend_pipeline.sql_models import (
    ModelCycleError,
    SqlModel,
    SqlModelError,
    UnknownRefError,
    UnknownVarError,
    discover_models,
    load_vars,
    materialize,
    render,
    sql_literal,
    topological_order,
)

PROJECT = Path(__file__).resolve().parents[1] / "dbt_like_sql"


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """A private copy of the SQL project, free to be edited by a test."""
    return Path(shutil.copytree(PROJECT, tmp_path / "dbt_like_sql"))


@pytest.fixture()
def connection(tmp_path: Path):
    connection = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    yield connection
    connection.close()


def test_discovers_the_interface_models_with_refs_sources_and_materialisation():
    models = discover_models(PROJECT)
    assert {"stg_games", "bucket_games", "bucket_players", "bucket_diversity"} <= set(models)
    assert models["stg_games"].sources == ("games",)
    assert models["stg_games"].partitioned_by_month
    assert models["stg_games"].folder == "staging"
    assert models["bucket_games"].refs == ("stg_games",)
    assert not models["bucket_games"].partitioned_by_month
    assert set(models["bucket_diversity"].refs) == {"bucket_games", "bucket_players", "stg_games"}
    assert "pre-game" in models["stg_games"].description  # from schema.yml
    order = topological_order(models)
    assert order.index("stg_games") < order.index("bucket_games") < order.index("bucket_players")
    assert order.index("bucket_players") < order.index("bucket_diversity")


def test_render_replaces_every_tag():
    models = discover_models(PROJECT)
    variables = load_vars(PROJECT, {"min_plies": 7})
    sql = render(models["stg_games"], variables, month="2021-10")
    assert "{{" not in sql and "}}" not in sql
    assert "FROM games" in sql
    assert "month = '2021-10'" in sql
    assert "ply_count >= 7" in sql
    assert "NOT (TRUE AND 'BOT'" in sql
    assert "unnest([1000, 1300, 1500])" in render(models["bucket_games"], variables)
    assert "FROM stg_games" in render(models["bucket_games"], variables)


def test_sql_literals():
    assert sql_literal([1000, 1300]) == "[1000, 1300]"
    assert sql_literal("it's") == "'it''s'"
    assert sql_literal(False) == "FALSE"
    assert sql_literal(0.05) == "0.05"
    with pytest.raises(SqlModelError, match="SQL literal"):
        sql_literal({"a": 1})


def test_unknown_var_names_the_variable():
    model = discover_models(PROJECT)["stg_games"]
    variables = load_vars(PROJECT)
    del variables["min_plies"]
    with pytest.raises(UnknownVarError, match="min_plies"):
        render(model, variables, month="2021-10")
    with pytest.raises(UnknownVarError, match="no_such_var"):
        load_vars(PROJECT, {"no_such_var": 1})


def test_incremental_model_needs_a_valid_month():
    model = discover_models(PROJECT)["stg_games"]
    variables = load_vars(PROJECT)
    with pytest.raises(SqlModelError, match="one month at a time"):
        render(model, variables)
    with pytest.raises(SqlModelError, match="one month at a time"):
        render(model, variables, month="2021-10'; DROP TABLE games; --")


def test_unknown_ref_and_source_fail_at_discovery(project: Path):
    (project / "marts" / "broken.sql").write_text("SELECT * FROM {{ ref('no_such_model') }}")
    with pytest.raises(UnknownRefError, match="no_such_model"):
        discover_models(project)
    (project / "marts" / "broken.sql").write_text("SELECT * FROM {{ source('no_such_table') }}")
    with pytest.raises(UnknownRefError, match="no_such_table"):
        discover_models(project)


def test_malformed_templates_are_rejected(project: Path):
    broken = project / "marts" / "broken.sql"
    broken.write_text("SELECT {{ env_var('HOME') }}")
    with pytest.raises(SqlModelError, match="unknown template function"):
        discover_models(project)
    broken.write_text("{{ config(materialized='incremental_by_month') }}\nSELECT month FROM {{ source('games') }}")
    with pytest.raises(SqlModelError, match="this_month"):
        discover_models(project)
    broken.write_text("{{ config(materialized='view') }}\nSELECT 1")
    with pytest.raises(SqlModelError, match="materialized"):
        discover_models(project)


def test_cycles_are_reported():
    def model(name: str, *refs: str) -> SqlModel:
        return SqlModel(name, Path(f"{name}.sql"), "marts", "", refs, (), False, "")

    with pytest.raises(ModelCycleError, match="a -> b -> a"):
        topological_order({"a": model("a", "b"), "b": model("b", "a")})


def test_a_new_sql_file_is_a_new_model_with_no_python_change(project: Path, connection):
    (project / "marts" / "bucket_sizes.sql").write_text(
        "-- Games per cap, a model added by dropping in a file.\n"
        "SELECT cap, count(*) AS games FROM {{ ref('bucket_games') }} GROUP BY cap\n"
    )
    models = discover_models(project)
    assert models["bucket_sizes"].refs == ("bucket_games",)
    assert models["bucket_sizes"].description == "Games per cap, a model added by dropping in a file."
    order = topological_order(models)
    assert order.index("bucket_games") < order.index("bucket_sizes")
    generate_games(connection, 3000)
    counts = build_models(connection, project, load_vars(project), ["2021-10"])
    assert counts["bucket_sizes"] == 3
    sizes = dict(connection.execute("SELECT cap, games FROM bucket_sizes").fetchall())
    assert sizes == dict(connection.execute("SELECT cap, count(*) FROM bucket_games GROUP BY cap").fetchall())


def test_stg_games_keeps_only_games_that_may_enter_a_bucket(connection):
    insert_games(
        connection,
        [
            {"game_id": "keep"},
            {"game_id": "keep_null_termination", "termination": None},
            {"game_id": "unrated", "rated": False},
            {"game_id": "chess960", "variant": "Chess960"},
            {"game_id": "unknown_elo", "black_elo": None},
            {"game_id": "unfinished", "result": "*"},
            {"game_id": "abandoned", "termination": "Abandoned"},
            {"game_id": "short", "moves": ["e2e4"]},
            {"game_id": "white_bot", "white_title": "BOT"},
            {"game_id": "black_bot", "black_title": "BOT"},
            {"game_id": "other_month", "month": "2021-11"},
        ],
    )
    model = discover_models(PROJECT)["stg_games"]
    assert materialize(connection, model, load_vars(PROJECT), month="2021-10") == 2
    kept = dict(connection.execute("SELECT game_id, max_elo FROM stg_games").fetchall())
    assert kept == {"keep": 950, "keep_null_termination": 950}
    assert materialize(connection, model, load_vars(PROJECT, {"exclude_bots": False}), month="2021-10") == 4


def test_incremental_month_replace_is_idempotent_and_leaves_other_months_alone(connection):
    generate_games(connection, 2000, month="2021-10")
    generate_games(connection, 1500, month="2021-11")
    model = discover_models(PROJECT)["stg_games"]
    variables = load_vars(PROJECT)
    october = materialize(connection, model, variables, month="2021-10")
    november = materialize(connection, model, variables, month="2021-11")
    assert october == materialize(connection, model, variables, month="2021-10")
    assert connection.execute("SELECT count(*), count(DISTINCT game_id) FROM stg_games").fetchone() == (
        october + november,
        october + november,
    )
    connection.execute("DELETE FROM games WHERE month = '2021-10' AND game_id LIKE '%0'")
    assert materialize(connection, model, variables, month="2021-10") < october
    assert connection.execute("SELECT count(*) FROM stg_games WHERE month = '2021-11'").fetchone() == (november,)


def test_buckets_nest_and_respect_their_caps(connection):
    elos = {"a999": 999, "a1000": 1000, "a1001": 1001, "a1300": 1300, "a1301": 1301, "a1500": 1500, "a1501": 1501}
    insert_games(
        connection, [{"game_id": game_id, "white_elo": elo, "black_elo": 600} for game_id, elo in elos.items()]
    )
    build_models(connection, PROJECT, load_vars(PROJECT), ["2021-10"])
    buckets: dict[int, set[str]] = {}
    for cap, game_id in connection.execute("SELECT cap, game_id FROM bucket_games").fetchall():
        buckets.setdefault(cap, set()).add(game_id)
    assert buckets == {
        1000: {"a999", "a1000"},
        1300: {"a999", "a1000", "a1001", "a1300"},
        1500: {"a999", "a1000", "a1001", "a1300", "a1301", "a1500"},
    }


def test_splits_follow_md5_of_the_game_id_and_are_stable(connection):
    generate_games(connection, 10_000)
    variables = load_vars(PROJECT)
    build_models(connection, PROJECT, variables, ["2021-10"])
    query = "SELECT cap, game_id, split FROM bucket_games ORDER BY cap, game_id"
    first = connection.execute(query).fetchall()
    materialize(connection, discover_models(PROJECT)["bucket_games"], variables)
    assert connection.execute(query).fetchall() == first

    def expected_split(game_id: str) -> str:
        draw = int(hashlib.md5(game_id.encode()).hexdigest()[:8], 16) / 2**32
        if draw < variables["train_fraction"]:
            return "train"
        return "val" if draw < variables["train_fraction"] + variables["val_fraction"] else "test"

    splits_of_game: dict[str, set[str]] = {}
    for _, game_id, split in first:
        assert split == expected_split(game_id)
        splits_of_game.setdefault(game_id, set()).add(split)
    assert all(len(splits) == 1 for splits in splits_of_game.values())  # one split per game, across caps too
    shares = Counter(split for (split,) in splits_of_game.values())
    total = sum(shares.values())
    assert abs(shares["train"] / total - 0.9) < 0.02
    assert abs(shares["val"] / total - 0.05) < 0.01


def _normalised_entropy(counts: list[int]) -> float:
    total = sum(counts)
    entropy = -sum(count / total * math.log(count / total) for count in counts)
    return entropy / math.log(len(counts)) if len(counts) > 1 else 0.0


def test_diversity_metrics_match_hand_computed_values(connection):
    # Cap 1000: alice 3 appearances, bob 2, carol 2, dave 1; one extra 1200 game enters cap 1300 only.
    games = [
        ("g1", "alice", "bob", ["e2e4", "e7e5", "g1f3"]),
        ("g2", "alice", "carol", ["e2e4", "c7c5", "g1f3"]),
        ("g3", "alice", "dave", ["d2d4", "d7d5", "c2c4"]),
        ("g4", "bob", "carol", ["e2e4", "e7e5", "f1c4"]),
    ]
    rows = [{"game_id": g, "white": w, "black": b, "moves": m} for g, w, b, m in games]
    rows.append({"game_id": "g5", "white": "erin", "black": "bob", "white_elo": 1200, "moves": ["d2d4", "g8f6"]})
    insert_games(connection, rows)
    variables = load_vars(PROJECT, {"min_plies": 0, "opening_min_visits": 2, "opening_max_ply": 2})
    build_models(connection, PROJECT, variables, ["2021-10"])
    diversity = {row[0]: row for row in connection.execute("SELECT * FROM bucket_diversity").fetchall()}
    columns = [c[0] for c in connection.execute("SELECT * FROM bucket_diversity LIMIT 0").description]
    cap1000 = dict(zip(columns, diversity[1000], strict=True))

    assert cap1000["games"] == 4
    assert cap1000["players"] == 4
    assert cap1000["top_player"] == "alice"
    assert cap1000["top_player_share"] == pytest.approx(3 / 4)
    assert cap1000["player_entropy"] == pytest.approx(_normalised_entropy([3, 2, 2, 1]))
    assert cap1000["max_elo"] == 950
    assert cap1000["train_games"] + cap1000["val_games"] + cap1000["test_games"] == 4
    # Positions with >= 2 visits in plies 0..2: start (e2e4 x3, d2d4 x1), after e2e4 (e7e5 x2, c7c5 x1),
    # after e2e4 e7e5 (g1f3, f1c4).
    assert cap1000["opening_positions"] == 3
    expected = (_normalised_entropy([3, 1]) + _normalised_entropy([2, 1]) + _normalised_entropy([1, 1])) / 3
    assert cap1000["opening_entropy"] == pytest.approx(expected)

    cap1300 = dict(zip(columns, diversity[1300], strict=True))
    assert (cap1300["games"], cap1300["players"], cap1300["max_elo"]) == (5, 5, 1200)
    assert cap1300["top_player_share"] == pytest.approx(3 / 5)  # alice and bob: 3 of 5 games each
    # The cap-1300 game adds a d2d4 at the start and makes "after d2d4" frequent (d7d5, g8f6).
    expected = (_normalised_entropy([3, 2]) + _normalised_entropy([2, 1]) + 1.0 + 1.0) / 4
    assert cap1300["opening_positions"] == 4
    assert cap1300["opening_entropy"] == pytest.approx(expected)

    shares = connection.execute("SELECT sum(share), max(game_share) FROM bucket_players WHERE cap = 1000").fetchone()
    assert shares == pytest.approx((1.0, 0.75))


def test_an_empty_bucket_still_has_a_diversity_row(connection):
    generate_games(connection, 2000)
    build_models(connection, PROJECT, load_vars(PROJECT, {"caps": [500, 1000]}), ["2021-10"])
    empty = connection.execute("SELECT games, players, opening_positions FROM bucket_diversity WHERE cap = 500")
    assert empty.fetchone() == (0, 0, 0)


def test_opening_diversity_is_measured_on_a_sample_of_comparable_size_per_cap(connection):
    generate_games(connection, 10_000)
    build_models(connection, PROJECT, load_vars(PROJECT, {"opening_sample_games": 300}), ["2021-10"])
    sizes = connection.execute("SELECT cap, games, opening_games FROM bucket_diversity").fetchall()
    assert all(games > 600 for _, games, _ in sizes)
    for cap, _, opening_games in sizes:
        assert 200 < opening_games < 400, cap
