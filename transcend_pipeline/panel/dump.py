"""A month of panel games, written as a Lichess open-database dump (`lichess_db_standard_rated_YYYY-MM.pgn.zst`).

A month is generated from (config, month) alone, so a backfill can run months in parallel:

1. a calibration round (the first `calibration_share` of the month's games) between randomly paired players;
2. ratings fitted from those results, and the rest of the month paired by rating proximity, as Lichess does;
3. ratings fitted from *all* the month's games are the Elo written into every game of the month (one rating
   per player and month, so a player's rating moves from month to month as its activity and results do).

Each game's randomness comes from (seed, month, game index), and every chunk of `chunk_games` games starts from
a freshly cleared engine, so the file is byte-identical whichever worker played which chunk.
"""

from __future__ import annotations

import calendar
import datetime as dt
import hashlib
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import chess
import numpy as np
import zstandard

from transcend_pipeline.lichess import dump_filename, sha256_file
from transcend_pipeline.panel.games import activity_weights, pair_at_random, pair_by_rating, play_pairs
from transcend_pipeline.panel.players import Panel, PanelConfig
from transcend_pipeline.panel.pool import chunked, worker_pool
from transcend_pipeline.ratings import expected_score, fit_pool_ratings, written_scale

ZSTD_LEVEL = 10
TIME_CONTROL_SECONDS = 180
RATING_DIFF_K = 20.0
SITE_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
ELO_TAG = re.compile(r'^\[(White|Black)(Elo)? "([^"]*)"\]$', re.MULTILINE)
# Longest SAN prefix wins; positions not listed get ECO "?" and Opening "?".
OPENINGS: dict[tuple[str, ...], tuple[str, str]] = {
    ("e4",): ("B00", "King's Pawn Game"),
    ("e4", "e5"): ("C20", "King's Pawn Game"),
    ("e4", "e5", "Nf3"): ("C40", "King's Knight Opening"),
    ("e4", "e5", "Nf3", "Nc6"): ("C44", "King's Knight Opening: Normal Variation"),
    ("e4", "e5", "Nf3", "Nc6", "Bb5"): ("C60", "Ruy Lopez"),
    ("e4", "e5", "Nf3", "Nc6", "Bc4"): ("C50", "Italian Game"),
    ("e4", "e5", "Nf3", "Nc6", "d4"): ("C44", "Scotch Game"),
    ("e4", "e5", "Nf3", "Nf6"): ("C42", "Russian Game"),
    ("e4", "c5"): ("B20", "Sicilian Defense"),
    ("e4", "e6"): ("C00", "French Defense"),
    ("e4", "c6"): ("B10", "Caro-Kann Defense"),
    ("e4", "d5"): ("B01", "Scandinavian Defense"),
    ("e4", "d6"): ("B07", "Pirc Defense"),
    ("e4", "Nf6"): ("B02", "Alekhine Defense"),
    ("d4",): ("A40", "Queen's Pawn Game"),
    ("d4", "d5"): ("D00", "Queen's Pawn Game"),
    ("d4", "d5", "c4"): ("D06", "Queen's Gambit"),
    ("d4", "Nf6"): ("A45", "Indian Defense"),
    ("c4",): ("A10", "English Opening"),
    ("Nf3",): ("A04", "Zukertort Opening"),
    ("e3",): ("A00", "Van't Kruijs Opening"),
    ("g3",): ("A00", "Hungarian Opening"),
    ("b3",): ("A01", "Nimzo-Larsen Attack"),
    ("f4",): ("A02", "Bird Opening"),
}


@dataclass(frozen=True)
class DumpResult:
    path: Path
    games: int
    seconds: float
    sha256: str


@dataclass(frozen=True)
class _GameText:
    """A played game as the worker returns it: everything but the month-level tags (ratings, time, id)."""

    white: int
    black: int
    result: str
    termination: str
    opening: tuple[str, str]
    movetext: str

    @property
    def score_for_white(self) -> float:
        return {"1-0": 1.0, "0-1": 0.0}.get(self.result, 0.5)


