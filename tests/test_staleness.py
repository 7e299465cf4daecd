"""Staleness through real Dagster runs: a month that changes upstream is flagged downstream until rebuilt.

The statuses come from `CachingStaleStatusResolver` over the project's own asset graph, the
resolver behind the UI's stale badges and "Materialize changed and missing".
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._time import get_current_datetime
from fixtures import SAMPLE_2021_10, publish

from transcend_pipeline.defs.ingestion import games, raw_dump
from transcend_pipeline.defs.partitions import MODELS
from transcend_pipeline.defs.resources import LichessSource, TranscendHome
from transcend_pipeline.defs.warehouse import sql_model_assets
from transcend_pipeline.warehouse import open_warehouse

MONTH = "2021-10"
PARTITION = f"{MONTH}-01"
MONTHLY_MODELS = [asset for asset in sql_model_assets if MODELS[asset.key.path[-1]].partitioned_by_month]
TABLE_MODELS = [asset for asset in sql_model_assets if not MODELS[asset.key.path[-1]].partitioned_by_month]
ONE_WORKER = {"ops": {"games": {"config": {"workers": 1}}}}  # 999 games: spawning a parser process costs more


@dataclass
class Warehouse:
    """One month built end to end on an instance that keeps every run's data versions."""

    instance: dg.DagsterInstance
    home: Path
    served: Path
    resources: dict

    def materialize(self, assets: list, partitioned: bool = True) -> dg.ExecuteInProcessResult:
        result = dg.materialize(
            assets,
            partition_key=PARTITION if partitioned else None,
            resources=self.resources,
            instance=self.instance,
            run_config=ONE_WORKER if games in assets else None,
        )
        assert result.success
        return result

    def resolver(self) -> CachingStaleStatusResolver:
        """A fresh resolver (it caches per request, as the UI's does per page load)."""
        from transcend_pipeline.definitions import defs

        graph = defs.resolve_asset_graph()
        view = AssetGraphView(
            temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
            instance=self.instance,
            asset_graph=graph,
        )
        return CachingStaleStatusResolver(instance=self.instance, asset_graph=graph, loading_context=view)

    def status(self, name: str) -> StaleStatus:
        return self.resolver().get_status(dg.AssetKey(name), self._partition(name))

    def stale_causes(self, name: str) -> list[tuple[str, str | None, str]]:
        """(upstream asset, its partition, CODE or DATA) for each cause the UI would list."""
        causes = self.resolver().get_stale_causes(dg.AssetKey(name), self._partition(name))
        return [
            (cause.dependency_asset_key.path[-1], cause.dependency_partition_key, cause.category.value)
            for cause in causes
        ]

    def data_version(self, name: str) -> str | None:
        return self.resolver().get_current_data_version(dg.AssetKey(name), self._partition(name)).value

    def _partition(self, name: str) -> str | None:
        monthly = {"raw_dump", "games", *(asset.key.path[-1] for asset in MONTHLY_MODELS)}
        return PARTITION if name in monthly else None


