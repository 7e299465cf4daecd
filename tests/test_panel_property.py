"""The oracle property on a small panel, with fixed seeds: the consensus of diverse players transcends the best."""

from __future__ import annotations

import dataclasses

import pytest

from transcend_pipeline.panel.players import PanelConfig
from transcend_pipeline.panel.property import Contender, head_to_head

SMALL_PANEL = dataclasses.replace(PanelConfig(), n_players=12)


@pytest.mark.slow
def test_consensus_beats_the_best_player_and_its_clone_and_correlated_errors_shrink_the_gain(
    stockfish_path: str,
) -> None:
    everyone = Contender.consensus(range(12))

    def elo(config: PanelConfig, first: Contender, second: Contender) -> tuple[float, float, float]:
        return head_to_head(config, first, second, 80, stockfish_path=stockfish_path, workers=2).elo

    gain, gain_low, _ = elo(SMALL_PANEL, everyone, Contender.player(0))
    assert gain_low > 0
    assert elo(SMALL_PANEL, everyone, Contender.clone(0))[1] > 0
    assert elo(SMALL_PANEL, Contender.consensus(range(6, 12)), Contender.player(6))[1] > 0
    correlated_gain, _, _ = elo(dataclasses.replace(SMALL_PANEL, rho=0.8), everyone, Contender.player(0))
    assert correlated_gain < gain - 50
