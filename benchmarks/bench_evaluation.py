"""Evaluation's cost: a model playing the panel ladder as the pipeline plays it, against a batch-size-1 loop.

Every experiment plays its model against the whole opponent ladder at each sweep temperature and again to confirm,
and the ladder and the bucket baselines play their own games. This measures what one model game costs there and
what limits it (the model, the match loop or Stockfish), and projects the profile's whole evaluation from it.

The setup is the pipeline's without a data directory: the panel config of `--profile` (default `demo`), its players
(`panel_players`) with written ratings read from `--dump`, or else set by rank (player 0, the best, at 2100 and 20
Elo lower per index, which puts 9 players under the lowest cap of 1000), the ladder `panel_ladder` builds from them
for the experiments' caps, the book of `book_openings` lines of `book_plies` plies taken from the dump's games or
else from random legal games of a seeded generator, and the panel's rules (`Rules.of_panel`: resignation and
adjudication, judged by the ladder's `PooledQ`). Counts and plans are the profile's `EvaluationSettings`. The model is
an untrained `tiny` ChessFormer (a trained one costs the same per forward pass) or `--checkpoint`, at τ = 0.001.

Two runs, each with fresh engines (so that no run reads Q the other scored into the memo):

1. `play_matches` as `evaluate_model` calls it (its default `max_in_flight`), `--games` games spread over the ladder
   with `pairings_against`;
2. the same pairings with `max_in_flight=1`, a batch-size-1 loop as the reference code played, for
   `--baseline-games` games: the first games of each pairing, with the same openings, colours and seeds, so the
   same games up to the batched forward passes' rounding (the count of identical games is printed).

`pairings_against` rounds the games up to an even number per ladder member, so each run plays at least two per
member. CPU per model move is split into the model's forward passes (the calling thread's CPU inside
`ModelPolicy.legal_distribution`: exact with one torch thread, `--torch-threads`), the loop (the rest of this
process: rules, SAN, PGN, the panel opponents' policies, the engine pipes) and the Stockfish processes (from
/proc); plies are those played, the book's excluded. Both runs ask about two Stockfish searches per model move (the
Q of every position, for resignation and the panel opponents, and Stockfish members' moves), but a search costs the
engines more CPU at batch size 1, where they idle between searches. Cores busy is the CPU of this process and the
engines over the wall time: below the machine's cores, a run waits (on the engines' answers, or for CPU that other
work holds). The projection prices the ladder's and the baselines' games, which have no model, at the model games'
rate: a rough figure for them. Figures of one run are compared side by side only: the machine is shared and its load
is printed.

    .venv/bin/python benchmarks/bench_evaluation.py                                  # 200 games vs 40 at batch 1
    .venv/bin/python benchmarks/bench_evaluation.py --games 40 --baseline-games 10   # a short run
    .venv/bin/python benchmarks/bench_evaluation.py --dump data/raw/panel-demo/lichess_db_standard_rated_2024-01.pgn.zst
"""

from __future__ import annotations

import argparse
import inspect
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import chess
import chess.pgn
import numpy as np
import torch
import zstandard

from transcend_pipeline.defs.partitions import EXPERIMENTS
from transcend_pipeline.defs.resources import EvaluationSettings
from transcend_pipeline.evaluation import SWEEP, model_player
from transcend_pipeline.inference import LegalMoveDistribution
from transcend_pipeline.ladder import LadderEngines, Member, ladder_players, panel_baselines, panel_ladder
from transcend_pipeline.model import ChessFormer, config_for
from transcend_pipeline.panel import PanelConfig, panel_players
from transcend_pipeline.play import (
    GameRecord,
    ModelPolicy,
    Opening,
    Rules,
    book_from_games,
    pairings_against,
    play_matches,
    round_robin,
)
from transcend_pipeline.settings import PROFILES, find_stockfish

