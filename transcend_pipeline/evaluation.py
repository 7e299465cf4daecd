"""From game records to the answer: pooled ratings per (player, temperature), the verdict, the figure, the report.

Pure functions over `play.GameRecord`s (or their row dicts): the Dagster assets `ratings` and
`transcendence_report` only call these and store what they return.

A player transcends when the 95% interval of its best temperature's rating lies wholly above the cap — and, on
panel data, above the best player in the bucket (the cap is a rating bound, the best player the real bar).
Wins, draws and losses are reported apart, with the repetition draws counted, because a deterministic model can
hide behind draws: in our prototype an argmax model that never won scored 0.2 from threefold repetitions alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from transcend_pipeline.play import GameRecord
from transcend_pipeline.ratings import pooled_rating

#: The paper's temperatures.
TEMPERATURES = (0.001, 0.01, 0.1, 0.3, 0.5, 0.75, 1.0, 1.5)


def ratings_table(
    records: Iterable[GameRecord | Mapping],
    *,
    experiment: str | None = None,
    method: Literal["bradley_terry", "glicko2"] = "bradley_terry",
    prior: tuple[float, float] | None = None,
) -> list[dict]:
    """One row per (player, temperature): a pooled rating over its games against fixed-rating opponents.

    Games against unrated opponents are left out (they carry no information on the scale). Rows carry the
    rating with its 95% interval, W/D/L, the score, draws by repetition and by the ply cap, the games decided by
    adjudication, tie-break moves and the mean illegal probability mass per game (None when not reported).
    """
    cells: dict[tuple[str, str, float | None], list[Mapping]] = {}
    for record in records:
        row = record.as_row() if isinstance(record, GameRecord) else record
        if row["opponent_rating"] is not None:
            cells.setdefault((row["player"], row["player_kind"], row["temperature"]), []).append(row)
    table = []
    for (name, kind, temperature), games in cells.items():
        estimate = pooled_rating(
            [game["opponent_rating"] for game in games], [game["score"] for game in games], method=method, prior=prior
        )
        masses = [game["illegal_mass"] for game in games if game["illegal_mass"] is not None]
        table.append(
            {
                "experiment": experiment,
                "player": name,
                "kind": kind,
                "temperature": temperature,
                **asdict(estimate),
                "score": sum(game["score"] for game in games) / len(games),
                "repetition_draws": sum(game["termination"] == "threefold" for game in games),
                "ply_cap_draws": sum(game["termination"] == "ply_cap" for game in games),
                "adjudicated": sum(game["termination"] == "adjudicated" for game in games),
                "tiebreak_moves": sum(game["tiebreak_moves"] for game in games),
                "illegal_mass_per_game": sum(masses) / len(masses) if masses else None,
                "opponents": len({game["opponent"] for game in games}),
                "method": method,
            }
        )
    return sorted(table, key=lambda row: (row["kind"], row["player"], _temperature_order(row["temperature"])))


def _temperature_order(temperature: float | None) -> float:
    return -math.inf if temperature is None else temperature


@dataclass(frozen=True)
class Verdict:
    """Does the player transcend its cap? Judged at its best temperature (the highest rating)."""

    experiment: str | None
    player: str
    cap: float
    best_player_rating: float | None
    best_temperature: float | None
    rating: float
    low: float
    high: float
    games: int
    transcends: bool

    @property
    def bar(self) -> float:
        """What the interval's lower end must clear: the cap, or the bucket's best player if above it."""
        return max(self.cap, self.best_player_rating if self.best_player_rating is not None else -math.inf)

    def as_row(self) -> dict:
        return {**asdict(self), "bar": self.bar, "margin": self.low - self.bar}


def verdict(
    rows: Sequence[Mapping], *, cap: float, best_player_rating: float | None = None, kind: str = "model"
) -> Verdict:
    """The verdict for the rows of one rated player (`kind`, one row per temperature) of a ratings table.

    Picking the best of several temperatures favours the luckiest estimate a little; the interval still has to
    clear the bar on its own, which keeps false positives rare at the game counts used here.
    """
    candidates = [row for row in rows if row["kind"] == kind]
    if not candidates:
        raise ValueError(f"no ratings rows of kind {kind!r}")
    if len({row["player"] for row in candidates}) > 1:
        raise ValueError(f"rows of several {kind!r} players; pass one player's rows")
    best = max(candidates, key=lambda row: row["rating"])
    bar = max(cap, best_player_rating if best_player_rating is not None else -math.inf)
    return Verdict(
        experiment=best.get("experiment"),
        player=best["player"],
        cap=cap,
        best_player_rating=best_player_rating,
        best_temperature=best["temperature"],
        rating=best["rating"],
        low=best["low"],
        high=best["high"],
        games=best["games"],
        transcends=best["low"] > bar,
    )


def plot_transcendence(
    rows: Sequence[Mapping], verdicts: Sequence[Verdict], path: Path, *, kind: str = "model"
) -> Path:
    """The paper's figure: rating against temperature (log x) per experiment, its 95% interval as a band, the
    cap dashed and the bucket's best player dotted in the same colour; written as a PNG at `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, result in enumerate(verdicts):
        colour = colours[i % len(colours)]
        curve = sorted(
            (row for row in rows if row["kind"] == kind and row.get("experiment") == result.experiment),
            key=lambda row: row["temperature"],
        )
        if not curve:
            continue
        temperatures = [row["temperature"] for row in curve]
        label = f"{result.experiment or result.player} (cap {result.cap:g})"
        axes.plot(temperatures, [row["rating"] for row in curve], "o-", color=colour, label=label)
        axes.fill_between(
            temperatures, [row["low"] for row in curve], [row["high"] for row in curve], color=colour, alpha=0.18
        )
        axes.axhline(result.cap, color=colour, linestyle="--", linewidth=1)
        if result.best_player_rating is not None:
            axes.axhline(result.best_player_rating, color=colour, linestyle=":", linewidth=1)
    axes.set_xscale("log")
    axes.set_xlabel("temperature τ")
    axes.set_ylabel("rating (95% interval)")
    axes.set_title("Rating against temperature (dashed: cap, dotted: best player in the bucket)")
    axes.grid(True, alpha=0.3)
    if axes.lines:
        axes.legend(loc="best", fontsize="small")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    plt.close(figure)
    return path


