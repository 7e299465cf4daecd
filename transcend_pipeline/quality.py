"""Quality gates: expectations declared in schema.yml beside the models, validated by Great Expectations.

GX 1.24's SQL path through duckdb-engine is broken (design §8), and pulling a
month of games into pandas would cost minutes and gigabytes. So the work is
split where each tool is strong: DuckDB reduces a model to a small summary in
one scan (one row per cap, one column per expectation), and a real GX suite
validates that summary as a pandas batch. The check then costs one aggregate
query plus milliseconds of GX, whatever the table's size.

An expectation in schema.yml is either a per-cap SQL aggregate with bounds, or
a column whose distinct values must lie in a set:

    models:
      - name: bucket_games
        expectations:
          - name: rating_cap
            description: No game in a bucket has an Elo above the bucket's cap.
            metric: max(max_elo)
            max: cap                                  # the bucket's own cap
          - name: min_games
            metric: count(*)
            min: {default: {var: min_bucket_games}, per_cap: {1500: 20000}}
          - name: valid_results
            column: result
            in_set: ['1-0', '0-1', '1/2-1/2']

Models with a `cap` column are summarised per cap (every configured cap gets a
row, an empty bucket included, so it fails rather than vanishes); others as a
whole table.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import yaml

from transcend_pipeline.sql_models import SCHEMA_FILE, sql_literal

GRAIN_COLUMN = "cap"
_THRESHOLD_KEYS = ("min", "max")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # names become column aliases of the summary query


class ExpectationConfigError(ValueError):
    """An expectation in a schema.yml is malformed."""


@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation for one cap (None for whole-table models), with what was seen and what was required."""

    name: str
    cap: int | None
    success: bool
    observed: object
    expected: str


@dataclass(frozen=True)
class SuiteResult:
    model: str
    success: bool
    outcomes: list[ExpectationOutcome]
    seconds: float


def _check_threshold(model: str, name: str, value: object) -> None:
    if isinstance(value, Mapping) and set(value) == {"var"}:
        if not isinstance(value["var"], str):
            raise ExpectationConfigError(f"{model}.{name}: {{var: name}} needs a variable name")
    elif isinstance(value, Mapping):
        if "default" not in value or set(value) - {"default", "per_cap"}:
            raise ExpectationConfigError(f"{model}.{name}: a per-cap threshold is {{default: x, per_cap: {{cap: y}}}}")
        for threshold in (value["default"], *(value.get("per_cap") or {}).values()):
            _check_threshold(model, name, threshold)
    elif not (value == GRAIN_COLUMN or (isinstance(value, int | float) and not isinstance(value, bool))):
        raise ExpectationConfigError(
            f"{model}.{name}: a threshold is a number, 'cap', {{var: name}} or a per-cap map, not {value!r}"
        )


def _check_expectation(model: str, expectation: object) -> dict:
    if not isinstance(expectation, Mapping) or not _IDENTIFIER.fullmatch(str(expectation.get("name", ""))):
        raise ExpectationConfigError(
            f"{model}: every expectation needs a `name` (a SQL identifier), got {expectation!r}"
        )
    name = expectation["name"]
    if "metric" in expectation:
        allowed = {"name", "description", "metric", *_THRESHOLD_KEYS}
        if not any(key in expectation for key in _THRESHOLD_KEYS):
            raise ExpectationConfigError(f"{model}.{name}: a metric needs `min`, `max` or both")
        for key in _THRESHOLD_KEYS:
            if key in expectation:
                _check_threshold(model, name, expectation[key])
    elif "in_set" in expectation:
        allowed = {"name", "description", "column", "in_set"}
        if not isinstance(expectation.get("column"), str) or not isinstance(expectation["in_set"], list):
            raise ExpectationConfigError(f"{model}.{name}: `in_set` needs a `column` and a list of values")
    else:
        raise ExpectationConfigError(f"{model}.{name}: declare either `metric` (with min/max) or `column` + `in_set`")
    if unknown := set(expectation) - allowed:
        raise ExpectationConfigError(f"{model}.{name}: unknown keys {sorted(unknown)}")
    return dict(expectation)


