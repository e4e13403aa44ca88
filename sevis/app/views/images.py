"""Images page: one or more photographs through every SE and SGE layer."""

import functools
import hashlib

import numpy as np
import pandas as pd
import streamlit as st

import sevis
from sevis import Analysis, ImageResult, export, figures
from sevis.app.services import (
    IMAGE_TYPES,
    MAX_VALUE_IMAGES,
    Loaded,
    analyse,
    grad_cam,
    sample_files,
    shared_figure,
    unique_names,
)
from sevis.app.state import KEEP, LINKED, models as loaded_models, offer_drill, uploaded_files
from sevis.app.widgets import export_all, file_part, model_places, plain, report_failures, show_figure
from sevis.attention.geometry import layer_grid
from sevis.stats.measures import saturation
from sevis.stats.sge import mean_mask, top_groups

__all__: list[str] = []  # a page: Streamlit runs this script; nothing in it is imported


def se_section(loaded: Loaded, result: Analysis, image: ImageResult) -> None:
    all_layers = list(image.excitations)
    chosen = st.multiselect(
        "SE layers",
        all_layers,
        default=sevis.paper_layers(all_layers),
        key=f"{loaded.ident}_layers",
        persist_state=KEEP,
    )
    layers = [layer for layer in all_layers if layer in chosen]  # depth order, whatever the click order
    several = len(result.images) > 1
    shown = (
        result.images
        if several and st.toggle("Overlay all images", key=f"{loaded.ident}_overlay", persist_state=KEEP)
        else [image]
    )
    if layers:
        shares = {layer: saturation(image.excitations[layer])["share_high"] for layer in layers}
        st.caption(
            f"Saturation in {plain(image.name, 100)} (share of gates ≥ 0.99, the block passing its channel unchanged): "
            + ", ".join(f"{layer} {share:.0%}" for layer, share in shares.items())
        )
        profiles = {r.name: r.excitations for r in shown}
        drawn: list[np.ndarray | str] = [*layers]
        for r in shown:
            drawn += [r.name, *(r.excitations[k] for k in layers)]
        show_figure(
            shared_figure(
                loaded,
                "profiles",
                drawn,
                lambda: figures.excitation_profiles(profiles, layers),
            ),
            f"{loaded.ident}_{'all_images' if len(shown) > 1 else file_part(image.name)}_profiles",
            loaded,
            lambda: result.excitation_frame(layers, shown),
            pick=profile_pick,
            pick_source=f"{loaded.label}: images on the Images page",
        )
    show_figure(
        shared_figure(
            loaded,
            "overview",
            [*image.excitations, *image.excitations.values()],
            lambda: figures.excitation_overview(image.excitations),
        ),
        f"{loaded.ident}_{file_part(image.name)}_overview",
        loaded,
        lambda: result.excitation_frame(None, [image]),
    )


def profile_pick(point: dict) -> tuple[str, int] | None:
    """A clicked point of the excitation profiles: its line's layer (meta) and channel (x)."""
    layer, channel = point.get("meta"), point.get("x")
    return (layer, int(channel)) if isinstance(layer, str) and isinstance(channel, int | float) else None


