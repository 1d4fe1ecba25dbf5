"""Fixtures shared by several test files."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from tokenizer_helpers import train_bpe
from tokenizers import Tokenizer


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture(scope="module")
def bpe_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3000-entry byte-level BPE: every candidate word of the prompt vocabulary is one token."""
    return train_bpe(tmp_path_factory.mktemp("bpe") / "tokenizer.json", 3000)


@pytest.fixture(scope="module")
def bpe(bpe_path: Path) -> Tokenizer:
    return Tokenizer.from_file(str(bpe_path))
