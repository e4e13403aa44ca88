"""analyse(): the shared decode -> preprocess -> capture -> statistics path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

import sevis


def test_broken_file_among_good_ones_is_reported_and_the_rest_analysed(tiny_se, photos):
    se_model = tiny_se
    names = list(photos)
    files = [(n, photos[n]) for n in names]
    rocket = photos["rocket.jpg"]
    files.insert(2, ("broken.jpg", rocket[: len(rocket) // 2]))
    files.append(("notes.txt", b"hello"))
    calls = []
    result = sevis.analyse(se_model, files, batch_size=4, progress=lambda d, t: calls.append((d, t)))
    assert [f.name for f in result.failures] == ["broken.jpg", "notes.txt"]
    assert "truncated" in result.failures[0].reason and "not an image" in result.failures[1].reason
    assert [r.name for r in result.images] == names
    assert calls == [(4, 8), (8, 8)]
    assert result.se.count() == len(names)

    # Same numbers as capturing by hand on the same images.
    x = sevis.preprocess(se_model, [sevis.decode_image(photos[n]) for n in names])
    with torch.no_grad(), sevis.capture(se_model) as cap:
        logits = se_model(x)
    for i, image in enumerate(result.images):
        for layer, values in cap.excitations.items():
            assert_allclose(image.excitations[layer], values[i].numpy(), rtol=1e-5, atol=1e-6)
        probs = logits[i].softmax(0)
        top = probs.argsort(descending=True)[:5]
        assert image.top_classes == [se_model.sevis_info.class_names[j] for j in top]
        assert_allclose(image.top_probs, probs[top].numpy(), rtol=1e-5)
        assert image.label == image.top_classes[0]  # no label given: predicted class
        assert image.view.shape == (224, 224, 3) and image.view.dtype == np.uint8
    assert_allclose(result.se.mean("SE_4_6"), cap.excitations["SE_4_6"].double().mean(0).numpy(), rtol=1e-5)


def test_given_labels_and_sge_summaries(tiny_sge, photos):
    sge_model, groups = tiny_sge, 8
    files = [("a.png", photos["chelsea.png"]), ("b.png", photos["coffee.png"]), ("c.jpg", photos["rocket.jpg"])]
    result = sevis.analyse(sge_model, files, labels=["cat", None, "cat"], keep_values=True)
    assert result.sge.classes == ["cat", result.images[1].top_classes[0]]
    image = result.images[0]
    assert image.label == "cat"
    assert image.masks["SGE_2_1"].shape == (groups, 56, 56) and image.masks["SGE_5_3"].shape == (groups, 7, 7)
    assert_allclose(image.mask_means["SGE_3_2"], image.masks["SGE_3_2"].mean(axis=(1, 2)), rtol=1e-5)
    assert_allclose(image.mask_variances["SGE_3_2"], image.masks["SGE_3_2"].reshape(groups, -1).var(1), rtol=1e-4)
    cats = [r for r in result.images if r.label == "cat"]
    expected = np.mean([r.masks["SGE_4_1"].mean(axis=(1, 2)) for r in cats], axis=0)
    assert_allclose(result.sge.group_mean("SGE_4_1", "cat"), expected, rtol=1e-5)
    assert sevis.analyse(sge_model, files[:1]).images[0].masks == {}


def test_argument_errors(tiny_se):
    se_model = tiny_se
    with pytest.raises(ValueError, match="one entry per file: 1 for 2"):
        sevis.analyse(se_model, [("a", b"1"), ("b", b"2")], labels=["x"])
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        sevis.analyse(se_model, [], batch_size=0)
    with pytest.raises(TypeError, match="not loaded by sevis.load_model"):
        sevis.analyse(torch.nn.Linear(2, 2), [])


def test_several_kinds_in_one_network_each_get_their_statistics(tiny_se, tiny_sge, photos):
    """Analysis keeps statistics per kind: an SE network has no SGE statistics and the
    other way round; the per-image summaries say which kind each layer is."""
    files = [("a.png", photos["chelsea.png"]), ("b.png", photos["coffee.png"])]
    se, sge = sevis.analyse(tiny_se, files), sevis.analyse(tiny_sge, files)
    assert list(se.stats) == ["se"] and list(sge.stats) == ["sge"]
    assert se.sge.layers == [] and sge.se.layers == [] and len(se.se.layers) == 16
    assert set(se.images[0].kinds.values()) == {"se"} and se.images[0].masks == {}
    assert se.provenance == tiny_se.sevis_info.provenance and se.provenance.untrained


@pytest.mark.parametrize("name", ["tiny_se", "tiny_sge"])
def test_relabelled_and_recombined_analyses_equal_a_fresh_one(name, request, photos):
    model = request.getfixturevalue(name)
    files = [(n, photos[n]) for n in ("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "camera.png")]
    files.insert(2, ("broken.jpg", photos["rocket.jpg"][:2000]))
    labels = ["cat", "cup", "x", None, "person", "cup"]  # None: the predicted class
    fresh = sevis.analyse(model, files, labels=labels)
    ids = [f"{i}:{n}" for i, (n, _) in enumerate(files)]
    by_image = sevis.analyse(model, files, labels=ids)
    readable = [label for (n, _), label in zip(files, labels, strict=True) if n != "broken.jpg"]
    for candidate in (by_image.relabel(readable), sevis.Analysis.combine(by_image.parts()).relabel(readable)):
        assert [r.label for r in candidate.images] == [r.label for r in fresh.images]
        assert [f.name for f in by_image.failures] == ["broken.jpg"]
        for kind, stats in fresh.stats.items():
            other = candidate.stats[kind]
            assert other.classes == stats.classes and other.layers == stats.layers
            for layer in stats.layers:
                for cls in [sevis.ALL, *stats.classes]:
                    assert other.count(cls) == stats.count(cls)
                    np.testing.assert_allclose(other.mean(layer, cls), stats.mean(layer, cls), rtol=1e-9, atol=1e-12)
                    np.testing.assert_allclose(other.std(layer, cls), stats.std(layer, cls), rtol=1e-7, atol=1e-10)
                    if stats.has_histogram(layer):
                        np.testing.assert_array_equal(other.histogram(layer, cls), stats.histogram(layer, cls))
            assert other.specificity(stats.layers[-1]) == pytest.approx(stats.specificity(stats.layers[-1]))
    with pytest.raises(ValueError, match="one distinct label per image"):
        fresh.relabel(readable)
