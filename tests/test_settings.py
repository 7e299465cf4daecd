"""Configuration from the environment: defaults, validation, and the months a run ingests."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from transcend_pipeline.defs.resources import resources_from_env
from transcend_pipeline.settings import (
    DAGSTER_PG_URL_VARIABLE,
    Settings,
    StockfishNotFoundError,
    default_months,
    ensure_dagster_home,
    find_stockfish,
    last_complete_month,
)


def test_the_last_complete_month_is_the_one_before_today() -> None:
    assert last_complete_month(date(2026, 11, 28)) == "2026-10"
    assert last_complete_month(date(2026, 1, 1)) == "2025-12"


def test_default_months_follow_the_source_unless_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TRANSCEND_MONTHS", raising=False)
    assert default_months(Settings(home=tmp_path, source="panel")) == ["2025-01"]
    assert default_months(Settings(home=tmp_path, source="lichess")) == [last_complete_month()]
    monkeypatch.setenv("TRANSCEND_MONTHS", "2024-01, 2024-02,")
    assert default_months(Settings(home=tmp_path, source="lichess")) == ["2024-01", "2024-02"]


def test_the_run_months_are_a_field_of_the_source_read_when_the_definitions_load(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TRANSCEND_HOME", str(tmp_path))
    monkeypatch.setenv("TRANSCEND_MONTHS", "2024-03")
    source = resources_from_env()["dump_source"]
    monkeypatch.setenv("TRANSCEND_MONTHS", "2024-04")  # a step reads the field, not the environment
    assert source.months == ["2024-03"]
    assert resources_from_env(["2023-12"])["dump_source"].months == ["2023-12"]  # what `transcend run --month` does


def test_every_profile_is_one_row_of_one_table() -> None:
    """`for_profile` of the panel, evaluation and state analysis read the same table; unknown profiles are refused."""
    from transcend_pipeline.defs.resources import EvaluationSettings, StateAdvantageSettings
    from transcend_pipeline.panel import PanelConfig
    from transcend_pipeline.settings import PROFILES

    assert set(PROFILES) == {"demo", "smoke"}
    assert PanelConfig.for_profile("demo") == PanelConfig()
    assert PanelConfig.for_profile("smoke").n_players == PROFILES["smoke"]["panel"]["n_players"] == 16
    assert EvaluationSettings.for_profile("smoke", engines=3).sweep_games == 8
    assert EvaluationSettings.for_profile("smoke", engines=3).engines == 3
    assert StateAdvantageSettings.for_profile("smoke").depth == 1
    assert StateAdvantageSettings.for_profile("demo").depth == StateAdvantageSettings().depth == 8
    for for_profile in (PanelConfig.for_profile, EvaluationSettings.for_profile, StateAdvantageSettings.for_profile):
        with pytest.raises(ValueError, match="unknown profile 'huge'"):
            for_profile("huge")


def test_settings_validate_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRANSCEND_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("TRANSCEND_PROFILE", "Smoke")
    settings = Settings.from_env()
    assert (settings.home, settings.profile, settings.source) == (tmp_path / "h", "smoke", "panel")
    monkeypatch.setenv("TRANSCEND_PROFILE", "huge")
    with pytest.raises(ValueError, match="TRANSCEND_PROFILE must be one of"):
        Settings.from_env()


def test_workers_come_from_the_environment_and_must_be_a_positive_integer(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TRANSCEND_HOME", str(tmp_path))
    monkeypatch.delenv("TRANSCEND_WORKERS", raising=False)
    assert Settings.from_env().workers == 2
    monkeypatch.setenv("TRANSCEND_WORKERS", " 1 ")
    assert Settings.from_env().workers == 1
    monkeypatch.setenv("TRANSCEND_SOURCE", "panel")
    assert resources_from_env()["dump_source"].workers == 1
    for bad in ("0", "-2", "1.5", "two"):
        monkeypatch.setenv("TRANSCEND_WORKERS", bad)
        with pytest.raises(ValueError, match="TRANSCEND_WORKERS must be a positive integer"):
            Settings.from_env()


def test_stockfish_path_is_configurable_and_a_missing_binary_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, stockfish_path: str, tmp_path: Path
) -> None:
    monkeypatch.setenv("STOCKFISH_PATH", stockfish_path)
    assert find_stockfish() == stockfish_path
    monkeypatch.setenv("STOCKFISH_PATH", str(tmp_path / "nowhere"))
    with pytest.raises(StockfishNotFoundError, match="nowhere"):
        find_stockfish()
    monkeypatch.delenv("STOCKFISH_PATH")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("transcend_pipeline.settings.DEBIAN_STOCKFISH", str(tmp_path / "absent"))
    with pytest.raises(StockfishNotFoundError, match="apt-get install -y stockfish"):
        find_stockfish()


def test_dagster_home_keeps_an_edited_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DAGSTER_PG_URL_VARIABLE, raising=False)
    config = ensure_dagster_home(tmp_path) / "dagster.yaml"
    assert "enabled: false" in config.read_text()
    config.write_text("telemetry:\n  enabled: false\n# edited\n")
    ensure_dagster_home(tmp_path)
    assert config.read_text().endswith("# edited\n")


def test_the_instance_storage_follows_the_postgres_variable_and_never_holds_its_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run history goes where the environment says, whichever storage an earlier run's config named; the URL
    (with its password) is read from the environment when the instance loads, never written."""
    import yaml

    monkeypatch.delenv(DAGSTER_PG_URL_VARIABLE, raising=False)
    config = ensure_dagster_home(tmp_path) / "dagster.yaml"
    sqlite = yaml.safe_load(config.read_text())
    assert "storage" not in sqlite  # Dagster's default: SQLite under $DAGSTER_HOME, in the data directory
    monkeypatch.setenv(DAGSTER_PG_URL_VARIABLE, "postgresql+psycopg2://dagster:s3cret@db.internal:5432/dagster")
    ensure_dagster_home(tmp_path)
    postgres = yaml.safe_load(config.read_text())
    assert postgres["storage"] == {"postgres": {"postgres_url": {"env": DAGSTER_PG_URL_VARIABLE}}}
    assert "s3cret" not in config.read_text()
    assert {key: postgres[key] for key in sqlite} == sqlite  # telemetry off and the `warehouse` pool, as before
    monkeypatch.delenv(DAGSTER_PG_URL_VARIABLE)
    ensure_dagster_home(tmp_path)
    assert yaml.safe_load(config.read_text()) == sqlite


def test_a_set_postgres_variable_is_never_silently_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DAGSTER_PG_URL_VARIABLE, raising=False)
    config = ensure_dagster_home(tmp_path) / "dagster.yaml"
    config.write_text("telemetry:\n  enabled: false\n# edited\n")
    monkeypatch.setenv(DAGSTER_PG_URL_VARIABLE, "postgresql+psycopg2://dagster:s3cret@db.internal:5432/dagster")
    with pytest.raises(ValueError, match="does not read it"):
        ensure_dagster_home(tmp_path)
    assert config.read_text().endswith("# edited\n")
    # SQLAlchemy 2.1 reads a bare postgresql:// URL as psycopg 3, which dagster-postgres does not install.
    monkeypatch.setenv(DAGSTER_PG_URL_VARIABLE, "postgresql://dagster:s3cret@db.internal:5432/dagster")
    with pytest.raises(ValueError, match=r"must start with postgresql\+psycopg2://"):
        ensure_dagster_home(tmp_path / "fresh")
