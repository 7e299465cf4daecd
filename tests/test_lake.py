"""The lake warehouse (TRANSCEND_WAREHOUSE=lake): months replaced in one Delta commit, many writers at once, and the
same SQL models and quality gates as the DuckDB file, on the real Lichess samples."""

from __future__ import annotations

import functools
import multiprocessing
import random
import secrets
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest
from fixtures import build_models, build_month, random_game
from services import Service, object_store_environment

from transcend_pipeline import ingest as ingest_module
from transcend_pipeline import lake as lake_module
from transcend_pipeline.defs.training import training_set
from transcend_pipeline.defs.warehouse import quality_gates, sql_model_assets
from transcend_pipeline.ingest import ingest_month
from transcend_pipeline.lake import MonthWriteConflict, replace_month
from transcend_pipeline.quality import load_expectations, run_suite
from transcend_pipeline.settings import Settings, lake_location
from transcend_pipeline.sql_models import PROJECT_ROOT, load_vars
from transcend_pipeline.warehouse import open_warehouse

DUMP_2021 = "lichess_2021-10_dump_excerpt_999games.pgn"
API_EXPORT = "lichess_api_export_cubicinfinity_2019-2022_866games.pgn"
SAMPLES = {DUMP_2021: (999, 0), API_EXPORT: (791, 75)}  # games accepted, quarantined


