"""The panel's oracle property, measured: consensus vs the best player, clone(best) vs best, the weaker half's
consensus vs its best member, and the same with correlated errors (ρ raised). Elo with 95% intervals.

    .venv/bin/python research/panel_property.py            # 300 games per match, 24 players
    .venv/bin/python research/panel_property.py --quick    # 40 games per match
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from transcend_pipeline.panel.players import PanelConfig
from transcend_pipeline.panel.property import Contender, head_to_head
from transcend_pipeline.settings import find_stockfish


def overrides(assignments: list[str]) -> dict[str, object]:
    """`knob=value` strings as PanelConfig fields, each value parsed as the default's type."""
    defaults = PanelConfig()
    parsed: dict[str, object] = {}
    for assignment in assignments:
        knob, value = assignment.split("=", 1)
        default = getattr(defaults, knob)
        parsed[knob] = (
            tuple(type(default[0])(v) for v in value.split(",")) if isinstance(default, tuple) else type(default)(value)
        )
    return parsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="40 games per match")
    parser.add_argument("--games", type=int, default=300)
    parser.add_argument("--players", type=int, default=24)
    parser.add_argument("--rho", type=float, default=0.5, help="the correlated-errors variant")
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KNOB=VALUE", help="PanelConfig overrides, e.g. multipv=12"
    )
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    games = 40 if args.quick else args.games
    stockfish = find_stockfish()
    base = dataclasses.replace(PanelConfig(), n_players=args.players, **overrides(args.set))
    everyone = range(args.players)
    weaker_half = range(args.players // 2, args.players)
    best, best_weak = 0, args.players // 2
    for config in (base, dataclasses.replace(base, rho=args.rho)):
        print(f"-- {args.players} players, rho={config.rho}, {' '.join(args.set) or 'defaults'}", flush=True)
        for first, second in (
            (Contender.consensus(everyone), Contender.player(best)),
            (Contender.clone(best), Contender.player(best)),
            (Contender.consensus(everyone), Contender.clone(best)),
            (Contender.consensus(weaker_half), Contender.player(best_weak)),
        ):
            start = time.perf_counter()
            result = head_to_head(config, first, second, games, stockfish_path=stockfish, workers=args.workers)
            print(f"{result}   ({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
