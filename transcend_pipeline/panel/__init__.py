"""The embedded default source: a synthetic panel of diverse, imperfect players writing Lichess-format dumps.

    config = PanelConfig.for_profile("smoke")
    result = write_month_dump(config, "2024-01", Path("data/raw"), stockfish_path="/usr/games/stockfish")
    rows = panel_players(config, "2024-01", result.path)  # the ground truth, for the `panel_players` table

The players, clones and consensus are `transcend_pipeline.policy.Policy`s, as the trained model is;
`head_to_head` measures the oracle property.
"""

from transcend_pipeline.panel.dump import DumpResult, panel_players, write_month_dump
from transcend_pipeline.panel.games import PlayedGame, pair_by_rating, play_game
from transcend_pipeline.panel.players import (
    Panel,
    PanelConfig,
    PanelPolicy,
    QSource,
    clone,
    consensus,
    player,
    player_name,
)
from transcend_pipeline.panel.property import Contender, MatchResult, head_to_head
from transcend_pipeline.panel.stockfish import StockfishQ
from transcend_pipeline.panel.tactical import TacticalQ

__all__ = [
    "Contender",
    "DumpResult",
    "MatchResult",
    "Panel",
    "PanelConfig",
    "PanelPolicy",
    "PlayedGame",
    "QSource",
    "StockfishQ",
    "TacticalQ",
    "clone",
    "consensus",
    "head_to_head",
    "pair_by_rating",
    "panel_players",
    "play_game",
    "player",
    "player_name",
    "write_month_dump",
]