def write_month_dump(
    config: PanelConfig,
    month: str,
    dest_dir: Path,
    *,
    stockfish_path: str,
    workers: int = 2,
    progress: Callable[[int, float], None] | None = None,
) -> DumpResult:
    """Generate the month's games on `workers` processes and write the dump atomically into `dest_dir`."""
    start = time.perf_counter()
    month_start = _month_start(month)
    rng = np.random.default_rng(config.derived_seed("month", month))
    activity = activity_weights(config) * np.exp(0.3 * rng.standard_normal(config.n_players))
    n_calibration = max(1, round(config.games_per_month * config.calibration_share))

    played: list[_GameText] = []
    with worker_pool(config, stockfish_path, workers) as run:

        def play(pairs: np.ndarray) -> None:
            chunks = list(chunked(pairs.tolist(), config.chunk_games))
            firsts = len(played) + config.chunk_games * np.arange(len(chunks))
            for games in run(_play_chunk, [month] * len(chunks), firsts.tolist(), chunks):
                played.extend(games)
                if progress is not None:
                    progress(len(played), time.perf_counter() - start)

        play(pair_at_random(config.n_players, n_calibration, rng))
        ratings = _written_ratings(config, played)
        play(
            pair_by_rating(
                ratings, config.games_per_month - n_calibration, rng, window=config.pairing_window, activity=activity
            )
        )
    ratings = _written_ratings(config, played)

    dest_dir.mkdir(parents=True, exist_ok=True)
    path = dest_dir / dump_filename(month)
    partial = path.with_name(path.name + f".{os.getpid()}.part")
    try:
        with open(partial, "wb") as raw:
            with zstandard.ZstdCompressor(level=ZSTD_LEVEL).stream_writer(raw, closefd=False) as out:
                for text in _pgn_games(config, month, month_start, played, ratings, rng):
                    out.write(text.encode())
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return DumpResult(path, len(played), time.perf_counter() - start, sha256_file(path))


def panel_players(config: PanelConfig, month: str, dump_path: Path | None = None) -> list[dict]:
    """The ground truth, one row per player: parameters, and the month's written rating and game count.

    Rating and games are read back from the month's dump (`dump_path`), the one place they are decided;
    without it they are None and 0.
    """
    panel = Panel(config)
    rating: dict[str, int] = {}
    games: dict[str, int] = {}
    if dump_path is not None:
        with zstandard.open(dump_path, "rt", encoding="utf-8") as text:
            name = {}
            for match in ELO_TAG.finditer(text.read()):
                side, is_elo, value = match.groups()
                if is_elo:
                    rating[name[side]] = int(value)
                else:
                    name[side] = value
                    games[value] = games.get(value, 0) + 1
    return [
        {
            "month": month,
            "player": name,
            "player_index": r,
            "temperature": float(panel.temperatures[r]),
            "bias_scale": float(panel.sigmas[r]),
            "rho": config.rho,
            "q_source": config.q_source,
            "rating": rating.get(name),
            "games": games.get(name, 0),
        }
        for r, name in enumerate(panel.names)
    ]


def _written_ratings(config: PanelConfig, played: list[_GameText]) -> np.ndarray:
    """Ratings fitted from the games so far, widened around the 1500 median by `rating_spread`."""
    fitted = fit_pool_ratings(
        np.array([g.white for g in played]),
        np.array([g.black for g in played]),
        np.array([g.score_for_white for g in played]),
        config.n_players,
        anchor_median=1500.0,
    )
    fitted = np.asarray(fitted, dtype=np.float64)
    return written_scale(fitted, centre=float(np.median(fitted)), at=1500.0, spread=config.rating_spread)


def _play_chunk(month: str, first_index: int, pairs: list[tuple[int, int]]) -> list[_GameText]:
    """Play consecutive games of the month on this worker (see the module docstring)."""
    games = []
    for (white, black), (game, rng) in zip(pairs, play_pairs(month, first_index, pairs), strict=True):
        movetext, opening = _movetext(game.moves, game.result, rng)
        games.append(_GameText(white, black, game.result, game.termination, opening, movetext))
    return games


