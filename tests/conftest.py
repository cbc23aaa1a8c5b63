"""Shared fixtures: a fresh plugin registry, the toy single-file plugin, tiny models."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

HERE = Path(__file__).parent
TOY_PLUGIN = HERE / "fixtures" / "toy_plugins.py"


@pytest.fixture(scope="session")
def registry():
    from xaibench.plugins import load

    return load([TOY_PLUGIN])


@pytest.fixture(scope="session")
def tiny_model():
    """A tiny untrained ResNet-18 (8×8 last-stage map at 32 px), eval mode, fixed init."""
    from xaibench_plugins.backbones.resnet import ResNetBuilder

    torch.manual_seed(0)
    return ResNetBuilder("resnet18", width=0.125, output_stride=8)(2, (32, 32)).eval()


@pytest.fixture(autouse=True)
def _threads():
    # One thread: the tests use tiny models, where a second thread only adds contention
    # (40-80x slower small ops when the machine is busy).
    torch.set_num_threads(1)
