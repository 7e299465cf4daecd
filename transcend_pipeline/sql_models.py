"""dbt-style SQL models over DuckDB: discover `.sql` files, render their templates, materialise them.

A model is a plain DuckDB `SELECT` in a `.sql` file under `dbt_like_sql/`; its
name is the file name and the table it writes. Templates use a small, dbt-like
vocabulary so that models read like dbt models without pulling in Jinja:

    {{ config(materialized='incremental_by_month') }}   -- first statement; default 'table'
    {{ ref('stg_games') }}      -- another model (a dependency edge)
    {{ source('games') }}       -- a table written by Python (declared under `sources:` in dbt_project.yml)
    {{ var('caps') }}           -- a project variable, rendered as a SQL literal
    {{ this_month }}            -- the partition being built, for incremental models: '2021-10'

Dependencies come from the refs, so dropping a new `.sql` file into the tree adds
a model (and a Dagster asset) with no Python change. Incremental models replace
one month's rows in one transaction (or, with a lake, one Delta commit); table models are rebuilt atomically.

For example::

    models = discover_models(Path("dbt_like_sql"))
    variables = load_vars(Path("dbt_like_sql"), {"min_plies": 20})
    for name in topological_order(models):
        materialize(connection, models[name], variables, month="2021-10")
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb
import yaml

from transcend_pipeline import lake as lake_tables
from transcend_pipeline.warehouse import replace_partition, replace_table

PROJECT_ROOT = Path(__file__).resolve().parents[1] / "dbt_like_sql"  # the project this package ships
PROJECT_FILE = "dbt_project.yml"
SCHEMA_FILE = "schema.yml"
MATERIALIZATIONS = ("table", "incremental_by_month")
PARTITION_COLUMN = "month"

_TAG = re.compile(r"\{\{\s*(.*?)\s*\}\}", re.DOTALL)
_MONTH = re.compile(r"\d{4}-(0[1-9]|1[0-2])")
_MODEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class SqlModelError(ValueError):
    """A model file or the project configuration is malformed."""


class UnknownRefError(SqlModelError):
    """A model refers to a model or source that does not exist."""


class UnknownVarError(SqlModelError):
    """A model uses a variable that the project does not define."""


class UnknownTargetError(SqlModelError):
    """A run asks for a target that dbt_project.yml does not define."""


class ModelCycleError(SqlModelError):
    """The refs between models form a cycle, so no build order exists."""


@dataclass(frozen=True)
class SqlModel:
    """One `.sql` file: what it reads, how it is materialised, and what it is for."""

    name: str
    path: Path
    folder: str
    sql: str
    refs: tuple[str, ...]
    sources: tuple[str, ...]
    partitioned_by_month: bool
    description: str
    checked_per_cap: bool = False  # schema.yml `grain: cap`: its guards pass or fail per rating bucket


@dataclass(frozen=True)
class _Call:
    """A parsed template tag: `ref('x')` is _Call('ref', ('x',), {})."""

    function: str
    args: tuple
    kwargs: dict


def _parse_tag(expression: str, path: Path) -> _Call:
    if expression == "this_month":
        return _Call("this_month", (), {})
    try:
        node = ast.parse(expression, mode="eval").body
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            raise SyntaxError("not a call")
        args = tuple(ast.literal_eval(arg) for arg in node.args)
        kwargs = {keyword.arg: ast.literal_eval(keyword.value) for keyword in node.keywords}
    except (SyntaxError, ValueError) as error:
        raise SqlModelError(f"{path}: cannot read template tag {{{{ {expression} }}}} ({error})") from None
    call = _Call(node.func.id, args, kwargs)
    expected = {"ref": 1, "source": 1, "var": 1, "config": 0}
    if call.function not in expected:
        raise SqlModelError(f"{path}: unknown template function {call.function!r} (known: {sorted(expected)})")
    if len(call.args) != expected[call.function] or (call.function != "config" and call.kwargs):
        raise SqlModelError(
            f"{path}: {{{{ {expression} }}}} takes exactly {expected[call.function]} positional argument(s)"
        )
    return call


def _leading_comment(sql: str) -> str:
    """The `--` comment lines at the top of a file (after the config tag), joined: the fallback description."""
    lines = []
    for line in sql.splitlines():
        stripped = line.strip()
        if not stripped or _TAG.fullmatch(stripped):
            if lines:
                break
            continue
        if not stripped.startswith("--"):
            break
        lines.append(stripped.removeprefix("--").strip())
    return " ".join(lines)


def _read_schema_entries(root: Path) -> dict[str, dict]:
    """Model name -> its schema.yml entry (description, grain, expectations): dbt keeps docs beside the models."""
    entries = {}
    for schema in sorted(root.rglob(SCHEMA_FILE)):
        for entry in (yaml.safe_load(schema.read_text()) or {}).get("models", []):
            entries[entry["name"]] = entry
    return entries


def _read_project(root: Path) -> dict:
    project = root / PROJECT_FILE
    if not project.is_file():
        raise SqlModelError(f"{project} is missing: it declares the project's vars and sources")
    return yaml.safe_load(project.read_text()) or {}


def _parse_model(path: Path, root: Path, schema: dict) -> SqlModel:
    name = path.stem
    if not _MODEL_NAME.fullmatch(name):
        raise SqlModelError(f"{path}: a model's file name must be a SQL identifier")
    sql = path.read_text()
    calls = [_parse_tag(match.group(1), path) for match in _TAG.finditer(sql)]
    configs = [call.kwargs for call in calls if call.function == "config"]
    materialized = configs[0].get("materialized", "table") if configs else "table"
    if len(configs) > 1 or materialized not in MATERIALIZATIONS:
        raise SqlModelError(f"{path}: one config(materialized=...) at most, one of {MATERIALIZATIONS}")
    partitioned = materialized == "incremental_by_month"
    if partitioned != any(call.function == "this_month" for call in calls):
        raise SqlModelError(f"{path}: an incremental_by_month model must filter on {{{{ this_month }}}}, and only it")
    return SqlModel(
        name=name,
        path=path,
        folder=path.parent.relative_to(root).as_posix(),
        sql=sql,
        refs=tuple(dict.fromkeys(call.args[0] for call in calls if call.function == "ref")),
        sources=tuple(dict.fromkeys(call.args[0] for call in calls if call.function == "source")),
        partitioned_by_month=partitioned,
        description=(schema.get("description") or "").strip() or _leading_comment(sql),
        checked_per_cap=schema.get("grain") == "cap",
    )


def discover_models(root: Path) -> dict[str, SqlModel]:
    """Every `.sql` file under `root` as a model, keyed by name; refs and sources are checked here."""
    root = Path(root)
    declared_sources = set(_read_project(root).get("sources") or {})
    schema_entries = _read_schema_entries(root)
    models: dict[str, SqlModel] = {}
    for path in sorted(root.rglob("*.sql")):
        model = _parse_model(path, root, schema_entries.get(path.stem, {}))
        if model.name in models:
            raise SqlModelError(f"two models are named {model.name!r}: {models[model.name].path} and {path}")
        models[model.name] = model
    for model in models.values():
        for ref in model.refs:
            if ref not in models:
                raise UnknownRefError(f"{model.path}: ref({ref!r}) names no model (known: {sorted(models)})")
        for source in model.sources:
            if source not in declared_sources:
                raise UnknownRefError(
                    f"{model.path}: source({source!r}) is not declared under `sources:` in {root / PROJECT_FILE}"
                )
    return models


def load_vars(root: Path, overrides: Mapping | None = None, *, target: str | None = None) -> dict:
    """The project's `vars:` from dbt_project.yml, then the `targets:` entry for `target`, then `overrides`.

    Targets play the role of dbt's: one per data source (`lichess`, `panel-demo`, ...), because a panel of a
    few dozen synthetic players cannot meet thresholds sized for Lichess's hundreds of thousands, plus `sample`
    for excerpts of real months. An unknown target is an error: silently falling back to the defaults would
    apply gates the run never asked for.
    """
    project = _read_project(Path(root))
    variables = dict(project.get("vars") or {})
    targets = project.get("targets") or {}
    if target is not None and target not in targets:
        raise UnknownTargetError(
            f"target {target!r} is not under `targets:` in {Path(root) / PROJECT_FILE} (known: {sorted(targets)})"
        )
    overrides = {**(targets.get(target) or {}), **(overrides or {})}
    for name in overrides:
        if name not in variables:
            raise UnknownVarError(f"cannot override unknown var {name!r} (known: {sorted(variables)})")
    variables.update(overrides or {})
    return variables


def sql_literal(value: object) -> str:
    """A Python value as a DuckDB literal: lists become list literals, strings are quoted and escaped."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(sql_literal(item) for item in value) + "]"
    raise SqlModelError(f"cannot render {value!r} ({type(value).__name__}) as a SQL literal")


