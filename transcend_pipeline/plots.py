"""Figures written as PNG files and embedded as Markdown, so they show in the Dagster UI and open anywhere."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Figure:
    path: Path

    @property
    def markdown(self) -> str:
        """The PNG inlined as a data URI: the Dagster UI renders it without access to the data directory."""
        encoded = base64.b64encode(self.path.read_bytes()).decode()
        return f"![{self.path.stem}](data:image/png;base64,{encoded})"


def loss_curve_png(
    train_curve: Sequence[tuple[int, float]], val_curve: Sequence[tuple[int, float]], path: Path, *, title: str
) -> Figure:
    """Training and validation loss against optimiser steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 3.5), dpi=100)
    if train_curve:
        steps, losses = zip(*train_curve, strict=True)
        axes.plot(steps, losses, lw=0.8, alpha=0.6, label="train")
    if val_curve:
        steps, losses = zip(*val_curve, strict=True)
        axes.plot(steps, losses, "o-", lw=1.5, label="val")
    axes.set(xlabel="step", ylabel="cross-entropy (nats)", title=f"{title}: loss")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return Figure(path)
