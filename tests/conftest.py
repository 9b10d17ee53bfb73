"""Shared test setup: every test starts from the same global random state."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_global_rng() -> None:
    """Seed torch's global generator so tests that draw random inputs are reproducible."""
    torch.manual_seed(0)
