"""Who every rated player meets: the opponent ladder, its calibration round robin, the baselines and the book.

A verdict is a difference between two players rated in the same fit, so every rated player — each model at each
temperature, the bucket's best player, its clone, the oracle consensus — plays the *same* ladder, in the *same*
openings and colours (a paired design), and the ladder plays a round robin among itself, so that its members are
rated by the same games as everyone else and no member is an exact anchor.

On panel data the ladder is panel players from `below_cap` under the lowest cap up to the panel's strongest (each
bucket's top players included, so the best expert is rated in the same fit), plus full-strength Stockfish limited
by nodes (deterministic, unlike its skill levels). On Lichess data it is Stockfish's skill levels, node-limited,
carrying the paper's anchors.

For example::

    members = panel_ladder(panel_rows, caps=[1000, 1300, 1500], plan=LadderPlan())
    with LadderEngines.start(stockfish, size=2, config=config) as engines:
        players = ladder_players(members, engines)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import numpy as np

from transcend_pipeline.opponents import (
    STOCKFISH_ANCHORS,
    EnginePool,
    PanelOpponentPolicy,
    PooledQ,
    SkillEngine,
    StockfishPolicy,
)
from transcend_pipeline.panel.players import Panel, PanelConfig, clone, consensus, player
from transcend_pipeline.play import Player

#: Stockfish's strongest skill level: the only one whose moves do not depend on a clock-seeded random pick.
FULL_STRENGTH = 20


@dataclass(frozen=True)
class LadderPlan:
    """How the ladder is built and how many games calibrate it."""

    below_cap: float = 300.0  # the ladder starts this far (written Elo) below the lowest cap
    panel_members: int = 10  # panel players spread evenly in rating up to the panel's strongest
    bucket_top: int = 2  # each bucket's strongest players (written rating <= cap) join the ladder
    stockfish_nodes: tuple[int, ...] = (100, 1000)  # panel data: full-strength Stockfish at these node limits
    stockfish_levels: tuple[int, ...] = (1, 3, 5)  # Lichess data: skill levels with the paper's anchors
    level_nodes: int = 20_000  # node limit of the skill levels (the paper's 0.1 s per move, made machine-free)
    games_per_pair: int = 4  # round robin among the ladder (both colours of each opening)


@dataclass(frozen=True)
class Member:
    """One rung: a panel player (`player_index`) or a Stockfish (`skill_level`, `nodes`).

    `written_rating` is the rating the member carries outside this evaluation — the Elo the dump writes for a
    panel player, the paper's anchor for a skill level — shown beside its fitted rating, never used as an anchor
    except for the one `reference` member that fixes the scale."""

    name: str
    kind: str  # 'panel' or 'stockfish'
    written_rating: float | None
    player_index: int | None = None
    skill_level: int | None = None
    nodes: int | None = None
    reference: bool = False
    top_of: tuple[int, ...] = field(default=())  # the caps whose bucket this member heads (bucket_top)

    def as_row(self) -> dict:
        return {**self.__dict__, "top_of": list(self.top_of)}

    @classmethod
    def from_row(cls, row: Mapping) -> Member:
        return cls(**{**row, "top_of": tuple(row["top_of"] or ())})


def panel_ladder(rows: Sequence[Mapping], caps: Sequence[float], plan: LadderPlan) -> list[Member]:
    """The panel's ladder from `panel_players` rows (one month): see the module docstring.

    The reference is the panel member whose written rating is nearest 1500, where the dump centres its scale."""
    rated = sorted((row for row in rows if row["rating"] is not None), key=lambda row: row["rating"])
    if not rated:
        raise ValueError("no rated panel players to build a ladder from")
    low = min(caps) - plan.below_cap
    eligible = [row for row in rated if row["rating"] >= low] or rated[-1:]
    ratings = np.array([row["rating"] for row in eligible], dtype=float)
    chosen: dict[str, Mapping] = {}
    for target in np.linspace(ratings[0], ratings[-1], min(plan.panel_members, len(eligible))):
        free = [i for i, row in enumerate(eligible) if row["player"] not in chosen]
        nearest = min(free, key=lambda i: abs(ratings[i] - target))
        chosen[eligible[nearest]["player"]] = eligible[nearest]
    heads: dict[str, list[int]] = {}
    for cap in caps:
        bucket = [row for row in rated if row["rating"] <= cap]
        for row in bucket[-plan.bucket_top :]:
            chosen[row["player"]] = row
            heads.setdefault(row["player"], []).append(int(cap))
    members = sorted(chosen.values(), key=lambda row: row["rating"])
    reference = min(members, key=lambda row: abs(row["rating"] - 1500.0))["player"]
    ladder = [
        Member(
            row["player"],
            "panel",
            float(row["rating"]),
            player_index=int(row["player_index"]),
            reference=row["player"] == reference,
            top_of=tuple(heads.get(row["player"], ())),
        )
        for row in members
    ]
    return ladder + [
        Member(f"stockfish-n{nodes}", "stockfish", None, skill_level=FULL_STRENGTH, nodes=nodes)
        for nodes in plan.stockfish_nodes
    ]


def stockfish_ladder(plan: LadderPlan) -> list[Member]:
    """The Lichess ladder: skill levels with the paper's anchors (its Glicko-2 ratings at 0.1 s per move), the
    lowest one the reference. Skill levels below 20 pick a random weaker move: these games do not replay."""
    levels = sorted(plan.stockfish_levels)
    return [
        Member(
            f"stockfish-L{level}",
            "stockfish",
            STOCKFISH_ANCHORS.get(level),
            skill_level=level,
            nodes=plan.level_nodes,
            reference=level == levels[0],
        )
        for level in levels
    ]


class LadderEngines:
    """The Stockfish processes evaluation needs: Q for panel policies, resignation and adjudication (every
    position scored after `ucinewgame`, so no answer depends on what an engine searched before), and engines that
    play Stockfish's own moves."""

    def __init__(self, q: PooledQ | None, skill_pool: EnginePool, config: PanelConfig | None) -> None:
        self.q = q
        self.skill_pool = skill_pool
        self.config = config

    @classmethod
    @contextmanager
    def start(cls, stockfish: str, *, size: int, config: PanelConfig | None) -> Iterator[LadderEngines]:
        with ExitStack() as stack:
            q = None
            if config is not None:
                q_pool = stack.enter_context(EnginePool.start(PooledQ.engine_factory(config, stockfish), size=size))
                q = PooledQ(q_pool, independent=True)
            skill_pool = stack.enter_context(EnginePool.start(lambda: SkillEngine(stockfish), size=size))
            yield cls(q, skill_pool, config)