def republish_first_half(served: Path, lichess_samples: Path) -> None:
    """A new release of the month on the mirror (its first half), as when Lichess re-publishes a corrected dump."""
    pgn = (lichess_samples / SAMPLE_2021_10).read_bytes()
    (served / "sha256sums.txt").unlink()
    publish(served, MONTH, pgn[: pgn.index(b"[Event ", len(pgn) // 2)])


@pytest.fixture()
def warehouse(
    transcend_home: Path,
    lichess_samples: Path,
    lichess_mirror: tuple[str, Path],
) -> Iterator[Warehouse]:
    base_url, served = lichess_mirror
    publish(served, MONTH, (lichess_samples / SAMPLE_2021_10).read_bytes())
    resources = {"home": TranscendHome(path=str(transcend_home)), "dump_source": LichessSource(base_url=base_url)}
    with dg.instance_for_test() as instance:
        built = Warehouse(instance, transcend_home, served, resources)
        built.materialize([raw_dump, games, *MONTHLY_MODELS])
        built.materialize(TABLE_MODELS, partitioned=False)
        yield built


def bucket_game_ids_missing_from_staging(home: Path) -> int:
    with open_warehouse(home / "warehouse.duckdb", read_only=True) as connection:
        return connection.execute(
            "SELECT count(*) FROM bucket_games WHERE game_id NOT IN (SELECT game_id FROM stg_games)"
        ).fetchone()[0]


@pytest.mark.slow
def test_a_changed_month_is_flagged_stale_downstream_until_rematerialised(
    warehouse: Warehouse, lichess_samples: Path
) -> None:
    chain = ["raw_dump", "games", "stg_games", *(asset.key.path[-1] for asset in TABLE_MODELS)]
    assert {name: warehouse.status(name) for name in chain} == dict.fromkeys(chain, StaleStatus.FRESH)

    # An unchanged dump keeps its data version (its sha256), so nothing downstream is flagged.
    dump_version = warehouse.data_version("raw_dump")
    warehouse.materialize([raw_dump])
    assert warehouse.data_version("raw_dump") == dump_version
    assert warehouse.status("games") == StaleStatus.FRESH

    # A new release of the month: games[month] is stale because of raw_dump[month].
    republish_first_half(warehouse.served, lichess_samples)
    warehouse.materialize([raw_dump])
    assert warehouse.status("games") == StaleStatus.STALE
    assert warehouse.stale_causes("games") == [("raw_dump", PARTITION, "DATA")]

    # Rebuilding games[month] makes it fresh and flags stg_games[month] in turn.
    warehouse.materialize([games])
    assert warehouse.status("games") == StaleStatus.FRESH
    assert warehouse.status("stg_games") == StaleStatus.STALE
    assert warehouse.stale_causes("stg_games") == [("games", PARTITION, "DATA")]

    warehouse.materialize(MONTHLY_MODELS)
    assert warehouse.status("stg_games") == StaleStatus.FRESH
    # The whole-table marts now hold games the month no longer has. Dagster does not flag them: it skips
    # staleness across a time-partitioned -> unpartitioned edge (AllPartitionMapping; dagster-io/dagster#21146).
    assert bucket_game_ids_missing_from_staging(warehouse.home) > 0

    versions = {asset.key.path[-1]: warehouse.data_version(asset.key.path[-1]) for asset in TABLE_MODELS}
    warehouse.materialize(TABLE_MODELS, partitioned=False)
    assert bucket_game_ids_missing_from_staging(warehouse.home) == 0
    for name, version in versions.items():
        assert warehouse.status(name) == StaleStatus.FRESH
        assert warehouse.data_version(name) != version


@pytest.mark.slow
def test_a_rebuilt_month_requests_the_whole_table_models_and_their_gates(
    warehouse: Warehouse, lichess_samples: Path
) -> None:
    from transcend_pipeline.definitions import defs

    first_tick = dg.evaluate_automation_conditions(defs=defs, instance=warehouse.instance)
    assert first_tick.total_requested == 0  # nothing changed since the marts were built
    republish_first_half(warehouse.served, lichess_samples)
    warehouse.materialize([raw_dump, games, *MONTHLY_MODELS])

    tick = dg.evaluate_automation_conditions(defs=defs, instance=warehouse.instance, cursor=first_tick.cursor)
    assert {asset.key.path[-1]: tick.get_num_requested(asset.key) for asset in TABLE_MODELS} == {
        asset.key.path[-1]: 1 for asset in TABLE_MODELS
    }
    tables = {asset.key for asset in TABLE_MODELS}
    gates = [key for key in defs.resolve_asset_graph().asset_check_keys if key.asset_key in tables]
    # get_num_requested counts assets only: a check is requested when its condition holds on this tick.
    requested = {result.key for result in tick.results if result.true_subset.size}
    assert gates and set(gates) <= requested
