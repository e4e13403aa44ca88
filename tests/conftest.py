"""Shared fixtures: seeded models, checkpoint files in each real layout, real photographs.

No pretrained weights can be downloaded where the tests run, so checkpoints are
written here with random values, in exactly the layouts users bring (SCIENCE.md).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import skimage
import timm
import torch
from torch import nn

import sevis

PHOTOS = Path(skimage.__file__).parent / "data"


def randomize_(model: nn.Module, seed: int) -> nn.Module:
    """Random but well-conditioned values for every parameter and buffer.

    Default inits leave BatchNorm at identity and timm zero-initialises each block's
    last BN, so every residual branch (and so every SE input) would be zero; SGE's
    gamma = 0 would make every mask constant. Tests need attention that varies.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            elif name.endswith("running_mean"):
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1)
            elif name.endswith(".weight") and tensor.ndim == 1:  # BatchNorm scale
                tensor.copy_(torch.rand(tensor.shape, generator=gen) * 0.5 + 0.5)
            elif tensor.ndim == 4 and tensor.shape[0] == 1:  # SGE gamma and beta, (1, G, 1, 1)
                tensor.copy_(torch.randn(tensor.shape, generator=gen))
            elif tensor.ndim >= 2:  # conv and linear weights: He init
                fan_in = tensor[0].numel()
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
            else:  # biases
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1)
    return model


@pytest.fixture(scope="session")
def photos() -> dict[str, bytes]:
    """Real photographs shipped with scikit-image, as uploaded bytes."""
    names = ["chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "motorcycle_left.png", "camera.png"]
    return {name: (PHOTOS / name).read_bytes() for name in names}


@pytest.fixture(scope="session")
def senet_state() -> dict[str, torch.Tensor]:
    """Random weights under the SENet authors' key names (se_resnet50-ce0d4300.pth)."""
    model = randomize_(timm.create_model("legacy_seresnet50"), seed=0)
    # NOTE the converted Caffe file predates BatchNorm's num_batches_tracked buffer.
    return {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


@pytest.fixture(scope="session")
def senet_file(tmp_path_factory, senet_state) -> Path:
    path = tmp_path_factory.mktemp("weights") / "se_resnet50-ce0d4300.pth"
    torch.save(senet_state, path)
    return path


@pytest.fixture(scope="session")
def sge_state() -> dict[str, torch.Tensor]:
    """Random SGE-ResNet-50 weights in sevis's (timm) key names."""
    model = sevis.load_model("sge_resnet50", "untrained")
    return randomize_(model, seed=1).state_dict()


def pytorchinsight_checkpoint(state: dict[str, torch.Tensor]) -> dict:
    """The dict PytorchInsight's training script saves from a DataParallel model."""
    wrapped = {"module." + k.replace(".se.", ".sge."): v.clone() for k, v in state.items()}
    params = [v for k, v in wrapped.items() if v.is_floating_point() and "running" not in k]
    params = [nn.Parameter(p.clone()) for p in params[:8]]
    optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-4)
    for p in params:
        p.grad = torch.ones_like(p)
    optimizer.step()
    return {
        "epoch": 100,
        "arch": "sge_resnet50",
        "state_dict": wrapped,
        "best_acc1": torch.tensor(77.584),
        "optimizer": optimizer.state_dict(),
    }


@pytest.fixture(scope="session")
def sge_file(tmp_path_factory, sge_state) -> Path:
    path = tmp_path_factory.mktemp("weights") / "sge_resnet50.pth.tar"
    torch.save(pytorchinsight_checkpoint(sge_state), path)
    return path


@pytest.fixture(scope="session")
def se_model(senet_file) -> nn.Module:
    return sevis.load_model("se_resnet50", senet_file)


@pytest.fixture(scope="session")
def sge_model(sge_file) -> nn.Module:
    return sevis.load_model("sge_resnet50", sge_file)


@pytest.fixture(scope="session")
def batch(se_model, photos) -> torch.Tensor:
    images = [sevis.decode_image(photos[n]) for n in ("chelsea.png", "coffee.png", "rocket.jpg")]
    return sevis.preprocess(se_model, images)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network and empty weight caches, whatever machine the tests run on."""
    import socket

    def refuse(*args, **kwargs):
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    # NOTE without this, huggingface_hub retries a refused connection for 46 s.
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("SEVIS_WEIGHTS_DIR", str(tmp_path / "sevis-weights"))
    os.makedirs(tmp_path / "sevis-weights")
    return tmp_path
