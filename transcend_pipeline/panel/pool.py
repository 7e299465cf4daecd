"""Worker processes that each own one engine and the panel, and play chunks of games in order.

Both the dump and the oracle-property matches run here. A worker starts its Q source once and quits it when it
exits (a pool shutdown, an error or an interrupt); Stockfish also exits by itself when its parent's pipe closes.
With `workers=1` the chunks run in the calling process, which is simplest to debug.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.util
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from transcend_pipeline.engine import Engine
from transcend_pipeline.panel.players import Panel, PanelConfig, QSource
from transcend_pipeline.panel.stockfish import StockfishQ
from transcend_pipeline.panel.tactical import TacticalQ


class ResettableQ(QSource, Protocol):
    def reset(self) -> None: ...


@dataclass(frozen=True)
class WorkerState:
    config: PanelConfig
    panel: Panel
    q: ResettableQ


_state: WorkerState | None = None


def worker_state() -> WorkerState:
    """This worker's panel and Q source; call `q.reset()` at the start of a chunk for reproducible scores."""
    if _state is None:
        raise RuntimeError("no panel worker was started in this process (use worker_pool)")
    return _state


def _start_worker(config: PanelConfig, stockfish_path: str) -> None:
    global _state
    if config.q_source == "tactical":
        q: ResettableQ = TacticalQ()
    else:
        engine = Engine(stockfish_path, depth=config.depth, multipv=config.multipv, floor_cp=config.floor_cp)
        multiprocessing.util.Finalize(engine, engine.close, exitpriority=10)
        q = StockfishQ(engine)
    _state = WorkerState(config, Panel(config), q)


def _stop_worker() -> None:
    global _state
    if _state is not None and isinstance(_state.q, StockfishQ):
        _state.q.engine.close()
    _state = None


@contextmanager
def worker_pool(config: PanelConfig, stockfish_path: str, workers: int) -> Iterator[Callable[..., Iterator[Any]]]:
    """A `map(function, *iterables)` that runs on `workers` panel workers and yields results in order."""
    if workers <= 1:
        _start_worker(config, stockfish_path)
        try:
            yield lambda function, *iterables: map(function, *iterables)
        finally:
            _stop_worker()
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, context, initializer=_start_worker, initargs=(config, stockfish_path)) as pool:
        try:
            yield lambda function, *iterables: pool.map(function, *iterables)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def chunked(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of `size` items (the last one shorter)."""
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
