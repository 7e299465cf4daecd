"""The Lichess path end to end on a real month's excerpt: download, ingest, bucket, train one experiment, evaluate, report.

The 2021-10 excerpt (999 real games) is published on a local mirror as that month's dump and run through the same
jobs as `make run` with TRANSCEND_SOURCE=lichess. It is far too small for Lichess's size gates, so the run selects
dbt_project.yml's `sample` target; every expected count is recomputed here from the PGN with python-chess.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import chess.pgn
import dagster as dg
import pytest
from fixtures import SAMPLE_2021_10, publish

from transcend_pipeline.defs.partitions import CAPS
from transcend_pipeline.defs.resources import DBT_TARGET_VARIABLE, LichessSource
from transcend_pipeline.settings import PROFILES
from transcend_pipeline.sql_models import PROJECT_ROOT, UnknownTargetError, load_vars
from transcend_pipeline.warehouse import open_warehouse

MONTH = "2021-10"
EXPERIMENT = "cap1500"  # the only bucket of the excerpt with a few hundred games
CAP = 1500
SIZE_GATES = ("min_bucket_games", "min_bucket_players")


def test_the_sample_target_lowers_the_size_gates_and_lichess_keeps_them() -> None:
    defaults, lichess, sample = (load_vars(PROJECT_ROOT, target=target) for target in (None, "lichess", "sample"))
    assert lichess == defaults
    assert (lichess["min_bucket_games"], lichess["min_bucket_players"]) == (1000, 50)
    for gate in SIZE_GATES:
        assert 0 < sample[gate] < lichess[gate]
    # Every other guard (caps, exclusions, splits, diversity shares) is Lichess's; only the opening metric's
    # visit threshold, which scales with the games, moves with the sizes.
    changed = {name for name in lichess if sample[name] != lichess[name]}
    assert changed == {*SIZE_GATES, "opening_min_visits"}


def test_the_target_is_the_source_label_unless_transcend_dbt_target_names_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = LichessSource(base_url="http://127.0.0.1:9/standard")
    monkeypatch.delenv(DBT_TARGET_VARIABLE, raising=False)
    assert source.sql_vars() == load_vars(PROJECT_ROOT, target="lichess")
    monkeypatch.setenv(DBT_TARGET_VARIABLE, "sample")
    assert source.sql_vars() == load_vars(PROJECT_ROOT, target="sample")
    monkeypatch.setenv(DBT_TARGET_VARIABLE, "smaple")
    with pytest.raises(UnknownTargetError, match="'smaple'"):
        source.sql_vars()


@dataclass(frozen=True)
class Expected:
    """What the excerpt should become, read with python-chess rather than the pipeline's own parser."""

    read: int
    valid: int  # python-chess reads it without errors, from the standard start position
    buckets: dict[int, set[str]]  # cap -> game ids that stg_games' exclusions keep, with max Elo <= cap
    players: dict[int, int]  # cap -> distinct players in that bucket


def expected_from_pgn(path: Path, variables: dict) -> Expected:
    """The documented rules applied game by game: rated Standard, both Elos known, decided or drawn, not abandoned,
    at least `min_plies` plies, no BOT (when `exclude_bots`), then max(WhiteElo, BlackElo) <= cap."""
    read, valid = 0, 0
    buckets: dict[int, set[str]] = {cap: set() for cap in CAPS}
    players: dict[int, set[str]] = {cap: set() for cap in CAPS}
    with path.open() as pgn:
        while (game := chess.pgn.read_game(pgn)) is not None:
            read += 1
            tags = game.headers
            if game.errors or tags.get("Variant", "Standard") != "Standard" or "FEN" in tags or "SetUp" in tags:
                continue
            valid += 1
            elos = [tags.get("WhiteElo", "?"), tags.get("BlackElo", "?")]
            bot = "BOT" in (tags.get("WhiteTitle"), tags.get("BlackTitle"))
            if not (
                tags["Event"].startswith("Rated")
                and all(elo.isdigit() for elo in elos)
                and tags["Result"] in ("1-0", "0-1", "1/2-1/2")
                and tags.get("Termination") != "Abandoned"
                and sum(1 for _ in game.mainline_moves()) >= variables["min_plies"]
                and not (bot and variables["exclude_bots"])
            ):
                continue
            for cap in CAPS:
                if max(map(int, elos)) <= cap:
                    buckets[cap].add(tags["Site"].rsplit("/", 1)[-1])
                    players[cap] |= {tags["White"], tags["Black"]}
    return Expected(read, valid, buckets, {cap: len(names) for cap, names in players.items()})


