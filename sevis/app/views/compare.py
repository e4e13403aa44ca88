"""SE vs SGE page: the same images through both models, side by side, stage by stage."""

import streamlit as st

import sevis
from sevis import export, figures
from sevis.app.services import IMAGE_TYPES, Loaded, analyse, sample_files, unique_names
from sevis.app.state import KEEP, model_choice, models as loaded_models, uploaded_files
from sevis.app.widgets import export_all, report_failures, show_figure
from sevis.attention.geometry import layer_grid
from sevis.attention.layers import parse_layer
from sevis.stats.measures import saturation
from sevis.stats.sge import mask_overview, mean_mask

__all__: list[str] = []  # a page: Streamlit runs this script; nothing in it is imported


st.title("SE vs SGE")
st.caption(
    "Channel attention (SE: one gate per channel) against spatial attention (SGE: one mask per "
    "channel group), on the same images, for the last block of each stage."
)
models: list[Loaded] = loaded_models()
by_kind = {kind: m for m in models for kind in m.kinds}
if not {"se", "sge"} <= set(by_kind):
    if model_choice() == "Both":
        missing = "SE" if "se" not in by_kind else "SGE"
        st.info(f"The {missing} model is not loaded yet: choose its weights in the sidebar.")
    else:
        st.info("Choose **Both** in the sidebar's model panel to compare SE-ResNet-50 with SGE-ResNet-50.")
    st.stop()
se, sge = by_kind["se"], by_kind["sge"]

uploads = uploaded_files(
    "compare_upload",
    lambda **given: st.file_uploader("Upload photographs", type=IMAGE_TYPES, accept_multiple_files=True, **given),
)
files = unique_names([(u.name, u.getvalue()) for u in uploads]) if uploads else sample_files()
if not uploads:
    st.caption("Showing the sample photographs in `assets/`; upload your own above.")
every = analyse(se, files)  # cached: the Images page's analysis of the same files, if it ran
report_failures(every.failures)
if not every.images:
    st.error("None of the files could be analysed.")
    st.stop()
name = st.selectbox(
    "Image", [r.name for r in every.images], key="compare_choice", persist_state=KEEP
)  # only readable ones
chosen = [(n, data) for n, data in files if n == name]

se_result, sge_result = analyse(se, chosen), analyse(sge, chosen, keep_values=True)
se_image, sge_image = se_result.images[0], sge_result.images[0]

left, right = st.columns(2)
with left:
    st.subheader(se.label)
    show_figure(
        figures.top_classes(se_image.top_classes, se_image.top_probs), "se_top5_compare", se, export.top_frame(se_image)
    )
with right:
    st.subheader(sge.label)
    show_figure(
        figures.top_classes(sge_image.top_classes, sge_image.top_probs),
        "sge_top5_compare",
        sge,
        export.top_frame(sge_image),
    )

for se_layer, sge_layer in zip(
    sevis.stage_ends(list(se_image.excitations)), sevis.stage_ends(list(sge_image.masks)), strict=False
):
    stage = parse_layer(se_layer).stage
    st.markdown(f"#### Stage {stage}: {se_layer} and {sge_layer}" if stage else f"#### {se_layer} and {sge_layer}")
    left, right = st.columns(2)
    with left:
        show_figure(
            figures.excitation_profiles({se_image.name: se_image.excitations}, [se_layer]),
            f"compare_{se_layer}",
            se,
            se_result.excitation_frame([se_layer]),
        )
        s = saturation(se_image.excitations[se_layer], high=0.9, low=0.1)
        st.caption(
            f"{se_layer}: mean {s['mean']:.3f}, {s['share_high']:.0%} of channels at 0.9 or above, "
            f"{s['share_low']:.0%} at 0.1 or below"
        )
    with right:
        masks = sge_image.masks[sge_layer]
        mean = mean_mask(masks)
        show_figure(
            figures.heat_overlay(
                sge_image.view,
                mean,
                title=f"{sge_layer}: mean group mask",
                colorbar_title="mean σ(a)",
                grid=layer_grid(sge.model, sge_layer),
            ),
            f"compare_{sge_layer}",
            sge,
            export.grid_frame(mean, "mean_mask"),
        )
        m = mask_overview(masks)
        st.caption(f"{sge_layer}: mean {m['mean']:.3f}, mean spatial variance per group {m['spatial_variance']:.4f}")

export_all("SE vs SGE", se, every, files, None)
