"""The diversity study: does the low-temperature gain need experts whose errors differ?

Two dials change diversity at fixed skill (see `ablation` for how the arms' games are made):

- ρ, the share of the players' quirk variance they have in common (the same players; ρ = 0 is the cap's bucket);
- k, the number of experts of equal skill (the bucket's best player's), differing only in their quirks.

For every arm and training seed the study sets three measurements side by side:

- **play**: model − clone(best expert of the arm), in Elo with its Holm-corrected interval, from the one joint fit
  (`evaluation.verdict_rows`); the theory predicts a gain at ρ = 0 that vanishes as ρ → 1 and grows with k;
- **ground truth** on held-out positions (`state_advantage.compare_policies`), in expected score per move: the
  arm's mixture argmax − its best expert's clone (what the theory says a perfect model would gain), the model's
  argmax − that clone (what the model gained), and the paper's condition, mixture argmax − the best expert's own
  policy; on the positions every arm shares (the cap bucket's test split) and on the arm's own test split;
- **state advantage**: the model's absolute expected reward at the lowest τ and its gain over τ = 1.

Whether the gain changes along a dial is a claim of its own (`dial_contrasts`): each arm's gain over its clone,
averaged over its seeds, minus the dial's least diverse arm's, one contrast of the joint fit, Holm-corrected with
every other claim of the run. Intervals over positions resample whole games.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from transcend_pipeline.evaluation import GainContrast, interval_text
from transcend_pipeline.experiments import Experiment
from transcend_pipeline.plots import Figure
from transcend_pipeline.state_advantage import (
    BUCKET_HELD_OUT,
    CLONE,
    CONSENSUS,
    HELD_OUT,
    MODEL,
    ArgmaxComparison,
    GainSummary,
)

STUDY = "diversity"
#: Where the ground truth is read: the positions every arm of a dial shares, and each arm's own test split.
COMMON, OWN = "common", "own"
DIVERSITY_COLUMNS = ("games", "players", "top_player_share", "player_entropy", "opening_entropy")


@dataclass(frozen=True)
class StudyArm:
    """One trained model of the study: its arm, seed and place on a dial."""

    experiment: str
    arm: str
    seed: int
    dial: str  # 'rho' or 'k'
    value: float
    label: str
    variant: bool  # False for the cap's own experiment (the arm ρ = 0)

    @property
    def sources(self) -> dict[str, str]:
        """The `state_advantage` source of the common and of the own positions. The cap's own experiment reads the
        bucket's test split as its held-out source, so both are that one."""
        return {COMMON: BUCKET_HELD_OUT if self.variant else HELD_OUT, OWN: HELD_OUT}


def study_arms(experiments: Mapping[str, Experiment], *, base_rho: float = 0.0) -> list[StudyArm]:
    """The experiments of the diversity study on their dials, in table order. The cap's own experiment is the arm
    ρ = `base_rho` (the panel's own correlation)."""
    arms = []
    for name, experiment in experiments.items():
        if experiment.study != STUDY:
            continue
        variant = experiment.variant
        dial, value = variant.dial if variant else ("rho", base_rho)
        label = variant.label if variant else "full bucket"
        arms.append(StudyArm(name, experiment.arm, experiment.seed, dial, float(value), label, variant is not None))
    return arms


def dial_contrasts(arms: Sequence[StudyArm], evaluated: Collection[str]) -> list[GainContrast]:
    """The claims between arms, fixed by the experiment table before any game is played: on each dial, every
    evaluated arm against the dial's least diverse evaluated arm (the largest ρ, the smallest k), each arm's gain
    over its clone averaged over its evaluated seeds."""
    contrasts = []
    for dial in ("rho", "k"):
        seeds: dict[str, list[StudyArm]] = {}
        for arm in arms:
            if arm.dial == dial and arm.experiment in evaluated:
                seeds.setdefault(arm.arm, []).append(arm)
        if len(seeds) < 2:
            continue
        least = max if dial == "rho" else min
        base = least(seeds, key=lambda name: seeds[name][0].value)
        contrasts += [
            GainContrast(
                dial,
                name,
                mine[0].value,
                base,
                seeds[base][0].value,
                tuple(arm.experiment for arm in mine),
                tuple(arm.experiment for arm in seeds[base]),
            )
            for name, mine in seeds.items()
            if name != base
        ]
    return contrasts


