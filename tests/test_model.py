"""ChessFormer's outputs are distributions over exactly the legal moves, for the move head and the transcript head."""

from __future__ import annotations

import random

import chess
import pytest
import torch

from transcend_pipeline.model import (
    ChessFormer,
    choose_moves,
    config_for,
    legal_move_distribution,
    peak_flops,
    position_batch,
)

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
    cold = legal_move_distribution(model, games, temperature=1e-4).probs
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