def sge_section(loaded: Loaded, image: ImageResult, files: dict[str, bytes]) -> None:
    layers = list(image.mask_means)
    layer = st.selectbox(
        "SGE layer",
        layers,
        index=layers.index(sevis.default_layer(layers)),
        key=f"{loaded.ident}_sge_layer",
        persist_state=KEEP,
        bind=LINKED,
    )
    if not image.masks:  # a large upload: masks are kept only for the image on show
        image = analyse(loaded, [(image.name, files[image.name])], keep_values=True).images[0]
    masks = image.masks[layer]
    part = file_part(image.name)
    show_figure(
        figures.mask_grid(masks, layer),
        f"{loaded.ident}_{part}_{layer}_masks",
        loaded,
        lambda: masks_frame(image.name, layer, masks),  # the masks drawn, position by position
    )
    norms = image.extras.get(layer, {})
    if "norm_before" in norms:
        before = norms["norm_before"]
        after = before * masks  # SGE scales each group's vector by its mask: ||x σ(a)|| = σ(a) ||x||
        groups = top_groups(before, 4)
        st.caption(
            "The SGE paper's view: each group's feature map (the norm over its channels at each position) "
            "before and after SGE, for the 4 groups whose maps vary most; each row divided by its before-map's maximum."
        )
        show_figure(
            figures.group_feature_maps(before, after, groups, layer),
            f"{loaded.ident}_{part}_{layer}_group_maps",
            loaded,
            lambda: group_maps_frame(image.name, layer, before, after, groups),
        )
    opacity = st.slider("Overlay opacity", 0.0, 1.0, 0.5, 0.05, key=f"{loaded.ident}_opacity", persist_state=KEEP)
    left, right = st.columns(2)
    mean = mean_mask(masks)
    with left:
        fig = figures.heat_overlay(
            image.view,
            mean,
            title=f"{layer}: mean of the {len(masks)} group masks",
            opacity=opacity,
            colorbar_title="mean σ(a)",
            grid=layer_grid(loaded.model, layer),
        )
        table = export.grid_frame(mean, "mean_mask")
        table.insert(0, "layer", layer)
        table.insert(0, "image", image.name)
        show_figure(fig, f"{loaded.ident}_{part}_{layer}_mean_mask", loaded, table)
    with right:
        gradcam_panel(loaded, image, opacity)


def overlaid_kinds(kinds: list[str]) -> list[str]:
    """The kinds drawn over the image as maps besides SGE's: those with an overlay (CBAM's
    spatial gates, BAM's gates, GC's context weights)."""
    return [k for k in kinds if k != "sge" and type(sevis.get_kind(k)).overlay is not sevis.AttentionKind.overlay]


def spatial_section(loaded: Loaded, image: ImageResult, files: dict[str, bytes]) -> None:
    """A spatial layer's map over the image the model saw, each value at its receptive
    field's centre: CBAM's spatial gate, BAM's gates (their channels' mean), GC's context
    weights (over the image's largest)."""
    overlaid = overlaid_kinds(list(dict.fromkeys(image.kinds.values())))
    layers = [name for name, kind in image.kinds.items() if kind in overlaid]
    layer = st.selectbox(
        "Spatial attention layer",
        layers,
        index=layers.index(sevis.default_layer(layers)),
        key=f"{loaded.ident}_spatial_layer",
        persist_state=KEEP,
        bind=LINKED,
    )
    if layer not in image.values:  # a large upload: values are kept only for the image on show
        image = analyse(loaded, [(image.name, files[image.name])], keep_values=True).images[0]
    maps = image.values[layer]  # (K, H, W)
    kind = image.kinds[layer]
    heat = sevis.get_kind(kind).overlay(maps)
    assert heat is not None  # overlaid_kinds chose the layer for its overlay
    what = {"context": "context weights over their peak", "bam": f"mean of the {len(maps)} channels' gates"}
    what_it_is = what.get(kind, "spatial gate")
    fig = figures.heat_overlay(
        image.view,
        heat,
        title=f"{layer}: {what_it_is}",
        opacity=st.slider("Overlay opacity", 0.0, 1.0, 0.5, 0.05, key=f"{loaded.ident}_spatial_opacity"),
        colorbar_title="gate",
        grid=layer_grid(loaded.model, layer),
    )
    table = export.grid_frame(heat, "gate")
    table.insert(0, "layer", layer)
    table.insert(0, "image", image.name)
    show_figure(fig, f"{loaded.ident}_{file_part(image.name)}_{layer}_spatial", loaded, table)


def masks_frame(name: str, layer: str, masks) -> pd.DataFrame:
    """Every group's mask as a long table: image, layer, group, y, x, mask."""
    g, h, w = masks.shape
    group, y, x = (a.ravel() for a in np.indices((g, h, w)))
    return pd.DataFrame({"image": name, "layer": layer, "group": group, "y": y, "x": x, "mask": masks.ravel()})


def group_maps_frame(name: str, layer: str, before, after, groups: list[int]) -> pd.DataFrame:
    """The drawn maps as a long table: image, layer, group, y, x, norm before and after."""
    frames = []
    for g in groups:
        frame = export.grid_frame(before[g], "norm_before")
        frame["norm_after"] = after[g].ravel()
        frame.insert(0, "group", g)
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    table.insert(0, "layer", layer)
    table.insert(0, "image", name)
    return table