def load_expectations(root: Path) -> dict[str, list[dict]]:
    """Model name -> its declared expectations, from every schema.yml under `root` (validated, so typos fail early)."""
    declared: dict[str, list[dict]] = {}
    for schema in sorted(Path(root).rglob(SCHEMA_FILE)):
        for entry in (yaml.safe_load(schema.read_text()) or {}).get("models", []):
            expectations = entry.get("expectations") or []
            names = [expectation.get("name") for expectation in expectations if isinstance(expectation, Mapping)]
            if len(set(names)) != len(names):
                raise ExpectationConfigError(f"{schema}: {entry['name']} declares an expectation name twice")
            declared[entry["name"]] = [_check_expectation(entry["name"], expectation) for expectation in expectations]
    return declared


def _threshold(value: object, cap: int | None, variables: Mapping) -> float | None:
    """A declared threshold resolved for one cap: per-cap maps, project vars and 'cap' become numbers."""
    if isinstance(value, Mapping) and "var" in value:
        if value["var"] not in variables:
            raise ExpectationConfigError(f"threshold var {value['var']!r} is not defined (known: {sorted(variables)})")
        return variables[value["var"]]
    if isinstance(value, Mapping):
        return _threshold((value.get("per_cap") or {}).get(cap, value["default"]), cap, variables)
    if value == GRAIN_COLUMN:
        if cap is None:
            raise ExpectationConfigError("threshold 'cap' used on a model without a cap column")
        return cap
    return value


def _describe_bounds(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"between {low} and {high}"
    return f">= {low}" if low is not None else f"<= {high}"


def _plain(value: object) -> object:
    """numpy scalars and NaN as plain Python values, so outcomes serialise into Dagster metadata."""
    value = value.item() if isinstance(value, np.generic) else value
    return None if isinstance(value, float) and math.isnan(value) else value


def _rows(connection: duckdb.DuckDBPyConnection, sql: str) -> list[dict]:
    cursor = connection.execute(sql)
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _summarise(
    connection: duckdb.DuckDBPyConnection, model: str, expectations: list[dict], caps: list[int] | None
) -> dict[int | None, dict]:
    """One aggregate query over `model`: {cap: {expectation name: metric value or distinct values}}."""
    aggregates = ", ".join(
        f'({e["metric"]}) AS "{e["name"]}"' if "metric" in e else f'list(DISTINCT "{e["column"]}") AS "{e["name"]}"'
        for e in expectations
    )
    if caps is None:
        return {None: _rows(connection, f"SELECT {aggregates} FROM {model}")[0]}
    rows = _rows(
        connection,
        f"SELECT {GRAIN_COLUMN}, {aggregates} FROM {model} WHERE {GRAIN_COLUMN} IN (SELECT unnest({sql_literal(caps)})) "
        f"GROUP BY {GRAIN_COLUMN}",
    )
    summaries = {row.pop(GRAIN_COLUMN): row for row in rows}
    if missing := [cap for cap in caps if cap not in summaries]:
        # An empty bucket still gets a row: what each aggregate says about no rows at all.
        empty = _rows(connection, f"SELECT {aggregates} FROM {model} WHERE FALSE")[0]
        summaries.update({cap: dict(empty) for cap in missing})
    return {cap: summaries[cap] for cap in caps}


def _has_cap_column(connection: duckdb.DuckDBPyConnection, model: str) -> bool:
    columns = connection.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ? AND table_schema = 'main'", [model]
    ).fetchall()
    if not columns:
        raise duckdb.CatalogException(f"table {model!r} does not exist: materialise the model before checking it")
    return (GRAIN_COLUMN,) in columns