@pytest.fixture(params=["folder", "object store"])
def lake(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path | str:
    """A lake in a local folder, and the same tests again with the lake in an S3 bucket (its own per test), reached
    through the environment variables a deployment sets."""
    if request.param == "folder":
        return tmp_path / "lake"
    import boto3

    store: Service = request.getfixturevalue("object_store")
    for variable, value in object_store_environment(store).items():
        monkeypatch.setenv(variable, value)  # spawned writer processes inherit them
    bucket = f"lake-{secrets.token_hex(6)}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/lake"


def lake_counts(lake: Path | str) -> dict[str, tuple[int, int]]:
    """Per month: (games, quarantined) as DuckDB reads them from the lake."""
    with open_warehouse(None, lake=lake) as connection:
        games = dict(connection.execute("SELECT month, count(*) FROM games GROUP BY month").fetchall())
        quarantined = dict(connection.execute("SELECT month, count(*) FROM games_quarantine GROUP BY month").fetchall())
    return {month: (games.get(month, 0), quarantined.get(month, 0)) for month in games.keys() | quarantined.keys()}


def rounded(value: object) -> object:
    """`value` with every float rounded to 9 digits: a sum over rows in another order differs in its last bits."""
    if isinstance(value, float):
        return round(value, 9)
    if isinstance(value, list | tuple):
        return type(value)(rounded(item) for item in value)
    return value


def versions(lake: Path | str, table: str) -> int:
    from deltalake import DeltaTable

    return DeltaTable(lake_module.table_path(lake, table)).version()


def test_a_month_is_replaced_in_one_commit_and_a_rerun_never_duplicates(
    lichess_samples: Path, tmp_path: Path, lake: Path | str
):
    ingest = dict(staging_dir=tmp_path / "staging", lake=lake)
    ingest_month(lichess_samples / DUMP_2021, "2021-10", tmp_path / "unused.duckdb", **ingest)
    result = ingest_month(lichess_samples / API_EXPORT, "2022-12", tmp_path / "unused.duckdb", **ingest)
    assert (result.games_read, result.games_accepted, result.games_quarantined) == (866, 791, 75)
    before = {table: versions(lake, table) for table in ("games", "games_quarantine")}
    ingest_month(lichess_samples / API_EXPORT, "2022-12", tmp_path / "unused.duckdb", **ingest)
    assert lake_counts(lake) == {"2021-10": (999, 0), "2022-12": (791, 75)}
    assert {table: versions(lake, table) for table in before} == {table: v + 1 for table, v in before.items()}
    assert not (tmp_path / "unused.duckdb").exists()  # the lake's ingest never opens the DuckDB file
    if lake_module.is_url(lake):  # the commits are objects in the bucket, not files in a local folder
        import boto3

        bucket, prefix = str(lake).removeprefix("s3://").split("/", 1)
        listed = boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/games/_delta_log/")
        assert sorted(item["Key"].rsplit("/", 1)[-1] for item in listed["Contents"]) == [
            f"{version:020d}.json"
            for version in range(4)  # the table's creation, then three months written
        ]
    with open_warehouse(None, lake=lake) as connection:
        assert connection.execute("SELECT count(*) - count(DISTINCT game_id) FROM games").fetchone() == (0,)
        row = connection.execute("SELECT moves[1:3], ply_count FROM games WHERE game_id = 'NRafdioG'").fetchone()
    assert row[0] == ["e2e4", "c7c5", "g1f3"] and row[1] > 3


def test_a_failure_during_the_lake_swap_keeps_the_previous_rows(
    lichess_samples: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lake: Path | str
):
    ingest_month(lichess_samples / DUMP_2021, "2021-10", tmp_path / "w.duckdb", staging_dir=tmp_path / "s", lake=lake)
    committed = versions(lake, "games")
    # The games stream fails while the Delta writer reads it: every game has been parsed, nothing is committed.
    failing = ingest_module.FIRST_OF_EACH_ID_SQL + " WHERE CASE WHEN game_id > 'm' THEN error('injected') ELSE true END"
    monkeypatch.setattr(ingest_module, "FIRST_OF_EACH_ID_SQL", failing)
    with pytest.raises(Exception, match="injected"):
        ingest_month(
            lichess_samples / API_EXPORT, "2021-10", tmp_path / "w.duckdb", staging_dir=tmp_path / "s", lake=lake
        )
    assert versions(lake, "games") == committed
    assert lake_counts(lake) == {"2021-10": (999, 0)}


def test_a_stream_that_breaks_after_files_were_written_commits_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import deltalake

    lake = tmp_path / "lake"
    schema = pa.schema([("month", pa.string()), ("n", pa.int64())])
    replace_month(lake, "t", "2021-10", pa.table({"month": ["2021-10"] * 3, "n": [1, 2, 3]}, schema=schema))
    # Files of about 10 kB, so the writer has put data files on disk when the stream breaks: a crash mid-write.
    monkeypatch.setattr(
        deltalake, "write_deltalake", functools.partial(deltalake.write_deltalake, target_file_size=10_000)
    )

    def batches():
        for start in range(0, 50_000, 10_000):
            yield pa.record_batch({"month": ["2021-10"] * 10_000, "n": range(start, start + 10_000)}, schema=schema)
        raise RuntimeError("the source broke")

    with pytest.raises(Exception):  # noqa: B017 - delta-rs reports the reader's error as its own, message lost
        replace_month(lake, "t", "2021-10", pa.RecordBatchReader.from_batches(schema, batches()))
    written = list((lake / "t").rglob("*.parquet"))
    assert len(written) > len(deltalake.DeltaTable(lake / "t").file_uris()) == 1  # written, never referenced
    with pytest.raises(Exception, match="failed validation"):  # a row of another month: refused, not committed
        replace_month(lake, "t", "2021-10", pa.table({"month": ["2021-11"], "n": [9]}, schema=schema))
    with open_warehouse(None, lake=lake) as connection:
        assert connection.execute("SELECT list(n ORDER BY n) FROM t").fetchone() == ([1, 2, 3],)


def test_duckdb_reads_the_lake_with_its_parquet_reader_and_file_statistics(lake: Path | str):
    """Through an Arrow dataset DuckDB knows no row counts and holds Arrow's buffers outside its memory limit: the
    bucket rebuild's join over `stg_games` grew past 9 GiB at 16M rows (benchmarks/bench_buckets.py). So each table
    is a view over its snapshot's Parquet files, read by DuckDB's reader, from a folder or, through delta-rs's own
    store, from an object store."""
    from deltalake import DeltaTable

    for month, values in (("2024-01", [1, 2]), ("2024-02", [3])):
        rows = pa.table({"n": values, "month": [month] * len(values), "moves": [["e2e4"]] * len(values)})
        replace_month(lake, "t", month, rows)
    with open_warehouse(None, lake=lake) as connection:
        rows = connection.execute("SELECT * FROM t ORDER BY n").fetchall()
        (plan,) = connection.execute("EXPLAIN SELECT sum(n) FROM t WHERE month = '2024-02'").fetchall()
    expected = DeltaTable(lake_module.table_path(lake, "t")).to_pyarrow_table().sort_by("n")
    assert rows == [tuple(row.values()) for row in expected.to_pylist()]  # the same rows, columns in the table's order
    assert "READ_PARQUET" in plan[1] and "Scanning Files: 1/2" in plan[1]  # the month's filter skips the other's file


def _ingest_months(dump: str, months: list[str], lake: str, staging: str) -> list[tuple[int, int]]:
    return [
        (result.games_accepted, result.games_quarantined)
        for result in (
            ingest_month(
                Path(dump), month, Path(staging) / "unused.duckdb", staging_dir=Path(staging), lake=lake_location(lake)
            )
            for month in months
        )
    ]


@pytest.mark.slow
def test_concurrent_writers_of_different_months_keep_every_row(lichess_samples: Path, tmp_path: Path, lake: Path | str):
    writers = [  # three processes, each ingesting its own months, round after round, all at once
        (DUMP_2021, ["2021-01", "2021-02", "2021-03"]),
        (API_EXPORT, ["2022-01", "2022-02", "2022-03"]),
        (DUMP_2021, ["2023-01", "2023-02", "2023-03"]),
    ]
    rounds = 2
    context = multiprocessing.get_context("spawn")
    with context.Pool(len(writers)) as pool:
        for _ in range(rounds):
            results = pool.starmap(
                _ingest_months,
                [
                    (str(lichess_samples / dump), months, str(lake), str(tmp_path / f"s{i}"))
                    for i, (dump, months) in enumerate(writers)
                ],
            )
            assert results == [[SAMPLES[dump]] * len(months) for dump, months in writers]
    expected = {month: SAMPLES[dump] for dump, months in writers for month in months}
    assert lake_counts(lake) == expected
    # Every write committed: the table's creation (version 0), then one commit per month per round in each table.
    assert versions(lake, "games") == versions(lake, "games_quarantine") == rounds * len(expected)


def _replace_at_once(lake: str, table: str, month: str, writer: int, barrier) -> str:
    rows = pa.table({"month": [month] * 20_000, "writer": [writer] * 20_000, "n": range(20_000)})
    barrier.wait()
    try:
        replace_month(lake_location(lake), table, month, rows)
    except MonthWriteConflict:
        return "conflict"
    return "committed"


@pytest.mark.slow
def test_the_first_writers_of_a_new_table_each_commit_their_month(lake: Path | str):
    """Three writers of different months racing to create a table (a month ingested into a new lake by several
    workers at once): before the table was created in one unretried commit, all but one failed in 11 of 15 trials
    (each write created the table), and in 5 of 15 when delta-rs retried a lost creation as a second version."""
    from deltalake import DeltaTable

    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(3) as pool:
        for trial in range(5):
            table, months, barrier = f"new{trial}", ["2024-01", "2024-02", "2024-03"], manager.Barrier(3)
            outcomes = pool.starmap(
                _replace_at_once, [(str(lake), table, month, writer, barrier) for writer, month in enumerate(months)]
            )
            assert outcomes == ["committed"] * 3
            with open_warehouse(None, lake=lake) as connection:
                query = f"SELECT month, count(*), min(writer), max(writer) FROM {table} GROUP BY month ORDER BY month"
                assert connection.execute(query).fetchall() == [(m, 20_000, w, w) for w, m in enumerate(months)]
            operations = [commit["operation"] for commit in DeltaTable(lake_module.table_path(lake, table)).history()]
            assert operations.count("CREATE TABLE") == 1 and len(operations) == 4


@pytest.mark.slow
def test_concurrent_writers_of_the_same_month_leave_one_writers_rows(lake: Path | str):
    replace_month(lake, "t", "2024-05", pa.table({"month": ["2024-05"], "writer": [-1], "n": [0]}))
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(3) as pool:
        barrier = manager.Barrier(3)
        for _ in range(3):
            outcomes = pool.starmap(_replace_at_once, [(str(lake), "t", "2024-05", w, barrier) for w in range(3)])
            assert "committed" in outcomes
            with open_warehouse(None, lake=lake) as connection:
                rows = connection.execute(
                    "SELECT writer, count(*), count(DISTINCT n) FROM t GROUP BY writer"
                ).fetchall()
            assert len(rows) == 1 and rows[0][0] in range(3) and rows[0][1:] == (20_000, 20_000)
            assert outcomes[rows[0][0]] == "committed"


def test_the_sql_models_and_gates_give_the_same_buckets_over_the_lake(
    lichess_samples: Path, tmp_path: Path, lake: Path | str
):
    months = ["2021-10", "2022-12"]
    variables = load_vars(PROJECT_ROOT, target="sample")
    expectations = load_expectations(PROJECT_ROOT)
    built: dict[str, dict] = {}
    for name, lake_or_none in (("duckdb", None), ("lake", lake)):
        warehouse = tmp_path / f"{name}.duckdb"
        for dump, month in zip((DUMP_2021, API_EXPORT), months, strict=True):
            ingest_month(
                lichess_samples / dump,
                month,
                warehouse,
                staging_dir=tmp_path / "s",
                moves_max_elo=1500,
                lake=lake_or_none,
            )
        with open_warehouse(warehouse, lake=lake_or_none) as connection:
            counts = build_models(connection, PROJECT_ROOT, variables, months, lake=lake_or_none)
            tables = {
                table: rounded(connection.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall())
                for table in ("stg_games", "bucket_games", "bucket_players", "bucket_diversity")
            }
            gates = {
                model: [
                    (o.name, o.cap, o.success, rounded(o.observed))
                    for o in run_suite(connection, model, rules, variables).outcomes
                ]
                for model, rules in expectations.items()
                if rules
            }
            local = connection.execute("SELECT table_name FROM duckdb_tables() ORDER BY ALL").fetchall()
        built[name] = {"counts": counts, "tables": tables, "gates": gates, "local": local}
    assert built["lake"]["counts"] == built["duckdb"]["counts"]
    assert built["duckdb"]["counts"]["bucket_games"] > 300
    assert built["lake"]["tables"] == built["duckdb"]["tables"]
    assert built["lake"]["gates"] == built["duckdb"]["gates"]
    assert sum(len(outcomes) for outcomes in built["lake"]["gates"].values()) >= 10  # every suite ran
    assert lake_module.tables(lake) == ["games", "games_quarantine", "stg_games"]
    # The lake's monthly tables are not in its DuckDB file, only the whole-table models are.
    assert built["lake"]["local"] == [("bucket_diversity",), ("bucket_games",), ("bucket_players",)]


def test_the_warehouse_switch_defaults_to_the_duckdb_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("TRANSCEND_HOME", str(tmp_path))
    monkeypatch.delenv("TRANSCEND_WAREHOUSE", raising=False)
    monkeypatch.delenv("TRANSCEND_LAKE", raising=False)
    assert Settings.from_env().lake is None
    monkeypatch.setenv("TRANSCEND_WAREHOUSE", "lake")
    assert Settings.from_env().lake == tmp_path.resolve() / "lake"
    monkeypatch.setenv("TRANSCEND_LAKE", str(tmp_path / "elsewhere"))
    assert Settings.from_env().lake == tmp_path.resolve() / "elsewhere"
    monkeypatch.setenv("TRANSCEND_LAKE", "s3://bucket/prefix/lake")  # an object store's URL is taken as it is
    assert Settings.from_env().lake == "s3://bucket/prefix/lake"
    monkeypatch.setenv("TRANSCEND_WAREHOUSE", "iceberg")
    with pytest.raises(ValueError, match="TRANSCEND_WAREHOUSE"):
        Settings.from_env()


@pytest.mark.slow
def test_the_dagster_assets_ingest_gate_and_train_from_the_lake(transcend_home: Path, lake: Path | str):
    rng = random.Random(3)
    texts = []
    for index in range(800):  # a diverse cap-1300 pool of 40 players
        white, black = rng.sample(range(40), 2)
        texts.append(random_game(rng, f"club{white}", f"club{black}", rng.randrange(1050, 1300), 1200, index))
    built = build_month(transcend_home, texts, lake=lake)
    assert built.ingest.asset_materializations_for_node("games")[0].metadata["games_read"].value == 800
    assert lake_module.tables(lake) == ["games", "games_quarantine", "stg_games"]
    assert sum(counts[0] for counts in lake_counts(lake).values()) == 800
    checks = {
        (evaluation.asset_key.path[-1], evaluation.check_name): evaluation.passed
        for evaluation in built.buckets.get_asset_check_evaluations()
    }
    assert checks[("bucket_games", "cap_1300")] and checks[("bucket_diversity", "cap_1300")]
    staged = dg.materialize(  # the monthly model again, with its gate, over the lake alone
        [asset for asset in sql_model_assets if asset.key.path[-1] == "stg_games"]
        + [gate for gate in quality_gates if {key.asset_key.path[-1] for key in gate.check_keys} == {"stg_games"}],
        partition_key="2025-01-01",
        resources=built.resources,
        instance=built.instance,
    )
    (gate,) = staged.get_asset_check_evaluations()
    assert gate.passed and gate.metadata["failed"].value == "none"
    with open_warehouse(transcend_home / "warehouse.duckdb", read_only=True) as connection:
        local = {name for (name,) in connection.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        (bucketed,) = connection.execute("SELECT count(*) FROM bucket_games WHERE cap = 1300").fetchone()
    assert "games" not in local and "stg_games" not in local and bucketed > 700

    trained = dg.materialize(
        [training_set], partition_key="cap1300", resources=built.resources, instance=built.instance
    )
    assert trained.asset_materializations_for_node("training_set")[0].metadata["games_train"].value > 400
