"""The examples in module docstrings run: a reader can trust what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize(
    "module", ["transcend_pipeline.vocab", "transcend_pipeline.features", "transcend_pipeline.ratings"]
)
def test_docstring_examples_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_no_other_module_shows_an_example_that_does_not_run() -> None:
    """Examples that need an engine or the network are written as plain code blocks, not `>>>` doctests."""
    import pathlib

    package = pathlib.Path(importlib.import_module("transcend_pipeline").__file__).parent
    with_prompts = {
        f"transcend_pipeline.{path.relative_to(package).with_suffix('').as_posix().replace('/', '.')}"
        for path in package.rglob("*.py")
        if ">>> " in path.read_text()
    }
    assert with_prompts <= {"transcend_pipeline.vocab", "transcend_pipeline.features", "transcend_pipeline.ratings"}