def _describe(expectation: dict, cap: int | None, variables: Mapping) -> str:
    """What an expectation requires, in words for the UI: '<= 1300', 'between 0.5 and 1', 'no values outside [...]'."""
    if "in_set" in expectation:
        return f"no values outside {expectation['in_set']}"
    return _describe_bounds(*_bounds(expectation, cap, variables))


def _bounds(expectation: dict, cap: int | None, variables: Mapping) -> tuple[float | None, float | None]:
    low, high = (
        _threshold(expectation[key], cap, variables) if key in expectation else None for key in _THRESHOLD_KEYS
    )
    return low, high


def _suites(gx, pd, name: str, expectations: list[dict], summary: dict, cap: int | None, variables: Mapping) -> list:
    """(frame, GX suite) pairs for one cap: the metrics share a one-row summary, each value set gets its values."""
    metrics = [e for e in expectations if "metric" in e]
    pairs = []
    if metrics:
        suite = gx.ExpectationSuite(name=name)
        for e in metrics:
            low, high = _bounds(e, cap, variables)
            suite.add_expectation(
                gx.expectations.ExpectColumnMaxToBeBetween(column=e["name"], min_value=low, max_value=high)
            )
        pairs.append((pd.DataFrame([{e["name"]: summary[e["name"]] for e in metrics}]), suite))
    for e in expectations:
        if "in_set" in e:
            suite = gx.ExpectationSuite(name=f"{name}_{e['name']}")
            suite.add_expectation(gx.expectations.ExpectColumnValuesToBeInSet(column=e["name"], value_set=e["in_set"]))
            values = sorted(summary[e["name"]] or [], key=str)
            pairs.append((pd.DataFrame({e["name"]: pd.Series(values, dtype=object)}), suite))
    return pairs


def run_suite(
    connection: duckdb.DuckDBPyConnection,
    model: str,
    expectations: list[dict],
    variables: Mapping,
    *,
    cap: int | None = None,
) -> SuiteResult:
    """Validate `model` against its expectations with a GX suite per cap; `cap` restricts the run to one bucket.

    One cap per call lets each bucket's check block only that bucket's training.
    """
    import great_expectations as gx
    import pandas as pd
    from great_expectations.data_context.types.base import ProgressBarsConfig

    started = time.perf_counter()
    if _has_cap_column(connection, model):
        caps = [cap] if cap is not None else [int(c) for c in variables["caps"]]
    elif cap is not None:
        raise ValueError(f"{model} has no {GRAIN_COLUMN!r} column, so it cannot be checked for cap {cap}")
    else:
        caps = None
    summaries = _summarise(connection, model, expectations, caps)

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_definition = (
        context.data_sources.add_pandas(f"{model}_summaries")
        .add_dataframe_asset(model)
        .add_batch_definition_whole_dataframe("summary")
    )
    outcomes: list[ExpectationOutcome] = []
    for bucket, summary in summaries.items():
        expected = {e["name"]: _describe(e, bucket, variables) for e in expectations}
        for frame, suite in _suites(gx, pd, f"{model}_{bucket}", expectations, summary, bucket, variables):
            report = batch_definition.get_batch(batch_parameters={"dataframe": frame}).validate(
                suite, result_format="COMPLETE"
            )
            for result in report.results:
                name = result.expectation_config.kwargs["column"]
                if "observed_value" in result.result:
                    observed = _plain(result.result["observed_value"])
                else:  # a value set: what lies outside it
                    observed = sorted((_plain(v) for v in result.result.get("unexpected_list", [])), key=str)
                outcomes.append(ExpectationOutcome(name, bucket, bool(result.success), observed, expected[name]))

    order = {e["name"]: index for index, e in enumerate(expectations)}
    outcomes.sort(key=lambda outcome: (outcome.cap or 0, order[outcome.name]))
    return SuiteResult(
        model=model,
        success=all(outcome.success for outcome in outcomes),
        outcomes=outcomes,
        seconds=time.perf_counter() - started,
    )
