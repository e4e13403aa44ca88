"""load_model: every weights source and layout, and every way it refuses."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import timm
import torch
from conftest import randomize_
from safetensors.torch import save_file
from torch.testing import assert_close

import sevis
from sevis import CheckpointError, UnknownModelError, WeightsUnavailableError


def test_se_resnet50_matches_timm_legacy_seresnet50(se_model, senet_state, batch):
    reference = timm.create_model("legacy_seresnet50")
    reference.load_state_dict(senet_state)  # timm's own loading of the SENet layout
    reference.eval()
    with torch.no_grad():
        assert_close(se_model(batch), reference(batch))
    info = se_model.sevis_info
    assert info.name == "se_resnet50" and not info.untrained
    assert info.data_config["crop_pct"] == 0.875 and info.data_config["interpolation"] == "bilinear"
    assert info.class_names[1].startswith("goldfish") and info.class_names[254].startswith("pug")
    assert not se_model.training


def test_senet_layout_keys_are_the_converted_caffe_ones(senet_state):
    assert "layer0.conv1.weight" in senet_state and "last_linear.weight" in senet_state
    assert "layer1.0.se_module.fc1.weight" in senet_state
    assert senet_state["layer1.0.se_module.fc1.weight"].shape == (16, 256, 1, 1)


def test_untrained_is_flagged():
    model = sevis.load_model("se_resnet50", "untrained")
    assert model.sevis_info.untrained and model.sevis_info.weights == "untrained"
    assert model.sevis_info.weights_sha256 is None


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "module_prefix", "compiled"])
def test_wrappers_and_prefixes_are_removed(tmp_path, senet_state, wrap):
    state = {
        "plain": senet_state,
        "state_dict": {"state_dict": senet_state, "epoch": 3},
        "module_prefix": {"model": {f"module.{k}": v for k, v in senet_state.items()}},
        "compiled": {f"_orig_mod.{k}": v for k, v in senet_state.items()},
    }[wrap]
    path = tmp_path / "w.pth"
    torch.save(state, path)
    model = sevis.load_model("se_resnet50", path)
    assert torch.equal(model.state_dict()["last_linear.weight"], senet_state["last_linear.weight"])


def test_safetensors_and_bin(tmp_path, senet_state):
    save_file({k: v.contiguous() for k, v in senet_state.items()}, tmp_path / "w.safetensors")
    torch.save(senet_state, tmp_path / "pytorch_model.bin")
    a = sevis.load_model("se_resnet50", tmp_path / "w.safetensors")
    b = sevis.load_model("se_resnet50", str(tmp_path / "pytorch_model.bin"))
    for key, value in senet_state.items():
        assert torch.equal(a.state_dict()[key], value) and torch.equal(b.state_dict()[key], value)
    assert a.sevis_info.weights_sha256 != b.sevis_info.weights_sha256


def test_timm_model_id_with_its_own_layout(tmp_path):
    state = randomize_(timm.create_model("seresnet50"), seed=3).state_dict()
    torch.save(state, tmp_path / "seresnet50.pth")
    model = sevis.load_model("seresnet50.ra2_in1k", tmp_path / "seresnet50.pth")
    assert model.sevis_info.data_config["interpolation"] == "bicubic"
    names = [layer.name for layer in sevis.find_attention(model)]
    assert names[0] == "SE_2_1" and names[-1] == "SE_5_3" and len(names) == 16
    assert [layer.name for layer in sevis.find_attention(sevis.load_model("seresnext50_32x4d", "untrained"))] == names


def test_unknown_name_is_refused():
    with pytest.raises(UnknownModelError, match="unknown model 'se_resnet5'.*se_resnet50"):
        sevis.load_model("se_resnet5")
    with pytest.raises(UnknownModelError, match="no attention layers sevis knows"):
        sevis.load_model("resnet18", "untrained")
    with pytest.raises(TypeError, match="name must be a str"):
        sevis.load_model(50)


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    plain = timm.create_model("resnet50").state_dict()
    torch.save(plain, tmp_path / "resnet50.pth")
    expected = timm.create_model("legacy_seresnet50").state_dict()
    missing = [k for k in expected if k not in plain and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in plain if k not in expected]
    with pytest.raises(CheckpointError) as err:
        sevis.load_model("se_resnet50", tmp_path / "resnet50.pth")
    message = str(err.value)
    assert (
        f"resnet50.pth does not fit se_resnet50: {len(missing)} keys missing, {len(unexpected)} unexpected" in message
    )
    assert f"missing: {', '.join(missing[:5])} and {len(missing) - 5} more." in message
    assert f"unexpected: {', '.join(unexpected[:5])} and {len(unexpected) - 5} more." in message


def test_shape_mismatch_is_refused(tmp_path, senet_state):
    state = dict(senet_state)
    state["last_linear.weight"] = torch.zeros(10, 2048)
    state["last_linear.bias"] = torch.zeros(10)
    torch.save(state, tmp_path / "ten_classes.pth")
    with pytest.raises(CheckpointError, match=r"2 of another shape.*last_linear.weight \(10, 2048\) vs \(1000, 2048\)"):
        sevis.load_model("se_resnet50", tmp_path / "ten_classes.pth")


def test_sge_checkpoint_is_refused_for_se_and_vice_versa(sge_file, senet_file):
    with pytest.raises(CheckpointError, match="does not fit se_resnet50"):
        sevis.load_model("se_resnet50", sge_file)
    with pytest.raises(CheckpointError, match="does not fit sge_resnet50"):
        sevis.load_model("sge_resnet50", senet_file)


def test_corrupt_truncated_empty_missing_and_foreign_files(tmp_path, senet_file):
    data = senet_file.read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "notes.pth").write_text("these are not weights")
    flipped = bytearray(data)
    flipped[len(data) // 3 : len(data) // 3 + 4096] = os.urandom(4096)
    (tmp_path / "corrupt.pth").write_bytes(bytes(flipped))
    (tmp_path / "cut.safetensors").write_bytes(b'\x10\x00\x00\x00\x00\x00\x00\x00{"a": {"dtype')
    cases = {
        "truncated.pth": "truncated.pth: corrupt or truncated",
        "empty.pth": "empty.pth: the file is empty",
        "notes.pth": "notes.pth: not a PyTorch or safetensors weights file",
        "corrupt.pth": "corrupt.pth: corrupt or truncated",
        "cut.safetensors": "cut.safetensors: corrupt or truncated safetensors",
        "absent.pth": "does not exist",
    }
    for name, message in cases.items():
        with pytest.raises(CheckpointError, match=message.replace(".", r"\.")):
            sevis.load_model("se_resnet50", tmp_path / name)


class _Payload:
    """Unpickling this would run a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_would_run_code_is_refused_and_not_run(tmp_path, senet_state):
    marker = tmp_path / "pwned"
    torch.save({"state_dict": senet_state, "hook": _Payload(marker)}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="refused.*could run code.*not executed"):
        sevis.load_model("se_resnet50", tmp_path / "evil.pth")
    assert not marker.exists()
    # The payload is real: an unsafe load would have run it.
    torch.load(tmp_path / "evil.pth", weights_only=False)
    assert marker.exists()


