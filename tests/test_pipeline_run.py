"""`make run`'s command end to end on the smoke panel: every stage materialises offline, records its runs and says where."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from transcend_pipeline.warehouse import open_warehouse

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_transcend_run_materialises_the_default_graph_on_the_smoke_panel(transcend_home: Path) -> None:
    env = os.environ | {"TRANSCEND_PROFILE": "smoke", "TRANSCEND_SOURCE": "panel"}
    env.pop("TRANSCEND_MONTHS", None)
    completed = subprocess.run(
        [sys.executable, "-m", "transcend_pipeline.cli", "run"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-4000:]
    assert f"Data directory: {transcend_home}" in output
    assert "raw/panel-smoke/lichess_db_standard_rated_2025-01.pgn.zst" in output

    with open_warehouse(transcend_home / "warehouse.duckdb", read_only=True) as connection:
        read = connection.execute("SELECT count(*) FROM games").fetchone()[0]
        quarantined = connection.execute("SELECT count(*) FROM games_quarantine").fetchone()[0]
        players = connection.execute("SELECT count(*), count(rating) FROM panel_players").fetchone()
        caps = connection.execute("SELECT cap FROM bucket_diversity ORDER BY cap").fetchall()
        evaluated = connection.execute(
            "SELECT experiment, count(*), count(DISTINCT temperature), bool_and(pgn LIKE '[Event%') "
            "FROM evaluation_games WHERE player_kind = 'model' GROUP BY experiment ORDER BY experiment"
        ).fetchall()
        verdicts = connection.execute(
            "SELECT experiment, cap, low <= high FROM transcendence ORDER BY cap, experiment"
        ).fetchall()
        ablations = connection.execute(
            "SELECT variant, players, top_player_share FROM ablation_bucket_diversity ORDER BY variant"
        ).fetchall()
        (full_bucket, bucket_players, bucket_top_share) = connection.execute(
            "SELECT games, players, top_player_share FROM bucket_diversity WHERE cap = 1300"
        ).fetchone()
        contrasts = connection.execute(
            "SELECT dial, arm, base, seeds, base_seeds, claims, low <= diff AND diff <= high FROM diversity_contrasts"
        ).fetchall()
        ablation_games = connection.execute(
            "SELECT variant, count(*) FROM ablation_staging GROUP BY variant ORDER BY variant"
        ).fetchall()
        arm_baselines = connection.execute(
            "SELECT variant, player_kind, count(DISTINCT player) FROM arm_baseline_games GROUP BY ALL ORDER BY ALL"
        ).fetchall()
        study = connection.execute(
            "SELECT experiment, count(*), count(theory_diff), count(diff_clone) FROM diversity_study "
            "GROUP BY experiment ORDER BY experiment"
        ).fetchall()
        advantage = connection.execute(
            "SELECT experiment, count(DISTINCT source), bool_and(temperature <> 1 OR mean_gain = 0) "
            "FROM state_advantage GROUP BY experiment ORDER BY experiment"
        ).fetchall()
        kinds = {kind for (kind,) in connection.execute("SELECT DISTINCT kind FROM ratings").fetchall()}
        phases = connection.execute(
            "SELECT experiment, count(DISTINCT phase), count(DISTINCT opponent) FROM evaluation_games "
            "GROUP BY experiment ORDER BY experiment"
        ).fetchall()
        (ladder_size,) = connection.execute("SELECT count(*) FROM ladder").fetchone()
        (references,) = connection.execute("SELECT count(*) FROM ladder WHERE reference").fetchone()
        (book,) = connection.execute("SELECT count(DISTINCT moves) FROM opening_book").fetchone()
        claims = connection.execute(
            "SELECT DISTINCT claims, bar_kind, bool_and(confirm_games > 0), bool_and(p_bar_holm >= p_bar) "
            "FROM transcendence GROUP BY ALL"
        ).fetchall()
        (reference_rating,) = connection.execute(
            "SELECT bool_and(rating = written_rating) FROM ratings WHERE reference"
        ).fetchone()
    assert read > 0 and quarantined == 0  # the panel writes only games the ingestion accepts
    assert players[0] > 0 and players[1] > 0
    assert [cap for (cap,) in caps] == [1000, 1300, 1500]
    experiments = ["cap1000", "cap1300", "cap1300_rho1", "cap1500"]
    arms = [name for name in experiments if "_" in name]  # the diversity arms, with a declared τ: no sweep
    assert [(name, temperatures, pgn) for name, _, temperatures, pgn in evaluated] == [
        (name, 1 if name in arms else 2, True) for name in experiments
    ]
    assert sorted(name for name, _, ordered in verdicts if ordered) == experiments
    # The compact diversity comparison: the cap-1300 bucket's own players, pairings and game count with one shared
    # quirk table, against the bucket (ρ = 0): one claim between arms, in the same Holm family.
    assert ablations == [("cap1300_rho1", bucket_players, pytest.approx(bucket_top_share))]
    assert ablation_games == [(arm, full_bucket) for arm in arms]
    assert arm_baselines == [("cap1300_rho1", "best_player", 1), ("cap1300_rho1", "clone", 1)]  # smoke: top 1
    assert advantage == [(name, 3 if name in arms else 2, True) for name in experiments]
    # In the study's table: each evaluated arm on the common and on its own positions, with the theory beside.
    assert study == [(name, 2, 2, 2) for name in ["cap1300", *arms]]
    report = (transcend_home / "reports" / "transcendence.md").read_text()
    assert "## Where the gain comes from" in report
    diversity = (transcend_home / "reports" / "diversity.md").read_text()
    assert "## Does it need diversity?" in diversity and "**Reading.** In Elo" in diversity
    assert (transcend_home / "reports" / "diversity" / "dose_response.png").stat().st_size > 10_000
    assert {"model", "best_player", "clone", "consensus"} <= kinds
    # Every model met the whole ladder (a sweep, unless declared, and a confirmation); one reference, one fit.
    assert phases == [(name, 1 if name in arms else 2, ladder_size) for name in experiments]
    assert references == 1 and reference_rating and book == 8
    assert claims == [(9, "best_expert", True, True)]  # Holm over two claims per experiment and one between arms
    assert contrasts == [("rho", "cap1300", "cap1300_rho1", 1, 1, 9, True)]
    assert (transcend_home / "reports" / "transcendence.png").stat().st_size > 10_000
    assert "transcends" in output and "reports/transcendence.md" in output

    import torch

    for experiment in ("cap1000", "cap1300", "cap1500"):
        checkpoint = transcend_home / "checkpoints" / experiment / "last.ckpt"
        lineage = torch.load(checkpoint, map_location="cpu", weights_only=True)["transcend"]
        assert lineage["experiment"] == experiment
        assert f"model      {experiment}" in output
    import dagster as dg

    instance = dg.DagsterInstance.get()  # the fixture's DAGSTER_HOME, inside the data directory: the run's history
    key = dg.AssetCheckKey(dg.AssetKey("chessformer"), "quality_bar")
    record = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
    metadata = record.evaluation.metadata
    assert 0.0 <= metadata["model_agreement"].value <= 1.0
    assert metadata["bar_q_regret"].value >= 0.0

    # `transcend study` on a table of both dials' ends: what `run` made is skipped, a second seed and the k arms
    # train, and the study reports the spread over seeds and a claim between arms on each dial.
    table = transcend_home / "study.yaml"
    common = "cap: 1300, model: tiny, steps: {demo: 1500, smoke: 60}, study: diversity"
    arm = common + ", confirm_temperature: 0.001"
    waive = "waive: [distinct_players, top_player_share, player_entropy]"
    table.write_text(
        "experiments:\n"
        f"  - {{name: cap1300, {common}, seeds: [0, 1]}}\n"
        f"  - {{name: cap1300_rho1, {arm}, variant: {{rho: 1.0}}}}\n"
        f"  - {{name: cap1300_equal1, {arm}, variant: {{equal_players: 1, {waive}}}}}\n"
        f"  - {{name: cap1300_equal16, {arm}, variant: {{equal_players: 16, waive: [top_player_share]}}}}\n"
    )
    completed = subprocess.run(
        [sys.executable, "-m", "transcend_pipeline.cli", "study"],
        cwd=REPO_ROOT,
        env=env | {"TRANSCEND_EXPERIMENTS": str(table)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-4000:]
    skipped = (
        "build_ladder",
        "build_ablation [cap1300_rho1]",
        "train_experiment [cap1300]",
        "train_experiment [cap1300_rho1]",
    )
    for stage in skipped:
        assert f"transcend: {stage} is already materialised: skipped" in output
    for stage in (
        "train_experiment [cap1300_seed1]",
        "build_ablation [cap1300_equal1]",
        "train_experiment [cap1300_equal16]",
    ):
        assert f"transcend: {stage}\n" in output
    weights = {}
    for experiment, seed in (("cap1300", 0), ("cap1300_seed1", 1), ("cap1300_equal16", 0)):
        checkpoint = torch.load(
            transcend_home / "checkpoints" / experiment / "last.ckpt", map_location="cpu", weights_only=True
        )
        assert (checkpoint["transcend"]["seed"], checkpoint["transcend"]["experiment"]) == (seed, experiment)
        weights[experiment] = checkpoint["state_dict"]
    assert any(not torch.equal(a, weights["cap1300_seed1"][k]) for k, a in weights["cap1300"].items())
    with open_warehouse(transcend_home / "warehouse.duckdb", read_only=True) as connection:
        seeds = connection.execute(
            "SELECT arm, list(DISTINCT seed ORDER BY seed) FROM diversity_study GROUP BY arm ORDER BY arm"
        ).fetchall()
        ablations = connection.execute(
            "SELECT variant, players, top_player_share FROM ablation_bucket_diversity ORDER BY variant"
        ).fetchall()
        contrasts = connection.execute(
            "SELECT dial, arm, base, seeds, base_seeds, claims FROM diversity_contrasts"
        ).fetchall()
    assert seeds == [("cap1300", [0, 1]), ("cap1300_equal1", [0]), ("cap1300_equal16", [0]), ("cap1300_rho1", [0])]
    # k arms: the cap-1300 bucket's game count by clones of its best player, and by 16 players of that skill.
    assert ablations[:2] == [
        ("cap1300_equal1", 1, pytest.approx(1.0)),
        ("cap1300_equal16", 16, pytest.approx(2 / 16, abs=0.1)),  # in 2 of 16 players per game
    ]
    claims = 2 * 5 + 2  # five models, a claim between arms on each dial
    assert contrasts == [
        ("rho", "cap1300", "cap1300_rho1", 2, 1, claims),
        ("k", "cap1300_equal16", "cap1300_equal1", 1, 1, claims),
    ]
    diversity = (transcend_home / "reports" / "diversity.md").read_text()
    assert "Spread over training seeds" in diversity and "**Between arms**" in diversity