def markdown_report(
    verdicts: Sequence[Verdict],
    rows: Sequence[Mapping],
    figure: Path | None = None,
    sections: Sequence[str] = (),
) -> str:
    """The verdict table, the figure, the further `sections` (ablation, state analysis), then every rating row."""
    lines = [
        "# Transcendence report",
        "",
        "| experiment | cap | best player | best τ | rating [95%] | games | transcends |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in verdicts:
        best_player = "—" if v.best_player_rating is None else f"{v.best_player_rating:.0f}"
        lines.append(
            f"| {v.experiment or v.player} | {v.cap:g} | {best_player} | {_fmt_temperature(v.best_temperature)} | "
            f"{v.rating:.0f} [{v.low:.0f}, {v.high:.0f}] | {v.games} | {'**yes**' if v.transcends else 'no'} |"
        )
    if figure is not None:
        lines += ["", f"![rating against temperature]({figure.name})"]
    for section in sections:
        lines += ["", section.rstrip()]
    lines += [
        "",
        "## Ratings",
        "",
        "| experiment | player | kind | τ | rating [95%] | W / D / L | repetition draws | ply-cap draws | illegal mass |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        mass = row["illegal_mass_per_game"]
        lines.append(
            f"| {row.get('experiment') or ''} | {row['player']} | {row['kind']} | "
            f"{_fmt_temperature(row['temperature'])} | {row['rating']:.0f} [{row['low']:.0f}, {row['high']:.0f}] | "
            f"{row['wins']} / {row['draws']} / {row['losses']} | {row['repetition_draws']} | "
            f"{row['ply_cap_draws']} | {'—' if mass is None else f'{mass:.3g}'} |"
        )
    return "\n".join(lines) + "\n"


DIVERSITY_COLUMNS = ("games", "players", "top_player_share", "player_entropy", "opening_entropy")


def _cell(value: object) -> str:
    return "—" if value is None else f"{value:.3f}" if isinstance(value, float) else f"{value}"


def diversity_table(buckets: Mapping[str, Mapping]) -> str:
    """`bucket_diversity` rows side by side (label -> row), as Markdown."""
    columns = ("top_player", *DIVERSITY_COLUMNS)
    lines = ["| bucket | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {label} | " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for label, row in buckets.items()]
    return "\n".join(lines) + "\n"


def diversity_section(
    verdicts: Sequence[Verdict],
    rows: Sequence[Mapping],
    diversity: Mapping[str, Mapping],
    buckets: Mapping[str, str],
    figure: Path | None = None,
) -> str:
    """Does transcendence need diversity? Each experiment's bucket diversity beside its best rating and verdict.

    `rows` are the ratings rows (for the best player's argmax, rated in each experiment's games), `diversity` maps
    an experiment to its bucket's `bucket_diversity` row, `buckets` to a label of its bucket ("full bucket",
    "clones of one player", ...). Reported as measured, whichever way it comes out.
    """
    lines = [
        "## Does it need diversity? (the ablation)",
        "",
        "The same cap and number of games, played by fewer players. Diversity metrics come from the same SQL "
        "models as every bucket; the ablations pass every quality gate except the diversity ones they waive. "
        "Low temperature also strips a single player's own sampling noise, so beside the verdict's bar (the cap, "
        "or the best player's rating) the table shows that player's argmax — what a model of one expert's clones "
        "can at most approach.",
        "",
        "| experiment | bucket | games | players | top player share | player entropy | opening entropy "
        "| best τ | rating [95%] | bar | best player's argmax [95%] | transcends |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    clones = {row.get("experiment"): row for row in rows if row["kind"] == "clone"}

    for v in verdicts:
        row = diversity.get(v.experiment or "", {})
        metrics = " | ".join(_cell(row.get(column)) for column in DIVERSITY_COLUMNS)
        clone = clones.get(v.experiment)
        argmax = "—" if clone is None else f"{clone['rating']:.0f} [{clone['low']:.0f}, {clone['high']:.0f}]"
        lines.append(
            f"| {v.experiment} | {buckets.get(v.experiment or '', '')} | {metrics} | {_fmt_temperature(v.best_temperature)} "
            f"| {v.rating:.0f} [{v.low:.0f}, {v.high:.0f}] | {v.bar:.0f} | {argmax} | {'**yes**' if v.transcends else 'no'} |"
        )
    if figure is not None:
        lines += ["", f"![rating against temperature, diversity ablation]({figure.name})"]
    return "\n".join(lines) + "\n"


def _fmt_temperature(temperature: float | None) -> str:
    return "—" if temperature is None else f"{temperature:g}"
