"""End to end through Dagster: real runs, a real DuckDB file, dumps served over HTTP on 127.0.0.1."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from fixtures import SAMPLE_2013_01, SAMPLE_2021_10, publish

from transcend_pipeline.defs.ingestion import games, raw_dump
from transcend_pipeline.defs.partitions import monthly_partitions
from transcend_pipeline.defs.resources import LichessSource, TranscendHome
from transcend_pipeline.lichess import dump_filename
from transcend_pipeline.warehouse import open_warehouse

REPO_ROOT = Path(__file__).resolve().parents[1]


def game_counts(home: Path, month: str) -> tuple[int, int]:
    with open_warehouse(home / "warehouse.duckdb", read_only=True) as connection:
        accepted = connection.execute("SELECT count(*) FROM games WHERE month = ?", [month]).fetchone()[0]
        quarantined = connection.execute("SELECT count(*) FROM games_quarantine WHERE month = ?", [month]).fetchone()[0]
    return accepted, quarantined


def materialize(assets: list, home: Path, base_url: str, month: str) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        assets,
        partition_key=f"{month}-01",
        resources={"home": TranscendHome(path=str(home)), "dump_source": LichessSource(base_url=base_url)},
        instance=dg.DagsterInstance.get(),
        raise_on_error=False,
    )


def test_a_lichess_month_downloads_parses_and_reruns_without_duplicates(
    transcend_home: Path, lichess_samples: Path, lichess_mirror: tuple[str, Path]
) -> None:
    base_url, served = lichess_mirror
    publish(served, "2021-10", (lichess_samples / SAMPLE_2021_10).read_bytes())

    first = materialize([raw_dump, games], transcend_home, base_url, "2021-10")
    assert first.success
    dump_meta = first.asset_materializations_for_node("raw_dump")[0].metadata
    assert dump_meta["created"].value is True
    assert dump_meta["sha256"].value == hashlib.sha256((served / dump_filename("2021-10")).read_bytes()).hexdigest()
    games_meta = first.asset_materializations_for_node("games")[0].metadata
    assert games_meta["games_read"].value == 999
    accepted, quarantined = game_counts(transcend_home, "2021-10")
    assert accepted + quarantined == 999
    assert games_meta["games_accepted"].value == accepted
    assert games_meta["dagster/row_count"].value == accepted

    second = materialize([raw_dump, games], transcend_home, base_url, "2021-10")
    assert second.success
    assert second.asset_materializations_for_node("raw_dump")[0].metadata["created"].value is False
    assert game_counts(transcend_home, "2021-10") == (accepted, quarantined)


def test_an_unpublished_month_fails_with_a_clear_message(
    transcend_home: Path, lichess_mirror: tuple[str, Path]
) -> None:
    base_url, served = lichess_mirror
    (served / "sha256sums.txt").write_text("")
    result = dg.materialize(
        [raw_dump],
        partition_key=monthly_partitions.get_last_partition_key(),
        resources={"home": TranscendHome(path=str(transcend_home)), "dump_source": LichessSource(base_url=base_url)},
        raise_on_error=False,
    )
    assert not result.success
    failure = next(event for event in result.all_events if event.is_step_failure)
    assert "not published" in str(failure.step_failure_data.error)


def test_a_corrupt_dump_fails_the_partition_and_keeps_the_previous_rows(
    transcend_home: Path, lichess_samples: Path, lichess_mirror: tuple[str, Path]
) -> None:
    base_url, served = lichess_mirror
    publish(served, "2021-10", (lichess_samples / SAMPLE_2021_10).read_bytes())
    assert materialize([raw_dump, games], transcend_home, base_url, "2021-10").success
    before = game_counts(transcend_home, "2021-10")

    local = transcend_home / "raw" / "lichess" / dump_filename("2021-10")
    local.write_bytes(local.read_bytes()[: local.stat().st_size // 2])
    result = materialize([games], transcend_home, base_url, "2021-10")
    assert not result.success
    failure = next(event for event in result.all_events if event.is_step_failure)
    assert dump_filename("2021-10") in str(failure.step_failure_data.error)
    assert game_counts(transcend_home, "2021-10") == before


@pytest.mark.slow
def test_two_months_materialise_concurrently_from_separate_processes(
    transcend_home: Path, lichess_samples: Path, lichess_mirror: tuple[str, Path]
) -> None:
    """Two `dagster asset materialize` processes write the same warehouse at once: no lock error, no lost rows."""
    base_url, served = lichess_mirror
    publish(served, "2021-10", (lichess_samples / SAMPLE_2021_10).read_bytes())
    publish(served, "2013-01", (lichess_samples / SAMPLE_2013_01).read_bytes())
    env = os.environ | {"TRANSCEND_SOURCE": "lichess", "TRANSCEND_LICHESS_URL": base_url}
    dg.DagsterInstance.get()  # create the run storage once, as the first run on a new DAGSTER_HOME would
    command = [str(Path(sys.executable).with_name("dagster")), "asset", "materialize"]
    command += ["-m", "transcend_pipeline.definitions", "--select", "raw_dump,games"]
    processes = [
        subprocess.Popen(
            [*command, "--partition", f"{month}-01"],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for month in ("2021-10", "2013-01")
    ]
    outputs = [process.communicate(timeout=300)[0] for process in processes]
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output[-3000:]
    assert sum(game_counts(transcend_home, "2021-10")) == 999
    assert sum(game_counts(transcend_home, "2013-01")) == 10
