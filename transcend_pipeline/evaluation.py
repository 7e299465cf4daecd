"""From games to the answer: a model's sweep and confirmation, one joint rating fit, the verdict, figure and report.

Pure functions over `play.GameRecord`s (or their row dicts), and at the end of this file the procedures the Dagster
assets `evaluation_games` and `transcendence_report` run over the warehouse (`play_experiment`, `write_report`),
each returning what the asset shows. The rules a referee asks for, in the order they apply:

- **Paired games.** Every rated player (each model at each temperature, the bucket's best player, its clone, the
  oracle consensus) plays the same ladder (`transcend_pipeline.ladder`) from the same book, in the same colours.
- **The temperature is chosen before it is tested.** Either the experiment declares `confirm_temperature`, or the
  sweep picks the temperature with the best score against the ladder and fresh games (another seed, the same
  openings) confirm it. Only confirmatory games enter the verdict.
- **One scale, one fit.** Every game of a run — the ladder's round robin, the baselines, every model at every
  temperature — enters one Bradley–Terry fit (`ratings.fit_joint`); one ladder member fixes the scale and no other
  player is an anchor. On panel data the scale is the dump's written Elo (the same centring and stretch, by the same
  function), so the cap means one number everywhere.
- **Claims are differences with intervals.** Panel data: model − best expert (the bucket's strongest player, as
  rated in the same fit) decides *transcends*; model − clone(best) is the stronger line the theory speaks of. Lichess
  data: model − cap. Profile-likelihood intervals; Holm's correction over the family of claims.

Wins, draws and losses are reported per opponent, because a deterministic model can hide behind draws: in our
prototype an argmax model that never won scored 0.2 from threefold repetitions alone.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from transcend_pipeline.experiments import Experiment
from transcend_pipeline.ladder import Bars, LadderPlan, Member
from transcend_pipeline.play import Evaluator, GameRecord, ModelPolicy, Opening, Player, Rules, pairings_against
from transcend_pipeline.ratings import JointFit, fit_joint, holm, holm_levels

if TYPE_CHECKING:
    from transcend_pipeline.panel import PanelConfig

SWEEP, CONFIRM, LADDER, BASELINE = "sweep", "confirm", "ladder", "baseline"
#: One-sided level of every claim (a two-sided 95% interval clear of 0 when there is one claim).
ALPHA = 0.025
#: A model rated this many Elo (of odds) above the ladder's strongest member is extrapolated, not measured.
EXTRAPOLATION_ELO = 200.0


@dataclass(frozen=True)
class EvaluationPlan:
    """How many games each claim rests on (see the README's power figures)."""

    sweep_temperatures: tuple[float, ...] = (0.001, 0.01, 0.1, 0.3, 1.0)
    sweep_games: int = 100  # per temperature
    confirm_games: int = 400
    baseline_games: int = 400  # per baseline (best player, clone, consensus) and cap
    seed: int = 0


@dataclass(frozen=True)
class LadderSettings:
    """How the ladder is built and played (`EvaluationSettings` says it per profile): its plan, the book, the games
    per baseline, the engines and the seed."""

    plan: LadderPlan
    book_openings: int
    book_plies: int
    baseline_games: int
    engines: int
    seed: int


@dataclass(frozen=True)
class ModelEvaluation:
    """One model's games: the sweep, the temperature taken forward (and how), and the confirmatory games."""

    sweep: list[GameRecord]
    temperature: float
    choice: str  # 'declared' or 'sweep'
    confirm: list[GameRecord]

    def rows(self, experiment: Experiment) -> list[dict]:
        """One `evaluation_games` row per game, sweep first."""
        return [
            {
                "experiment": experiment.name,
                "phase": phase,
                "cap": experiment.cap,
                "temperature_choice": choice,
                **record.as_row(),
            }
            for phase, choice, records in ((SWEEP, None, self.sweep), (CONFIRM, self.choice, self.confirm))
            for record in records
        ]

    def mean_scores(self) -> dict[str, float]:
        """The mean score of each cell ('sweep τ=0.1', 'confirm τ=0.001')."""
        scores: dict[str, list[float]] = {}
        for phase, records in ((SWEEP, self.sweep), (CONFIRM, self.confirm)):
            for record in records:
                row = record.as_row()
                scores.setdefault(f"{phase} τ={row['temperature']:g}", []).append(row["score"])
        return {cell: round(sum(values) / len(values), 3) for cell, values in scores.items()}


def model_player(experiment: str, model, temperature: float, phase: str) -> Player:
    """The model at τ as a rated player; sweep and confirmation are different players of the fit (the verdict must
    not reuse the games that chose its temperature)."""
    suffix = " (confirm)" if phase == CONFIRM else ""
    return Player(
        f"{experiment} τ={temperature:g}{suffix}", ModelPolicy(model, temperature), "model", None, temperature
    )


def evaluate_model(
    experiment: str,
    model,
    ladder: Sequence[Player],
    book: Sequence[Opening],
    plan: EvaluationPlan,
    *,
    rules: Rules,
    evaluator: Evaluator | None,
    declared_temperature: float | None = None,
    play: Callable[..., list[GameRecord]] | None = None,
) -> ModelEvaluation:
    """Sweep the temperatures against the ladder, take one forward, confirm it with fresh games (seed + 1). A
    declared temperature needs no sweep: only its confirmatory games are played."""
    from transcend_pipeline.play import play_matches

    play = play or play_matches
    if declared_temperature is not None:
        plan = dataclasses.replace(plan, sweep_temperatures=())
    pairings = [
        pairing
        for temperature in plan.sweep_temperatures
        for pairing in pairings_against(
            model_player(experiment, model, temperature, SWEEP), ladder, plan.sweep_games, book_size=len(book)
        )
    ]
    sweep = play(pairings, rules=rules, rng_seed=plan.seed, evaluator=evaluator, book=book) if pairings else []
    if declared_temperature is not None:
        temperature, choice = declared_temperature, "declared"
    else:
        temperature, choice = best_scoring_temperature(sweep), "sweep"
    confirming = model_player(experiment, model, temperature, CONFIRM)
    confirm = play(
        pairings_against(confirming, ladder, plan.confirm_games, book_size=len(book)),
        rules=rules,
        rng_seed=plan.seed + 1,
        evaluator=evaluator,
        book=book,
    )
    return ModelEvaluation(sweep, temperature, choice, confirm)


def best_scoring_temperature(records: Sequence[GameRecord | Mapping]) -> float:
    """The temperature with the highest mean score. Every temperature met the same opponents in the same openings
    and colours, so the mean score orders them as their ratings would; ties go to the lower temperature."""
    totals: dict[float, list[float]] = {}
    for record in records:
        row = _row(record)
        totals.setdefault(row["temperature"], []).append(row["score"])
    if not totals:
        raise ValueError("no sweep games to choose a temperature from")
    return max(sorted(totals), key=lambda t: sum(totals[t]) / len(totals[t]))


def _row(record: GameRecord | Mapping) -> Mapping:
    return record.as_row() if isinstance(record, GameRecord) else record


# --- one fit --------------------------------------------------------------------------------------------------------


def fit_games(games: Sequence[Mapping], ladder: Sequence[Member], *, scale: float) -> JointFit:
    """Every game in one Bradley–Terry fit, on the scale the reference ladder member's written rating fixes.

    Should that member win or lose every game (Stockfish's skill 1 can lose all its ladder games to the stronger
    levels while a weak model loses all of its own), the finite member whose written rating is nearest its own
    fixes the scale at its written rating instead: the fit's `reference` names it, and the report says so."""
    (reference,) = [member for member in ladder if member.reference]
    fallbacks = sorted(
        (member for member in ladder if member is not reference and member.written_rating is not None),
        key=lambda member: abs(member.written_rating - reference.written_rating),
    )
    white = [game["white"] for game in games]
    black = [game["black"] for game in games]
    score_for_white = [{"1-0": 1.0, "0-1": 0.0}.get(game["result"], 0.5) for game in games]
    return fit_joint(
        white,
        black,
        score_for_white,
        reference=reference.name,
        reference_rating=reference.written_rating,
        scale=scale,
        fallback_references=[(member.name, member.written_rating) for member in fallbacks],
    )


def model_free_fit(games: Sequence[Mapping], ladder: Sequence[Member], *, scale: float) -> JointFit:
    """The fit of the games no model played — the ladder's round robin and the baselines, played before any model —
    which picks each experiment's best expert (see `verdict_rows`)."""
    return fit_games(
        [game for game in games if "model" not in (game["player_kind"], game["opponent_kind"])], ladder, scale=scale
    )


def ratings_rows(fit: JointFit, games: Sequence[Mapping], ladder: Sequence[Member]) -> list[dict]:
    """One row per rated player of the fit: what it is (kind, experiment, temperature, phase, cap), its rating with
    a 95% profile interval, W/D/L, the draws by repetition and ply cap, and (ladder members) its written rating."""
    members = {member.name: member for member in ladder}
    about = {
        name: {"kind": member.kind, "experiment": None, "temperature": None, "phase": LADDER, "cap": None}
        for name, member in members.items()
    }
    for game in games:
        if game["player"] not in about or game["phase"] == BASELINE:  # a bucket's best player is a baseline first
            about[game["player"]] = {
                "kind": game["player_kind"],
                "experiment": game.get("experiment"),
                "temperature": game["temperature"],
                "phase": game["phase"],
                "cap": game.get("cap"),
            }
    choices = {game["player"]: game.get("temperature_choice") for game in games if game["phase"] == CONFIRM}
    rows = []
    for estimate in fit.ratings():
        own = [game for game in games if estimate.player in (game["white"], game["black"])]
        member = members.get(estimate.player)
        rows.append(
            {
                "player": estimate.player,
                **about[estimate.player],
                "rating": estimate.rating,
                "low": estimate.low,
                "high": estimate.high,
                "games": estimate.games,
                "wins": estimate.wins,
                "draws": estimate.draws,
                "losses": estimate.losses,
                "repetition_draws": sum(game["termination"] == "threefold" for game in own),
                "ply_cap_draws": sum(
                    game["termination"] in ("ply_cap", "adjudicated") and _drawn(game) for game in own
                ),
                "temperature_choice": choices.get(estimate.player),
                "in_ladder": member is not None,
                "written_rating": member.written_rating if member else None,
                "reference": estimate.player == fit.reference,
            }
        )
    return rows


def _drawn(game: Mapping) -> bool:
    return game["result"] == "1/2-1/2"


def per_opponent_rows(games: Sequence[Mapping]) -> list[dict]:
    """W/D/L of every rated player (the game's `player` side) against each opponent: what a rating hides."""
    cells: dict[tuple[str, str], list[int]] = {}
    for game in games:
        counts = cells.setdefault((game["player"], game["opponent"]), [0, 0, 0])
        counts[{1.0: 0, 0.5: 1, 0.0: 2}[game["score"]]] += 1
    return [
        {"player": player, "opponent": opponent, "wins": wins, "draws": draws, "losses": losses}
        for (player, opponent), (wins, draws, losses) in sorted(cells.items())
    ]


# --- the verdict ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    experiment: str
    line: str  # 'best_expert', 'clone' or 'cap'
    model: str
    bar: str | float  # a player of the fit, or a fixed rating (the cap on the Lichess scale)


@dataclass(frozen=True)
class GainContrast:
    """A claim between two arms of a diversity dial, declared by the experiment table before any game: the mean over
    `experiments` (an arm's training seeds) of model − clone(best), minus the same over `base_experiments`, above 0 —
    diversity adds to the gain over the clone."""

    dial: str
    arm: str
    value: float
    base: str
    base_value: float
    experiments: tuple[str, ...]
    base_experiments: tuple[str, ...]


@dataclass(frozen=True)
class Verdicts:
    """`verdict_rows`' answer: one row per evaluated experiment, and one per claim between arms."""

    rows: list[dict]
    contrasts: list[dict]


def verdict_rows(
    fit: JointFit,
    ratings: Sequence[Mapping],
    ladder: Sequence[Member],
    experiments: Mapping[str, Bars],
    *,
    source: str,
    contrasts: Sequence[GainContrast] = (),
    expert_fit: JointFit | None = None,
) -> Verdicts:
    """One row per evaluated experiment (`experiments`: name → its bars): its confirmatory temperature and games,
    its rating, and each claim as a difference with a Holm-corrected interval and p-value; and one row per claim
    between arms (`contrasts` whose experiments were all evaluated; panel data only).

    Panel data: `transcends` when model − best expert is above 0 after correction, the best expert being the
    strongest, in `expert_fit` (default: `fit`), of the experts heading the experiment's data; `beats_clone` likewise
    against its best expert's clone. Lichess data: model − cap. The family is every claim of the run, contrasts
    included. `write_report` passes a fit of the games no model played (`model_free_fit`): two heads are often a few
    Elo apart, and which one is the bar should not turn on the models' own games."""
    by_name = {row["player"]: row for row in ratings}
    expert_fit = expert_fit or fit
    confirmed = {row["experiment"]: row for row in ratings if row["kind"] == "model" and row["phase"] == CONFIRM}
    strongest = max(
        (row["rating"] for row in ratings if row["in_ladder"] and math.isfinite(row["rating"])), default=math.inf
    )
    claims: list[Claim] = []
    for experiment, bars in experiments.items():
        if experiment not in confirmed:
            continue
        model = confirmed[experiment]["player"]
        if source == "panel":
            rated = [name for name in bars.experts if name in by_name]
            if not rated or bars.clone not in by_name:
                raise ValueError(f"{experiment}: its best expert or clone was not rated (experts {bars.experts})")
            best = max(rated, key=lambda name: expert_fit.rating(name).rating)
            claims += [Claim(experiment, "best_expert", model, best), Claim(experiment, "clone", model, bars.clone)]
        else:
            claims.append(Claim(experiment, "cap", model, float(bars.cap)))
    gains = [
        contrast
        for contrast in contrasts
        if source == "panel" and all(e in confirmed for e in (*contrast.experiments, *contrast.base_experiments))
    ]
    weights = [_gain_weights(contrast, confirmed, experiments) for contrast in gains]
    p_values = [_p_value(fit, claim) for claim in claims] + [fit.contrast(w).p_value for w in weights]
    adjusted, levels = holm(p_values), holm_levels(p_values, ALPHA)
    lines: dict[tuple[str, str], dict] = {}
    n = len(claims)
    for claim, p, p_holm, level in zip(claims, p_values[:n], adjusted[:n], levels[:n], strict=True):
        estimate, low, high = _difference(fit, claim, level)
        lines[claim.experiment, claim.line] = {
            "bar": claim.bar if isinstance(claim.bar, str) else f"cap {claim.bar:g}",
            "diff": estimate,
            "low": low,
            "high": high,
            "p": p,
            "p_holm": p_holm,
            "level": level,
        }
    rows = []
    for experiment, bars in experiments.items():
        if experiment not in confirmed:
            continue
        model = confirmed[experiment]
        bar = lines[experiment, "best_expert" if source == "panel" else "cap"]
        clone = lines.get((experiment, "clone"))
        consensus = _consensus_line(fit, model["player"], bars.consensus, by_name)
        rows.append(
            {
                "experiment": experiment,
                "cap": bars.cap,
                "source": source,
                "confirm_temperature": model["temperature"],
                "temperature_choice": model["temperature_choice"],
                "confirm_games": model["games"],
                "rating": model["rating"],
                "low": model["low"],
                "high": model["high"],
                "bar_kind": "best_expert" if source == "panel" else "cap",
                "bar": bar["bar"],
                "diff_bar": bar["diff"],
                "diff_bar_low": bar["low"],
                "diff_bar_high": bar["high"],
                "p_bar": bar["p"],
                "p_bar_holm": bar["p_holm"],
                "level_bar": bar["level"],
                "clone": clone["bar"] if clone else None,
                "diff_clone": clone["diff"] if clone else None,
                "diff_clone_low": clone["low"] if clone else None,
                "diff_clone_high": clone["high"] if clone else None,
                "p_clone": clone["p"] if clone else None,
                "p_clone_holm": clone["p_holm"] if clone else None,
                "level_clone": clone["level"] if clone else None,
                "diff_consensus": consensus[0] if consensus else None,
                "diff_consensus_low": consensus[1] if consensus else None,
                "diff_consensus_high": consensus[2] if consensus else None,
                "claims": len(p_values),
                "extrapolated": model["rating"] > strongest + EXTRAPOLATION_ELO * fit.scale,
                "transcends": bar["p_holm"] < ALPHA,
                "beats_clone": clone["p_holm"] < ALPHA if clone else None,
            }
        )
    between = []
    for contrast, weight, p, p_holm, level in zip(gains, weights, p_values[n:], adjusted[n:], levels[n:], strict=True):
        difference = fit.contrast(weight, level=level)
        between.append(
            {
                "dial": contrast.dial,
                "arm": contrast.arm,
                "value": contrast.value,
                "base": contrast.base,
                "base_value": contrast.base_value,
                "seeds": len(contrast.experiments),
                "base_seeds": len(contrast.base_experiments),
                "diff": difference.estimate,
                "low": difference.low,
                "high": difference.high,
                "p": p,
                "p_holm": p_holm,
                "level": level,
                "claims": len(p_values),
                "larger": p_holm < ALPHA,
            }
        )
    return Verdicts(rows, between)


def _gain_weights(contrast: GainContrast, confirmed: Mapping[str, Mapping], bars: Mapping[str, Bars]) -> dict:
    """The players' weights of a contrast: +1/n on each of the arm's n models and −1/n on its clone, and the
    opposite for the base arm (a clone both arms share cancels)."""
    weights: dict[str, float] = {}
    for sign, names in ((1.0, contrast.experiments), (-1.0, contrast.base_experiments)):
        for name in names:
            for player, weight in ((confirmed[name]["player"], 1.0), (bars[name].clone, -1.0)):
                weights[player] = weights.get(player, 0.0) + sign * weight / len(names)
    return {player: weight for player, weight in weights.items() if abs(weight) > 1e-12}


def _consensus_line(
    fit: JointFit, model: str, consensus: str | None, by_name: Mapping
) -> tuple[float, float, float] | None:
    """model − consensus, uncorrected (a description of how much of the oracle's vote the model captured)."""
    if consensus not in by_name:
        return None
    difference = fit.difference(model, consensus)
    return difference.estimate, difference.low, difference.high


def _difference(fit: JointFit, claim: Claim, level: float) -> tuple[float, float, float]:
    if isinstance(claim.bar, str):
        difference = fit.difference(claim.model, claim.bar, level=level)
        return difference.estimate, difference.low, difference.high
    rating = fit.rating(claim.model, level=level)
    return rating.rating - claim.bar, rating.low - claim.bar, rating.high - claim.bar


def _p_value(fit: JointFit, claim: Claim) -> float:
    """One-sided p-value of 'model > bar': the fit's profile test against a player or a fixed rating."""
    if isinstance(claim.bar, str):
        return fit.difference(claim.model, claim.bar).p_value
    return fit.p_value_above(claim.model, claim.bar)


# --- figure and report ----------------------------------------------------------------------------------------------


def plot_transcendence(ratings: Sequence[Mapping], verdicts: Sequence[Mapping], path: Path) -> Path:
    """Rating against temperature (log x) per experiment with its 95% band, the confirmatory games as a diamond with
    its interval, and per cap the best player, its clone and the consensus as horizontal bands; the cap dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5), dpi=120)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    caps_drawn: set[int] = set()
    styles = {"best_player": ("best player", 0.18), "clone": ("its clone", 0.10), "consensus": ("consensus", 0.06)}
    for i, verdict in enumerate(verdicts):
        colour = colours[i % len(colours)]
        curve = sorted(
            (
                row
                for row in ratings
                if row["kind"] == "model" and row["phase"] == SWEEP and row["experiment"] == verdict["experiment"]
            ),
            key=lambda row: row["temperature"],
        )
        temperatures = [row["temperature"] for row in curve]
        points = [_point(row["rating"], row["low"], row["high"]) for row in curve]
        axes.plot(temperatures, points, "o-", color=colour, label=f"{verdict['experiment']} (cap {verdict['cap']})")
        axes.fill_between(
            temperatures,
            [_clip(row["low"]) for row in curve],
            [_clip(row["high"]) for row in curve],
            color=colour,
            alpha=0.15,
        )
        low, high = _clip(verdict["low"]), _clip(verdict["high"])
        centre = _point(verdict["rating"], low, high)
        axes.errorbar(
            [verdict["confirm_temperature"]],
            [centre],
            yerr=[[centre - low], [high - centre]],
            fmt="D",
            color=colour,
            markeredgecolor="black",
            capsize=4,
        )
        cap = verdict["cap"]
        if cap in caps_drawn:
            continue
        caps_drawn.add(cap)
        axes.axhline(cap, color=colour, linestyle="--", linewidth=1)
        for row in ratings:
            if row["phase"] == BASELINE and row.get("cap") == cap and row["kind"] in styles:
                label, alpha = styles[row["kind"]]
                axes.axhspan(_clip(row["low"]), _clip(row["high"]), color=colour, alpha=alpha, linewidth=0)
                axes.annotate(
                    f"{label} ≤{cap}",
                    (0.99, row["rating"]),
                    xycoords=("axes fraction", "data"),
                    ha="right",
                    va="center",
                    fontsize=7,
                    color=colour,
                )
    axes.set_xscale("log")
    axes.set_xlabel("temperature τ (diamond: confirmatory games)")
    axes.set_ylabel("rating, one joint fit (95% interval)")
    axes.set_title("Rating against temperature; bands: best player, its clone, consensus; dashed: cap")
    axes.grid(True, alpha=0.3)
    if axes.lines:
        axes.legend(loc="lower left", fontsize="small")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    plt.close(figure)
    return path


def _point(rating: float, low: float, high: float) -> float:
    """Where to draw a rating: the estimate, or for a perfect score (±inf) its finite bound."""
    if math.isfinite(rating):
        return rating
    return _clip(low) if rating > 0 else _clip(high)


def _clip(value: float, bound: float = 4000.0) -> float:
    """A one-sided interval's open end, drawn at the edge of the plot."""
    return max(-bound, min(bound, value))


def verdict_table(verdicts: Sequence[Mapping]) -> str:
    """The verdict lines as Markdown: differences with Holm-corrected intervals, and the games behind them."""
    lines = [
        "| experiment | cap | confirm τ (how) | games | model rating [95%] | − bar [corrected] | p (Holm) "
        "| − clone(best) [corrected] | p (Holm) | − consensus [95%] | transcends |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in verdicts:
        clone = (
            "—"
            if v["diff_clone"] is None
            else interval_text(v["diff_clone"], v["diff_clone_low"], v["diff_clone_high"])
        )
        clone_p = "—" if v["p_clone_holm"] is None else f"{v['p_clone_holm']:.3g}"
        consensus = (
            "—"
            if v["diff_consensus"] is None
            else interval_text(v["diff_consensus"], v["diff_consensus_low"], v["diff_consensus_high"])
        )
        flag = " (extrapolated)" if v["extrapolated"] else ""
        lines.append(
            f"| {v['experiment']} | {v['cap']} | {v['confirm_temperature']:g} ({v['temperature_choice']}) | "
            f"{v['confirm_games']} | {interval_text(v['rating'], v['low'], v['high'])}{flag} | "
            f"{interval_text(v['diff_bar'], v['diff_bar_low'], v['diff_bar_high'], signed=True)} vs {v['bar']} | "
            f"{v['p_bar_holm']:.3g} | {clone} | {clone_p} | {consensus} | {'**yes**' if v['transcends'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def interval_text(value: float, low: float, high: float, *, signed: bool = False) -> str:
    def number(x: float) -> str:
        if not math.isfinite(x):
            return "∞" if x > 0 else "−∞"
        return f"{x:+.0f}" if signed else f"{x:.0f}"

    return f"{number(value)} [{number(low)}, {number(high)}]"


def ladder_table(ratings: Sequence[Mapping]) -> str:
    """The ladder's members: written rating (dump Elo or paper anchor) beside the rating this run's games give."""
    lines = ["| member | kind | written / anchor | fitted [95%] | games | W / D / L |", "|---|---|---|---|---|---|"]
    for row in sorted((row for row in ratings if row["in_ladder"]), key=lambda row: _order(row["rating"])):
        written = "—" if row["written_rating"] is None else f"{row['written_rating']:.0f}"
        mark = " (reference)" if row["reference"] else ""
        lines.append(
            f"| {row['player']}{mark} | {row['kind']} | {written} | {interval_text(row['rating'], row['low'], row['high'])} "
            f"| {row['games']} | {row['wins']} / {row['draws']} / {row['losses']} |"
        )
    return "\n".join(lines) + "\n"


def _order(rating: float) -> float:
    return rating if math.isfinite(rating) else math.copysign(1e9, rating)


def players_table(ratings: Sequence[Mapping]) -> str:
    """Every baseline and every model cell: rating, W/D/L and the draws that repetition or the ply cap decided."""
    lines = [
        "| player | kind | phase | τ | rating [95%] | games | W / D / L | repetition draws | ply-cap draws |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in ratings:
        if row["phase"] == LADDER:  # in the ladder's table
            continue
        tau = "—" if row["temperature"] is None else f"{row['temperature']:g}"
        lines.append(
            f"| {row['player']} | {row['kind']} | {row['phase']} | {tau} | "
            f"{interval_text(row['rating'], row['low'], row['high'])} | {row['games']} | "
            f"{row['wins']} / {row['draws']} / {row['losses']} | {row['repetition_draws']} | {row['ply_cap_draws']} |"
        )
    return "\n".join(lines) + "\n"


def per_opponent_table(cells: Sequence[Mapping]) -> str:
    """W-D-L per rated player (rows) and ladder member (columns)."""
    opponents = sorted({cell["opponent"] for cell in cells})
    players = sorted({cell["player"] for cell in cells})
    grid = {(cell["player"], cell["opponent"]): cell for cell in cells}
    lines = ["| player | " + " | ".join(opponents) + " |", "|---" * (len(opponents) + 1) + "|"]
    for player in players:
        row = [grid.get((player, opponent)) for opponent in opponents]
        lines.append(
            f"| {player} | "
            + " | ".join("" if c is None else f"{c['wins']}-{c['draws']}-{c['losses']}" for c in row)
            + " |"
        )
    return "\n".join(lines) + "\n"


#: What the paper found per cap (read off its figure, ±10): its best rating, at which τ, and whether it transcended.
PAPER_RESULTS = {
    1000: "1500 at τ = 0.1 (1423 at τ = 0.001): transcends",
    1300: "1630 at τ = 0.01: transcends",
    1500: "1572 at τ = 0.01, with a band that includes 1500: does not transcend",
}


def beside_the_paper(verdicts: Sequence[Mapping]) -> str:
    """Each main cap's verdict next to the paper's, so that a disagreement is stated rather than left to the reader
    (the paper's ratings are Glicko-2 against Stockfish anchors; ours are on the scale this report names)."""
    lines = ["| cap | paper (Zhang et al. 2024) | here: model − bar [corrected] | here |", "|---|---|---|---|"]
    for v in verdicts:
        if v["cap"] in PAPER_RESULTS and v["experiment"] == f"cap{v['cap']}":
            here = "transcends" if v["transcends"] else "does not transcend"
            lines.append(
                f"| {v['cap']} | {PAPER_RESULTS[v['cap']]} | "
                f"{interval_text(v['diff_bar'], v['diff_bar_low'], v['diff_bar_high'], signed=True)} | {here} |"
            )
    return "\n".join(lines) + "\n"


def markdown_report(
    verdicts: Sequence[Mapping],
    ratings: Sequence[Mapping],
    per_opponent: Sequence[Mapping],
    method: str,
    figure: Path | None = None,
    sections: Sequence[str] = (),
) -> str:
    """The verdict table, how it was reached, the figure, the ladder, every rated player, further `sections`
    (diversity, state analysis), and the W/D/L per opponent."""
    parts = ["# Transcendence report", "", verdict_table(verdicts), method.rstrip(), "", beside_the_paper(verdicts)]
    if figure is not None:
        parts += ["", f"![rating against temperature]({figure.name})"]
    parts += ["", "## The ladder", "", ladder_table(ratings), "## Every rated player", "", players_table(ratings)]
    parts += [section.rstrip() + "\n" for section in sections]
    parts += ["## Wins-draws-losses per opponent", "", per_opponent_table(per_opponent)]
    return "\n".join(parts)


def method_text(
    verdicts: Sequence[Mapping], ladder: Sequence[Member], *, reference: str, scale: float, rules: Rules, book: int
) -> str:
    """How the verdict was reached, in the words a referee checks: scale, reference (the fit's: `reference`),
    family, rules, book."""
    (declared,) = [member for member in ladder if member.reference]
    (pinned,) = [member for member in ladder if member.name == reference]
    claims = verdicts[0]["claims"] if verdicts else 0
    source = verdicts[0]["source"] if verdicts else "panel"
    scale_text = (
        f"the dump's written Elo (fitted Elo stretched ×{scale:g}, as the dump writes it), fixed by "
        f"{pinned.name} at its written {pinned.written_rating:.0f}"
        if source == "panel"
        else f"plain Elo, fixed by {pinned.name} at the paper's anchor {pinned.written_rating:.0f} (the paper's "
        "Glicko-2 rating at 0.1 s per move; not re-measured here, and our levels are node-limited)"
    )
    if pinned is not declared:
        scale_text += (
            f" — not by {declared.name}, the declared reference, which won or lost every game (its rating is "
            "infinite), but by the finite member whose written rating is nearest its own"
        )
    bar = (
        "the best expert of its training data (the strongest of the players heading its bucket, a diversity arm's "
        "own, in a fit of the games no model played, so that no model's game decides which one is the bar)"
        if source == "panel"
        else "the cap"
    )
    return (
        f"**How.** One Bradley–Terry fit of every game of the run on {scale_text}; no other player is an anchor. "
        f"Intervals are profile-likelihood intervals (quasi-likelihood: draws make a game's score less variable than "
        f"a coin). A model *transcends* when model − {bar} is above 0 with Holm's correction over the run's "
        f"{claims} claims at one-sided {ALPHA:g}; the corrected interval is shown at the level Holm's step gives "
        f"that claim. Only the confirmatory games at the chosen τ enter a verdict. Every rated player met the same "
        f"{len(ladder)} ladder members in the same {book} openings (8 plies sampled from the bucket's own games), "
        f"both colours. Rules: {_rules_text(rules)}"
        + (" — the panel dump's own rules." if source == "panel" else " — the paper's protocol.")
        + " *Extrapolated*: more than 200 Elo of odds above the ladder's strongest member.\n"
    )


def _rules_text(rules: Rules) -> str:
    resign = (
        f"resignation below −{rules.resign_cp} cp for {rules.resign_plies} moves"
        if rules.resign_cp is not None
        else "no resignation"
    )
    at_cap = (
        f"adjudication beyond ±{rules.adjudicate_cp} cp at the cap"
        if rules.adjudicate_cp is not None
        else "a draw at the cap"
    )
    return f"ply cap {rules.max_plies}, {resign}, {at_cap}"


# --- The procedures the assets run -------------------------------------------------------------------------------


def rules_for(panel: PanelConfig | None) -> Rules:
    """The rules games are played by: the panel's own on panel data (ratings fitted on its dump stay comparable),
    the paper's on Lichess data."""
    return Rules.of_panel(panel) if panel is not None else Rules.paper()


def experiment_bars(experiment: Experiment, members: Sequence[Member], panel: PanelConfig | None) -> Bars:
    """Whom the experiment's model is measured against (`ladder.Bars`): see `ladder.panel_bars`."""
    from transcend_pipeline.ladder import panel_bars

    if panel is None:
        return Bars(experiment.cap)
    equal_skill = experiment.variant is not None and experiment.variant.equal_players is not None
    return panel_bars(members, experiment.cap, arm_panel_of(experiment, members, panel), equal_skill=equal_skill)


def arm_panel_of(experiment: Experiment, members: Sequence[Member], panel: PanelConfig | None):
    """The panel of a correlated-quirks arm (whose experts are other policies than the bucket's), else None."""
    from transcend_pipeline.ablation import variant_config
    from transcend_pipeline.ladder import bucket_heads
    from transcend_pipeline.panel import Panel

    variant = experiment.variant
    if panel is None or variant is None or variant.rho is None:
        return None
    return Panel(variant_config(panel, variant, bucket_heads(members, experiment.cap)[0].player_index))


@dataclass(frozen=True)
class Ladder:
    """What `build_ladder` stored: its members (reference first among equals), the book and the rules, and how
    many games it played."""

    members: list[Member]
    book: list[Opening]
    rules: Rules
    games: int


def build_ladder(
    warehouse_path: Path,
    caps: Sequence[int],
    months: Sequence[str],
    settings: LadderSettings,
    *,
    panel: PanelConfig | None,
    stockfish: str,
    log: Callable[[str], None] = print,
    lake: Path | str | None = None,
) -> Ladder:
    """The ladder every rated player meets, its opening book from the largest cap's bucket, its round robin and
    (panel data) each cap's baselines against it: tables `ladder`, `opening_book` and `ladder_games`. With `lake`,
    the bucket's moves are read from its `stg_games`."""
    from transcend_pipeline.ladder import LadderEngines, ladder_players, panel_baselines, panel_ladder, stockfish_ladder
    from transcend_pipeline.play import book_from_games, play_matches, round_robin
    from transcend_pipeline.queries import latest_panel_roster, sampled_bucket_moves
    from transcend_pipeline.warehouse import open_warehouse, replace_with_rows

    caps = sorted(caps)
    with open_warehouse(warehouse_path, read_only=True, lake=lake) as connection:
        games = sampled_bucket_moves(
            connection, max(caps), months, seed=settings.seed, limit=50 * settings.book_openings
        )
        panel_rows = latest_panel_roster(connection, months) if panel is not None else []
    book = book_from_games(games, count=settings.book_openings, plies=settings.book_plies)
    members = panel_ladder(panel_rows, caps, settings.plan) if panel is not None else stockfish_ladder(settings.plan)
    rules = rules_for(panel)
    with LadderEngines.start(stockfish, size=settings.engines, config=panel) as engines:
        ladder = ladder_players(members, engines)
        phases = [
            (LADDER, None, pairing)
            for pairing in round_robin(ladder, settings.plan.games_per_pair, book_size=len(book))
        ]
        for cap in caps if panel is not None else []:
            for baseline in panel_baselines(panel_rows, cap, engines):
                phases += [
                    (BASELINE, cap, pairing)
                    for pairing in pairings_against(baseline, ladder, settings.baseline_games, book_size=len(book))
                    if pairing.opponent.name != baseline.name
                ]
        log(f"{len(ladder)} ladder members; {sum(p.games for _, _, p in phases)} games to play")
        records = play_matches(
            [pairing for _, _, pairing in phases], rules=rules, rng_seed=settings.seed, evaluator=engines.q, book=book
        )
    rows = [
        {"phase": phases[record.pairing][0], "cap": phases[record.pairing][1], **record.as_row()} for record in records
    ]
    scale = panel.rating_spread if panel is not None else 1.0
    with open_warehouse(warehouse_path) as connection:
        replace_with_rows(
            connection,
            "ladder",
            [{"position": i, "scale": scale, **member.as_row()} for i, member in enumerate(members)],
        )
        replace_with_rows(
            connection,
            "opening_book",
            [{"line": i, "name": o.name, "moves": [m.uci() for m in o.moves]} for i, o in enumerate(book)],
        )
        count = replace_with_rows(connection, "ladder_games", rows)
    return Ladder(members, book, rules, count)


def play_arm_baselines(
    warehouse_path: Path,
    experiment: Experiment,
    settings: LadderSettings,
    *,
    panel: PanelConfig | None,
    stockfish: str,
    log: Callable[[str], None] = print,
) -> tuple[int, Bars]:
    """A correlated-quirks arm's own experts (and the best one's clone) against the stored ladder, as the arm's rows
    of `arm_baseline_games` (none for other arms, whose experts the ladder already rated); returns the games played
    and the arm's bars."""
    from transcend_pipeline.ladder import LadderEngines, arm_expert_players, bucket_heads, ladder_players
    from transcend_pipeline.play import play_matches
    from transcend_pipeline.queries import ladder_and_book
    from transcend_pipeline.warehouse import open_warehouse, replace_with_rows, table_exists

    with open_warehouse(warehouse_path, read_only=True) as connection:
        members, book, _ = ladder_and_book(connection)
    arm = arm_panel_of(experiment, members, panel)
    rows = []
    if arm is not None:
        with LadderEngines.start(stockfish, size=settings.engines, config=panel) as engines:
            ladder = ladder_players(members, engines)
            pairings = [
                pairing
                for baseline in arm_expert_players(arm, bucket_heads(members, experiment.cap), engines)
                for pairing in pairings_against(baseline, ladder, settings.baseline_games, book_size=len(book))
            ]
            log(f"{experiment.arm}: {sum(p.games for p in pairings)} baseline games")
            records = play_matches(
                pairings, rules=rules_for(panel), rng_seed=settings.seed, evaluator=engines.q, book=book
            )
        rows = [
            {"variant": experiment.arm, "phase": BASELINE, "cap": experiment.cap, **record.as_row()}
            for record in records
        ]
    with open_warehouse(warehouse_path) as connection:
        if rows:
            replace_with_rows(connection, "arm_baseline_games", rows, partition=("variant", experiment.arm))
        elif table_exists(connection, "arm_baseline_games"):
            connection.execute("DELETE FROM arm_baseline_games WHERE variant = ?", [experiment.arm])
    return len(rows), experiment_bars(experiment, members, panel)


def play_experiment(
    warehouse_path: Path,
    experiment: Experiment,
    checkpoint: Path,
    plan: EvaluationPlan,
    *,
    panel: PanelConfig | None,
    stockfish: str,
    engines: int,
) -> ModelEvaluation:
    """The experiment's model against the stored ladder from the stored book (`evaluate_model`), written as the
    experiment's rows of `evaluation_games`, one per game with its PGN."""
    from transcend_pipeline.ladder import LadderEngines, ladder_players
    from transcend_pipeline.model import ChessFormer
    from transcend_pipeline.queries import ladder_and_book
    from transcend_pipeline.warehouse import open_warehouse, replace_with_rows

    model = ChessFormer.from_checkpoint(str(checkpoint)).eval()
    with open_warehouse(warehouse_path, read_only=True) as connection:
        members, book, _ = ladder_and_book(connection)
    with LadderEngines.start(stockfish, size=engines, config=panel) as pool:
        result = evaluate_model(
            experiment.name,
            model,
            ladder_players(members, pool),
            book,
            plan,
            rules=rules_for(panel),
            evaluator=pool.q,
            declared_temperature=experiment.extra.get("confirm_temperature"),
        )
    with open_warehouse(warehouse_path) as connection:
        replace_with_rows(
            connection, "evaluation_games", result.rows(experiment), partition=("experiment", experiment.name)
        )
    return result


#: The figures `state_advantage` writes for each experiment, linked from the report.
ADVANTAGE_FIGURES = {
    "gain per position": "gain_histogram.png",
    "where the gain sits": "gain_concentration.png",
    "largest gains": "top_positions.png",
}


@dataclass(frozen=True)
class Report:
    """What `write_report` wrote: the verdict rows, the report and its figure, the method, and the state-analysis
    sections as the UI shows them."""

    verdicts: list[dict]
    path: Path
    figure: Path
    method: str
    sections: dict[str, str]


def write_report(
    warehouse_path: Path, experiments: Mapping[str, Experiment], panel: PanelConfig | None, reports_dir: Path
) -> Report:
    """The verdict of every evaluated experiment (table `transcendence`) from one fit of every game, the figure
    (rating against τ of the main experiments) and `reports_dir/transcendence.md`, with the state advantage and the
    argmax comparison of the experiments still in the table."""
    from transcend_pipeline.diversity import dial_contrasts, study_arms
    from transcend_pipeline.queries import ladder_and_book, rated_games, table_rows
    from transcend_pipeline.state_advantage import (
        ArgmaxComparison,
        GainSummary,
        argmax_comparison_section,
        markdown_section,
    )
    from transcend_pipeline.warehouse import open_warehouse, replace_with_rows

    order = {name: index for index, name in enumerate(experiments)}
    with open_warehouse(warehouse_path) as connection:
        members, book, scale = ladder_and_book(connection)
        games = rated_games(connection)
        rows = table_rows(connection, "ratings")
        per_opponent = table_rows(connection, "ratings_per_opponent")
        fit = fit_games(games, members, scale=scale)
        evaluated = {game["experiment"] for game in games if game.get("experiment")}
        bars = {name: experiment_bars(e, members, panel) for name, e in experiments.items() if name in evaluated}
        contrasts = dial_contrasts(study_arms(experiments, base_rho=panel.rho), evaluated) if panel else []
        answer = verdict_rows(
            fit,
            rows,
            members,
            bars,
            source="panel" if panel else "lichess",
            contrasts=contrasts,
            expert_fit=model_free_fit(games, members, scale=scale) if panel else None,
        )
        verdicts = answer.rows
        replace_with_rows(connection, "transcendence", verdicts)
        if answer.contrasts:
            replace_with_rows(connection, "diversity_contrasts", answer.contrasts)
        else:
            connection.execute("DROP TABLE IF EXISTS diversity_contrasts")
        # The tables may keep experiments no longer in the experiment table.
        advantage = [
            GainSummary(**row) for row in table_rows(connection, "state_advantage") if row["experiment"] in order
        ]
        comparison = [
            ArgmaxComparison(**row)
            for row in table_rows(connection, "argmax_comparison", order_by="experiment, source")
            if row["experiment"] in order
        ]
    reports_dir.mkdir(parents=True, exist_ok=True)
    main = [
        v
        for v in verdicts
        if not experiments[v["experiment"]].variant and v["experiment"] == experiments[v["experiment"]].arm
    ]
    figure = plot_transcendence(rows, main, reports_dir / "transcendence.png")
    sections, ui_sections = [], {}
    if advantage:
        advantage.sort(key=lambda row: (order[row.experiment], row.source, row.temperature))
        links = {
            f"{name}: {label}": f"state_advantage/{name}/{file}"
            for name in experiments
            if not experiments[name].variant and any(row.experiment == name for row in advantage)
            for label, file in ADVANTAGE_FIGURES.items()
        }
        sections.append(markdown_section(advantage, links))
        ui_sections["state_advantage"] = markdown_section(advantage)
    if comparison:
        comparison.sort(key=lambda row: (order[row.experiment], row.source))
        sections.append(argmax_comparison_section(comparison))
        ui_sections["argmax_comparison"] = argmax_comparison_section(comparison)
    method = method_text(
        verdicts, members, reference=fit.reference, scale=scale, rules=rules_for(panel), book=len(book)
    )
    path = reports_dir / "transcendence.md"
    path.write_text(markdown_report(verdicts, rows, per_opponent, method, Path(figure.name), sections))
    return Report(verdicts, path, figure, method, ui_sections)