TEMPERATURE = 0.001
#: The month the rows are labelled with (a label only: ratings come from the dump or the rank formula).
MONTH = "2024-01"
#: Without a dump, player r (player 0 the best) is rated BEST_RATING - RATING_STEP * r.
BEST_RATING, RATING_STEP = 2100.0, 20.0
#: `play_matches`' own `max_in_flight`, the one evaluation plays with.
PIPELINE_IN_FLIGHT: int = inspect.signature(play_matches).parameters["max_in_flight"].default


@dataclass
class ModelTime:
    """The model's moves and the wall and calling-thread CPU seconds spent in its calls."""

    moves: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0


@contextmanager
def timed_model() -> Iterator[ModelTime]:
    """Times every `ModelPolicy.legal_distribution` call (every copy of the policy) while the block runs."""
    totals = ModelTime()
    original = ModelPolicy.legal_distribution

    def timed(policy: ModelPolicy, boards: Sequence[chess.Board]) -> LegalMoveDistribution:
        start, cpu_start = time.perf_counter(), time.thread_time()
        try:
            return original(policy, boards)
        finally:
            totals.seconds += time.perf_counter() - start
            totals.cpu_seconds += time.thread_time() - cpu_start
            totals.moves += len(boards)

    with mock.patch.object(ModelPolicy, "legal_distribution", timed):
        yield totals


def process_cpu_seconds() -> float:
    """CPU seconds this process has used, all its threads together."""
    times = os.times()
    return times.user + times.system


