"""SGE module and SGE-ResNet-50 against independent statements of the paper's formula."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.testing import assert_close

import sevis
from sevis.attention.sge import SpatialGroupEnhance


class PytorchInsightSGE(nn.Module):
    """The reference implementation, PytorchInsight's SpatialGroupEnhance, verbatim."""

    def __init__(self, groups=64):
        super().__init__()
        self.groups = groups
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.weight = nn.Parameter(torch.zeros(1, groups, 1, 1))
        self.bias = nn.Parameter(torch.ones(1, groups, 1, 1))
        self.sig = nn.Sigmoid()

    def forward(self, x):  # (b, c, h, w)
        b, c, h, w = x.size()
        x = x.view(b * self.groups, -1, h, w)
        xn = x * self.avg_pool(x)
        xn = xn.sum(dim=1, keepdim=True)
        t = xn.view(b * self.groups, -1)
        t = t - t.mean(dim=1, keepdim=True)
        std = t.std(dim=1, keepdim=True) + 1e-5
        t = t / std
        t = t.view(b, self.groups, h, w)
        t = t * self.weight + self.bias
        t = t.view(b * self.groups, 1, h, w)
        x = x * self.sig(t)
        x = x.view(b, c, h, w)
        return x


def formula_masks(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, groups: int) -> torch.Tensor:
    """SCIENCE.md steps 1-5, written out with einsum, float64: masks (N, G, H, W)."""
    n, c, h, w = x.shape
    xs = x.double().reshape(n, groups, c // groups, h * w)  # x_i: the C/G-vector at position i
    g = xs.mean(dim=3)  # 1. the group's global average
    coef = torch.einsum("ngc,ngcm->ngm", g, xs)  # 2. c_i = g . x_i
    mu = coef.mean(dim=2, keepdim=True)
    sigma = ((coef - mu) ** 2).sum(dim=2, keepdim=True).div(h * w - 1).sqrt()  # unbiased
    normed = (coef - mu) / (sigma + 1e-5)  # 3.
    a = gamma.double().view(1, groups, 1) * normed + beta.double().view(1, groups, 1)  # 4.
    return torch.sigmoid(a).reshape(n, groups, h, w)  # 5. the spatial mask


def test_init_follows_reference():
    sge = SpatialGroupEnhance(256)
    assert sge.groups == 64 and sge.eps == 1e-5
    assert_close(sge.weight, torch.zeros(1, 64, 1, 1))
    assert_close(sge.bias, torch.ones(1, 64, 1, 1))
    assert sorted(sge.state_dict()) == ["bias", "weight"]
    assert isinstance(sge.gate, nn.Sigmoid)


def test_module_equals_reference_and_formula():
    torch.manual_seed(0)
    ours, ref = SpatialGroupEnhance(128, groups=16), PytorchInsightSGE(groups=16)
    with torch.no_grad():
        ours.weight.normal_()
        ours.bias.normal_()
    ref.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(3, 128, 9, 7)
    assert_close(ours(x), ref(x))

    with sevis.capture(nn.Sequential(ours)) as cap:
        ours(x)
    (masks,) = cap.masks.values()
    assert masks.shape == (3, 16, 9, 7)
    assert_close(masks, formula_masks(x, ours.weight, ours.bias, 16).float())


def test_channels_last_input_gives_same_output():
    torch.manual_seed(1)
    sge = SpatialGroupEnhance(64, groups=8)
    with torch.no_grad():
        sge.weight.normal_()
    x = torch.randn(2, 64, 5, 5)
    assert_close(sge(x.to(memory_format=torch.channels_last)), sge(x))


def test_bad_group_count_is_refused():
    try:
        SpatialGroupEnhance(100, groups=64)
    except ValueError as err:
        assert "divisible" in str(err)
    else:
        raise AssertionError("100 channels in 64 groups must be refused")


def test_pytorchinsight_checkpoint_loads_every_key(sge_file, sge_state):
    checkpoint = torch.load(sge_file, weights_only=True)
    assert all(k.startswith("module.") for k in checkpoint["state_dict"])
    assert any(".sge.weight" in k for k in checkpoint["state_dict"])
    model = sevis.load_model("sge_resnet50", sge_file)
    loaded = model.state_dict()
    assert loaded.keys() == sge_state.keys()
    for key, value in sge_state.items():
        assert torch.equal(loaded[key], value), key
    assert model.sevis_info.untrained is False
    assert len(model.sevis_info.weights_sha256) == 64


def test_sge_resnet50_masks_and_logits_equal_reference(sge_model, batch):
    # Same weights in a network whose SGE layers are PytorchInsight's own module.
    reference = sevis.load_model("sge_resnet50", "untrained")
    reference.load_state_dict(sge_model.state_dict())
    inputs: dict[str, torch.Tensor] = {}
    for block, layer in zip(
        [m for _, m in reference.named_modules() if hasattr(m, "se") and m.se is not None],
        sevis.find_attention(sge_model),
        strict=True,
    ):
        ref = PytorchInsightSGE(64)
        ref.load_state_dict(block.se.state_dict())
        block.se = ref
        ref.register_forward_pre_hook(lambda m, args, key=layer.name: inputs.__setitem__(key, args[0]))

    with torch.no_grad(), sevis.capture(sge_model) as cap:
        logits = sge_model(batch)
    with torch.no_grad():
        expected = reference(batch)
    assert not sevis.find_attention(reference)  # really the reference module, not ours
    assert_close(logits, expected, rtol=1e-4, atol=1e-4)

    assert list(cap.masks) == [
        f"SGE_{s}_{b}" for s, n in zip((2, 3, 4, 5), (3, 4, 6, 3), strict=True) for b in range(1, n + 1)
    ]
    for layer in sevis.find_attention(sge_model):
        x = inputs[layer.name]
        assert cap.masks[layer.name].shape == (3, 64, *x.shape[-2:])
        expected_masks = formula_masks(x, layer.module.weight, layer.module.bias, 64)
        assert_close(cap.masks[layer.name], expected_masks.float(), rtol=1e-4, atol=1e-4)


def test_group_feature_norms_before_and_after_sge_by_hand(tiny_sge, photos):
    """The SGE paper's views: per group and position, the norm of the group's channels
    before SGE (its input) and after (its output), recomputed from the module's input."""
    from sevis.attention.kinds import get_kind

    layer = next(l for l in sevis.find_attention(tiny_sge) if l.name == "SGE_3_2")
    seen = {}
    handle = layer.module.register_forward_pre_hook(lambda m, args: seen.update(x=args[0].detach().clone()))
    x = sevis.preprocess(tiny_sge, [sevis.decode_image(photos[n]) for n in ("chelsea.png", "coffee.png")])
    try:
        with torch.no_grad(), sevis.capture(tiny_sge, module_values=True) as cap:
            tiny_sge(x)
    finally:
        handle.remove()
    feats, groups = seen["x"], layer.module.groups
    n, c, h, w = feats.shape
    per_group = feats.reshape(n, groups, c // groups, h, w)
    before = per_group.pow(2).sum(2).sqrt()  # ||x_i|| over the group's channels
    mask = cap.masks["SGE_3_2"]  # (N, G, H, W): sigmoid(a_i)
    after = (per_group * mask[:, :, None]).pow(2).sum(2).sqrt()
    assert_close(cap.extras["SGE_3_2"]["norm_before"], before, rtol=1e-5, atol=1e-6)
    assert_close(after, mask * before, rtol=1e-5, atol=1e-6)  # a mask scales the whole group vector

    views = [sevis.model_view(tiny_sge, sevis.decode_image(photos[n])) for n in ("chelsea.png", "coffee.png")]
    batch = sevis.forward_batch(tiny_sge, views)
    summary = batch.summaries["SGE_3_2"]
    assert list(summary) == ["mean", "var", *get_kind("sge").module_fields]
    flat = before.reshape(n, groups, -1).double()
    assert_close(torch.from_numpy(summary["norm_mean_before"]).double(), flat.mean(-1), rtol=1e-4, atol=1e-6)
    var = flat.var(-1, unbiased=False)
    assert_close(torch.from_numpy(summary["norm_var_before"]).double(), var, rtol=1e-3, atol=1e-6)
    flat_after = after.reshape(n, groups, -1).double()
    assert_close(torch.from_numpy(summary["norm_mean_after"]).double(), flat_after.mean(-1), rtol=1e-4, atol=1e-6)


def test_distributions_before_and_after_sge_equal_np_histogram_of_the_norms_by_hand(tiny_sge, photos):
    """The SGE paper's distributions: per group, the histogram over images and positions of
    each position's feature norm before SGE (the module's input) and after it (its output),
    both over the image's largest norm of that group before; per class, pooled by relabel."""
    from sevis.stats._accumulators import BIN_EDGES

    names = ["chelsea.png", "astronaut.png", "coffee.png", "rocket.jpg"]
    layer = next(l for l in sevis.find_attention(tiny_sge) if l.name == "SGE_3_2")
    seen: dict[str, list[torch.Tensor]] = {"in": [], "out": []}
    hooks = [
        layer.module.register_forward_pre_hook(lambda m, args: seen["in"].append(args[0].detach().double())),
        layer.module.register_forward_hook(lambda m, args, out: seen["out"].append(out.detach().double())),
    ]
    try:
        single = sevis.analyse(tiny_sge, [(n, photos[n]) for n in names], labels=names, distributions=True)
    finally:
        for hook in hooks:
            hook.remove()
    analysis = single.relabel(["cat", "cat", "cup", "cup"])  # one class an image, pooled as the dashboard does
    plain = sevis.analyse(tiny_sge, [(n, photos[n]) for n in names[:1]])
    assert plain.stats["sge"].distributions("SGE_3_2") == []  # counted only when asked for
    feats, out = torch.cat(seen["in"]), torch.cat(seen["out"])
    n, c, h, w = feats.shape
    groups = layer.module.groups

    def norms(t: torch.Tensor) -> np.ndarray:
        return t.reshape(n, groups, c // groups, h * w).pow(2).sum(2).sqrt().numpy()

    before, after = norms(feats), norms(out)
    peak = before.max(-1, keepdims=True)
    by_hand = {"before": before / peak, "after": after / peak}
    stats = analysis.stats["sge"]
    assert sorted(stats.distributions("SGE_3_2")) == ["after", "before"]
    for when, values in by_hand.items():
        for group in (0, 5, groups - 1):
            for cls, rows in (("cat", [0, 1]), ("cup", [2, 3])):
                expected = np.histogram(values[rows, group].ravel(), bins=BIN_EDGES)[0]
                got = stats.distribution("SGE_3_2", when, cls, group)
                assert got.sum() == expected.sum() == 2 * h * w
                assert np.abs(got - expected).sum() <= 2, (when, group, cls)  # float32 against float64 at an edge
        pooled = np.histogram(values.ravel(), bins=BIN_EDGES)[0]
        assert np.abs(stats.distribution("SGE_3_2", when) - pooled).sum() <= 8
    # SGE keeps large activations and pushes small ones towards 0: after is never above before
    assert (by_hand["after"] <= by_hand["before"] + 1e-12).all()
    merged = single.relabel(["all", "all", "all", "all"]).stats["sge"]
    assert np.array_equal(merged.distribution("SGE_3_2", "after", "all"), stats.distribution("SGE_3_2", "after"))
