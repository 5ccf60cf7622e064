"""Shared test setup: offline settings, the reference data folder, small helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("LAIONET_REFERENCE", ROOT.parent / "shared" / "reference"))


def reference_file(*parts: str) -> Path:
    """A file of ../shared/reference, or skip the test saying what is missing."""
    path = REFERENCE.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference data not found: {path} (set LAIONET_REFERENCE to the folder "
                    "holding eval-on-laion/ and img2dataset/)")
    return path


@pytest.fixture
def reference():
    return reference_file