def gradcam_panel(loaded: Loaded, image: ImageResult, opacity: float) -> None:
    names = loaded.info.class_names
    # NOTE the key names the image: another image starts at its own top class instead of
    # keeping the class chosen for the previous one
    seen = hashlib.sha256(image.view.tobytes()).hexdigest()[:12]
    target = st.selectbox(
        "Grad-CAM class",
        range(len(names)),
        index=names.index(image.top_classes[0]),
        format_func=names.__getitem__,
        key=f"{loaded.ident}_cam_class_{seen}",
    )
    cam, _ = grad_cam(loaded.key, image.view, target, loaded)
    fig = figures.heat_overlay(
        image.view,
        cam,
        title=f"Grad-CAM: {figures.short_label(names[target])}<br><sup>ReLU, then min-max scaled to [0, 1]</sup>",
        opacity=opacity,
        colorbar_title="Grad-CAM",
    )
    table = export.grid_frame(cam, "grad_cam")
    table.insert(0, "target_class", names[target])
    table.insert(0, "target_index", target)
    table.insert(0, "image", image.name)
    part, cls = file_part(image.name), file_part(names[target].split(",")[0])
    show_figure(fig, f"{loaded.ident}_{part}_gradcam_{cls}", loaded, table, key=f"{loaded.ident}_gradcam")


st.title("Images")
models: list[Loaded] = loaded_models()
if not models:  # the photographs at once; what the model would show comes with one
    samples = sample_files()
    for column, (name, data) in zip(st.columns(len(samples)), samples, strict=True):
        column.image(data, caption=name)
    st.info("Choose a model and its weights in the sidebar to see what its attention layers do with them.")
    st.stop()

uploads = uploaded_files(
    "images_upload",
    lambda **given: st.file_uploader(
        "Upload photographs",
        type=IMAGE_TYPES,
        accept_multiple_files=True,
        help="JPEG, PNG, WebP, BMP, GIF or TIFF. With nothing uploaded the sample photographs are shown.",
        **given,
    ),
)
files = unique_names([(u.name, u.getvalue()) for u in uploads]) if uploads else sample_files()
if not uploads:
    st.caption("Showing the sample photographs in `assets/`; upload your own above.")

results = {m.label: analyse(m, files, keep_values=len(files) <= MAX_VALUE_IMAGES) for m in models}
first = next(iter(results.values()))
report_failures(first.failures)
if not first.images:
    st.error("None of the files could be analysed.")
    st.stop()

offer_drill("images", {f"{m.label}: images on the Images page": (results[m.label], m) for m in models})
names = [r.name for r in first.images]
index = names.index(st.selectbox("Image", names, key="image_choice", persist_state=KEEP)) if len(names) > 1 else 0

for loaded, place in zip(models, model_places(models), strict=True):
    result = results[loaded.label]
    image = result.images[index]
    with place:
        st.header(loaded.label)
        left, right = st.columns([1, 2])
        size = f"{image.view.shape[1]}×{image.view.shape[0]}"
        left.image(image.view, caption=f"{image.name}: the {size} crop the model sees")
        with right:
            show_figure(
                shared_figure(
                    loaded,
                    "top5",
                    [*image.top_classes, np.asarray(image.top_probs)],
                    functools.partial(figures.top_classes, image.top_classes, image.top_probs),
                ),
                f"{loaded.ident}_{file_part(image.name)}_top5",
                loaded,
                export.top_frame(image),
            )
        if "se" in loaded.kinds:
            se_section(loaded, result, image)
            # NOTE a toggle, not an expander: an expander's content runs (and costs a backward
            # pass) even while it is closed
            if st.toggle(
                "Grad-CAM",
                key=f"{loaded.ident}_gradcam_on",
                persist_state=KEEP,
                help="Where the network looked for a class",
            ):
                gradcam_panel(loaded, image, 0.5)
        if "sge" in loaded.kinds:
            sge_section(loaded, image, dict(files))
        if overlaid_kinds(loaded.kinds):
            spatial_section(loaded, image, dict(files))
for loaded in models:
    export_all("Images", loaded, results[loaded.label], files, None)
