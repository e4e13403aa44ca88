"""Layer names from the model: stage and block, the paper's six, and the fallbacks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import sevis
from sevis.attention.layers import LayerName, default_layer, paper_layers, parse_layer, stage_ends

RESNET50 = [f"SE_{s}_{b}" for s, n in ((2, 3), (3, 4), (4, 6), (5, 3)) for b in range(1, n + 1)]


def test_names_are_taken_apart():
    assert parse_layer("SE_4_6") == LayerName("SE", 4, 6)
    assert parse_layer("SGE_10_12") == LayerName("SGE", 10, 12)
    assert parse_layer("SE_7") == LayerName("SE", None, 7)
    assert parse_layer("odd name") == LayerName("odd name", None, None)


def test_resnet50_gives_the_papers_layers():
    assert paper_layers(RESNET50) == ["SE_2_3", "SE_3_4", "SE_4_6", "SE_5_1", "SE_5_2", "SE_5_3"]
    assert stage_ends(RESNET50) == ["SE_2_3", "SE_3_4", "SE_4_6", "SE_5_3"]
    assert default_layer(RESNET50) == "SE_4_6"


def test_runs_that_kept_some_layers_fall_back_sensibly():
    assert paper_layers(["SE_5_2"]) == ["SE_5_2"] and default_layer(["SE_5_2"]) == "SE_5_2"
    assert paper_layers(["SE_3_1", "SE_3_2", "SE_5_2"]) == ["SE_3_2", "SE_5_2"]
    assert default_layer(["SE_3_1", "SE_3_2", "SE_5_2"]) == "SE_3_2"
    assert stage_ends(["SE_3_1", "SE_3_2", "SE_5_2"]) == ["SE_3_2", "SE_5_2"]


def test_networks_without_stages_get_evenly_spaced_layers():
    names = [f"SE_{i}" for i in range(1, 17)]  # e.g. EfficientNet-B0's 16 SE blocks
    assert paper_layers(names) == ["SE_1", "SE_4", "SE_7", "SE_10", "SE_13", "SE_16"]
    assert stage_ends(names) == names
    assert default_layer(names) == "SE_7"
    assert paper_layers(["SE_1", "SE_2"]) == ["SE_1", "SE_2"] and default_layer(["SE_1", "SE_2"]) == "SE_1"
    with pytest.raises(ValueError, match="at least one layer"):
        default_layer([])


def test_layers_know_their_stage_and_block(tiny_se):
    layers = sevis.find_attention(tiny_se)
    assert [layer.name for layer in layers] == RESNET50
    assert [(layer.stage, layer.block) for layer in layers[:4]] == [(2, 1), (2, 2), (2, 3), (3, 1)]
    assert layers[0].spec is sevis.get_kind("se") and layers[0].path == "layer1.0.se"


def test_other_networks_are_numbered_in_depth_order():
    from torchvision.models import efficientnet_b0

    layers = sevis.find_attention(efficientnet_b0())
    assert [(layer.name, layer.stage, layer.block) for layer in layers[:2]] == [("SE_1", None, 1), ("SE_2", None, 2)]
    with torch.no_grad(), sevis.capture(nn.Sequential(efficientnet_b0().features[:2])) as cap:
        cap.model(torch.zeros(1, 3, 32, 32))
    assert list(cap.excitations) == ["SE_1"]