def study_rows(
    arms: Sequence[StudyArm],
    verdicts: Sequence[Mapping],
    comparisons: Sequence[ArgmaxComparison],
    advantages: Sequence[GainSummary],
) -> list[dict]:
    """One row per (evaluated arm and seed, positions ∈ {common, own}): the play verdict lines, the ground truth
    and the state advantage at the lowest τ on those positions. Rewards in expected score per move (0..1)."""
    verdict = {v["experiment"]: v for v in verdicts}
    rows = []
    for arm in arms:
        if arm.experiment not in verdict:
            continue
        v = verdict[arm.experiment]
        for positions, source in arm.sources.items():
            mine = [c for c in comparisons if c.experiment == arm.experiment and c.source == source]
            by_kind = {c.kind: c for c in mine if c.kind in (MODEL, CLONE, CONSENSUS)}
            gains = [a for a in advantages if a.experiment == arm.experiment and a.source == source]
            lowest = min(gains, key=lambda a: a.temperature) if gains else None
            rows.append(
                {
                    "experiment": arm.experiment,
                    "arm": arm.arm,
                    "seed": arm.seed,
                    "dial": arm.dial,
                    "value": arm.value,
                    "label": arm.label,
                    "positions_from": positions,
                    "source": source,
                    **{key: v[key] for key in PLAY_COLUMNS},
                    "positions": by_kind[MODEL].positions if MODEL in by_kind else None,
                    "games": by_kind[MODEL].games if MODEL in by_kind else None,
                    **_versus_clone("theory", by_kind.get(CONSENSUS)),
                    **_versus_clone("learned", by_kind.get(MODEL)),
                    "best_expert_policy": by_kind[CONSENSUS].best_expert_policy if CONSENSUS in by_kind else None,
                    "condition_diff": by_kind[CONSENSUS].condition_diff if CONSENSUS in by_kind else None,
                    "condition_low": by_kind[CONSENSUS].condition_low if CONSENSUS in by_kind else None,
                    "condition_high": by_kind[CONSENSUS].condition_high if CONSENSUS in by_kind else None,
                    "advantage_temperature": lowest.temperature if lowest else None,
                    "reward": lowest.mean_reward if lowest else None,
                    "reward_low": lowest.reward_low if lowest else None,
                    "reward_high": lowest.reward_high if lowest else None,
                    "gain": lowest.mean_gain if lowest else None,
                    "gain_low": lowest.gain_low if lowest else None,
                    "gain_high": lowest.gain_high if lowest else None,
                }
            )
    return rows


PLAY_COLUMNS = (
    "confirm_temperature",
    "confirm_games",
    "bar",
    "diff_bar",
    "diff_bar_low",
    "diff_bar_high",
    "transcends",
    "clone",
    "diff_clone",
    "diff_clone_low",
    "diff_clone_high",
    "p_clone_holm",
    "beats_clone",
)


def _versus_clone(prefix: str, row: ArgmaxComparison | None) -> dict:
    """A policy's reward − the clone's on the same positions: the clone's deep regret − the policy's."""
    if row is None:
        return dict.fromkeys((f"{prefix}_diff", f"{prefix}_low", f"{prefix}_high"))
    return {
        f"{prefix}_diff": -row.deep_regret_diff,
        f"{prefix}_low": -row.deep_diff_high,
        f"{prefix}_high": -row.deep_diff_low,
    }


# --- figures --------------------------------------------------------------------------------------------------------


