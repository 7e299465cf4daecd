"""ChessFormer's outputs are distributions over exactly the legal moves, for the move head and the transcript head."""

from __future__ import annotations

import gc
import random

import chess
import numpy as np
import pytest
import torch

from transcend_pipeline import features, inference, vocab
from transcend_pipeline.inference import choose_moves, legal_move_distribution, position_batch
from transcend_pipeline.model import ChessFormer, config_for, peak_flops

SMALL_SIZES = {
    "move head": config_for("tiny", n_layer=1, n_embd=32, move_hidden=32),
    "transcript": config_for("paper", n_layer=1, n_head=2, n_embd=32),  # the paper's setting, shrunk
}


@pytest.fixture(scope="module")
def games() -> list[chess.Board]:
    """Random games of different lengths, each still in progress."""
    rng = random.Random(3)
    boards = []
    while len(boards) < 12:
        board = chess.Board()
        for _ in range(rng.randint(0, 90)):
            moves = list(board.legal_moves)
            if not moves:
                break
            board.push(rng.choice(moves))
        if any(board.legal_moves):
            boards.append(board)
    return boards


@pytest.fixture(scope="module", params=list(SMALL_SIZES))
def model(request: pytest.FixtureRequest) -> ChessFormer:
    torch.manual_seed(0)
    model = ChessFormer(SMALL_SIZES[request.param])
    with torch.no_grad():  # sharpen the random init so distributions differ clearly from uniform
        for parameter in model.parameters():
            parameter.mul_(5)
    return model


def test_distribution_covers_exactly_the_legal_moves(model: ChessFormer, games: list[chess.Board]) -> None:
    distribution = legal_move_distribution(model, games, temperature=1.0)
    logits = model(position_batch(model, games)[0])[0]
    assert distribution.probs.shape == logits.shape and len(logits) == len(games)
    for board, moves, row, logit in zip(games, distribution.moves, distribution.probs, logits, strict=True):
        assert moves == list(board.legal_moves)
        assert torch.isclose(row.sum(), torch.tensor(1.0), atol=1e-5)
        assert torch.isfinite(logit[: len(moves)]).all() and (logit[len(moves) :] == float("-inf")).all()
        assert (row[len(moves) :] == 0).all()
    assert set(distribution.as_dicts()[0]) == set(games[0].legal_moves)


def test_zero_temperature_is_the_argmax(model: ChessFormer, games: list[chess.Board]) -> None:
    batch, _ = position_batch(model, games)
    logits = model(batch)[0]
    greedy = legal_move_distribution(model, games, temperature=0.0).probs
    assert (greedy.argmax(-1) == logits.argmax(-1)).all() and (greedy.max(-1).values == 1).all()
    # τ → 0 approaches the argmax: at a τ well below each row's gap between its best two logits (an untrained
    # model's logits are close together), the distribution is the argmax's one-hot row.
    top2 = logits.topk(2, dim=-1).values
    gap = float((top2[:, 0] - top2[:, 1]).min())
    assert gap > 0
    cold = legal_move_distribution(model, games, temperature=gap / 20).probs
    assert torch.allclose(cold, greedy, atol=1e-3)
    chosen = choose_moves(model, games, temperature=0.0)
    assert chosen == [
        moves[slot] for moves, slot in zip(position_batch(model, games)[1], logits.argmax(-1).tolist(), strict=True)
    ]


def test_temperature_flattens_the_distribution(model: ChessFormer, games: list[chess.Board]) -> None:
    def entropy(probs: torch.Tensor) -> torch.Tensor:
        return -(probs * probs.clamp_min(1e-30).log()).sum(-1)

    warm = legal_move_distribution(model, games, temperature=2.0).probs
    assert (entropy(warm) > entropy(legal_move_distribution(model, games, temperature=0.5).probs)).all()


def test_batched_equals_one_by_one(model: ChessFormer, games: list[chess.Board]) -> None:
    batched = legal_move_distribution(model, games, temperature=1.0)
    for index, board in enumerate(games):
        alone = legal_move_distribution(model, [board], temperature=1.0).probs[0]
        assert torch.allclose(batched.probs[index, : len(alone)], alone, atol=1e-5)


def test_sampling_returns_legal_moves_and_follows_the_seed(model: ChessFormer, games: list[chess.Board]) -> None:
    first = choose_moves(model, games, temperature=1.0, generator=torch.Generator().manual_seed(5))
    again = choose_moves(model, games, temperature=1.0, generator=torch.Generator().manual_seed(5))
    assert first == again
    assert all(move in board.legal_moves for move, board in zip(first, games, strict=True))


