"""Dashboard flows through Streamlit's AppTest: the real app script, real uploads."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
import timm
import torch
from conftest import array, class_folders, make_zip, shown
from PIL import Image
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted(p.name for p in (ROOT / "assets").iterdir() if p.suffix in (".png", ".jpg"))


# The dashboard's model panel offers the tiny networks of tests/tiny.py (same layer
# names and preprocessing as ResNet-50, milliseconds a forward pass) through the same
# configuration an operator uses; tests of checkpoint files use the real ResNet-50s.
SE, SGE = "tiny_se", "tiny_sge"
SE_LABEL, SGE_LABEL = "SE (tiny)", "SGE (tiny)"


def start(monkeypatch) -> AppTest:
    monkeypatch.chdir(ROOT)
    st.cache_resource.clear()
    st.cache_data.clear()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.run()
    return at


@pytest.fixture
def app(offline, monkeypatch) -> AppTest:
    """The app with the tiny networks, offline, with fresh caches."""
    monkeypatch.setenv("SEVIS_PLUGINS", "tiny")
    monkeypatch.setenv("SEVIS_DASHBOARD_MODELS", f"{SE_LABEL}={SE},{SGE_LABEL}={SGE}")
    return start(monkeypatch)


@pytest.fixture
def real_app(offline, monkeypatch) -> AppTest:
    """The app as shipped (SE-ResNet-50 and SGE-ResNet-50), offline, with fresh caches."""
    monkeypatch.delenv("SEVIS_DASHBOARD_MODELS", raising=False)
    return start(monkeypatch)


def classes_shown(at: AppTest, n: int = 0):
    """The n-th "Classes" multiselect (its key follows the class set)."""
    return [m for m in at.multiselect if m.label.startswith("Classes (of ")][n]


def charts(at: AppTest) -> int:
    return len(at.get("plotly_chart"))


def no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [shown(e.value) for e in at.error]


def untrained(at: AppTest, *names: str) -> AppTest:
    for name in names or (SE,):
        at.sidebar.selectbox(key=f"{name}_source").set_value("untrained")
    return at.run()


def png(photos, name: str) -> tuple[str, bytes, str]:
    return (name, photos[name], "image/png" if name.endswith("png") else "image/jpeg")


def test_first_open_offline_shows_the_photographs_and_one_panel_with_the_ways_out(real_app):
    at = real_app
    assert not at.exception and not at.error  # no error box: one panel says it all
    panel = [m.value for m in at.markdown if "could not be fetched" in m.value]
    assert panel == ["**The pretrained weights could not be fetched**"]
    reason = next(shown(m.value) for m in at.markdown if shown(m.value).startswith("SE-ResNet-50: "))
    assert "github.com: " in reason and "network disabled by the test" in reason
    page = " ".join(e.value for e in [*at.markdown, *at.info, *at.warning, *at.caption] if isinstance(e.value, str))
    assert "weights=" not in shown(page) and "Traceback" not in shown(page)  # no library spelling
    assert len(at.get("image")) == len(SAMPLES)  # the photographs at once
    assert [b.label for b in at.button] == [
        "Untrained weights (a demo)",
        "Upload a checkpoint",
        "A file on the server",
        "Try again",
    ]
    where = [shown(m.value) for m in at.markdown if "sevis weights fetch se_resnet50" in shown(m.value)]
    assert len(where) == 1 and where[0].startswith("`se_resnet50-ce0d4300.pth`: ")  # the popover
    at.button(key="se_resnet50_use_upload").click().run()
    assert at.sidebar.selectbox(key="se_resnet50_source").value == "upload"
    at.sidebar.selectbox(key="se_resnet50_source").set_value("pretrained").run()
    at.button(key="se_resnet50_use_untrained").click().run()
    assert at.sidebar.selectbox(key="se_resnet50_source").value == "untrained"
    assert not at.error and charts(at) == 3
    line = next(shown(w.value) for w in at.warning if "untrained weights" in shown(w.value))
    assert "(random, seed 0)" in line and "random SE gates sit near 0.5" in line
    (badge,) = [shown(m.value) for m in at.sidebar.markdown if "self-check" in shown(m.value)]  # st.badge is markdown
    assert "SE-ResNet-50: random weights, the self-check fails as expected" in badge  # not a warning


def test_untrained_sge_says_why_its_masks_are_flat(real_app):
    real_app.sidebar.radio(key="model_choice").set_value("SGE-ResNet-50").run()
    real_app.sidebar.selectbox(key="sge_resnet50_source").set_value("untrained").run()
    no_errors(real_app)
    line = next(shown(w.value) for w in real_app.warning if "untrained weights" in shown(w.value))
    assert "flat at σ(1) = 0.73, because SGE starts with its scale γ at 0" in line


def test_untrained_shows_samples_banner_and_charts(app):
    untrained(app)
    no_errors(app)
    assert any("untrained weights (random, seed 0)" in shown(w.value) for w in app.warning)
    assert app.selectbox(key="image_choice").options == SAMPLES
    # top-5, SE profiles, overview of all 16 layers; Grad-CAM only when asked for
    assert charts(app) == 3
    assert app.multiselect(key=f"{SE}_layers").value == [
        "SE_2_3",
        "SE_3_4",
        "SE_4_6",
        "SE_5_1",
        "SE_5_2",
        "SE_5_3",
    ]
    assert len(app.multiselect(key=f"{SE}_layers").options) == 16
    saturation = [shown(c.value) for c in app.caption if shown(c.value).startswith("Saturation in astronaut.png")]
    assert len(saturation) == 1 and "SE_2_3 " in saturation[0] and "SE_5_3 " in saturation[0]
    labels = [b.label for b in app.get("download_button")]
    assert labels == ["PNG", "HTML", "CSV", "Parquet"] * 3 + ["Export all (zip)"]  # every chart: figure and numbers
    app.selectbox(key="image_choice").set_value("rocket.jpg").run()
    app.toggle(key=f"{SE}_overlay").set_value(True).run()
    no_errors(app)
    assert charts(app) == 3
    app.toggle(key=f"{SE}_gradcam_on").set_value(True).run()
    no_errors(app)
    assert charts(app) == 4


def test_single_and_several_uploads_with_a_broken_file(app, photos):
    untrained(app)
    uploader = app.get("file_uploader")[0]
    uploader.set_value(png(photos, "chelsea.png")).run()
    no_errors(app)
    assert not [s for s in app.selectbox if s.key == "image_choice"]  # one image: no selector
    assert charts(app) == 3

    rocket = photos["rocket.jpg"]
    app.get("file_uploader")[0].set_value(
        [
            png(photos, "coffee.png"),
            ("broken.jpg", rocket[: len(rocket) // 2], "image/jpeg"),
            png(photos, "astronaut.png"),
        ]
    ).run()
    assert not app.exception
    warning = next(shown(w.value) for w in app.warning if "could not be analysed" in shown(w.value))
    assert "**broken.jpg**" in warning and "truncated" in warning
    assert app.selectbox(key="image_choice").options == ["coffee.png", "astronaut.png"]
    assert charts(app) == 3


def test_sge_from_a_server_checkpoint_shows_masks_overlay_and_gradcam(real_app, offline, sge_file):
    target = offline / "sevis-weights" / "sge_resnet50.pth.tar"
    target.write_bytes(sge_file.read_bytes())
    real_app.sidebar.radio(key="model_choice").set_value("SGE-ResNet-50").run()
    real_app.sidebar.selectbox(key="sge_resnet50_source").set_value("server").run()
    real_app.sidebar.selectbox(key="sge_resnet50_file").set_value(str(target)).run()
    no_errors(real_app)
    assert not any("untrained weights" in shown(w.value) for w in real_app.warning)
    # random weights in a file: the self-check says they do not behave like an ImageNet network
    assert any("do not classify the sample photographs" in shown(w.value) for w in real_app.warning)
    # top-5, 64-mask grid, group feature maps before/after SGE, mean-mask overlay, Grad-CAM
    assert charts(real_app) == 5
    maps = real_app.get("plotly_chart")[2].proto.spec
    assert "SGE_4_6: group feature maps before and after SGE" in maps and "after SGE" in maps
    assert len(real_app.selectbox(key="sge_resnet50_sge_layer").options) == 16
    real_app.selectbox(key="sge_resnet50_sge_layer").set_value("SGE_2_1").run()
    real_app.slider(key="sge_resnet50_opacity").set_value(0.8).run()
    next(s for s in real_app.selectbox if s.label == "Grad-CAM class").set_value(1).run()  # goldfish
    no_errors(real_app)
    assert charts(real_app) == 5


def test_uploaded_checkpoints_good_and_bad(real_app, senet_file, tmp_path):
    real_app.sidebar.selectbox(key="se_resnet50_source").set_value("upload").run()
    assert any("choose a checkpoint" in shown(i.value) for i in real_app.sidebar.info)
    wrong = tmp_path / "resnet50.pth"
    torch.save(timm.create_model("resnet50").state_dict(), wrong)
    real_app.sidebar.get("file_uploader")[0].set_value(
        ("resnet50.pth", wrong.read_bytes(), "application/octet-stream")
    ).run()
    assert not real_app.exception
    assert any("does not fit se_resnet50" in shown(e.value) for e in real_app.error)
    real_app.sidebar.get("file_uploader")[0].set_value(
        ("se_resnet50-ce0d4300.pth", senet_file.read_bytes(), "application/octet-stream")
    ).run()
    no_errors(real_app)
    assert charts(real_app) == 3


def test_an_uploaded_checkpoint_is_kept_while_another_model_is_shown(app, tmp_path):
    """Upload SE's checkpoint, show SGE, come back: the checkpoint is still in use (said in the
    sidebar), not 'choose a checkpoint file' again; "Forget them" lets it go."""
    from tiny import randomize_

    import sevis

    checkpoint = tmp_path / "tiny_se_b.pth"
    torch.save(randomize_(sevis.load_model(SE, "untrained"), seed=5).state_dict(), checkpoint)
    app.sidebar.selectbox(key=f"{SE}_source").set_value("upload").run()
    app.sidebar.get("file_uploader")[0].set_value(
        ("tiny_se_b.pth", checkpoint.read_bytes(), "application/octet-stream")
    ).run()
    no_errors(app)
    assert charts(app) == 3
    app.sidebar.radio(key="model_choice").set_value(SGE_LABEL).run()
    untrained(app, SGE)
    app.sidebar.radio(key="model_choice").set_value(SE_LABEL).run()
    no_errors(app)
    assert not any("choose a checkpoint" in shown(i.value) for i in app.sidebar.info)
    assert any(
        "Still using the 1 file(s) uploaded here before (tiny_se_b.pth)" in shown(c.value) for c in app.sidebar.caption
    )
    assert charts(app) == 3 and "UNTRAINED" not in figure(app, 1).layout.title.text
    app.sidebar.button(key=f"{SE}_upload_forget").click().run()
    assert any("choose a checkpoint" in shown(i.value) for i in app.sidebar.info)


def test_same_inputs_do_not_run_the_model_again(app):
    from sevis.app.services import load_model

    untrained(app)
    model = load_model(SE, "untrained")  # the cached, shared instance
    calls = []
    handle = model.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape[0]))
    try:
        app.run()
        app.run()
        app.selectbox(key="image_choice").set_value("coffee.png").run()
    finally:
        handle.remove()
    no_errors(app)
    assert calls == []


def class_zip(photos) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("data/cat/chelsea.png", photos["chelsea.png"])
        archive.writestr("data/cat/astronaut.png", photos["astronaut.png"])
        archive.writestr("data/cup/coffee.png", photos["coffee.png"])
        archive.writestr("data/cup/broken.jpg", photos["rocket.jpg"][:3000])
        archive.writestr("data/cup/.DS_Store", b"\0\0")
        archive.writestr("__MACOSX/data/cup/._coffee.png", b"\0")
    return buffer.getvalue()


def test_classes_from_uploads_per_class(app, photos):
    untrained(app)
    app.switch_page("sevis/app/views/classes.py").run()
    assert any("Upload images" in shown(i.value) for i in app.info)
    app.text_input(key="classes_label_0").set_value("cat")
    app.text_input(key="classes_label_1").set_value("vehicle")
    app.get("file_uploader")[0].set_value([png(photos, "chelsea.png"), png(photos, "astronaut.png")])
    app.get("file_uploader")[1].set_value([png(photos, "rocket.jpg"), png(photos, "motorcycle_left.png")]).run()
    no_errors(app)
    assert classes_shown(app).value == ["cat", "vehicle"]
    # Figure 6 as small multiples of six layers, one layer's profiles, histograms, depth curve, selectivity
    assert charts(app) == 5
    titles = [c.proto.spec for c in app.get("plotly_chart")]
    assert "chance (95 % of label permutations)" in titles[3] and "Class selectivity index" in titles[4]
    app.toggle(key="classes_test").set_value(True).run()  # + the two-class test
    assert charts(app) == 6 and "which channels separate cat from vehicle" in figure(app, 3).layout.title.text
    assert figure(app, 3).layout.title.text.startswith("SE_4_6:")
    markers = [t for t in figure(app, 3).data if t.mode == "markers"]  # every channel, by its index
    assert sorted(int(c) for t in markers for c in t.customdata) == list(range(128))  # the tiny network's SE_4_6
    app.toggle(key="classes_test").set_value(False).run()
    app.toggle(key="classes_band").set_value(True).run()
    app.radio(key="classes_channels").set_value("sorted by the difference of two classes").run()
    app.toggle(key="classes_side").set_value(True).run()
    app.selectbox(key="classes_layer").set_value("SE_5_2").run()
    no_errors(app)
    assert charts(app) == 6  # + the paper's Figure 7: the two classes ± std side by side
    assert "Figure 7" in figure(app, 2).layout.title.text
    # Figure 7 follows the Class A/B chosen above it and the chart's order (a sort: by rank)
    app.selectbox(key="classes_diff_a").set_value("vehicle").run()
    app.selectbox(key="classes_diff_b").set_value("cat").run()
    no_errors(app)
    seven = figure(app, 2)
    assert [a.text for a in seven.layout.annotations] == ["vehicle", "cat"]
    assert seven.layout.xaxis.title.text == "channel (in the chosen order)"
    sorted_line = next(t for t in figure(app, 1).data if (t.name or "").startswith("vehicle"))
    assert list(next(t for t in seven.data if t.meta == "SE_5_2").customdata) == list(sorted_line.customdata)
    app.radio(key="classes_reference").set_value("classes").run()
    profiles = app.get("plotly_chart")[1].proto.spec
    assert "mean of class means (paper's reference)" in profiles and "all images (n=4)" not in profiles


def test_classes_from_a_zip_with_a_broken_file_and_both_models(app, photos):
    app.sidebar.radio(key="model_choice").set_value("Both").run()
    untrained(app, SE, SGE)
    app.switch_page("sevis/app/views/classes.py").run()
    app.radio(key="classes_mode").set_value("zip").run()
    app.get("file_uploader")[0].set_value(("classes.zip", class_zip(photos), "application/zip")).run()
    assert not app.exception
    warning = next(shown(w.value) for w in app.warning if "could not be analysed" in shown(w.value))
    assert "data/cup/broken.jpg" in warning and ".DS_Store" not in warning
    assert classes_shown(app).value == ["cat", "cup"]
    # both modules' depth curves on one chart; SE figures; SGE mask statistics, activation spread
    # before/after SGE, depth curve, selectivity
    assert charts(app) == 1 + 5 + 4
    both = app.get("plotly_chart")[0].proto.spec
    assert "each module against depth" in both and SE_LABEL in both and SGE_LABEL in both
    assert any("**cat** 2" in shown(m.value) and "**cup** 1" in shown(m.value) for m in app.markdown)


def test_classes_from_predictions_and_a_bad_zip(app, photos):
    untrained(app)
    app.switch_page("sevis/app/views/classes.py").run()
    app.radio(key="classes_mode").set_value("predicted").run()
    app.get("file_uploader")[0].set_value([png(photos, "chelsea.png"), png(photos, "coffee.png")]).run()
    no_errors(app)
    assert charts(app) >= 2
    app.radio(key="classes_mode").set_value("zip").run()
    app.get("file_uploader")[0].set_value(("fake.zip", b"not a zip at all", "application/zip")).run()
    assert not app.exception
    assert any("fake.zip: not a readable zip archive" in shown(e.value) for e in app.error)


def test_compare_needs_both_then_shows_stages(app):
    untrained(app)
    app.switch_page("sevis/app/views/compare.py").run()
    assert any("Choose **Both**" in shown(i.value) for i in app.info)
    app.sidebar.radio(key="model_choice").set_value("Both").run()
    untrained(app, SE, SGE)
    no_errors(app)
    assert charts(app) == 2 + 2 * 4  # predictions, then 4 stages x (SE profile, SGE overlay)
    assert [shown(m.value) for m in app.markdown if shown(m.value).startswith("#### Stage")] == [
        "#### Stage 2: SE_2_3 and SGE_2_3",
        "#### Stage 3: SE_3_4 and SGE_3_4",
        "#### Stage 4: SE_4_6 and SGE_4_6",
        "#### Stage 5: SE_5_3 and SGE_5_3",
    ]


def test_classes_opens_a_saved_run_without_running_a_model(app, tiny_se, photos, tmp_path, monkeypatch):
    from sevis.jobs.extraction import extract

    folder = class_folders(tmp_path / "data", {"cat": ["chelsea.png", "astronaut.png"], "cup": ["coffee.png"]})
    run = extract(tiny_se, folder, tmp_path / "run.parquet", workers=0, progress=False)

    app.switch_page("sevis/app/views/classes.py").run()
    app.radio(key="classes_mode").set_value("run").run()
    assert any("Upload a run" in shown(i.value) for i in app.info)
    app.text_input(key="classes_run_path").set_value(str(run)).run()
    assert not app.exception  # outside the folders the dashboard may open: refused
    assert any("the dashboard opens files on the server only inside" in shown(e.value) for e in app.error)
    monkeypatch.setenv("SEVIS_SERVER_DIRS", str(tmp_path))  # the operator lists the folder
    app.text_input(key="classes_run_path").set_value("run.parquet").run()  # relative: found there
    no_errors(app)
    app.text_input(key="classes_run_path").set_value(str(run)).run()
    assert not app.exception
    assert charts(app) == 5 and classes_shown(app).value == ["cat", "cup"]
    assert any("3 images from" in shown(m.value) for m in app.markdown)
    # The sidebar's model could not be loaded (offline, pretrained): the run needs none, and
    # the page says nothing about it.
    assert not any("could not be fetched" in shown(m.value) for m in app.markdown) and not app.error
    app.radio(key="classes_mode").set_value("batches").run()
    assert any("could not be fetched" in shown(m.value) for m in app.markdown)  # images need the model: said again
    app.radio(key="classes_mode").set_value("run").run()

    app.text_input(key="classes_run_path").set_value("")
    app.get("file_uploader")[0].set_value(("run.parquet", run.read_bytes(), "application/octet-stream")).run()
    assert not app.exception and charts(app) == 5
    app.get("file_uploader")[0].set_value(("bad.parquet", b"PAR1 nonsense", "application/octet-stream")).run()
    assert not app.exception
    assert any("bad.parquet: not a readable Parquet file" in shown(e.value) for e in app.error)


def test_a_runs_chance_band_still_computing_is_said_and_drawn_when_done(app, tiny_se, photos, tmp_path, monkeypatch):
    """A large run's band takes a minute: the page draws the depth curve without it, says
    what it will be, and draws it once computed (here the computation is held on an event)."""
    import threading

    from sevis.app import services
    from sevis.jobs.extraction import extract
    from sevis.runs import reader

    folder = class_folders(
        tmp_path / "data", {"cat": ["chelsea.png", "astronaut.png"], "cup": ["coffee.png", "rocket.jpg"]}
    )
    run = extract(tiny_se, folder, tmp_path / "run.parquet", workers=0, progress=False)
    monkeypatch.setenv("SEVIS_SERVER_DIRS", str(tmp_path))
    monkeypatch.setattr(services, "BAND_WAIT_S", 0.2)
    release = threading.Event()
    computed = reader.specificity_nulls

    def held(*args, **kwargs):
        release.wait(60)
        return computed(*args, **kwargs)

    monkeypatch.setattr(reader, "specificity_nulls", held)
    app.switch_page("sevis/app/views/classes.py").run()
    app.radio(key="classes_mode").set_value("run").run()
    app.text_input(key="classes_run_path").set_value(str(run)).run()
    no_errors(app)
    depth = next(i for i in range(charts(app)) if "class-specificity" in app.get("plotly_chart")[i].proto.spec)
    assert not any(t.fill == "toself" for t in figure(app, depth).data)  # no band yet
    assert any("199 label permutations of all 4 images, being computed" in shown(c.value) for c in app.caption)
    release.set()
    services.load_run(None, str(run)).null_bands("se")  # done
    app.run()
    no_errors(app)
    (band,) = [t for t in figure(app, depth).data if t.fill == "toself"]
    assert "chance (95 % of label permutations)" in band.name and "4 images" in band.customdata[0]
    assert not any("being computed" in shown(c.value) for c in app.caption)


def test_a_saved_run_without_se_4_6_and_with_a_class_named_all_images(app, tiny_se, photos, tmp_path, monkeypatch):
    from sevis.jobs.extraction import extract

    folder = class_folders(tmp_path / "data", {"all images": ["chelsea.png", "astronaut.png"], "cup": ["coffee.png"]})
    run = extract(tiny_se, folder, tmp_path / "run.parquet", workers=0, layers=["SE_5_2"], progress=False)
    monkeypatch.setenv("SEVIS_SERVER_DIRS", str(tmp_path))

    app.switch_page("sevis/app/views/classes.py").run()
    app.radio(key="classes_mode").set_value("run").run()
    app.text_input(key="classes_run_path").set_value(str(run)).run()
    assert not app.exception
    assert app.selectbox(key="classes_layer").options == ["SE_5_2"]
    assert classes_shown(app).value == ["all images", "cup"]
    # Small multiples, profiles, histograms, the depth curve (one point: the run kept one layer), selectivity.
    assert charts(app) == 5
    profiles = app.get("plotly_chart")[1].proto.spec
    # The class called "all images" (2 images) is its own line, next to the 3 images of the run.
    assert "all images (n=2)" in profiles and "all images (n=3)" in profiles


def test_sge_with_many_uploads_keeps_masks_only_for_the_image_shown(app, photos):
    import io

    from PIL import Image

    from sevis.app.services import MAX_VALUE_IMAGES

    app.sidebar.radio(key="model_choice").set_value(SGE_LABEL).run()
    untrained(app, SGE)
    uploads = []
    for i in range(MAX_VALUE_IMAGES + 1):  # one more than the masks kept for every image
        name = list(photos)[i % len(photos)]
        image = Image.open(io.BytesIO(photos[name])).convert("RGB").rotate(7 * i)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        uploads.append((f"photo{i}.jpg", buffer.getvalue(), "image/jpeg"))
    app.get("file_uploader")[0].set_value(uploads).run()
    no_errors(app)
    assert len(app.selectbox(key="image_choice").options) == MAX_VALUE_IMAGES + 1
    assert charts(app) == 5  # top-5, mask grid, group maps before/after, overlay, Grad-CAM
    app.selectbox(key="image_choice").set_value("photo8.jpg").run()
    no_errors(app)
    assert charts(app) == 5


def test_a_plugin_that_fails_is_reported_and_the_dashboard_runs(offline, monkeypatch):
    monkeypatch.setenv("SEVIS_PLUGINS", "tiny, no_such_sevis_plugin")
    monkeypatch.setenv("SEVIS_DASHBOARD_MODELS", f"{SE_LABEL}={SE}")
    at = start(monkeypatch)
    assert not at.exception
    expected = (
        "Plugin no_such_sevis_plugin could not be loaded (ModuleNotFoundError: No module named "
        "'no_such_sevis_plugin'); the dashboard runs without it."
    )
    assert [shown(e.value) for e in at.error if "Plugin" in shown(e.value)] == [expected]
    more = ["Several modules", "Two checkpoints of one network", "Another timm model"]
    assert at.sidebar.radio(key="model_choice").options == [SE_LABEL, *more]  # one model: no "Both"
    untrained(at)
    assert charts(at) == 3


def test_classes_uploaded_one_after_the_other_are_all_drawn(app, photos):
    """Upload class 1, let the page draw, then class 2: the chart shows both (the class
    choice follows the class set instead of keeping the choice made when one existed)."""
    untrained(app)
    app.switch_page("sevis/app/views/classes.py").run()
    app.get("file_uploader")[0].set_value([png(photos, "chelsea.png"), png(photos, "astronaut.png")]).run()
    assert classes_shown(app).value == ["class 1"] and charts(app) == 3
    app.get("file_uploader")[1].set_value([png(photos, "rocket.jpg"), png(photos, "coffee.png")]).run()
    no_errors(app)
    assert classes_shown(app).value == ["class 1", "class 2"] and charts(app) == 5
    assert "class 2 (n=2)" in app.get("plotly_chart")[1].proto.spec


def test_a_model_list_with_nothing_usable_falls_back_to_the_papers_models(offline, monkeypatch):
    monkeypatch.setenv("SEVIS_DASHBOARD_MODELS", "no equals sign, =nameless")
    at = start(monkeypatch)
    assert not at.exception
    more = ["Several modules", "Two checkpoints of one network", "Another timm model"]
    assert at.sidebar.radio(key="model_choice").options == ["SE-ResNet-50", "SGE-ResNet-50", "Both", *more]


# Hostile inputs (issue 14): each reproduces a finding of the adversarial review.


def server_path_error(at: AppTest, text: str) -> str:
    at.sidebar.text_input(key="se_resnet50_path").set_value(text).run()
    assert not at.exception
    (error,) = [shown(e.value) for e in at.error]
    return error


def test_server_paths_outside_the_folders_get_one_message_whether_or_not_the_file_exists(real_app, offline):
    folder = offline / "sevis-weights"
    (folder / "link.pth").symlink_to("/etc/passwd")
    real_app.sidebar.selectbox(key="se_resnet50_source").set_value("server").run()
    typed = [
        "/etc/shadow",
        "/etc/does-not-exist",
        "/proc/self/environ",
        "../../../../etc/passwd",
        str(folder / "link.pth"),
    ]
    # the path typed, echoed at most 80 characters long, is the only difference
    messages = {text: re.sub(r"^(.*?: )'[^']*': ", r"\1PATH: ", server_path_error(real_app, text)) for text in typed}
    assert len(set(messages.values())) == 1, messages
    (message,) = set(messages.values())
    assert message.startswith(
        "SE-ResNet-50 could not be loaded: PATH: the dashboard opens files on the server only inside "
    )
    assert str(folder.resolve()) in message and "SEVIS_SERVER_DIRS" in message
    # inside the folder the user may learn what is there: that is what the folder is for
    assert "no file 'absent.pth' in" in server_path_error(real_app, "absent.pth")
    long = "/etc/" + "x" * 5000
    assert (
        len(server_path_error(real_app, long[:1000])) < 600
    )  # the widget takes 1,000 characters; the message echoes 80


def test_a_sparse_3_gb_file_in_the_folder_is_refused_by_its_size_before_reading(real_app, offline):
    huge = offline / "sevis-weights" / "huge.pth"
    with open(huge, "wb") as f:
        f.truncate(3 * 1024**3)
    real_app.sidebar.selectbox(key="se_resnet50_source").set_value("server").run()
    message = server_path_error(real_app, "huge.pth")
    assert (
        "huge.pth: 3,072 MB, more than the limit of 1,024 MB for a weights file (SEVIS_MAX_CHECKPOINT_MB); not read"
        in message
    )


def test_a_tuple_bomb_upload_is_refused_and_the_page_goes_on(real_app):
    from test_hostile import tuple_bomb, zip_checkpoint

    real_app.sidebar.selectbox(key="se_resnet50_source").set_value("upload").run()
    bomb = zip_checkpoint(tuple_bomb(60))
    assert len(bomb) < 4096
    real_app.sidebar.get("file_uploader")[0].set_value(("bomb.pth", bomb, "application/octet-stream")).run()
    assert not real_app.exception
    (error,) = [shown(e.value) for e in real_app.error]
    assert (
        error.startswith("SE-ResNet-50 could not be loaded: bomb.pth: refused, its objects unfold") and len(error) < 400
    )
    untrained(real_app, "se_resnet50")
    no_errors(real_app)
    assert charts(real_app) == 3


def test_a_full_disk_during_a_checkpoint_upload_is_a_message_and_the_next_try_works(
    real_app, senet_file, tmp_path, monkeypatch
):
    from conftest import remount, small_disk

    with small_disk(tmp_path / "uploads", "1m") as disk:
        monkeypatch.setenv("SEVIS_UPLOAD_DIR", str(disk))
        real_app.sidebar.selectbox(key="se_resnet50_source").set_value("upload").run()
        upload = ("se_resnet50-ce0d4300.pth", senet_file.read_bytes(), "application/octet-stream")
        real_app.sidebar.get("file_uploader")[0].set_value(upload).run()
        assert not real_app.exception
        (error,) = [shown(e.value) for e in real_app.error]
        assert error == (
            "SE-ResNet-50 could not be loaded: se_resnet50-ce0d4300.pth could not be kept on the server to be read "
            "(No space left on device); nothing of it was kept"
        )
        assert [p for p in disk.rglob("*") if p.is_file()] == []  # no truncated file left behind
        remount(disk, "512m")
        real_app.run()  # the same upload, now with room: read, not "corrupt"
        no_errors(real_app)
        assert charts(real_app) == 3
        assert [p for p in disk.rglob("*") if p.is_file()] == []  # removed once read
    from sevis.app.services import Loaded

    (loaded,) = [m for m in real_app.session_state["models"] if isinstance(m, Loaded)]
    assert loaded.provenance.weights == "uploaded se_resnet50-ce0d4300.pth"  # the user's file, not a temporary path
    assert loaded.provenance.weights_sha256 == hashlib.sha256(upload[1]).hexdigest()


def test_the_gradcam_class_follows_the_image(app, photos):
    import sevis
    from sevis.app.services import load_model

    untrained(app)
    names = ["chelsea.png", "coffee.png"]
    app.get("file_uploader")[0].set_value([png(photos, n) for n in names]).run()
    app.toggle(key=f"{SE}_gradcam_on").set_value(True).run()
    result = sevis.analyse(load_model(SE, "untrained"), [(n, photos[n]) for n in names])
    tops = [image.top_classes[0] for image in result.images]
    classes = list(sevis.model_info(load_model(SE, "untrained")).class_names)

    def cam_box():
        (box,) = [s for s in app.selectbox if s.label == "Grad-CAM class"]
        return box

    assert classes[cam_box().value] == tops[0]
    other = next(i for i, c in enumerate(classes) if c not in tops)
    cam_box().set_value(other).run()
    assert cam_box().value == other
    app.selectbox(key="image_choice").set_value("coffee.png").run()
    no_errors(app)
    assert classes[cam_box().value] == tops[1]  # the new image's own top class, not the old choice
    app.selectbox(key="image_choice").set_value("chelsea.png").run()
    assert classes[cam_box().value] == tops[0]  # back to the first: its own top class again


def test_with_a_login_provider_nobody_gets_past_the_sign_in_page_unsigned(app):
    app.secrets["auth"] = {
        "redirect_uri": "http://localhost:8501/oauth2callback",
        "cookie_secret": "a long random string for the test",
        "client_id": "sevis",
        "client_secret": "not a real secret",
        "server_metadata_url": "https://id.example.org/.well-known/openid-configuration",
    }
    app.run()
    assert not app.exception
    assert [b.label for b in app.button] == ["Sign in"]
    assert not app.sidebar.radio and not app.get("plotly_chart")  # no model panel, no analysis


def test_allowed_users_by_address_or_domain():
    from sevis.app.widgets import user_allowed

    assert user_allowed("ada@lab.org", "")  # no list: whoever the provider signs in
    allowed = "ada@lab.org, @vision.example.edu"
    assert user_allowed("Ada@Lab.org", allowed) and user_allowed("bo@vision.example.edu", allowed)
    assert not user_allowed("eve@example.edu", allowed) and not user_allowed("", allowed)
    assert not user_allowed("eve@evilvision.example.edu.attacker.com", allowed)


def test_channels_page_drills_into_the_classes_pages_images(app, photos):
    untrained(app)
    app.switch_page("sevis/app/views/classes.py").run()
    app.radio(key="classes_mode").set_value("zip").run()
    app.get("file_uploader")[0].set_value(("classes.zip", class_zip(photos), "application/zip")).run()
    # what a click on a class profile leaves behind (the browser test clicks for real)
    app.session_state["drill"] = {"layer": "SE_4_2", "channel": 9, "source": f"{SE_LABEL}: images on the Classes page"}
    app.switch_page("sevis/app/views/channels.py").run()
    no_errors(app)
    assert app.selectbox[0].value == "SE_4_2" and app.number_input[0].value == 9
    # the Images page's photographs (the samples, opened first) are offered too
    (source,) = [r for r in app.radio if r.label == "Images"]
    assert source.options == [
        f"{SE_LABEL}: images on the Images page",
        f"{SE_LABEL}: images on the Classes page",
        "A saved run, opened here",
    ]
    assert source.value == f"{SE_LABEL}: images on the Classes page"
    assert any("SE_4_2, channel 9" in m.value for m in app.subheader)
    titles = [c.proto.spec for c in app.get("plotly_chart")]
    assert any("SE_4_2, channel 9: per class" in t for t in titles)
    assert any("images by excitation (PCA" in t for t in titles)
    effect = app.dataframe[0].value
    assert {"image", "top-1 class", "p change at 0", "p change at 1"} <= set(effect.columns)
    assert len(effect) == 3  # the zip's three readable photographs, each shown once at each end
    assert len(app.get("image")) == 2 * 3  # thumbnails of the most and least excited images
    # another channel starts at its own most excited classes, and the map at another layer
    from sevis.analysis.explore import channel_view

    analysis = app.session_state["drill_sources"][f"{SE_LABEL}: images on the Classes page"][0]

    def ranked(channel: int) -> list[str]:
        means = channel_view(analysis, "SE_4_2", channel).class_means
        return sorted(means, key=means.__getitem__, reverse=True)

    other = next(c for c in range(10, 128) if ranked(c) != ranked(9))
    app.number_input[0].set_value(other).run()
    (offered,) = [m for m in app.multiselect if m.label == "Classes"]
    assert offered.value == ranked(other) != ranked(9)
    app.selectbox[0].set_value("SE_5_1").run()
    (slider,) = [s for s in app.get("select_slider") if s.label == "Layer of the map"]
    assert slider.value == "SE_5_1"
    app.selectbox[0].set_value("SE_4_2").run()
    app.toggle(key="channels_ablate").set_value(True).run()
    no_errors(app)

    def ablation():
        return next(
            figure(app, i) for i in range(charts(app)) if "with attention removed" in figure(app, i).layout.title.text
        )

    assert "(1 labelled images)" in ablation().layout.title.text  # 'cup' is a class of the model, 'cat' none
    assert [t.name for t in ablation().data] == ["top-1", "top-5", "top-1 kept (agrees with nothing removed)"]
    assert any("1 label(s) name no class of the model (cat)" in shown(c.value) for c in app.caption)
    (mapping,) = [s for s in app.selectbox if s.label == "cat"]
    mapping.set_value("tabby, tabby cat").run()  # the user's 'cat' is ImageNet's tabby
    no_errors(app)
    assert "(3 labelled images)" in ablation().layout.title.text
    # which channels matter: each of SE_4_2's 128 channels knocked out, as the library gives it
    app.toggle(key="channels_importance").set_value(True).run()
    no_errors(app)
    (scatter,) = [
        figure(app, i)
        for i in range(charts(app))
        if "cost against class selectivity" in figure(app, i).layout.title.text
    ]
    assert array(scatter.data[0].customdata).tolist() == list(range(128))  # 128 channels: all offered first
    import sevis

    model = sevis.load_model(SE, "untrained")
    labels = [r.label for r in analysis.images]
    truth = [
        281 if label == "cat" else sevis.class_indices([label], sevis.model_info(model).class_names)[0][0]
        for label in labels
    ]  # the mapping chosen above: the user's cat is ImageNet's tabby
    x = sevis.normalise(sevis.model_info(model).data_config, [Image.fromarray(r.view) for r in analysis.images])
    expected = sevis.channel_importance(model, [(x, truth, labels)], "SE_4_2")
    np.testing.assert_allclose(array(scatter.data[0].y), -expected.table.p_true_change.to_numpy(), rtol=1e-5, atol=1e-9)
    assert "Spearman ρ" in scatter.layout.title.text
    app.number_input[0].set_value(200).run()  # SE_4_2 has 128 channels: the widget keeps it in range
    no_errors(app)
    assert [b.label for b in app.get("download_button")][-1] == "Export all (zip)"


def test_a_drill_down_from_a_linked_view_opens_the_channels_page(offline, monkeypatch):
    """A click on a channel while a bound widget holds a value other than its default (the
    model choice in the address): Streamlit refuses to clear the address, so the page switch
    must not ask it to (it raised StreamlitAPIException on the page)."""
    monkeypatch.setenv("SEVIS_PLUGINS", "tiny")
    monkeypatch.setenv("SEVIS_DASHBOARD_MODELS", f"{SE_LABEL}={SE},{SGE_LABEL}={SGE}")
    monkeypatch.chdir(ROOT)
    st.cache_resource.clear()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.query_params.update(
        {
            "model_choice": "Both",
            f"{SE}_source": "Untrained (random weights)",
            f"{SGE}_source": "Untrained (random weights)",
        }
    )
    at.run()
    no_errors(at)
    assert at.sidebar.radio(key="model_choice").value == "Both" and charts(at) > 0
    # what a click on the Images page's profiles leaves behind (the browser tests click for real)
    at.session_state["drill"] = {"layer": "SE_5_2", "channel": 3, "source": f"{SE_LABEL}: images on the Images page"}
    at.session_state["_drill_go"] = True
    at.run()
    no_errors(at)
    assert any(m.value == "SE_5_2, channel 3" for m in at.subheader)


def test_a_channels_link_opens_the_same_run_layer_and_channel_in_a_fresh_session(app, tiny_se, tmp_path, monkeypatch):
    """The Channels page writes its layer, channel and classes shown into the address beside
    the run's server path, and its "Copy link" shows that address; a fresh session given it
    opens the same run at the same layer and channel, showing the same classes (those the run
    has)."""
    from urllib.parse import parse_qs

    from sevis.jobs.extraction import extract

    folder = class_folders(tmp_path / "data", {"cat": ["chelsea.png", "astronaut.png"], "cup": ["coffee.png"]})
    run = extract(tiny_se, folder, tmp_path / "run.parquet", workers=0, progress=False)
    monkeypatch.setenv("SEVIS_SERVER_DIRS", str(tmp_path))
    app.switch_page("sevis/app/views/channels.py").run()
    app.text_input(key="channels_run_path").set_value(str(run)).run()
    app.selectbox[0].set_value("SE_5_1").run()
    app.number_input[0].set_value(37).run()
    no_errors(app)
    assert any(m.value == "SE_5_1, channel 37" for m in app.subheader)
    assert app.query_params["channel_layer"] == "SE_5_1" and app.query_params["channel"] == "37"
    classes = app.multiselect[0]
    assert classes.value == ["cat", "cup"] or classes.value == ["cup", "cat"]  # both, the most excited first
    classes.set_value(["cup"]).run()
    (copy,) = [c.value for c in app.code if "/channels?" in c.value]
    link = parse_qs(copy.split("?", 1)[1])
    assert link == {"channels_run_path": [str(run)], "channel_layer": ["SE_5_1"], "channel": ["37"], "classes": ["cup"]}
    fresh = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    fresh.query_params.update(link)
    fresh.run()
    fresh.switch_page("sevis/app/views/channels.py").run()
    no_errors(fresh)
    assert any(m.value == "SE_5_1, channel 37" for m in fresh.subheader)
    assert fresh.selectbox[0].value == "SE_5_1" and fresh.number_input[0].value == 37
    assert fresh.multiselect[0].value == ["cup"]
    both = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)  # several classes, one not in the run
    both.query_params.update({**link, "classes": ["cat", "dog", "cup"]})
    both.run()
    both.switch_page("sevis/app/views/channels.py").run()
    no_errors(both)
    assert both.multiselect[0].value == ["cat", "cup"]
    (again,) = [c.value for c in both.code if "/channels?" in c.value]
    assert parse_qs(again.split("?", 1)[1])["classes"] == ["cat", "cup"]
    odd = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)  # a hand-edited link: no traceback
    odd.query_params.update({"channels_run_path": str(run), "channel_layer": "SE_9_9", "channel": "9" * 40})
    odd.run()
    odd.switch_page("sevis/app/views/channels.py").run()
    no_errors(odd)
    assert any(m.value.endswith(", channel 0") for m in odd.subheader)


def test_channels_page_opens_a_saved_run_and_reads_its_images_back(app, tiny_se, photos, tmp_path, monkeypatch):
    from sevis.jobs.extraction import extract

    folder = class_folders(
        tmp_path / "data", {"cat": ["chelsea.png", "astronaut.png"], "cup": ["coffee.png", "camera.png"]}
    )
    run = extract(tiny_se, folder, tmp_path / "run.parquet", workers=0, progress=False)
    monkeypatch.setenv("SEVIS_SERVER_DIRS", str(tmp_path))
    app.switch_page("sevis/app/views/channels.py").run()
    assert any("Upload a run" in shown(i.value) for i in app.info)
    app.text_input(key="channels_run_path").set_value(str(run)).run()
    no_errors(app)
    titles = [c.proto.spec for c in app.get("plotly_chart")]
    assert any("SE_4_6, channel 0: per class" in t for t in titles)
    assert any("Knock-outs need the model" in shown(c.value) for c in app.caption)
    captions = [shown(c.value) for c in app.caption]
    assert not any("not readable here" in c for c in captions)
    app.text_input(key="channels_run_path").set_value("")
    app.get("file_uploader")[0].set_value(("run.parquet", run.read_bytes(), "application/octet-stream")).run()
    no_errors(app)  # uploaded: its rows are not kept, and the page says so
    assert any("keeps its statistics, not its rows" in shown(i.value) for i in app.info)
    app.get("file_uploader")[0].set_value(None).run()
    app.text_input(key="channels_run_path").set_value(str(run)).run()
    (folder / "cat" / "chelsea.png").unlink()  # an image gone from the source: said, not a crash
    app.number_input[0].set_value(3).run()
    no_errors(app)
    assert any("chelsea.png" in shown(c.value) and "not readable here" in shown(c.value) for c in app.caption), [
        shown(c.value) for c in app.caption
    ]


def chart_specs(at: AppTest) -> list[dict]:
    import json

    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def test_two_uploads_with_one_name_stay_two_images(app, photos):
    untrained(app)
    app.get("file_uploader")[0].set_value(
        [("photo.jpg", photos["rocket.jpg"], "image/jpeg"), ("photo.jpg", photos["coffee.png"], "image/png")]
    ).run()
    no_errors(app)
    assert app.selectbox(key="image_choice").options == ["photo.jpg", "photo.jpg (2)"]
    app.selectbox(key="image_choice").set_value("photo.jpg (2)").run()
    assert any("photo.jpg (2): the 224×224 crop the model sees" in str(i.proto) for i in app.get("image"))
    app.toggle(key=f"{SE}_overlay").set_value(True).run()
    legend = {t.get("name") for spec in chart_specs(app) for t in spec["data"] if t.get("showlegend") is not False}
    assert {"photo.jpg", "photo.jpg (2)"} <= legend  # neither overlays the other


def test_layers_are_drawn_in_depth_order_and_gradcam_waits_to_be_asked(app):
    untrained(app)
    app.multiselect(key=f"{SE}_layers").set_value(["SE_5_2", "SE_2_1", "SE_4_6"]).run()
    no_errors(app)
    (profiles,) = [s for s in chart_specs(app) if "SE excitation per channel" in str(s["layout"].get("title"))]
    titles = [a["text"] for a in profiles["layout"]["annotations"]]
    assert titles == ["SE_2_1", "SE_4_6", "SE_5_2"]
    assert not [s for s in app.selectbox if s.label == "Grad-CAM class"]  # no backward pass ran


def test_compare_offers_only_readable_images_and_says_which_model_is_missing(app, photos):
    app.sidebar.radio(key="model_choice").set_value("Both").run()
    untrained(app, SE)
    app.sidebar.selectbox(key=f"{SGE}_source").set_value("upload").run()
    app.switch_page("sevis/app/views/compare.py").run()
    assert any("The SGE model is not loaded yet" in shown(i.value) for i in app.info)
    untrained(app, SGE)
    broken = ("broken.jpg", photos["rocket.jpg"][:3000], "image/jpeg")
    app.get("file_uploader")[0].set_value([png(photos, "chelsea.png"), broken]).run()
    assert not app.exception
    assert app.selectbox(key="compare_choice").options == ["chelsea.png"]
    assert [b.label for b in app.get("download_button")][-1] == "Export all (zip)"
    (warning,) = [shown(w.value) for w in app.warning if "could not be analysed" in shown(w.value)]
    assert "broken.jpg" in warning and "left out" in warning


def test_sorting_by_a_difference_needs_two_classes(app, photos):
    untrained(app)
    app.switch_page("sevis/app/views/classes.py").run()
    app.get("file_uploader")[0].set_value([png(photos, "chelsea.png"), png(photos, "coffee.png")]).run()
    app.radio(key="classes_channels").set_value("sorted by the difference of two classes").run()
    no_errors(app)
    assert any("needs two classes shown" in shown(i.value) for i in app.info)


def test_renaming_a_class_runs_no_model_and_a_new_column_only_its_own_images(app, photos):
    from sevis.app.services import load_model

    untrained(app)
    app.switch_page("sevis/app/views/classes.py").run()
    app.get("file_uploader")[0].set_value([png(photos, "chelsea.png"), png(photos, "astronaut.png")]).run()
    model = load_model(SE, "untrained")
    calls: list[int] = []
    handle = model.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape[0]))
    try:
        app.get("file_uploader")[1].set_value([png(photos, "rocket.jpg")]).run()
        assert calls == [1]  # the new image alone
        app.text_input(key="classes_label_0").set_value("cat").run()
        app.text_input(key="classes_label_1").set_value("rocket").run()
        assert calls == [1]  # renamed twice: no forward pass
    finally:
        handle.remove()
    no_errors(app)
    assert classes_shown(app).value == ["cat", "rocket"]
    assert any("**cat** 2" in shown(m.value) and "**rocket** 1" in shown(m.value) for m in app.markdown)
    fresh = sevis_analyse_labelled(model, photos)
    profile = figure(app, 1)  # one layer's profiles: the class means of a fresh analysis
    (cat,) = [t for t in profile.data if (t.name or "").startswith("cat (n=2)")]
    x = array(cat.customdata).astype(int)
    np.testing.assert_allclose(array(cat.y), fresh.se.mean("SE_4_6", "cat")[x], rtol=1e-6)


def sevis_analyse_labelled(model, photos):
    import sevis

    names = ["chelsea.png", "astronaut.png", "rocket.jpg"]
    return sevis.analyse(model, [(n, photos[n]) for n in names], labels=["cat", "cat", "rocket"])


def figure(at: AppTest, n: int):
    """The n-th chart as a plotly figure (its arrays decoded)."""
    import plotly.io

    return plotly.io.from_json(at.get("plotly_chart")[n].proto.spec)


def test_fewer_classes_and_more_again_keeps_the_uploads(app, photos):
    untrained(app)
    app.switch_page("sevis/app/views/classes.py").run()
    app.number_input(key="classes_count").set_value(3).run()
    for i, names in enumerate([["chelsea.png"], ["coffee.png"], ["rocket.jpg", "camera.png"]]):
        app.get("file_uploader")[i].set_value([png(photos, n) for n in names]).run()
    assert classes_shown(app).value == ["class 1", "class 2", "class 3"]
    app.number_input(key="classes_count").set_value(2).run()
    no_errors(app)
    assert classes_shown(app).value == ["class 1", "class 2"]  # set aside: not analysed
    assert [e.label for e in app.expander] == ["1 class column(s) set aside: kept, not analysed"]
    app.number_input(key="classes_count").set_value(3).run()
    no_errors(app)
    assert classes_shown(app).value == ["class 1", "class 2", "class 3"]  # its two photographs kept
    assert any("**class 3** 2" in shown(m.value) for m in app.markdown)


def test_another_timm_model_with_se_modules(app):
    app.sidebar.radio(key="model_choice").set_value("Another timm model").run()
    assert "mobilenetv3_small_100" in app.sidebar.selectbox(key="timm_model").options
    assert "resnet50" not in app.sidebar.selectbox(key="timm_model").options  # no SE: not offered
    app.sidebar.selectbox(key="timm_model").set_value("mobilenetv3_small_100").run()
    assert not app.exception  # offline: its hub weights cannot be fetched, said once
    assert any("could not be fetched" in shown(m.value) for m in app.markdown)
    app.sidebar.selectbox(key="mobilenetv3_small_100_source").set_value("untrained").run()
    no_errors(app)
    layers = app.multiselect(key="mobilenetv3_small_100_layers").options
    assert layers[0] == "SE_1" and len(layers) == 9  # depth-order names outside ResNet stages
    assert charts(app) == 3


def test_the_first_pages_figures_are_built_once_per_server_and_shared(app, photos, monkeypatch):
    """A second session on the same photographs draws the Images page's three figures from
    the server's shared ones (built once, stamped untrained once); another image or another
    choice of layers builds its own."""
    from sevis import figures as figs

    built = []
    for name in ("excitation_profiles", "excitation_overview", "top_classes"):
        real = getattr(figs, name)
        monkeypatch.setattr(figs, name, lambda *a, _real=real, _name=name, **k: built.append(_name) or _real(*a, **k))
    untrained(app)
    assert sorted(built) == ["excitation_overview", "excitation_profiles", "top_classes"]
    other = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)  # another session, same server
    other.session_state[f"{SE}_source"] = "untrained"
    other.run()
    no_errors(other)
    assert len(built) == 3 and charts(other) == 3  # drawn, none built again
    title = figure(other, 1).layout.title.text
    assert title.count(figs.UNTRAINED_NOTE) == 1
    other.selectbox(key="image_choice").set_value("rocket.jpg").run()
    assert len(built) == 6  # another image: its own three
    other.multiselect(key=f"{SE}_layers").set_value(["SE_2_1", "SE_5_3"]).run()
    assert built[6:] == ["excitation_profiles"]  # other layers: the profiles only
    assert [a.text for a in figure(other, 1).layout.annotations] == ["SE_2_1", "SE_5_3"]


def test_weights_that_cannot_be_fetched_are_tried_once_per_server_until_tried_again(app, monkeypatch):
    """Offline, timm's hub cannot give a network's weights: the failure is kept for the server
    (a rerun and a second session do not try again), said whole with where to get the file,
    and "Try again" tries again."""
    import timm

    tries = []
    build = timm.create_model

    def counted(name, *args, **kwargs):
        tries.append((name, kwargs.get("pretrained")))
        return build(name, *args, **kwargs)

    monkeypatch.setattr(timm, "create_model", counted)

    def fetches() -> int:
        return sum(1 for name, pretrained in tries if name == "mobilenetv3_small_100" and pretrained)

    app.sidebar.radio(key="model_choice").set_value("Another timm model").run()
    assert app.sidebar.selectbox(key="timm_model").value == "seresnet50"  # not the list's first
    app.sidebar.selectbox(key="timm_model").set_value("mobilenetv3_small_100").run()
    assert not app.exception and fetches() == 1
    (message,) = [shown(m.value) for m in app.markdown if shown(m.value).startswith("mobilenetv3_small_100: ")]
    assert message.endswith("; use a weights file or untrained weights instead")  # whole, not cut
    sentences = message.split(". ")
    assert len(sentences) == len(set(sentences))  # no sentence twice
    (where,) = [shown(m.value) for m in app.markdown if "state_dict()" in shown(m.value)]
    assert where.startswith("timm fetches `mobilenetv3_small_100` from the Hugging Face hub")
    assert "https://huggingface.co/timm/mobilenetv3_small_100" in where
    app.run()
    assert fetches() == 1  # a rerun: the failure kept
    other = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)  # another session, same server
    other.session_state["model_choice"] = "Another timm model"
    other.session_state["timm_model"] = "mobilenetv3_small_100"
    other.run()
    assert any(shown(m.value).startswith("mobilenetv3_small_100: ") for m in other.markdown)
    assert fetches() == 1
    app.button(key="mobilenetv3_small_100_retry").click().run()
    assert fetches() == 2  # tried again, and failed again: kept again
    other.run()
    assert fetches() == 2


def test_a_trained_network_against_itself_untrained_on_the_classes_page(app, photos, tmp_path, monkeypatch):
    """The baseline toggle runs the same images through the same architecture with the
    fixed-seed untrained weights: a second curve with its band, the difference per layer,
    and a caption of what was measured; offered only for weights that are not untrained."""
    from tiny import randomize_

    import sevis

    checkpoint = tmp_path / "tiny_se_trained.pth"
    torch.save(randomize_(sevis.load_model(SE, "untrained"), seed=5).state_dict(), checkpoint)
    monkeypatch.setenv("SEVIS_SERVER_DIRS", str(tmp_path))
    app.sidebar.selectbox(key=f"{SE}_source").set_value("server").run()
    app.sidebar.text_input(key=f"{SE}_path").set_value(str(checkpoint)).run()
    app.switch_page("sevis/app/views/classes.py").run()
    app.get("file_uploader")[0].set_value([png(photos, "chelsea.png"), png(photos, "astronaut.png")])
    app.get("file_uploader")[1].set_value([png(photos, "rocket.jpg"), png(photos, "coffee.png")]).run()
    no_errors(app)
    assert charts(app) == 5
    app.toggle(key="classes_baseline").set_value(True).run()
    no_errors(app)
    depth = figure(app, 3)
    names = [t.name for t in depth.data]
    assert "untrained: ω²" in names and "untrained: chance (95 % of label permutations)" in names
    (gain,) = [t for t in depth.data if t.name and t.name.startswith("ω²(") and "untrained" in t.name]
    assert gain.yaxis == "y3" and len(gain.x) == 16
    mine = next(t for t in depth.data if t.name == f"{SE_LABEL}: ω²")
    theirs = next(t for t in depth.data if t.name == "untrained: ω²")
    np.testing.assert_allclose(array(gain.y), array(mine.y) - array(theirs.y), atol=1e-12)
    untrained_alone = sevis.analyse(
        sevis.load_model(SE, "untrained"),
        [(n, photos[n]) for n in ("chelsea.png", "astronaut.png", "rocket.jpg", "coffee.png")],
        labels=["class 1", "class 1", "class 2", "class 2"],
    )
    np.testing.assert_allclose(array(theirs.y), [untrained_alone.se.specificity(k) for k in theirs.x], rtol=1e-6)
    assert any("Untrained, the same images give ω² from" in shown(c.value) for c in app.caption)
    app.sidebar.selectbox(key=f"{SE}_source").set_value("untrained").run()
    assert "classes_baseline" not in [t.key for t in app.toggle]  # untrained weights: nothing to compare


def test_sge_distributions_before_and_after_on_the_classes_page(app, photos):
    app.sidebar.radio(key="model_choice").set_value(SGE_LABEL).run()
    untrained(app, SGE)
    app.switch_page("sevis/app/views/classes.py").run()
    app.get("file_uploader")[0].set_value([png(photos, "chelsea.png"), png(photos, "astronaut.png")])
    app.get("file_uploader")[1].set_value([png(photos, "rocket.jpg"), png(photos, "coffee.png")]).run()
    no_errors(app)
    shown_before = charts(app)
    app.toggle(key="classes_sge_dist").set_value(True).run()
    no_errors(app)
    assert charts(app) == shown_before + 1
    titles = [figure(app, i).layout.title.text for i in range(charts(app))]
    (title,) = [t for t in titles if "distribution of group activations before and after SGE" in t]
    assert "(all images)" in title
    app.selectbox(key="classes_sge_dist_class").set_value("class 2").run()
    assert any("before and after SGE (class 2)" in figure(app, i).layout.title.text for i in range(charts(app)))


def test_a_saved_sge_runs_distributions_on_the_classes_page(app, tiny_sge, tmp_path, monkeypatch):
    """A run keeps the distributions over all its images: drawn from it, no class offered;
    one made without them says how to get them."""
    from sevis.jobs.extraction import extract

    folder = class_folders(tmp_path / "data", {"cat": ["chelsea.png", "astronaut.png"], "cup": ["coffee.png"]})
    kept = extract(tiny_sge, folder, tmp_path / "run.parquet", workers=0, progress=False)
    plain = extract(tiny_sge, folder, tmp_path / "plain.parquet", workers=0, progress=False, distributions=False)
    monkeypatch.setenv("SEVIS_SERVER_DIRS", str(tmp_path))
    app.switch_page("sevis/app/views/classes.py").run()
    app.radio(key="classes_mode").set_value("run").run()
    app.text_input(key="classes_run_path").set_value(str(kept)).run()
    no_errors(app)
    shown_before = charts(app)
    app.toggle(key="classes_sge_dist").set_value(True).run()
    no_errors(app)
    assert charts(app) == shown_before + 1
    title = "distribution of group activations before and after SGE (all images)"
    assert any(title in figure(app, i).layout.title.text for i in range(charts(app)))
    assert app.selectbox(key="classes_sge_dist_class").options == ["all images"]
    assert any("over all its images, not by class" in shown(c.value) for c in app.caption)
    # a run keeps no mask values: its saturation panel says so instead of drawing NaN lines
    depth = next(figure(app, i) for i in range(charts(app)) if "against depth" in figure(app, i).layout.title.text)
    assert not any(t.yaxis == "y2" for t in depth.data)
    assert any(a.text == "not counted: these statistics hold no gate values" for a in depth.layout.annotations)
    assert any("Saturation is not drawn" in shown(c.value) for c in app.caption)
    assert [b.label for b in app.get("download_button")][-1] == "Export all (zip)"  # a run's page too
    app.text_input(key="classes_run_path").set_value(str(plain)).run()
    no_errors(app)
    assert not any(title in figure(app, i).layout.title.text for i in range(charts(app)))
    assert any("made without the distributions" in shown(c.value) for c in app.caption)


def test_two_checkpoints_of_one_network_side_by_side(app, photos, tmp_path, monkeypatch):
    from tiny import randomize_

    import sevis

    # a second checkpoint of the tiny SE network: other weights, same architecture
    other = randomize_(sevis.load_model(SE, "untrained"), seed=5)
    checkpoint = tmp_path / "tiny_se_b.pth"
    torch.save(other.state_dict(), checkpoint)
    monkeypatch.setenv("SEVIS_SERVER_DIRS", str(tmp_path))
    app.sidebar.radio(key="model_choice").set_value("Two checkpoints of one network").run()
    app.sidebar.selectbox(key="two_model").set_value(SE_LABEL).run()
    app.sidebar.selectbox(key=f"{SE}_source").set_value("untrained").run()
    app.sidebar.selectbox(key=f"{SE}_b_source").set_value("server").run()
    app.sidebar.text_input(key=f"{SE}_b_path").set_value(str(checkpoint)).run()
    no_errors(app)
    assert [h.value for h in app.main.header] == [f"{SE_LABEL} (A)", f"{SE_LABEL} (B)"]
    assert charts(app) == 2 * 3
    # side by side: each checkpoint in a column of its own, its charts with it
    sides = [c for c in app.main.columns if c.header]
    assert [[h.value for h in c.header] for c in sides] == [[f"{SE_LABEL} (A)"], [f"{SE_LABEL} (B)"]]
    assert [len(c.get("plotly_chart")) for c in sides] == [3, 3]
    app.switch_page("sevis/app/views/classes.py").run()
    app.get("file_uploader")[0].set_value([png(photos, "chelsea.png"), png(photos, "astronaut.png")])
    app.get("file_uploader")[1].set_value([png(photos, "rocket.jpg"), png(photos, "coffee.png")]).run()
    no_errors(app)
    # on the Classes page, a tab each at full width, and a third comparing them
    a, b = f"{SE_LABEL} (A)", f"{SE_LABEL} (B)"
    assert [t.label for t in app.tabs] == [a, b, f"{a} − {b}"]
    assert [len(t.get("plotly_chart")) for t in app.tabs] == [5, 5, 2]
    assert charts(app) == 2 * 5 + 2
    first, second = figure(app, 1), figure(app, 6)  # the same layer's profiles, A then B
    assert not np.allclose(array(first.data[0].y), array(second.data[0].y))  # other weights, other means
    difference, depth = figure(app, 10), figure(app, 11)
    assert difference.layout.title.text.startswith(f"SE_4_6: mean({a}) − mean({b}) per channel")
    shown = array(first.data[0].x).astype(int)  # Figure 6's 50 channels of class 1
    np.testing.assert_allclose(
        array(difference.data[0].y)[shown], array(first.data[0].y) - array(second.data[0].y), atol=1e-6
    )
    names = [t.name for t in depth.data]
    assert f"{a}: ω²" in names and f"{b}: ω²" in names  # both depth curves on one chart...
    assert any(f"ω²({a}) − ω²({b})" == ann.text for ann in depth.layout.annotations)  # ...and their difference
    assert f"{b}: ω²" in [t.name for t in figure(app, 8).data]  # B's own depth curve, by its label (not a slot)
    assert [button.label for button in app.get("download_button")].count("Export all (zip)") == 1  # one for both
    app.selectbox(key=f"classes_layer_{SE}_b").set_value("SE_5_2").run()
    no_errors(app)
    assert "SE_5_2" in figure(app, 6).layout.title.text and "SE_4_6" in figure(app, 1).layout.title.text
    app.selectbox(key="classes_ab_se_layer").set_value("SE_5_2").run()
    assert figure(app, 10).layout.title.text.startswith("SE_5_2: ")


def test_unique_names_never_collide():
    from sevis.app.services import unique_names

    files = [("a.jpg", b"1"), ("a.jpg", b"2"), ("a.jpg (2)", b"3"), ("a.jpg", b"4"), ("b.jpg", b"5")]
    named = unique_names(files)
    assert [n for n, _ in named] == ["a.jpg", "a.jpg (2)", "a.jpg (2) (2)", "a.jpg (3)", "b.jpg"]
    assert [d for _, d in named] == [d for _, d in files]  # same order, same bytes


BEACON = "![x](http://127.0.0.1:9/beacon.png)"  # a Markdown image: every viewer's browser would fetch it


def test_names_from_a_users_zip_are_shown_as_text_and_long_failure_lists_summarised(app, photos):
    """Entry names went into the warning as Markdown (an image, a link); 15,000 failures
    were megabytes of text in one element. Names are escaped and cut short; the warning
    lists ten and the whole list is a download."""
    broken = photos["rocket.jpg"][:3000]
    entries = {"data/cat/chelsea.png": photos["chelsea.png"], "data/cup/coffee.png": photos["coffee.png"]}
    entries[f"data/cup/{BEACON}.jpg"] = broken
    entries |= {f"data/cup/broken-{i:02d}.jpg": broken for i in range(29)}
    untrained(app)
    app.switch_page("sevis/app/views/classes.py").run()
    app.radio(key="classes_mode").set_value("zip").run()
    app.get("file_uploader")[0].set_value(("classes.zip", make_zip(entries), "application/zip")).run()
    assert not app.exception
    (warning,) = [w.value for w in app.warning if "could not be analysed" in shown(w.value)]
    assert "![" not in warning and "](" not in warning  # no image or link can form
    assert f"data/cup/{BEACON}.jpg" in shown(warning)  # the name, as the characters it is
    assert shown(warning).startswith("30 file(s) could not be analysed")
    assert shown(warning).count("\n- ") == 10 and "and 20 more: the whole list is in the download below" in shown(
        warning
    )
    (listed,) = [b for b in app.get("download_button") if b.label.startswith("Download the list of files left out")]
    assert listed.proto.label == "Download the list of files left out (CSV)"
    assert charts(app) == 5  # the two readable images are analysed


def test_a_saved_runs_metadata_is_shown_as_text(app, tiny_se, photos, tmp_path):
    import pyarrow.parquet as pq

    from sevis.jobs.extraction import extract

    folder = class_folders(tmp_path / "data", {"cat": ["chelsea.png"], "cup": ["coffee.png"]})
    run = extract(tiny_se, folder, tmp_path / "run.parquet", workers=0, progress=False)
    table = pq.read_table(run)
    meta = json.loads(table.schema.metadata[b"sevis"])
    meta |= {"model": f"tiny_se {BEACON}", "source": f"[click me](http://127.0.0.1:9/) {BEACON}"}
    hostile = tmp_path / "hostile.parquet"
    pq.write_table(table.replace_schema_metadata({b"sevis": json.dumps(meta).encode()}), hostile)
    app.switch_page("sevis/app/views/classes.py").run()
    app.radio(key="classes_mode").set_value("run").run()
    app.get("file_uploader")[0].set_value(("hostile.parquet", hostile.read_bytes(), "application/octet-stream")).run()
    assert not app.exception
    (line,) = [m.value for m in app.markdown if "images from" in shown(m.value)]
    assert "](" not in line and "![" not in line
    assert f"[click me](http://127.0.0.1:9/) {BEACON}" in shown(line)


def test_at_most_the_slots_draw_at_once_and_a_waiting_session_goes_next(monkeypatch):
    """SEVIS_MAX_CONCURRENT_RUNS bounds the sessions drawing at once; the others wait in
    their thread (bench/load.py --burst measures what that does for the health endpoint)."""
    import threading

    from sevis.app.services import run_slot, run_slots

    monkeypatch.setenv("SEVIS_MAX_CONCURRENT_RUNS", "1")
    assert run_slots() == 1
    inside, order = threading.Event(), []
    leave = threading.Event()

    def first() -> None:
        with run_slot():
            order.append("first in")
            inside.set()
            leave.wait(30)
            order.append("first out")

    def second() -> None:
        with run_slot():
            order.append("second in")

    a = threading.Thread(target=first)
    a.start()
    inside.wait(30)
    b = threading.Thread(target=second)
    b.start()
    b.join(0.5)
    assert b.is_alive() and order == ["first in"]  # waiting for the slot
    leave.set()
    a.join(30)
    b.join(30)
    assert order == ["first in", "first out", "second in"]
    monkeypatch.setenv("SEVIS_MAX_CONCURRENT_RUNS", "0")
    with run_slot(), run_slot():  # no bound: both at once
        assert run_slots() == 0
    monkeypatch.delenv("SEVIS_MAX_CONCURRENT_RUNS")
    assert run_slots() == max(2, os.cpu_count() or 2)


def test_a_session_drawing_beside_others_runs_torch_on_one_thread(monkeypatch, request):
    """Alone on a machine with cores to spare, a session's page keeps torch's threads;
    entering while another session draws, or while the machine's load is at its cores, it
    runs its torch ops on one (their teams wait on each other's descheduled threads);
    SEVIS_SESSION_THREADS sets the count for every session; afterwards torch's count is back."""
    import threading

    from sevis.app.services import run_slot

    load = [0.0]
    monkeypatch.setattr(os, "getloadavg", lambda: (load[0], load[0], load[0]))  # this machine's own may be high
    monkeypatch.delenv("SEVIS_SESSION_THREADS", raising=False)
    monkeypatch.setenv("SEVIS_MAX_CONCURRENT_RUNS", "2")
    request.addfinalizer(functools.partial(torch.set_num_threads, torch.get_num_threads()))
    torch.set_num_threads(2)
    seen: dict[str, int] = {}
    inside, leave = threading.Event(), threading.Event()

    def first() -> None:
        with run_slot():
            seen["alone"] = torch.get_num_threads()
            inside.set()
            leave.wait(30)

    a = threading.Thread(target=first)
    a.start()
    inside.wait(30)
    with run_slot():
        seen["beside another"] = torch.get_num_threads()
    leave.set()
    a.join(30)
    seen["after"] = torch.get_num_threads()
    load[0] = float(len(os.sched_getaffinity(0)))
    with run_slot():
        seen["alone, the machine loaded"] = torch.get_num_threads()
    load[0] = 0.0
    monkeypatch.setenv("SEVIS_SESSION_THREADS", "1")
    with run_slot():
        seen["set to 1, alone"] = torch.get_num_threads()
    monkeypatch.setenv("SEVIS_SESSION_THREADS", "0")
    with run_slot():
        seen["set to 0, alone"] = torch.get_num_threads()
    assert seen == {
        "alone": 2,
        "beside another": 1,
        "after": 2,
        "alone, the machine loaded": 1,
        "set to 1, alone": 1,
        "set to 0, alone": 2,
    }


def test_each_models_weights_survive_the_model_radio_and_page_changes(app, photos):
    """Untrained SE, then SGE, then SE again: SE is still untrained (no failure panel);
    through every page and back the sidebar keeps what was chosen."""
    untrained(app, SE)
    app.sidebar.radio(key="model_choice").set_value(SGE_LABEL).run()
    untrained(app, SGE)
    app.sidebar.radio(key="model_choice").set_value(SE_LABEL).run()
    no_errors(app)
    assert app.sidebar.selectbox(key=f"{SE}_source").value == "untrained"
    assert not any("could not be fetched" in shown(m.value) for m in app.markdown)
    app.sidebar.radio(key="model_choice").set_value("Both").run()
    for page in ("classes.py", "compare.py", "channels.py", "images.py"):
        app.switch_page(f"sevis/app/views/{page}").run()
        no_errors(app)
        assert [app.sidebar.selectbox(key=f"{n}_source").value for n in (SE, SGE)] == ["untrained"] * 2, page
        assert not any("could not be fetched" in shown(m.value) for m in app.markdown), page


def test_uploads_labels_and_choices_survive_leaving_a_page_and_coming_back(app, photos):
    """Images: two photographs and the second chosen; Classes: three labelled classes of
    uploads; SE vs SGE: one upload. Each page left for another and opened again draws the
    same inputs, says it uses the files kept, and forgets them when asked."""
    untrained(app, SE)
    app.get("file_uploader")[0].set_value([png(photos, "chelsea.png"), png(photos, "rocket.jpg")]).run()
    app.selectbox(key="image_choice").set_value("rocket.jpg").run()
    app.switch_page("sevis/app/views/classes.py").run()
    app.number_input(key="classes_count").set_value(3).run()
    for i, (label, names) in enumerate({"cat": ["chelsea.png"], "cup": ["coffee.png"], "ship": ["rocket.jpg"]}.items()):
        app.text_input(key=f"classes_label_{i}").set_value(label)
        app.get("file_uploader")[i].set_value([png(photos, n) for n in names])
    app.run()
    no_errors(app)
    layer = app.selectbox(key="classes_layer")
    chosen = next(o for o in layer.options if o != layer.value)
    layer.set_value(chosen).run()
    before = charts(app)
    assert classes_shown(app).value == ["cat", "cup", "ship"]

    app.switch_page("sevis/app/views/images.py").run()
    no_errors(app)
    assert app.selectbox(key="image_choice").options == ["chelsea.png", "rocket.jpg"]
    assert app.selectbox(key="image_choice").value == "rocket.jpg"
    assert any("Still using the 2 file(s) uploaded here before" in shown(c.value) for c in app.caption)
    assert not any("Showing the sample photographs" in shown(c.value) for c in app.caption)

    app.switch_page("sevis/app/views/classes.py").run()
    no_errors(app)
    assert app.number_input(key="classes_count").value == 3
    assert [app.text_input(key=f"classes_label_{i}").value for i in range(3)] == ["cat", "cup", "ship"]
    assert classes_shown(app).value == ["cat", "cup", "ship"] and charts(app) == before
    assert app.selectbox(key="classes_layer").value == chosen  # the page's own choices too
    assert sum("Still using the 1 file(s)" in shown(c.value) for c in app.caption) == 3
    # asked to forget one class's files, that class is gone; an emptied uploader forgets too
    app.button(key="classes_upload_2_forget").click().run()
    assert classes_shown(app).value == ["cat", "cup"]
    app.get("file_uploader")[1].set_value([png(photos, "camera.png")]).run()  # others replace those kept
    assert sum("Still using" in shown(c.value) for c in app.caption) == 1  # only the first class's
    app.get("file_uploader")[1].set_value([]).run()  # emptied by hand: forgotten
    assert classes_shown(app).value == ["cat"]
    app.switch_page("sevis/app/views/images.py").run()
    app.switch_page("sevis/app/views/classes.py").run()
    assert classes_shown(app).value == ["cat"]  # what was forgotten stays forgotten


@pytest.mark.parametrize("weights", ["untrained", "server"])
def test_a_drill_down_and_back_keeps_the_model_the_uploads_and_the_labels(app, photos, tmp_path, monkeypatch, weights):
    """What a click on a class profile does (`_drill_go` switches page in the run), with
    untrained weights and with a checkpoint file on the server: the Channels page opens on
    the channel with the same model (no failure panel), and the Classes page comes back
    with its classes, labels and uploads."""
    import sevis

    if weights == "server":
        checkpoint = tmp_path / "tiny_se.pth"
        torch.save(sevis.load_model(SE, "untrained").state_dict(), checkpoint)
        monkeypatch.setenv("SEVIS_SERVER_DIRS", str(tmp_path))
        app.sidebar.selectbox(key=f"{SE}_source").set_value("server").run()
        app.sidebar.text_input(key=f"{SE}_path").set_value(str(checkpoint)).run()
    else:
        untrained(app)
    app.switch_page("sevis/app/views/classes.py").run()
    for i, (label, names) in enumerate({"cat": ["chelsea.png", "astronaut.png"], "cup": ["coffee.png"]}.items()):
        app.text_input(key=f"classes_label_{i}").set_value(label)
        app.get("file_uploader")[i].set_value([png(photos, n) for n in names])
    app.run()
    no_errors(app)
    app.session_state["drill"] = {"layer": "SE_4_2", "channel": 9, "source": f"{SE_LABEL}: images on the Classes page"}
    app.session_state["_drill_go"] = True
    app.run()  # the chart's click switches to the Channels page within this run
    no_errors(app)
    assert any("SE_4_2, channel 9" in m.value for m in app.subheader)
    assert not any("could not be fetched" in shown(m.value) for m in app.markdown)
    assert app.sidebar.selectbox(key=f"{SE}_source").value == weights
    app.switch_page("sevis/app/views/classes.py").run()
    no_errors(app)
    assert [app.text_input(key=f"classes_label_{i}").value for i in range(2)] == ["cat", "cup"]
    assert classes_shown(app).value == ["cat", "cup"]
    assert "Images per class: **cat** 2, **cup** 1" in [m.value for m in app.markdown]


def test_the_image_menu_and_the_charts_show_the_same_image_through_a_failed_fetch(app):
    """coffee.png chosen, then SGE (offline: its weights cannot be fetched, the page stops
    before the menu), then its demo weights: the menu still says coffee.png, as the crop."""
    untrained(app, SE)
    app.selectbox(key="image_choice").set_value("coffee.png").run()
    app.sidebar.radio(key="model_choice").set_value(SGE_LABEL).run()
    assert any("could not be fetched" in shown(m.value) for m in app.markdown)
    app.button(key=f"{SGE}_use_untrained").click().run()
    no_errors(app)
    assert app.selectbox(key="image_choice").value == "coffee.png"
    crops = [str(i.proto) for i in app.get("image") if "crop the model sees" in str(i.proto)]
    assert len(crops) == 1 and "coffee.png: the 224×224 crop the model sees" in crops[0]


def test_a_views_link_opens_the_same_view_in_a_fresh_session(app, tiny_se, tmp_path, monkeypatch):
    """The model, its weights, a saved run's server path, the layer, the classes shown and the
    two whose difference orders the channels are the view's query parameters (the browser
    writes them into the address as they change: the Chromium test copies one): a fresh
    session given them draws the same page; a value no option has is dropped."""
    from sevis.jobs.extraction import extract

    classes = {"cat": ["chelsea.png", "astronaut.png"], "cup": ["coffee.png"], "rocket": ["rocket.jpg"]}
    folder = class_folders(tmp_path / "data", classes)
    run = extract(tiny_se, folder, tmp_path / "run.parquet", workers=0, progress=False)
    monkeypatch.setenv("SEVIS_SERVER_DIRS", str(tmp_path))
    untrained(app, SE)
    app.switch_page("sevis/app/views/classes.py").run()
    app.radio(key="classes_mode").set_value("run").run()
    app.text_input(key="classes_run_path").set_value(str(run)).run()
    layer = app.selectbox(key="classes_layer")
    chosen = next(o for o in layer.options if o != layer.value)
    layer.set_value(chosen).run()
    (shown_classes,) = [m for m in app.multiselect if m.key.startswith("classes_se_shown_")]
    shown_classes.set_value(["rocket", "cup"]).run()
    app.radio(key="classes_channels").set_value("sorted by the difference of two classes").run()
    app.selectbox(key="classes_diff_a").set_value("cup").run()
    app.selectbox(key="classes_diff_b").set_value("rocket").run()
    no_errors(app)
    # NOTE a choice shown through a format function is linked by its label, as the browser writes it
    link = {
        f"{SE}_source": "Untrained (random weights)",
        "classes_mode": "A saved run (sevis extract)",
        "classes_run_path": str(run),
        "classes_layer": chosen,
        shown_classes.key: ["rocket", "cup"],
        "classes_channels": "sorted by the difference of two classes",
        "classes_diff_a": "cup",
        "classes_diff_b": "rocket",
    }
    fresh = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    fresh.query_params.update(link)
    fresh.run()
    fresh.switch_page("sevis/app/views/classes.py").run()
    no_errors(fresh)
    assert fresh.sidebar.selectbox(key=f"{SE}_source").value == "untrained"
    assert fresh.radio(key="classes_mode").value == "run"
    assert fresh.selectbox(key="classes_layer").value == chosen
    assert fresh.multiselect(key=shown_classes.key).value == ["rocket", "cup"]
    pair = fresh.selectbox(key="classes_diff_a").value, fresh.selectbox(key="classes_diff_b").value
    assert pair == ("cup", "rocket")
    assert [c.proto.spec for c in fresh.get("plotly_chart")] == [c.proto.spec for c in app.get("plotly_chart")]
    assert any("sorted by mean(cup)" in c.proto.spec for c in fresh.get("plotly_chart"))
    assert any("4 images from" in shown(m.value) for m in fresh.markdown)
    odd = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    odd.query_params.update({f"{SE}_source": "<b>nothing</b>", "classes_layer": "SE_9_9"})
    odd.run()
    assert not odd.exception and odd.sidebar.selectbox(key=f"{SE}_source").value == "pretrained"


def test_no_page_script_has_a_string_streamlit_would_draw():
    """Streamlit's magic writes a page script's floating string literals on the page (an
    attribute docstring after an assignment showed up as text on the Classes page); only the
    docstring of the module and of each function or class is exempt."""
    import ast

    floating = []
    for page in sorted((ROOT / "sevis" / "app" / "views").glob("*.py")):
        for node in ast.walk(ast.parse(page.read_text())):
            for field in ("body", "orelse", "finalbody"):
                body = getattr(node, field, None)
                if not isinstance(body, list):
                    continue
                exempt = field == "body" and isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef)
                for i, statement in enumerate(body):
                    literal = isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)
                    if literal and isinstance(statement.value.value, str) and not (exempt and i == 0):
                        floating.append(f"{page.name}:{statement.lineno}")
    assert not floating, floating