def plot_dose_response(rows: Sequence[Mapping], path: Path) -> Figure:
    """Gain against ρ and against k (columns), on the common positions: top, model − clone(best) in play (Elo, one
    point per seed with its Holm-corrected interval); bottom, the same difference in expected score per move — the
    theory's prediction (the arm's mixture argmax − the clone) beside the model's argmax − the clone."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    common = [row for row in rows if row["positions_from"] == COMMON]
    figure, axes = plt.subplots(2, 2, figsize=(10, 7), dpi=110, sharex="col")
    for column, (dial, title) in enumerate((("rho", "quirk correlation ρ"), ("k", "equal experts k"))):
        mine = sorted((row for row in common if row["dial"] == dial), key=lambda row: (row["value"], row["seed"]))
        top, bottom = axes[0, column], axes[1, column]
        for row in mine:
            x = _x(dial, row["value"]) + 0.02 * (row["seed"] - 0.5) * (1 if dial == "rho" else 6)
            _error_bar(
                top, x, row["diff_clone"], row["diff_clone_low"], row["diff_clone_high"], "C0", "model (per seed)"
            )
            _error_bar(
                bottom, x, row["learned_diff"], row["learned_low"], row["learned_high"], "C0", "model argmax (per seed)"
            )
        theory = {row["value"]: row for row in mine}  # the same for every seed of an arm: the data's, not the model's
        for value, row in sorted(theory.items()):
            _error_bar(
                bottom, _x(dial, value) + 0.04 * (1 if dial == "rho" else 6), row["theory_diff"], row["theory_low"],
                row["theory_high"], "C3", "theory: mixture argmax", marker="s",
            )  # fmt: skip
        for ax in (top, bottom):
            ax.axhline(0.0, color="grey", lw=0.8)
            ax.grid(alpha=0.3)
            if dial == "k":
                ax.set_xticks([_x("k", k) for k in sorted(theory)], [f"{k:g}" for k in sorted(theory)])
        top.set(title=f"gain against {title}", ylabel="model − clone(best), Elo")
        bottom.set(xlabel=title, ylabel="argmax − clone(best), score per move")
        for ax in (top, bottom):
            handles, labels = ax.get_legend_handles_labels()
            unique = dict(zip(labels, handles, strict=True))
            if unique:
                ax.legend(unique.values(), unique.keys(), fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return Figure(path)


def _x(dial: str, value: float) -> float:
    return math.log2(value) if dial == "k" else value


def _error_bar(ax, x, value, low, high, colour: str, label: str, marker: str = "o") -> None:
    if value is None or not math.isfinite(value):
        return
    low = value if low is None or not math.isfinite(low) else low
    high = value if high is None or not math.isfinite(high) else high
    ax.errorbar([x], [value], yerr=[[value - low], [high - value]], fmt=marker, color=colour, capsize=3, label=label)


# --- report ---------------------------------------------------------------------------------------------------------


def _cell(value: object) -> str:
    return "—" if value is None else f"{value:.3f}" if isinstance(value, float) else f"{value}"


def diversity_table(buckets: Mapping[str, Mapping]) -> str:
    """`bucket_diversity` rows side by side (label -> row), as Markdown."""
    columns = ("top_player", *DIVERSITY_COLUMNS)
    lines = ["| bucket | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {label} | " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for label, row in buckets.items()]
    return "\n".join(lines) + "\n"


def _score(value: float | None, low: float | None, high: float | None) -> str:
    """An expected-score difference in points per 100 moves, with its interval."""
    if value is None:
        return "—"
    return f"{100 * value:+.2f} [{100 * low:+.2f}, {100 * high:+.2f}]"


def _elo(row: Mapping, prefix: str) -> str:
    value = row[f"diff_{prefix}"]
    return (
        "—"
        if value is None
        else interval_text(value, row[f"diff_{prefix}_low"], row[f"diff_{prefix}_high"], signed=True)
    )


def seed_spread(rows: Sequence[Mapping]) -> dict[str, tuple[float, float, float, int]]:
    """Per arm (common positions): the mean of model − clone(best) over its seeds, its smallest and largest, and the
    number of seeds."""
    by_arm: dict[str, list[float]] = {}
    for row in rows:
        if row["positions_from"] == COMMON and row["diff_clone"] is not None and math.isfinite(row["diff_clone"]):
            by_arm.setdefault(row["arm"], []).append(row["diff_clone"])
    return {arm: (float(np.mean(v)), min(v), max(v), len(v)) for arm, v in by_arm.items()}


def reading(rows: Sequence[Mapping], contrasts: Sequence[Mapping] = ()) -> str:
    """The study's answer in the issue's form: model − clone(best) at each end of each dial, every seed; then the
    difference between the ends of each dial."""
    common = [row for row in rows if row["positions_from"] == COMMON]
    parts = []
    for dial, name in (("rho", "ρ"), ("k", "k")):
        values = sorted({row["value"] for row in common if row["dial"] == dial})
        for value in (values[-1], values[0]) if values else ():
            lines = [
                f"{interval_text(r['diff_clone'], r['diff_clone_low'], r['diff_clone_high'], signed=True)} (seed {r['seed']})"
                for r in sorted(common, key=lambda r: r["seed"])
                if r["dial"] == dial and r["value"] == value
            ]
            parts.append(f"at {name} = {value:g}, model − clone(best) is " + "; ".join(lines))
    for dial in ("rho", "k"):  # the most diverse arm against the least: the dial's whole range
        mine = [c for c in contrasts if c["dial"] == dial]
        if mine:
            end = (min if dial == "rho" else max)(mine, key=lambda c: c["value"])
            parts.append(
                f"the gain of {_between(end)} is {interval_text(end['diff'], end['low'], end['high'], signed=True)}"
            )
    return ("In Elo with Holm-corrected intervals: " + "; ".join(parts) + ".") if parts else ""


def _between(contrast: Mapping) -> str:
    name = "ρ" if contrast["dial"] == "rho" else "k"
    return f"{name} = {contrast['value']:g} − {name} = {contrast['base_value']:g}"


def contrast_table(contrasts: Sequence[Mapping]) -> str:
    """The claims between arms as Markdown."""
    lines = [
        "| dial | arm − least diverse arm | seeds | gain difference [corrected] | p (Holm) | larger |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {c['dial']} | {c['arm']} − {c['base']} ({_between(c)}) | {c['seeds']} − {c['base_seeds']} | "
        f"{interval_text(c['diff'], c['low'], c['high'], signed=True)} | {c['p_holm']:.2g} | "
        f"{'**yes**' if c['larger'] else 'no'} |"
        for c in contrasts
    ]
    return "\n".join(lines) + "\n"


def study_section(
    rows: Sequence[Mapping],
    diversity: Mapping[str, Mapping],
    figures: Mapping[str, str],
    contrasts: Sequence[Mapping] = (),
) -> str:
    """The study as Markdown: its design, the play table, the seeds' spread, the claims between arms, the ground
    truth on common and own positions, the answer and the figures (`figures`: caption → file name)."""
    common = [row for row in rows if row["positions_from"] == COMMON]
    lines = [
        "## Does it need diversity? (the diversity study)",
        "",
        "Both dials hold skill fixed and change only how the experts' errors relate: ρ correlates the same players' "
        "quirks (their pairings, game count and Elos are the bucket's), k counts experts of the best player's skill "
        "who differ only in their quirks (k = 1: its self-play). Every arm trains for the same optimiser steps on "
        "the same number of positions per step, with the seeds shown. Its bar is the clone (argmax) of its own best "
        "expert: at k = 1 a model can at best denoise its one expert into that clone.",
        "",
        "**Play** (confirmatory games against the ladder; Elo, Holm-corrected over every claim of the run):",
        "",
        "| arm | dial | seed | τ | games | model − clone(best) | model − best expert | beats clone |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['arm']} | {_dial(r)} | {r['seed']} | {r['confirm_temperature']:g} | {r['confirm_games']} | "
        f"{_elo(r, 'clone')} | {_elo(r, 'bar')} | {'**yes**' if r['beats_clone'] else 'no'} |"
        for r in common
    ]
    spread = seed_spread(rows)
    if any(n > 1 for *_, n in spread.values()):
        lines += ["", "Spread over training seeds (model − clone(best), Elo): " + "; ".join(
            f"{arm} mean {mean:+.0f} (from {low:+.0f} to {high:+.0f}, {n} seeds)" for arm, (mean, low, high, n) in spread.items()
        ) + "."]  # fmt: skip
    if contrasts:
        lines += [
            "",
            "**Between arms** (each arm's gain over its clone, mean over its seeds, minus the dial's least diverse "
            "arm's; one contrast of the joint fit, Holm-corrected with every claim of the run; one-sided: does "
            "diversity add to the gain? The interval is the games' alone: the spread over seeds is above):",
            "",
            contrast_table(contrasts).rstrip(),
        ]
    for positions, title in (
        (COMMON, "the cap bucket's held-out positions, the same for every arm"),
        (OWN, "each arm's own held-out positions"),
    ):
        mine = [row for row in rows if row["positions_from"] == positions]
        lines += [
            "",
            f"**Ground truth** on {title} (expected score per move ×100, game-bootstrap 95% intervals; the model "
            "at its lowest analysed τ):",
            "",
            "| arm | dial | seed | positions (games) | theory: mixture argmax − clone | model argmax − clone "
            "| mixture argmax − best expert's policy | model E_τ | gain over τ = 1 |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['arm']} | {_dial(r)} | {r['seed']} | {r['positions']} ({r['games']}) | "
            f"{_score(r['theory_diff'], r['theory_low'], r['theory_high'])} | "
            f"{_score(r['learned_diff'], r['learned_low'], r['learned_high'])} | "
            f"{_score(r['condition_diff'], r['condition_low'], r['condition_high'])} | "
            f"{_score(r['reward'], r['reward_low'], r['reward_high'])} | {_score(r['gain'], r['gain_low'], r['gain_high'])} |"
            for r in mine
        ]  # fmt: skip
    if diversity:
        lines += ["", "**The arms' buckets**, measured by the bucket SQL:", "", diversity_table(diversity).rstrip()]
    answer = reading(rows, contrasts)
    if answer:
        lines += ["", f"**Reading.** {answer}"]
    lines += ["", *(f"![{caption}]({name})" for caption, name in figures.items())]
    return "\n".join(lines) + "\n"


def _dial(row: Mapping) -> str:
    return f"ρ = {row['value']:g}" if row["dial"] == "rho" else f"k = {row['value']:g}"