def engine_cpu_seconds(engines: LadderEngines) -> float:
    """CPU seconds the ladder's Stockfish processes have used (utime + stime; NaN where /proc cannot be read)."""
    pool = engines.skill_pool.engines + (engines.q.pool.engines if engines.q is not None else [])
    total = 0.0
    for engine in pool:
        try:
            fields = Path(f"/proc/{engine.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


@dataclass(frozen=True)
class Setup:
    """What both runs share: the profile's settings, panel, ladder, book, rules and model."""

    profile: str
    settings: EvaluationSettings
    config: PanelConfig
    rows: list[dict]
    caps: list[int]
    members: list[Member]
    book: list[Opening]
    rules: Rules
    model: ChessFormer
    stockfish: str


@dataclass
class Run:
    """One measured `play_matches` call."""

    label: str
    records: list[GameRecord]
    plies: int  # played, the book's excluded
    wall: float
    model: ModelTime
    process_cpu: float
    engine_cpu: float

    def per_move_ms(self, seconds: float) -> float:
        """`seconds` per model move, in milliseconds."""
        return 1000 * seconds / self.model.moves

    @property
    def games_per_s(self) -> float:
        return len(self.records) / self.wall


def measure(label: str, setup: Setup, games: int, max_in_flight: int) -> Run:
    """`games` model games over the ladder, with fresh engines (an empty Q memo), up to `max_in_flight` at once."""
    with LadderEngines.start(setup.stockfish, size=setup.settings.engines, config=setup.config) as engines:
        player = model_player("bench", setup.model, TEMPERATURE, SWEEP)
        pairings = pairings_against(player, ladder_players(setup.members, engines), games, book_size=len(setup.book))
        with timed_model() as model:
            start, cpu_start, engine_start = time.perf_counter(), process_cpu_seconds(), engine_cpu_seconds(engines)
            records = play_matches(
                pairings,
                rules=setup.rules,
                rng_seed=setup.settings.seed,
                evaluator=engines.q,
                max_in_flight=max_in_flight,
                book=setup.book,
            )
            wall, process = time.perf_counter() - start, process_cpu_seconds() - cpu_start
            engine = engine_cpu_seconds(engines) - engine_start
    plies = sum(record.plies for record in records) - len(records) * setup.settings.book_plies
    return Run(label, records, plies, wall, model, process, engine)


def panel_rows(config: PanelConfig, dump: Path | None) -> list[dict]:
    """`panel_players` rows, rated from the dump or, without one, by rank (`BEST_RATING`, `RATING_STEP` lower each)."""
    rows = panel_players(config, MONTH, dump)
    if dump is None:
        for row in rows:
            row["rating"] = BEST_RATING - RATING_STEP * row["player_index"]
    return rows


def random_games(count: int, plies: int, seed: int) -> list[list[str]]:
    """`count` games of `plies` random legal moves (UCI), shorter where one ends first."""
    rng = np.random.default_rng(seed)
    games = []
    for _ in range(count):
        board = chess.Board()
        while board.ply() < plies and (moves := list(board.legal_moves)):
            board.push(moves[int(rng.integers(len(moves)))])
        games.append([move.uci() for move in board.move_stack])
    return games


def dump_games(dump: Path, limit: int) -> list[list[str]]:
    """The dump's first `limit` games as UCI move lists."""
    games = []
    with zstandard.open(dump, "rt", encoding="utf-8") as text:
        while len(games) < limit and (game := chess.pgn.read_game(text)) is not None:
            games.append([move.uci() for move in game.mainline_moves()])
    return games


def projection(setup: Setup, runs: Sequence[Run]) -> None:
    """The profile's evaluation in games, and in hours at each run's measured games/s (the same per-game cost assumed
    for the ladder's and the baselines' games, which have no model: a rough figure for them)."""
    settings, plan = setup.settings, setup.settings.plan()
    book_size = len(setup.book)
    with LadderEngines.start(setup.stockfish, size=1, config=setup.config) as engines:
        ladder = ladder_players(setup.members, engines)
        player = model_player("projection", setup.model, TEMPERATURE, SWEEP)

        def against_ladder(games: int) -> int:
            return sum(pairing.games for pairing in pairings_against(player, ladder, games, book_size=book_size))

        sweep = len(plan.sweep_temperatures) * against_ladder(plan.sweep_games)
        confirm = against_ladder(plan.confirm_games)
        baselines = sum(
            pairing.games
            for cap in setup.caps
            for baseline in panel_baselines(setup.rows, cap, engines)
            for pairing in pairings_against(baseline, ladder, plan.baseline_games, book_size=book_size)
            if pairing.opponent.name != baseline.name
        )
        robin = round_robin(ladder, settings.games_per_pair, book_size=book_size)
    parts = {
        f"models: {len(EXPERIMENTS)} experiments x ({len(plan.sweep_temperatures)} τ x "
        f"{sweep // len(plan.sweep_temperatures)} sweep + {confirm} confirm)": len(EXPERIMENTS) * (sweep + confirm),
        f"baselines: {len(setup.caps)} caps x 3 players": baselines,
        f"ladder round robin: {len(robin)} pairs x {robin[0].games}": sum(pairing.games for pairing in robin),
    }
    parts["total"] = sum(parts.values())
    print(
        f"\nprojected {setup.profile} evaluation ({len(setup.members)} ladder members; "
        f"caps {', '.join(map(str, setup.caps))}), hours at each run's games/s:"
    )
    print(f"{'':62} {'games':>7} " + " ".join(f"{run.label:>24}" for run in runs))
    for label, games in parts.items():
        print(f"{label:62} {games:7d} " + " ".join(f"{games / run.games_per_s / 3600:23.2f}h" for run in runs))


def report(batched: Run, baseline: Run) -> None:
    """Both runs side by side, the speed-ups, and how many of the baseline's games the batched run played alike."""
    print(
        f"\n{'':24} {'games':>6} {'plies/game':>11} {'model moves':>12} {'wall s':>8} {'games/s':>8} {'moves/s':>8} "
        f"{'plies/s':>8} {'model % wall':>13} {'cores busy':>11}  CPU ms/model move: model / loop / Stockfish = total"
    )
    for run in (batched, baseline):
        model, process = run.model.cpu_seconds, run.process_cpu
        print(
            f"{run.label:24} {len(run.records):6d} {run.plies / len(run.records):11.1f} {run.model.moves:12d} "
            f"{run.wall:8.1f} {run.games_per_s:8.2f} {run.model.moves / run.wall:8.1f} {run.plies / run.wall:8.1f} "
            f"{100 * run.model.seconds / run.wall:12.0f}% {(process + run.engine_cpu) / run.wall:11.2f}  "
            f"{run.per_move_ms(model):.2f} / {run.per_move_ms(process - model):.2f} / "
            f"{run.per_move_ms(run.engine_cpu):.2f} = {run.per_move_ms(process + run.engine_cpu):.2f}"
        )

    def cpu_per_move(run: Run) -> float:
        return run.per_move_ms(run.process_cpu + run.engine_cpu)

    print(
        f"speed-up: {batched.games_per_s / baseline.games_per_s:.1f}x games/s, "
        f"{batched.model.moves / batched.wall / (baseline.model.moves / baseline.wall):.1f}x model moves/s, "
        f"{batched.plies / batched.wall / (baseline.plies / baseline.wall):.1f}x plies/s, "
        f"{cpu_per_move(baseline) / cpu_per_move(batched):.1f}x less CPU per model move"
    )
    moves = {(record.pairing, record.game): record.moves for record in batched.records}
    identical = sum(moves.get((record.pairing, record.game)) == record.moves for record in baseline.records)
    print(f"batch-size-1 games identical to the batched run's: {identical} of {len(baseline.records)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--games", type=int, default=200, help="model games of the batched run (default 200)")
    parser.add_argument("--baseline-games", type=int, default=40, help="model games at batch size 1 (default 40)")
    parser.add_argument(
        "--profile", choices=tuple(PROFILES), default="demo", help="panel config and evaluation settings"
    )
    parser.add_argument("--dump", type=Path, help="a panel dump: its written ratings and its games' openings")
    parser.add_argument("--checkpoint", type=Path, help="a trained ChessFormer (default: an untrained tiny one)")
    parser.add_argument(
        "--engines", type=int, default=EvaluationSettings().engines, help="Stockfish processes per pool (default 2)"
    )
    parser.add_argument("--torch-threads", type=int, default=1)
    args = parser.parse_args()

    settings = EvaluationSettings.for_profile(args.profile, engines=args.engines)
    torch.set_num_threads(args.torch_threads)
    config = PanelConfig.for_profile(args.profile)
    rows = panel_rows(config, args.dump)
    caps = sorted({experiment.cap for experiment in EXPERIMENTS.values()})
    # As many games as `opponent_ladder` samples from a bucket; random lines: twice the book, as `book_from_games`
    # skips the lines that end a game
    games = (
        dump_games(args.dump, 50 * settings.book_openings)
        if args.dump is not None
        else random_games(2 * settings.book_openings, settings.book_plies, settings.seed)
    )
    if args.checkpoint is not None:
        model = ChessFormer.from_checkpoint(str(args.checkpoint)).eval()
    else:
        torch.manual_seed(settings.seed)
        model = ChessFormer(config_for("tiny")).eval()
    setup = Setup(
        args.profile,
        settings,
        config,
        rows,
        caps,
        panel_ladder(rows, caps, settings.ladder_plan()),
        book_from_games(games, count=settings.book_openings, plies=settings.book_plies),
        Rules.of_panel(config),
        model,
        find_stockfish(),
    )
    load = " ".join(f"{minutes:.1f}" for minutes in os.getloadavg())
    print(
        f"{args.profile} panel, ratings {'from ' + str(args.dump) if args.dump else 'by rank'}; "
        f"{len(setup.members)} ladder members; book {len(setup.book)} x {settings.book_plies} plies; "
        f"model {args.checkpoint or 'untrained tiny'} at τ={TEMPERATURE:g}; {setup.rules}; "
        f"{settings.engines} Stockfish per pool; torch threads {args.torch_threads}; load average {load}"
    )
    batched = measure(f"batched ({PIPELINE_IN_FLIGHT} in flight)", setup, args.games, PIPELINE_IN_FLIGHT)
    baseline = measure("batch size 1", setup, args.baseline_games, 1)
    report(batched, baseline)
    projection(setup, (batched, baseline))


if __name__ == "__main__":
    main()