def test_pretrained_source_unreachable(offline):
    with pytest.raises(WeightsUnavailableError) as err:
        sevis.load_model("se_resnet50")
    message = str(err.value)
    assert "the pretrained weights of se_resnet50 could not be downloaded (github.com: " in message
    assert "data.lip6.fr: " in message and "network disabled by the test" in message
    manual = "https://github.com/Cadene/pretrained-models.pytorch"
    assert f"Download se_resnet50-ce0d4300.pth by hand ({manual}) and put it in {offline / 'sevis-weights'}." in message
    assert "weights=" not in message  # no interface's spelling: each adds its own


def test_timm_hub_weights_unreachable(offline):
    with pytest.raises(
        WeightsUnavailableError,
        match=r"seresnext26d_32x4d.bt_in1k could not be fetched from timm seresnext26d_32x4d.bt_in1k \(hub",
    ):
        sevis.load_model("seresnext26d_32x4d.bt_in1k")


def test_a_hub_error_is_said_once_and_cut_at_a_word(monkeypatch):
    """The hub repeats its sentence for every retry; the message says it once, whole up to
    600 characters and past them cut between words with an ellipsis."""
    import timm

    from sevis.models.registry import _said_once

    repeated = "We couldn't connect to 'https://huggingface.co'.\n " * 5 + "Check your connection."

    def refuse(*args, **kwargs):
        raise OSError(repeated)

    monkeypatch.setattr(timm, "create_model", lambda name, pretrained: refuse() if pretrained else None)
    with pytest.raises(WeightsUnavailableError) as err:
        sevis.load_model("seresnext26d_32x4d.bt_in1k")
    assert str(err.value).count(
        "We couldn't connect"
    ) == 1 and "(We couldn't connect to 'https://huggingface.co'. Check your connection.);" in str(err.value)
    long = " ".join(f"word{i}" for i in range(300))
    cut = _said_once(long)
    assert len(cut) <= 602 and cut.endswith(" …") and cut[:-2] == long[: len(cut) - 2]
    assert long.split()[len(cut[:-2].split()) - 1] == cut[:-2].split()[-1]  # a whole word last


def test_pretrained_weights_come_from_the_weights_folder(offline, sge_file, senet_file):
    with pytest.raises(WeightsUnavailableError) as err:
        sevis.load_model("sge_resnet50")
    message = str(err.value)  # Google Drive through gdown, refused here
    assert "the pretrained weights of sge_resnet50 could not be downloaded (Google Drive: " in message
    assert "Download sge_resnet50.pth.tar by hand" in message and "13HPCjrEle6aFbiCo8Afkr2jJssdNwdRn" in message
    assert "https://pan.baidu.com/s/11bb2XBGkTqIoOunaSXOOTg (code gxo9)" in message
    folder = offline / "sevis-weights"
    assert sevis.list_weights_files() == []  # nothing half-downloaded passes for weights
    # A copy downloaded by hand under another name, and SE-ResNet-50's file, both found there.
    folder.mkdir(exist_ok=True)
    target = folder / "sge_resnet50_pytorchinsight.pth.tar"
    target.write_bytes(sge_file.read_bytes())
    (folder / senet_file.name).write_bytes(senet_file.read_bytes())
    assert sevis.list_weights_files() == [folder / senet_file.name, target]
    model = sevis.load_model("sge_resnet50")
    assert model.sevis_info.weights == str(target) and not model.sevis_info.untrained
    se = sevis.load_model("se_resnet50")
    assert se.sevis_info.weights == str(folder / senet_file.name)
    assert se.sevis_info.weights_sha256 == hashlib.sha256(senet_file.read_bytes()).hexdigest()


def test_untrained_weights_are_the_same_every_load_and_leave_the_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = sevis.load_model("sge_resnet50", "untrained")
    after = torch.rand(3)
    b = sevis.load_model("sge_resnet50", "untrained")
    assert torch.equal(before, after)  # the caller's random stream is untouched
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name
    assert a.sevis_info.provenance.weights == "untrained" and a.sevis_info.untrained
