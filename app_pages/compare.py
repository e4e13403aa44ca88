"""SE vs SGE page: the same images through both models, side by side, stage by stage."""

import numpy as np
import streamlit as st

from app_pages.common import (
    IMAGE_TYPES,
    Loaded,
    analyse,
    grid_frame,
    report_failures,
    sample_files,
    show_figure,
    top_frame,
)
from sevis import figures

STAGES = (2, 3, 4, 5)


def last_block(layers: list[str], stage: int) -> str:
    """The stage's last block: the paper's choice before each downsampling."""
    return [layer for layer in layers if layer.split("_")[1] == str(stage)][-1]


st.title("SE vs SGE")
st.caption(
    "Channel attention (SE: one gate per channel) against spatial attention (SGE: one mask per "
    "channel group), on the same images, for the last block of each stage."
)
models: list[Loaded] = st.session_state.get("models", [])
kinds = {m.kind: m for m in models}
if set(kinds) != {"se", "sge"}:
    st.info("Choose **Both** in the sidebar's model panel to compare SE-ResNet-50 with SGE-ResNet-50.")
    st.stop()
se, sge = kinds["se"], kinds["sge"]

uploads = st.file_uploader("Upload photographs", type=IMAGE_TYPES, accept_multiple_files=True, key="compare_upload")
files = [(u.name, u.getvalue()) for u in uploads] if uploads else sample_files()
if not uploads:
    st.caption("Showing the sample photographs in `assets/`; upload your own above.")
name = st.selectbox("Image", [n for n, _ in files], key="compare_choice")
chosen = [(n, data) for n, data in files if n == name]

se_result, sge_result = analyse(se, chosen), analyse(sge, chosen, keep_masks=True)
report_failures(se_result.failures)
if not se_result.images:
    st.stop()
se_image, sge_image = se_result.images[0], sge_result.images[0]

left, right = st.columns(2)
with left:
    st.subheader(se.label)
    show_figure(figures.top_classes(se_image.top_classes, se_image.top_probs), "se_top5_compare", se,
                top_frame(se_image))
with right:
    st.subheader(sge.label)
    show_figure(figures.top_classes(sge_image.top_classes, sge_image.top_probs), "sge_top5_compare", sge,
                top_frame(sge_image))

for stage in STAGES:
    se_layer = last_block(list(se_image.excitations), stage)
    sge_layer = last_block(list(sge_image.masks), stage)
    st.markdown(f"#### Stage {stage}: {se_layer} and {sge_layer}")
    left, right = st.columns(2)
    with left:
        show_figure(
            figures.excitation_profiles({se_image.name: se_image.excitations}, [se_layer]),
            f"compare_{se_layer}", se, se_result.excitation_frame([se_layer]),
        )
        s = se_image.excitations[se_layer]
        st.caption(f"{se_layer}: mean {s.mean():.3f}, {np.mean(s > 0.9):.0%} of channels above 0.9, "
                   f"{np.mean(s < 0.1):.0%} below 0.1")
    with right:
        masks = sge_image.masks[sge_layer]
        show_figure(
            figures.heat_overlay(sge_image.view, masks.mean(0), title=f"{sge_layer}: mean group mask",
                                 zrange=None, colorbar_title="mean σ(a)"),
            f"compare_{sge_layer}", sge, grid_frame(masks.mean(0), "mean_mask"),
        )
        st.caption(f"{sge_layer}: mean {masks.mean():.3f}, mean spatial variance per group "
                   f"{masks.reshape(len(masks), -1).var(1).mean():.4f}")