def definitions_from_env() -> dg.Definitions:
    """transcend's Definitions loaded afresh: they bind their resources from the environment when they load, and
    another test may have imported the module under its own. sys.modules keeps that module for the tests after."""
    spec = importlib.util.find_spec("transcend_pipeline.definitions")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.defs


def failures(result: dg.ExecuteInProcessResult) -> str:
    """Each failed step and the error at the root of its failure (Dagster wraps it), for an assertion message."""
    lines = []
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            while error.cause is not None:
                error = error.cause
            lines.append(f"{event.step_key}: {error.message.strip()}")
    return "\n".join(lines)


@pytest.mark.slow
def test_a_lichess_month_runs_from_the_mirror_to_the_report(
    transcend_home: Path,
    lichess_samples: Path,
    lichess_mirror: tuple[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, served = lichess_mirror
    sample = lichess_samples / SAMPLE_2021_10
    published = publish(served, MONTH, sample.read_bytes())
    for name, value in {
        "TRANSCEND_SOURCE": "lichess",
        "TRANSCEND_LICHESS_URL": url,
        "TRANSCEND_MONTHS": MONTH,
        "TRANSCEND_PROFILE": "smoke",
        DBT_TARGET_VARIABLE: "sample",
    }.items():
        monkeypatch.setenv(name, value)
    # Stockfish's skill levels pick random weaker moves from a clock-seeded generator, so these games do not replay:
    # with smoke's 2 games a pair, skill 1 (the reference) lost all 4 of its ladder games about half the time, and
    # once the tiny model had also lost all of its own, every rating but two was infinite. 8 a pair make that rare.
    monkeypatch.setitem(PROFILES["smoke"]["evaluation"], "games_per_pair", 8)
    variables = load_vars(PROJECT_ROOT, target="sample")
    expected = expected_from_pgn(sample, variables)
    assert expected.read == 999  # SOURCES.md
    defs = definitions_from_env()
    instance = dg.DagsterInstance.get()

    # Ingestion: the month downloaded, verified and parsed; the buckets rebuilt and gated under `sample`.
    ingest = defs.resolve_job_def("ingest_month").execute_in_process(partition_key=f"{MONTH}-01", instance=instance)
    dump = ingest.asset_materializations_for_node("raw_dump")[0].metadata
    assert dump["sha256"].value == hashlib.sha256(published.read_bytes()).hexdigest()
    games = ingest.asset_materializations_for_node("games")[0].metadata
    read, accepted, quarantined = (games[key].value for key in ("games_read", "games_accepted", "games_quarantined"))
    assert read == expected.read == accepted + quarantined
    assert accepted == expected.valid
    gates = {
        (evaluation.asset_key.path[-1], evaluation.check_name): evaluation
        for evaluation in ingest.get_asset_check_evaluations()
    }
    for model in ("bucket_games", "bucket_diversity"):
        gate = gates[(model, f"cap_{CAP}")]
        assert gate.passed, gate.metadata["failed"].value
        assert gate.metadata["target"].value == "sample"
    assert gates[("stg_games", "expectations")].passed
    # The 1000 bucket (29 games, none drawn into the test split) fails a guard the sample target keeps; that blocks
    # its own training only, not the rest of the run nor the other caps' gates.
    assert gates[("bucket_games", "cap_1000")].metadata["failed"].value == "all_splits_present"
    min_games = gates[("bucket_games", f"cap_{CAP}")].metadata["min_games"].value
    # It passes because of `sample`: the same bucket is far below the Lichess target's size gate.
    assert (
        min_games["observed"]
        == len(expected.buckets[CAP])
        < load_vars(PROJECT_ROOT, target="lichess")["min_bucket_games"]
    )
    with open_warehouse(transcend_home / "warehouse.duckdb", read_only=True) as connection:
        assert connection.execute("SELECT count(*) FROM games WHERE month = ?", [MONTH]).fetchone()[0] == accepted
        assert connection.execute("SELECT count(*) FROM games_quarantine").fetchone()[0] == quarantined
        for cap in CAPS:
            ids = connection.execute("SELECT game_id FROM bucket_games WHERE cap = ?", [cap]).fetchall()
            assert {game_id for (game_id,) in ids} == expected.buckets[cap], cap
        diversity = connection.execute(
            "SELECT games, players, max_elo FROM bucket_diversity WHERE cap = ?", [CAP]
        ).fetchone()
        (train_val,) = connection.execute(
            "SELECT count(*) FROM bucket_games WHERE cap = ? AND split IN ('train', 'val')", [CAP]
        ).fetchone()
    assert diversity[:2] == (len(expected.buckets[CAP]), expected.players[CAP])
    assert diversity[2] <= CAP

    # Training one experiment: its gates read, its games tokenised, a checkpoint whose lineage leads to the month.
    # As in `transcend run`, the opponent ladder is built first: the experiment's evaluation plays against it.
    ladder_run = defs.resolve_job_def("build_ladder").execute_in_process(instance=instance, raise_on_error=False)
    train = defs.resolve_job_def("train_experiment").execute_in_process(
        partition_key=EXPERIMENT, instance=instance, raise_on_error=False
    )
    (training_set,) = train.asset_materializations_for_node("training_set")
    assert training_set.metadata["quality_gate"].value == "passed"
    assert training_set.metadata["months"].value == [MONTH]
    assert training_set.metadata["games_train"].value + training_set.metadata["games_val"].value == train_val
    (model,) = train.asset_materializations_for_node("chessformer")
    assert model.metadata["steps"].value > 0
    import torch

    checkpoints = transcend_home / "checkpoints" / EXPERIMENT
    assert (checkpoints / "best.ckpt").is_file()
    lineage = torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=True)["transcend"]
    assert lineage["experiment"] == EXPERIMENT
    # The checkpoint names its data by hash; the training set of that hash names the month it was built from.
    assert lineage["data_hash"] == training_set.metadata["content_hash"].value

    # Evaluation against the Stockfish ladder, then the report over every evaluated experiment.
    assert ladder_run.success, failures(ladder_run)
    assert train.success, failures(train)
    report = defs.resolve_job_def("report").execute_in_process(instance=instance, raise_on_error=False)
    assert report.success, failures(report)
    with open_warehouse(transcend_home / "warehouse.duckdb", read_only=True) as connection:
        verdict = connection.execute(
            "SELECT cap, bar_kind, confirm_temperature, confirm_games, rating, low, high, "
            "diff_bar, diff_bar_low, diff_bar_high, transcends FROM transcendence WHERE experiment = ?",
            [EXPERIMENT],
        ).fetchone()
        phases = dict(
            connection.execute(
                "SELECT phase, list(DISTINCT temperature) FROM evaluation_games "
                "WHERE experiment = ? AND player_kind = 'model' AND opponent_kind = 'stockfish' GROUP BY phase",
                [EXPERIMENT],
            ).fetchall()
        )
        ladder = connection.execute(
            "SELECT count(*), bool_and(player_kind = 'stockfish' AND opponent_kind = 'stockfish'), "
            "list(DISTINCT player) || list(DISTINCT opponent) FROM ladder_games"
        ).fetchone()
        (rated,) = connection.execute("SELECT list(DISTINCT player) FROM ratings").fetchone()
    assert verdict is not None, f"no transcendence row for {EXPERIMENT}"
    cap, bar_kind, temperature, confirm_games, rating, low, high, diff, diff_low, diff_high, transcends = verdict
    assert (cap, bar_kind) == (CAP, "cap")
    assert confirm_games > 0
    assert low <= rating <= high  # an unbounded side (a perfect score) is ±inf and still ordered
    assert diff_low <= diff <= diff_high and isinstance(transcends, bool)
    assert set(phases) == {"sweep", "confirm"}
    assert phases["confirm"] == [temperature] and temperature in phases["sweep"]
    ladder_games, only_stockfish, members = ladder
    assert ladder_games == 3 * 8 and only_stockfish  # skill levels 1, 3 and 5, 8 games a pair
    assert set(members) <= set(rated)  # the ladder is rated in the same joint fit as the models
    assert "paper" in (transcend_home / "reports" / "transcendence.md").read_text()