def test_the_model_is_left_in_its_mode(model: ChessFormer, games: list[chess.Board]) -> None:
    model.train()
    legal_move_distribution(model, games[:2], temperature=1.0)
    assert model.training
    model.eval()


def test_positions_it_cannot_score_are_refused(model: ChessFormer) -> None:
    with pytest.raises(ValueError, match="standard starting position"):
        legal_move_distribution(model, [chess.Board("4k3/8/8/8/8/8/8/4K2R w K - 0 1")], temperature=1.0)
    mate = chess.Board()
    for san in ("f3", "e5", "g4", "Qh4#"):
        mate.push_san(san)
    with pytest.raises(ValueError, match="no move distribution"):
        legal_move_distribution(model, [mate], temperature=1.0)
    with pytest.raises(ValueError, match="temperature"):
        legal_move_distribution(model, [chess.Board()], temperature=-1.0)


def test_sizes() -> None:
    paper = ChessFormer(config_for("paper"))
    assert 45e6 < paper.get_num_params() < 55e6  # the paper's ~50M
    assert not paper.config.board_input and not paper.config.move_features
    tiny = ChessFormer(config_for("tiny"))
    assert tiny.get_num_params() < 1e6 and tiny.config.move_features
    with pytest.raises(KeyError):
        config_for("huge")


def test_mfu_estimate() -> None:
    paper = ChessFormer(config_for("paper"))
    flops = paper.flops_per_position(tokens_per_game=256)
    assert 6 * paper.get_num_params() * 0.9 < flops < 6 * paper.get_num_params() * 1.5
    assert paper.estimate_mfu(1e5, 256, peak_flops("NVIDIA H100 80GB HBM3")) == pytest.approx(flops * 1e5 / 989e12)
    assert peak_flops("a mystery card") is None


def _replayed_inputs(board: chess.Board, block_size: int) -> tuple[list[int], np.ndarray, np.ndarray]:
    """The last ``block_size`` input tokens and board planes of a game, rebuilt from scratch by replaying it."""
    replay, positions = chess.Board(), [chess.Board()]
    for move in board.move_stack:
        replay.push(move)
        positions.append(replay.copy(stack=False))
    planes, state = features.board_planes(positions)
    tokens = [vocab.BOS, *(vocab.token_of(move) for move in board.move_stack)]
    return tokens[-block_size:], planes[-block_size:], state[-block_size:]


@pytest.mark.parametrize("board_input", [True, False])
def test_inputs_kept_between_calls_equal_a_fresh_replay(board_input: bool) -> None:
    """A game scored ply by ply, taken back, played on in another line, copied and cropped at block_size always
    gets the inputs of a replay from the start."""
    model = ChessFormer(config_for("tiny", block_size=9, board_input=board_input, move_features=board_input))
    rng = random.Random(7)
    board = chess.Board()

    def check(board: chess.Board) -> None:
        batch, _ = position_batch(model, [board])
        tokens, planes, state = _replayed_inputs(board, model.config.block_size)
        assert batch["tokens"][0].tolist() == tokens and batch["query"].tolist() == [len(tokens) - 1]
        if board_input:
            assert (batch["boards"][0].numpy() == planes).all() and (batch["state"][0].numpy() == state).all()
        else:
            assert "boards" not in batch

    for step in range(24):
        for _ in range(1 + step % 3):  # one to three plies between calls, as between a model's moves
            board.push(rng.choice(list(board.legal_moves)))
        check(board)
        if step == 12:
            for _ in range(3):
                board.pop()
            board.push(rng.choice([move for move in board.legal_moves if move != board.peek()]))
            check(board)
    check(board.copy())
    fresh = chess.Board()
    for move in board.move_stack[:5]:
        fresh.push(chess.Move.from_uci(move.uci()))  # equal moves, other objects
    check(fresh)


def test_inputs_of_a_finished_game_are_dropped_with_its_board(model: ChessFormer) -> None:
    board = chess.Board()
    board.push_san("e4")
    position_batch(model, [board])
    assert id(board) in inference._GAMES
    key = id(board)
    del board
    gc.collect()
    assert key not in inference._GAMES


@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_transcript_illegal_mass_comes_from_the_same_pass(games: list[chess.Board], temperature: float) -> None:
    torch.manual_seed(0)
    transcript = ChessFormer(SMALL_SIZES["transcript"]).eval()
    distribution = legal_move_distribution(transcript, games, temperature=temperature)
    batch, moves = position_batch(transcript, games)
    with torch.inference_mode():
        vocab_logits = transcript(batch)[1]
    for row, legal_moves in enumerate(moves):
        legal_tokens = [vocab.token_of(move) for move in legal_moves]
        if temperature == 0:
            expected = float(int(vocab_logits[row].argmax()) not in legal_tokens)
        else:
            expected = 1 - torch.softmax(vocab_logits[row] / temperature, -1)[legal_tokens].sum().item()
        assert distribution.illegal_mass[row].item() == pytest.approx(expected, abs=1e-5)
    assert distribution.illegal_mass.sum() > 0 and (distribution.illegal_mass <= 1).all()
    move_head = ChessFormer(SMALL_SIZES["move head"])
    assert legal_move_distribution(move_head, games, temperature=temperature).illegal_mass is None