# --- PGN text ----------------------------------------------------------------------------------------------------


def _movetext(moves: tuple[chess.Move, ...], result: str, rng: np.random.Generator) -> tuple[str, tuple[str, str]]:
    """SAN movetext with Lichess's `{ [%clk h:mm:ss] }` after every move, and the game's (ECO, Opening)."""
    board = chess.Board()
    clocks = [float(TIME_CONTROL_SECONDS), float(TIME_CONTROL_SECONDS)]
    parts = []
    sans = []
    for ply, move in enumerate(moves):
        san = board.san(move)
        sans.append(san)
        side = ply % 2
        clocks[side] = max(1.0, clocks[side] - min(float(rng.gamma(2.0, 1.0)), clocks[side] / 10))
        number = f"{ply // 2 + 1}." if side == 0 else f"{ply // 2 + 1}..."
        parts.append(f"{number} {san} {{ [%clk {_clock(clocks[side])}] }}")
        board.push(move)
    parts.append(result)
    return " ".join(parts), _opening(sans)


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _opening(sans: list[str]) -> tuple[str, str]:
    for length in range(min(len(sans), 5), 0, -1):
        if (known := OPENINGS.get(tuple(sans[:length]))) is not None:
            return known
    return ("?", "?")


def _pgn_games(
    config: PanelConfig,
    month: str,
    month_start: dt.datetime,
    played: list[_GameText],
    ratings: np.ndarray,
    rng: np.random.Generator,
) -> Iterator[str]:
    """Each game's text: the tags in Lichess's order, a blank line, the movetext, a blank line."""
    names = Panel(config).names
    elo = np.rint(ratings).astype(int)
    month_seconds = calendar.monthrange(month_start.year, month_start.month)[1] * 86_400
    starts = (np.arange(len(played)) + 0.9 * rng.random(len(played))) * (month_seconds / max(len(played), 1))
    for index, (game, start) in enumerate(zip(played, starts.tolist(), strict=True)):
        moment = month_start + dt.timedelta(seconds=int(start))
        white_elo, black_elo = int(elo[game.white]), int(elo[game.black])
        expected = float(expected_score(white_elo, black_elo))
        white_diff = round(RATING_DIFF_K * (game.score_for_white - expected))
        black_diff = round(RATING_DIFF_K * ((1.0 - game.score_for_white) - (1.0 - expected)))
        tags = [
            ("Event", "Rated Blitz game"),
            ("Site", f"https://lichess.org/{_game_id(config, month, index)}"),
            ("Date", moment.strftime("%Y.%m.%d")),
            ("Round", "-"),
            ("White", names[game.white]),
            ("Black", names[game.black]),
            ("Result", game.result),
            ("UTCDate", moment.strftime("%Y.%m.%d")),
            ("UTCTime", moment.strftime("%H:%M:%S")),
            ("WhiteElo", str(white_elo)),
            ("BlackElo", str(black_elo)),
            ("WhiteRatingDiff", f"{white_diff:+d}"),
            ("BlackRatingDiff", f"{black_diff:+d}"),
            ("ECO", game.opening[0]),
            ("Opening", game.opening[1]),
            ("TimeControl", f"{TIME_CONTROL_SECONDS}+0"),
            ("Termination", game.termination),
        ]
        yield "".join(f'[{key} "{value}"]\n' for key, value in tags) + "\n" + game.movetext + "\n\n"


def _game_id(config: PanelConfig, month: str, index: int) -> str:
    """An 8-character Lichess-style id, unique per (seed, month, game): 48 bits of a hash, in base 62."""
    value = int.from_bytes(hashlib.sha256(repr((config.seed, month, index)).encode()).digest()[:6], "big")
    digits = []
    for _ in range(8):
        value, digit = divmod(value, 62)
        digits.append(SITE_ALPHABET[digit])
    return "".join(digits)


def _month_start(month: str) -> dt.datetime:
    try:
        return dt.datetime.strptime(month, "%Y-%m")
    except ValueError as error:
        raise ValueError(f"month must be 'YYYY-MM', got {month!r}") from error
