"""The Dagster entry point: one `Definitions` merged from the domain folders under `defs/`.

Only Dagster and the thin asset modules are imported here; torch, Lightning,
Great Expectations and the parsers load inside asset bodies, so that
`dagster definitions validate` and the UI start fast.
"""

from __future__ import annotations

import dagster as dg

from transcend_pipeline.defs import ablation, analysis, evaluation, ingestion, jobs, training, warehouse
from transcend_pipeline.defs.resources import resources_from_env


def build_definitions(months: list[str] | None = None) -> dg.Definitions:
    """The definitions with the resources and executor of this environment; `months` overrides the run's months."""
    return dg.Definitions.merge(
        dg.Definitions(
            assets=[
                *dg.load_assets_from_modules([ingestion]),
                *warehouse.sql_model_assets,
                *dg.load_assets_from_modules([training]),
                ablation.ablation_games,
                evaluation.opponent_ladder,
                evaluation.arm_baselines,
                evaluation.evaluation_games,
                evaluation.ratings,
                evaluation.transcendence_report,
                analysis.state_advantage,
                analysis.diversity_report,
            ],
            asset_checks=warehouse.quality_gates,
            resources=resources_from_env(months),
            executor=jobs.executor_from_env(),
        ),
        jobs.defs,
    )


defs = build_definitions()
