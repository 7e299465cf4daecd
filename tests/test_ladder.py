"""The ladder every rated player meets: who is on it, the reference, the baselines, and the oracle property in play."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from transcend_pipeline.evaluation import fit_games
from transcend_pipeline.ladder import (
    FULL_STRENGTH,
    LadderEngines,
    LadderPlan,
    Member,
    arm_expert_players,
    clone_name,
    consensus_name,
    ladder_players,
    panel_bars,
    panel_baselines,
    panel_ladder,
    stockfish_ladder,
)
from transcend_pipeline.opponents import RandomPolicy
from transcend_pipeline.panel.dump import panel_players
from transcend_pipeline.panel.players import Panel, PanelConfig
from transcend_pipeline.play import Player, Rules, pairings_against, play_matches, round_robin

CONFIG = dataclasses.replace(PanelConfig.for_profile("smoke"), n_players=12)


def rows_rated(step: float = 100.0) -> list[dict]:
    """`panel_players` rows with hand-set ratings: the best player (index 0) at 2300, then `step` lower each."""
    rows = panel_players(CONFIG, "2024-01")
    for row in rows:
        row["rating"] = 2300.0 - step * row["player_index"]
    return rows


@pytest.fixture(scope="module")
def engines(stockfish_path: str) -> Iterator[LadderEngines]:
    with LadderEngines.start(stockfish_path, size=2, config=CONFIG) as started:
        yield started


def test_the_panel_ladder_spans_from_below_the_lowest_cap_to_the_strongest_and_holds_each_buckets_top():
    rows = rows_rated()  # 2300, 2200, ..., 1200
    rows[11]["rating"] = None  # absent this month
    plan = LadderPlan(below_cap=300.0, panel_members=4, bucket_top=2, stockfish_nodes=(100,))
    members = panel_ladder(rows, caps=[1600, 1800], plan=plan)
    panel = [m for m in members if m.kind == "panel"]
    ratings = [m.written_rating for m in panel]
    assert ratings == sorted(ratings) and min(ratings) >= 1300.0 and max(ratings) == 2300.0
    assert {m.written_rating: m.top_of for m in panel if m.top_of} == {
        1500.0: (1600,),
        1600.0: (1600,),
        1700.0: (1800,),
        1800.0: (1800,),
    }
    (reference,) = [m for m in members if m.reference]
    assert reference.written_rating == 1500.0  # nearest the dump's centre
    assert [(m.name, m.skill_level, m.nodes) for m in members if m.kind == "stockfish"] == [
        ("stockfish-n100", FULL_STRENGTH, 100)
    ]
    assert all(Member.from_row(m.as_row()) == m for m in members)


def test_the_lichess_ladder_is_the_papers_skill_levels_with_the_lowest_as_reference():
    members = stockfish_ladder(LadderPlan(level_nodes=5000))
    assert [(m.name, m.written_rating, m.skill_level, m.nodes, m.reference) for m in members] == [
        ("stockfish-L1", 1554.0, 1, 5000, True),
        ("stockfish-L3", 1867.0, 3, 5000, False),
        ("stockfish-L5", 2148.0, 5, 5000, False),
    ]


def test_baselines_are_the_buckets_best_player_its_clone_and_the_consensus(engines):
    rows = rows_rated()
    best, clone, consensus = panel_baselines(rows, 1950, engines)
    assert (best.name, best.kind, best.rating) == (rows[4]["player"], "best_player", 1900.0)
    assert clone.name == clone_name(best.name) and clone.rating is None and clone.policy.policy.members == (4,)
    assert consensus.name == consensus_name(1950) and consensus.policy.policy.members == tuple(range(4, 12))
    with pytest.raises(ValueError, match="no rated panel player at or below the cap 1000"):
        panel_baselines(rows, 1000, engines)


def test_each_arm_has_its_own_bars_and_a_correlated_arm_its_own_experts(engines):
    rows = rows_rated()
    members = panel_ladder(rows, caps=[1800], plan=LadderPlan(panel_members=4, bucket_top=2, stockfish_nodes=()))
    heads = [rows[5]["player"], rows[6]["player"]]  # 1800 and 1700
    bucket = panel_bars(members, 1800)
    assert (bucket.experts, bucket.clone, bucket.consensus) == (tuple(heads), clone_name(heads[0]), "consensus(<=1800)")
    equal = panel_bars(members, 1800, equal_skill=True)  # the equal players' best is the bucket's best itself
    assert (equal.experts, equal.clone, equal.consensus) == ((heads[0],), clone_name(heads[0]), None)
    arm = Panel(dataclasses.replace(CONFIG, rho=1.0))
    correlated = panel_bars(members, 1800, arm)
    assert correlated.experts == (arm.names[5], arm.names[6]) and correlated.clone == clone_name(arm.names[5])
    assert correlated.consensus is None and not set(correlated.experts) & set(heads)
    players = arm_expert_players(arm, [m for m in members if 1800 in m.top_of][::-1], engines)
    assert [(p.name, p.kind, p.rating) for p in players] == [
        (arm.names[5], "best_player", 1800.0),
        (arm.names[6], "best_player", 1700.0),
        (clone_name(arm.names[5]), "clone", None),
    ]
    assert players[0].policy.policy.panel is not None and players[2].policy.policy.argmax


@pytest.mark.slow
def test_in_one_fit_the_consensus_rates_above_its_best_member_and_random_play_far_below(engines):
    """The oracle property through the whole path: ladder, round robin, baselines, one joint fit."""
    rows = rows_rated(step=60.0)
    members = panel_ladder(rows, caps=[2000], plan=LadderPlan(panel_members=4, bucket_top=1, stockfish_nodes=()))
    ladder = ladder_players(members, engines)
    best, _, consensus = panel_baselines(rows, 2000, engines)
    randomly = Player("random", RandomPolicy(), "random")
    book_size = 32
    phases = round_robin(ladder, 4, book_size=book_size)
    for player in (consensus, randomly):
        phases += pairings_against(player, ladder, 40, book_size=book_size)
    rules = Rules.of_panel(CONFIG)
    records = play_matches(phases, rules=rules, rng_seed=0, evaluator=engines.q)
    games = [{**r.as_row(), "phase": "x"} for r in records]
    fit = fit_games(games, members, scale=1.0)
    assert fit.difference(consensus.name, best.name).low > 0
    weakest = min(fit.rating(m.name).rating for m in members)
    assert fit.rating("random").rating < weakest - 300 and fit.rating("random").high < weakest