def ladder_players(members: Sequence[Member], engines: LadderEngines) -> list[Player]:
    """Each member as a `Player` (kind 'panel' or 'stockfish', its written rating shown in the PGNs)."""
    panel = Panel(engines.config) if engines.config is not None else None
    players = []
    for member in members:
        if member.kind == "panel":
            if panel is None or engines.q is None:
                raise ValueError(f"{member.name} is a panel player, but no panel config was given")
            policy = PanelOpponentPolicy(player(panel, engines.q, member.player_index), engines.q)
        else:
            policy = StockfishPolicy(engines.skill_pool, member.skill_level, nodes=member.nodes)
        players.append(Player(member.name, policy, member.kind, member.written_rating))
    return players


def panel_baselines(
    rows: Sequence[Mapping], cap: int, engines: LadderEngines, members: Sequence[int] | None = None
) -> list[Player]:
    """The bucket's best player (its top written rating <= cap, playing as in the dump), its clone (argmax: its
    noise gone, its quirks kept) and the oracle consensus of the bucket's players (argmax of their mean policy).

    The best player keeps its panel name, so its games and its ladder games rate one player."""
    bucket = [row for row in rows if row["rating"] is not None and row["rating"] <= cap]
    if not bucket:
        raise ValueError(f"no rated panel player at or below the cap {cap}")
    panel, q = Panel(engines.config), engines.q
    best = max(bucket, key=lambda row: row["rating"])
    index = int(best["player_index"])
    voters = sorted(members if members is not None else (int(row["player_index"]) for row in bucket))
    return [
        Player(best["player"], PanelOpponentPolicy(player(panel, q, index), q), "best_player", best["rating"]),
        Player(clone_name(best["player"]), PanelOpponentPolicy(clone(panel, q, index), q), "clone"),
        Player(consensus_name(cap), PanelOpponentPolicy(consensus(panel, q, voters), q), "consensus"),
    ]


@dataclass(frozen=True)
class Bars:
    """Whom an experiment's model is measured against. Panel data: the `experts` heading its training data (the
    strongest of them in the fit is the bar), the `clone` of its best expert, and the oracle `consensus` where one
    was played; Lichess data: the `cap` itself."""

    cap: int
    experts: tuple[str, ...] = ()
    clone: str | None = None
    consensus: str | None = None


def bucket_heads(ladder: Sequence[Member], cap: int) -> list[Member]:
    """The ladder members heading the cap's bucket, highest written rating first."""
    heads = sorted((m for m in ladder if cap in m.top_of), key=lambda m: -(m.written_rating or 0.0))
    if not heads:
        raise ValueError(f"no ladder member heads the {cap} bucket: its best expert is not in the fit")
    return heads


def panel_bars(ladder: Sequence[Member], cap: int, arm: Panel | None = None, *, equal_skill: bool = False) -> Bars:
    """The bars of a model trained on the cap's bucket, or on a diversity arm of it.

    An arm of correlated quirks (`arm`: its panel) has the same players as the bucket but other policies: its
    experts are the heads' counterparts in that panel (see `arm_expert_players`). An equal-skill arm's best expert is the
    bucket's best player itself (the arm's first player), so its bar is that player and its clone."""
    heads = bucket_heads(ladder, cap)[:1] if equal_skill else bucket_heads(ladder, cap)
    names = [m.name if arm is None else arm.names[m.player_index] for m in heads]
    consensus = consensus_name(cap) if arm is None and not equal_skill else None
    return Bars(cap, tuple(names), clone_name(names[0]), consensus)


def arm_expert_players(arm: Panel, heads: Sequence[Member], engines: LadderEngines) -> list[Player]:
    """An arm's own experts — the bucket heads' counterparts in the arm's panel, playing as in its games — and the
    best one's clone, to be rated against the ladder like the bucket's baselines."""
    q = engines.q
    names = arm.names
    players = [
        Player(
            names[m.player_index],
            PanelOpponentPolicy(player(arm, q, m.player_index), q),
            "best_player",
            m.written_rating,
        )
        for m in heads
    ]
    top = heads[0].player_index
    return [*players, Player(clone_name(names[top]), PanelOpponentPolicy(clone(arm, q, top), q), "clone")]


def clone_name(player_name: str) -> str:
    return f"clone({player_name})"


def consensus_name(cap: int) -> str:
    return f"consensus(<={cap})"