def render(
    model: SqlModel, variables: Mapping, *, month: str | None = None, relations: Mapping[str, str] | None = None
) -> str:
    """The model's SQL with every template tag replaced; incremental models need the `month` they build.

    `relations` points refs and sources at other tables (name -> table), so that the same model can be built
    over other rows: the diversity ablation builds its buckets with the very SQL of every bucket.
    """
    relations = relations or {}
    if model.partitioned_by_month and (month is None or not _MONTH.fullmatch(month)):
        raise SqlModelError(f"{model.name} is built one month at a time: pass month='YYYY-MM', not {month!r}")

    def substitute(match: re.Match) -> str:
        call = _parse_tag(match.group(1), model.path)
        if call.function in ("ref", "source"):
            return relations.get(call.args[0], call.args[0])
        if call.function == "var":
            if call.args[0] not in variables:
                raise UnknownVarError(
                    f"{model.path}: var({call.args[0]!r}) is not defined (known: {sorted(variables)})"
                )
            return sql_literal(variables[call.args[0]])
        if call.function == "this_month":
            return sql_literal(month)
        return ""  # config() only configures

    return _TAG.sub(substitute, model.sql).strip()


def topological_order(models: Mapping[str, SqlModel]) -> list[str]:
    """Model names, each after every model it refs (ties broken by name, so the order is stable)."""
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            raise ModelCycleError("refs form a cycle: " + " -> ".join((*path, name)))
        if name not in models:
            raise UnknownRefError(f"ref({name!r}) names no model")
        state[name] = "visiting"
        for ref in sorted(models[name].refs):
            visit(ref, (*path, name))
        state[name] = "done"
        order.append(name)

    for name in sorted(models):
        visit(name, ())
    return order


def materialize(
    connection: duckdb.DuckDBPyConnection,
    model: SqlModel,
    variables: Mapping,
    *,
    month: str | None = None,
    lake: Path | str | None = None,
) -> int:
    """Build the model's table and return its row count (for an incremental model, the month's row count).

    The partition contract is enforced here rather than trusted to each model:
    an incremental model's output is filtered to `month` before the swap, so a
    model that forgot its filter cannot touch other months. With `lake`, an
    incremental model's month is replaced in its Delta table there, in one
    commit, and the connection then reads the new version; whole-table models
    stay in the connection's database.
    """
    sql = render(model, variables, month=month)
    if model.partitioned_by_month:
        select = f"SELECT * FROM ({sql}) WHERE {PARTITION_COLUMN} = ?"
        if lake is None:
            return replace_partition(connection, model.name, PARTITION_COLUMN, month, select, [month])
        lake_tables.replace_month(lake, model.name, month, connection.execute(select, [month]).to_arrow_reader())
        lake_tables.attach(connection, lake)
        (count,) = connection.execute(
            f"SELECT count(*) FROM {model.name} WHERE {PARTITION_COLUMN} = ?", [month]
        ).fetchone()
        return int(count)
    return replace_table(connection, model.name, sql)