def test_a_board_reset_to_another_position_is_refused_after_scoring(model: ChessFormer) -> None:
    board = chess.Board()
    legal_move_distribution(model, [board], temperature=1.0)
    board.set_fen("4k3/8/8/8/8/8/8/4K2R w K - 0 1")
    with pytest.raises(ValueError, match="standard starting position"):
        legal_move_distribution(model, [board], temperature=1.0)


def _random_play(model: ChessFormer, boards: list[chess.Board], rng: random.Random, calls: int) -> float:
    """Plays random moves on the boards (one to three plies between calls, a take-back now and then, a game
    sometimes sitting out a call) and returns the largest gap between the cached and the recomputed probabilities."""
    worst = 0.0
    for call in range(calls):
        live = [board for board in boards if any(board.legal_moves) and rng.random() < 0.85]
        if live:
            cached = legal_move_distribution(model, live, temperature=1.0).probs
            full = legal_move_distribution(model, live, temperature=1.0, incremental=False).probs
            worst = max(worst, (cached - full).abs().max().item())
        for board in boards:
            if call % 7 == 6 and len(board.move_stack) > 2:
                board.pop()
            for _ in range(rng.randint(1, 3)):
                if any(board.legal_moves):
                    board.push(rng.choice(list(board.legal_moves)))
    return worst


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"n_layer": 2},
        {"n_layer": 2, "board_input": False},
        {"n_layer": 2, "move_features": False},
        {"n_layer": 2, "board_input": False, "move_features": False},
        {"n_layer": 2, "block_size": 24},  # games outgrow the window: those rows are recomputed
        {"n_layer": 0},  # `tiny` may be all head: nothing to cache, the same answers
    ],
    ids=lambda overrides: ",".join(f"{k}={v}" for k, v in overrides.items()) or "tiny",
)
def test_cached_keys_and_values_give_the_full_recompute(overrides: dict) -> None:
    torch.manual_seed(1)
    model = ChessFormer(config_for("tiny", **overrides))
    with torch.no_grad():  # sharpen the random init so a wrong context would change the distribution visibly
        for parameter in model.parameters():
            parameter.mul_(4)
    boards = [chess.Board() for _ in range(4)]
    assert _random_play(model, boards, random.Random(11), calls=20) < 1e-5
    assert max(len(board.move_stack) for board in boards) > 30


def test_cache_evicts_and_follows_weight_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past its memory budget the cache reuses the slots of games not in the call, which are recomputed when they
    come back; changed weights drop it; the slots of games that are gone are freed."""
    torch.manual_seed(2)
    model = ChessFormer(config_for("tiny", n_layer=2))
    monkeypatch.setattr(inference, "KV_CACHE_BYTES", 1)  # one slot, grown only as far as a call needs
    rng = random.Random(5)
    boards = [chess.Board() for _ in range(4)]
    _random_play(model, boards, rng, calls=3)
    cache = inference._kv_cache(model)

    def agrees(group: list[chess.Board]) -> bool:
        cached = legal_move_distribution(model, group, temperature=1.0).probs
        return torch.allclose(cached, legal_move_distribution(model, group, 1.0, incremental=False).probs, atol=1e-5)

    for group in (boards[:2], boards[2:], boards[:2], boards):  # the second and third evict the idle pair
        assert agrees(group)
        for board in group:
            board.push(rng.choice(list(board.legal_moves)))
    assert cache.max_slots == 1 and len(cache.owners) == len(boards)
    with torch.no_grad():
        model.h[0].mlp.c_fc.weight.mul_(3)  # as an optimiser step would
    assert agrees(boards) and inference._kv_cache(model) is not cache
    cache = inference._kv_cache(model)
    assert sum(owner is not None for owner in cache.owners) == len(boards)
    del boards, group, board
    gc.collect()
    assert sorted(slot for slot, _ in cache.released) == list(range(len(cache.owners)))  # all four games are gone
    fresh = [chess.Board() for _ in range(4)]
    legal_move_distribution(model, fresh, temperature=1.0)
    assert not cache.released and not cache.free and len(cache.owners) == 4  # their slots were reused
