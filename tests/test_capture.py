"""capture(): exact values, no hooks left behind, safe on a shared model."""

from __future__ import annotations

import threading

import pytest
import torch
from conftest import hook_count
from torch import nn
from torch.testing import assert_close

import sevis

PAPER_SE = [f"SE_{s}_{b}" for s, n in zip((2, 3, 4, 5), (3, 4, 6, 3), strict=True) for b in range(1, n + 1)]
CHANNELS = {2: 256, 3: 512, 4: 1024, 5: 2048}


def test_excitations_equal_the_formula_from_each_block_input(se_model, batch):
    inputs: dict[str, torch.Tensor] = {}
    handles = [
        layer.module.register_forward_pre_hook(lambda m, args, k=layer.name: inputs.__setitem__(k, args[0]))
        for layer in sevis.find_attention(se_model)
    ]
    try:
        with torch.no_grad(), sevis.capture(se_model) as cap:
            se_model(batch)
    finally:
        for handle in handles:
            handle.remove()

    assert list(cap.excitations) == PAPER_SE
    assert cap.masks == {}
    for layer in sevis.find_attention(se_model):
        u = inputs[layer.name].double()  # (N, C, H, W): the block's residual branch
        z = u.mean(dim=(2, 3))  # squeeze
        w1 = layer.module.fc1.weight.double().flatten(1)  # (C/r, C)
        w2 = layer.module.fc2.weight.double().flatten(1)  # (C, C/r)
        s = torch.sigmoid(torch.relu(z @ w1.T + layer.module.fc1.bias.double()) @ w2.T + layer.module.fc2.bias.double())
        stage = int(layer.name.split("_")[1])
        assert cap.excitations[layer.name].shape == (3, CHANNELS[stage])
        assert w1.shape == (CHANNELS[stage] // 16, CHANNELS[stage])
        assert_close(cap.excitations[layer.name].double(), s, rtol=1e-5, atol=1e-6)


def test_values_are_the_ones_the_forward_pass_multiplied_by(se_model, batch):
    layer = sevis.find_attention(se_model)[4]
    seen = {}
    handle = layer.module.register_forward_hook(lambda m, args, out: seen.update(u=args[0], out=out))
    try:
        with torch.no_grad(), sevis.capture(se_model) as cap:
            se_model(batch)
    finally:
        handle.remove()
    s = cap.excitations[layer.name]
    assert torch.equal(seen["out"], seen["u"] * s[:, :, None, None])


def test_several_forwards_concatenate_and_layers_select(se_model, batch):
    with torch.no_grad(), sevis.capture(se_model, layers=["SE_2_3", "SE_5_2"]) as cap:
        se_model(batch[:1])
        se_model(batch[1:])
    assert list(cap.excitations) == ["SE_2_3", "SE_5_2"]
    with torch.no_grad(), sevis.capture(se_model) as whole:
        se_model(batch)
    assert_close(cap.excitations["SE_5_2"], whole.excitations["SE_5_2"], rtol=1e-5, atol=1e-6)
    cap.clear()
    assert cap.excitations == {}
    with pytest.raises(ValueError, match=r"layers \['SE_9_9'\] not in the model"):
        sevis.capture(se_model, layers=["SE_9_9"])


def test_no_hook_remains_after_the_block(se_model, sge_model, batch):
    # One hook per gate; with module_values, SGE adds one per module (its feature norms).
    for model, module_values, hooks in ((se_model, True, 16), (sge_model, False, 16), (sge_model, True, 32)):
        before = hook_count(model)
        with torch.no_grad(), sevis.capture(model, module_values=module_values) as cap:
            assert hook_count(model) == before + hooks
            model(batch[:1])
        assert hook_count(model) == before == 0
        assert len(cap.values) == 16 and bool(cap.extras) == (hooks == 32)


def test_no_hook_remains_after_an_exception_which_propagates(se_model):
    with pytest.raises(RuntimeError, match="channels"), sevis.capture(se_model):
        se_model(torch.zeros(1, 4, 32, 32))  # wrong number of input channels
    assert hook_count(se_model) == 0
    with pytest.raises(KeyboardInterrupt), sevis.capture(se_model):
        raise KeyboardInterrupt
    assert hook_count(se_model) == 0


def test_two_threads_on_one_model_get_only_their_own_values(se_model, batch):
    expected = {}
    for key, x in (("one", batch[:1]), ("two", batch[1:])):
        with torch.no_grad(), sevis.capture(se_model) as cap:
            se_model(x)
        expected[key] = cap.excitations

    # Both forward passes wait for each other inside layer2, so both captures are
    # active and both threads run the same modules at the same time.
    barrier = threading.Barrier(2, timeout=30)

    def meet(module: nn.Module, args: object) -> None:
        barrier.wait()

    gate = se_model.layer2.register_forward_pre_hook(meet)
    results, errors = {}, []

    def work(key: str, x: torch.Tensor) -> None:
        try:
            with torch.no_grad(), sevis.capture(se_model) as cap:
                se_model(x)
            results[key] = cap.excitations
        except Exception as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=work, args=a) for a in (("one", batch[:1]), ("two", batch[1:]))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        gate.remove()
    assert not errors
    for key in ("one", "two"):
        assert list(results[key]) == PAPER_SE
        for name in PAPER_SE:
            assert_close(results[key][name], expected[key][name])
    assert hook_count(se_model) == 0


class TinyGate(nn.Module):
    """A user's own channel attention with its gate under another name."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.fc = nn.Conv2d(c, c, 1)
        self.squash = nn.Sigmoid()

    def forward(self, x):
        return x * self.squash(self.fc(x.mean((2, 3), keepdim=True)))


def test_users_register_their_own_attention_class():
    net = nn.Sequential(nn.Conv2d(3, 8, 3), TinyGate(8), nn.Conv2d(8, 8, 3), TinyGate(8))
    with pytest.raises(ValueError, match="no attention layers sevis knows"):
        sevis.capture(net)
    sevis.register_attention(TinyGate, kind="se", gate="squash")
    layers = sevis.find_attention(net)
    assert [(l.name, l.path) for l in layers] == [("SE_1", "1"), ("SE_2", "3")]
    with torch.no_grad(), sevis.capture(net) as cap:
        net(torch.randn(2, 3, 10, 10))
    assert {k: v.shape for k, v in cap.excitations.items()} == {"SE_1": (2, 8), "SE_2": (2, 8)}
    with pytest.raises(ValueError, match="unknown attention kind 'cbam'"):
        sevis.register_attention(TinyGate, kind="cbam", gate="squash")
    with pytest.raises(TypeError, match="nn.Module subclass"):
        sevis.register_attention(int, kind="se", gate="x")


def test_torchvision_squeeze_excitation_is_found():
    from torchvision.models import efficientnet_b0

    layers = sevis.find_attention(efficientnet_b0())
    assert len(layers) == 16 and layers[0].name == "SE_1"
    assert all(type(l.gate).__name__ == "Sigmoid" for l in layers)
