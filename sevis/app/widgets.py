"""Widgets the pages share: the model panel, charts with their exports, messages.

Pages stay thin: they gather widget values, call :mod:`sevis` (through
:mod:`sevis.app.services`) and place the results.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from streamlit.elements.plotly_chart import PlotlyState
from streamlit.errors import StreamlitSecretNotFoundError

import sevis
from sevis import export
from sevis.app import VIEWS
from sevis.app.services import (
    MAX_MODULES,
    USER_ERRORS,
    Loaded,
    Weights,
    dashboard_models,
    dashboard_modules,
    load_run,
    open_model,
    retry_fetch,
    server_file,
    upload_digest,
)
from sevis.app.state import (
    KEEP,
    LINKED,
    MODEL_CHOICE,
    Drill,
    add_export,
    ask_drill,
    drill_requested,
    exports,
    uploaded_files,
)
from sevis.app.text import plain
from sevis.figures._style import mark_untrained
from sevis.models.weights import weights_file
from sevis.runs.reader import Run

__all__ = [
    "CHANNELS_PAGE",
    "FAILURES_SHOWN",
    "OTHER_TIMM",
    "SOURCES",
    "TIMM_DEFAULT",
    "TIMM_SE_FAMILIES",
    "TWO_CHECKPOINTS",
    "UNTRAINED_LINES",
    "WEIGHT_TYPES",
    "Pick",
    "auth_configured",
    "export_all",
    "export_figures",
    "file_part",
    "hide_model_messages",
    "login_gate",
    "model_panel",
    "model_places",
    "plain",
    "report_failures",
    "saved_run_input",
    "show_figure",
    "timm_se_models",
    "user_allowed",
]


FAILURES_SHOWN = 10


SOURCES = {
    "pretrained": "Pretrained (default source)",
    "server": "Checkpoint file on the server",
    "upload": "Upload a checkpoint",
    "untrained": "Untrained (random weights)",
}
WEIGHT_TYPES = ["pth", "tar", "pt", "bin", "safetensors"]


def _weights_widget(label: str, key: str) -> Weights | None:
    """Sidebar widgets for one model's weights; None while a file is still to be chosen."""
    source = st.sidebar.selectbox(
        f"{label} weights",
        list(SOURCES),
        format_func=SOURCES.__getitem__,
        key=f"{key}_source",
        persist_state=KEEP,
        bind=LINKED,
    )
    if source in ("pretrained", "untrained"):
        return Weights(source, source)
    if source == "server":
        files = [str(p) for p in sevis.list_weights_files()]
        choice = st.sidebar.selectbox(
            f"{label}: files in {sevis.weights_dir()}",
            ["(type a path below)", *files],
            key=f"{key}_file",
            persist_state=KEEP,
            bind=LINKED,
        )
        typed = st.sidebar.text_input(
            f"{label}: checkpoint path",
            key=f"{key}_path",
            max_chars=1000,
            help="A file in the weights folder or a folder the operator lists in SEVIS_SERVER_DIRS.",
            persist_state=KEEP,
            bind=LINKED,
        )
        path = typed.strip() or (choice if choice in files else "")
        return Weights("server", path, path) if path else None
    # NOTE kept for the session like the pages' uploads: the radio showing another model draws
    # no uploader for this one, and Streamlit forgets what it held
    with st.sidebar:
        kept = uploaded_files(
            f"{key}_upload", lambda **given: st.file_uploader(f"{label}: checkpoint file", type=WEIGHT_TYPES, **given)
        )
    if not kept:
        return None
    upload = kept[0]
    # NOTE hashed once per upload, not at every rerun (100 MB: a tenth of a second)
    digests = st.session_state.setdefault(f"_{key}_upload_digest", {})
    if upload.file_id not in digests:
        digests.clear()
        digests[upload.file_id] = upload_digest(upload.getbuffer())
    return Weights("upload", digests[upload.file_id], upload.name, upload.getbuffer())


def login_gate() -> None:
    """With an ``[auth]`` section in Streamlit's secrets (an OpenID Connect provider), only
    people signed in through it get past this point; with ``$SEVIS_ALLOWED_USERS``
    (comma-separated addresses, or ``@domain`` for a whole domain), only those listed."""
    if not auth_configured():
        return
    if not st.user.get("is_logged_in", False):  # absent where no login happened (AppTest)
        st.title("sevis: SE and SGE attention")
        st.write("This dashboard is shared within a group: sign in to use it.")
        st.button("Sign in", on_click=st.login, icon=":material/login:")
        st.stop()
    email = str(st.user.get("email") or "")
    if not user_allowed(email, os.environ.get("SEVIS_ALLOWED_USERS", "")):
        st.error(f"{email[:100] or 'This account'} may not use this dashboard; ask its operator for access.")
        st.button("Sign out", on_click=st.logout)
        st.stop()
    st.sidebar.button("Sign out", on_click=st.logout, icon=":material/logout:")


def auth_configured() -> bool:
    try:
        return "auth" in st.secrets
    except (StreamlitSecretNotFoundError, FileNotFoundError):
        return False


def user_allowed(email: str, allowed: str) -> bool:
    """Whether ``email`` is in ``allowed`` (comma-separated addresses and ``@domain``
    entries, case-insensitive); everyone signed in when ``allowed`` is empty."""
    entries = {e.strip().lower() for e in allowed.split(",") if e.strip()}
    if not entries:
        return True
    email = email.strip().lower()
    return bool(email) and (email in entries or any(e.startswith("@") and email.endswith(e) for e in entries))


UNTRAINED_LINES = {
    "se": (
        "random SE gates sit near 0.5; what class structure they show comes from the images and the "
        "architecture, not from training (the Classes page measures it)"
    ),
    "sge": (
        "every SGE mask is flat at σ(1) = 0.73, because SGE starts with its scale γ at 0 and "
        "its bias β at 1, so the mask ignores the image until training moves γ"
    ),
}


OTHER_TIMM = "Another timm model"
TWO_CHECKPOINTS = "Two checkpoints of one network"
SEVERAL = "Several modules"
TIMM_SE_FAMILIES = [
    "seresnet*",
    "seresnext*",
    "legacy_se*",
    "senet*",
    "efficientnet_b[0-4]",
    "mobilenetv3_large_100",
    "mobilenetv3_small_100",
    "regnety_0[0-9][0-9]",
    "ecaresnet*",
    "skresnet*",
    "skresnext*",
    "resnest*",
    "gcresnet*",
]
"""timm networks whose blocks hold attention modules sevis finds: SE, ECA, SK, ResNeSt, GC (a
fixed list: a name typed freely could build a network of any size on a shared server)."""


TIMM_DEFAULT = "seresnet50"
"""The timm network the list opens on: an SE-ResNet-50 (timm's own training), not the list's first."""


@st.cache_data
def timm_se_models() -> list[str]:
    import timm

    return timm.list_models(TIMM_SE_FAMILIES)


def model_panel() -> list[Loaded]:
    """The sidebar's model choice; loads what is chosen. Pretrained weights that cannot be
    fetched get one panel on the page with the ways out as buttons; every other failure is
    said once, on the page."""
    st.sidebar.header("Model")
    # NOTE what the panel says on the page goes into one placeholder, which a page that needs
    # no model (a saved run) clears: hide_model_messages
    said = st.empty()
    st.session_state["_model_messages"] = said
    with said.container():
        models = dashboard_models()
        choice = st.sidebar.radio(
            "Attention model",
            [*models, *(["Both"] if len(models) == 2 else []), SEVERAL, TWO_CHECKPOINTS, OTHER_TIMM],
            key=MODEL_CHOICE,
            persist_state=KEEP,
            bind=LINKED,
            help="SE: channel attention (Hu et al. 2018). SGE: spatial attention per channel group (Li et al. 2019). "
            "Several modules: the modules SGE is compared with (CBAM, BAM, SK, ECA, ResNeSt) and SE's trainings, "
            "side by side on the same images. Another timm model: any of timm's networks with attention sevis knows.",
        )
        # label -> (network, widget key and slot)
        slots: dict[str, tuple[str, str]]
        if choice == OTHER_TIMM:
            offered = timm_se_models()
            name = st.sidebar.selectbox(
                "timm model",
                offered,
                index=offered.index(TIMM_DEFAULT) if TIMM_DEFAULT in offered else 0,
                key="timm_model",
                help="Weights from the hub.",
                persist_state=KEEP,
                bind=LINKED,
            )
            slots = {name: (name, name)}
        elif choice == SEVERAL:
            slots = _module_slots()
        elif choice == TWO_CHECKPOINTS:
            label = st.sidebar.selectbox("Network", list(models), key="two_model", persist_state=KEEP, bind=LINKED)
            name = models[label]
            slots = {f"{label} (A)": (name, name), f"{label} (B)": (name, f"{name}_b")}
        else:
            slots = {
                label: (models[label], models[label]) for label in (list(models) if choice == "Both" else [choice])
            }
        loaded, unavailable = [], []
        for label, (name, slot) in slots.items():
            weights = _weights_widget(label, slot)
            if weights is None:
                st.sidebar.info(f"{label}: choose a checkpoint file.")
                continue
            try:
                model = open_model(name, weights)
            except sevis.WeightsUnavailableError as err:
                unavailable.append((label, name, slot, err))
                continue
            except USER_ERRORS as err:
                st.error(f"{label} could not be loaded: {plain(err, 1500)}", icon="⚠️")
                continue
            loaded.append(Loaded(label, name, weights.key, model, "" if slot == name else slot))
            _check_badge(loaded[-1])
        if unavailable:
            _unavailable_panel(unavailable)
        for item in loaded:
            if item.info.untrained:
                shows = "; ".join(UNTRAINED_LINES[kind] for kind in item.kinds if kind in UNTRAINED_LINES)
                st.warning(
                    f"{item.label} has untrained weights (random, seed {sevis.provenance.UNTRAINED_SEED}): not the "
                    "paper's model, and every figure and export says so."
                    + (f" What it shows: {shows}." if shows else ""),
                    icon="⚠️",
                )
    return loaded


def _module_slots() -> dict[str, tuple[str, str]]:
    """ "Several modules": families, then each family's networks; at most MAX_MODULES."""
    families = dashboard_modules()
    chosen = st.sidebar.multiselect(
        "Families",
        list(families),
        default=list(families)[:4],
        key="modules_families",
        persist_state=KEEP,
        bind=LINKED,
        help="SE, SGE and the modules SGE's paper compares it with; then each family's networks.",
    )
    slots: dict[str, tuple[str, str]] = {}
    for family in chosen:
        members = families[family]
        picked = st.sidebar.multiselect(
            f"{family} networks",
            list(members),
            default=list(members)[:1],
            key=f"modules_{family}",
            persist_state=KEEP,
            bind=LINKED,
        )
        slots.update({label: (members[label], members[label]) for label in picked})
    if len(slots) > MAX_MODULES:
        st.sidebar.warning(f"{len(slots)} networks chosen: the first {MAX_MODULES} are loaded.")
    return dict(list(slots.items())[:MAX_MODULES])


def hide_model_messages() -> None:
    """Clear what the model panel said on the page (errors, the weights panel, warnings):
    for views that need no model, such as a saved run."""
    slot = st.session_state.get("_model_messages")
    if slot is not None:
        slot.empty()


def _check_badge(item: Loaded) -> None:
    """The self-check on photographs beside the model; a failure also on the page."""
    check = item.info.check
    if check is None:
        st.sidebar.badge(f"{item.label}: no self-check (not ImageNet's classes)", color="gray")
    elif check.passed:
        st.sidebar.badge(f"{item.label}: self-check passed", icon=":material/check:", color="green")
    elif item.info.untrained:  # chosen to be random: failing is what the check should do
        st.sidebar.badge(f"{item.label}: random weights, the self-check fails as expected", color="gray")
    else:
        st.sidebar.badge(f"{item.label}: self-check failed", icon=":material/warning:", color="orange")
        tops = ", ".join(f"{p.photo} → {p.top5[0]}" for p in check.photos)
        st.warning(
            f"{item.label}: these weights do not classify the sample photographs as an ImageNet network "
            f"does ({tops}). Wrong preprocessing, or a network trained on something else?",
            icon="⚠️",
        )
    if check is not None:
        st.sidebar.caption(
            "; ".join(f"{p.photo}: {p.top5[0].split(',')[0]}" for p in check.photos),
            help="Top class of each sample photograph; the check passes when each has one of its "
            "expected ImageNet classes in the top five.",
        )


def _use(key: str, source: str) -> None:
    st.session_state[f"{key}_source"] = source


def _unavailable_panel(unavailable: list[tuple[str, str, str, sevis.WeightsUnavailableError]]) -> None:
    """One panel for every model whose pretrained weights could not be fetched (label,
    network, the key of its weights widgets, the error)."""
    with st.container(border=True):
        st.markdown("**The pretrained weights could not be fetched**")
        st.caption(
            "Tried once for this server: every session is answered with this until someone tries again "
            "(or the file is put in the weights folder)."
        )
        for label, name, slot, err in unavailable:
            # the reason alone where the popover says where the file comes from; else the whole message
            st.write(f"{label}: {plain(err.reason or str(err), 1500)}")
            columns = st.columns(5)
            columns[0].button(
                "Untrained weights (a demo)", key=f"{slot}_use_untrained", on_click=_use, args=(slot, "untrained")
            )
            columns[1].button("Upload a checkpoint", key=f"{slot}_use_upload", on_click=_use, args=(slot, "upload"))
            columns[2].button("A file on the server", key=f"{slot}_use_server", on_click=_use, args=(slot, "server"))
            with columns[3].popover("Where to get the file"):
                st.markdown(_where_to_get(name))
            columns[4].button("Try again", key=f"{slot}_retry", on_click=retry_fetch, args=(name,))


def _where_to_get(name: str) -> str:
    """Where ``name``'s pretrained weights come from and where to put them, as Markdown:
    sevis's own file and its sources, or for a timm network its hub repository and URL."""
    folder = sevis.weights_dir()
    file = weights_file(name)
    if file is not None:
        return (
            f"`{file.file_name}`: "
            + "; ".join(file.manual or file.sources)
            + f". Put it in `{folder}` (`sevis weights fetch {name}` on a connected machine downloads it there), "
            "or upload it."
        )
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    places = []
    if cfg is not None and cfg.hf_hub_id:
        places.append(f"the Hugging Face hub, https://huggingface.co/{cfg.hf_hub_id}")
    if cfg is not None and isinstance(cfg.url, str) and cfg.url:
        places.append(cfg.url)
    found = " or ".join(places) if places else "timm's pretrained sources"
    return (
        f"timm fetches `{name}` from {found}. On a connected machine, "
        f'`timm.create_model("{name}", pretrained=True)` fills the hub\'s cache (`HF_HOME`), which this '
        f"server reads when it is copied there; or save the model's `state_dict()` with `torch.save` and "
        "upload it, or put it on the server as a checkpoint."
    )


def saved_run_input(key: str) -> Run | None:
    """A saved run uploaded or named by its path on the server; None (with a hint) while
    none is given, or (with the message) when it cannot be read."""
    uploads = uploaded_files(
        f"{key}_run_upload", lambda **given: st.file_uploader("Saved run (.parquet)", type=["parquet"], **given)
    )
    path = st.text_input(
        "…or its path on the server",
        key=f"{key}_run_path",
        max_chars=1000,
        help="Inside the weights folder or a folder the operator lists in SEVIS_SERVER_DIRS.",
        persist_state=KEEP,
        bind=LINKED,
    ).strip()
    if not uploads and not path:
        st.info("Upload a run written by `sevis extract`, or give its path on the server.")
        return None
    try:
        name, data = (uploads[0].name, uploads[0].getvalue()) if uploads else (str(server_file(path)), None)
        return load_run(data, name)
    except (sevis.SevisError, OSError) as err:  # the message starts with the file's name
        st.error(plain(err, 600))
        return None


def export_all(
    view: str,
    loaded: Loaded,
    result: sevis.Analysis,
    files: Sequence[tuple[str, bytes]],
    labels: Sequence[str | None] | None,
    also: tuple[Loaded, sevis.Analysis] | None = None,
) -> None:
    """The page's **Export all** button: every chart drawn on it in this run (figures as
    HTML and PNG, tables as Parquet and CSV), the images with their labels, a manifest, and
    a ``rebuild.py`` that rebuilds ``loaded``'s statistics with the library
    (:func:`sevis.export.analysis_bundle`). ``also``: a second checkpoint of the same
    network on the same images, whose statistics and weights go in the same zip. The zip
    is made when the button is clicked."""
    drawn = exports()
    weights = {"pretrained": "pretrained", "untrained": "untrained"}.get(loaded.weights.split(":")[0])
    if weights is None:  # a checkpoint: rebuild.py expects the file beside it, by its name
        weights = Path(loaded.provenance.weights.removeprefix("uploaded ")).name

    def make() -> bytes:
        figures = [(name, fig, table() if table is not None else None) for name, fig, table in drawn]
        compared = None if also is None else (also[0].ident, also[1])
        return export.analysis_bundle(
            result, files, labels, figures, view=view, weights_to_load=weights, compared=compared
        )

    _export_button(
        view,
        loaded.ident,
        export.weights_tag(loaded.provenance),
        make,
        "Every chart of this page as HTML and PNG, its numbers as Parquet and CSV, the images, a "
        "manifest (model, weights, SHA-256) and rebuild.py, which rebuilds the statistics with sevis.",
    )


def _export_button(view: str, ident: str, tag: str, make: Callable[[], bytes], help: str) -> None:
    st.download_button(
        "Export all (zip)",
        make,
        file_name=f"sevis_{file_part(view.lower())}_{file_part(ident)}_{tag}.zip",
        mime="application/zip",
        key=f"export_all_{view}_{ident}",
        on_click="ignore",
        icon=":material/folder_zip:",
        help=help,
    )


def export_figures(view: str, provenance: sevis.Provenance, about: dict[str, object]) -> None:
    """**Export all** for a view that is not one analysis (a saved run, a channel): every
    chart drawn in this run with its table, and a manifest of ``about`` and the weights."""
    drawn = exports()

    def make() -> bytes:
        figures = [(name, fig, table() if table is not None else None) for name, fig, table in drawn]
        manifest = {"sevis_version": sevis.__version__, "view": view, **provenance.columns(), **about}
        return export.bundle(figures, manifest)

    _export_button(
        view,
        provenance.model,
        export.weights_tag(provenance),
        make,
        "Every chart of this page as HTML and PNG, its numbers as Parquet and CSV, and a manifest.",
    )


def model_places(models: Sequence[Loaded]) -> list:
    """Where each model's sections go: two checkpoints of one network side by side, in
    columns whose figures line up (the same network draws the same figures), other models
    one after another."""
    if len(models) == 2 and models[0].name == models[1].name:
        return list(st.columns(2, gap="medium", border=True))
    return [st.container() for _ in models]


def report_failures(failures: Sequence[sevis.Failure]) -> None:
    """The files left out, as a count and the first few (names and reasons as text,
    cut short); the whole list as a CSV download when there are more."""
    if not failures:
        return
    shown = failures[:FAILURES_SHOWN]
    more = len(failures) - len(shown)
    with st.container():
        st.warning(
            f"{len(failures):,} file(s) could not be analysed and were left out; every other file was analysed.\n\n"
            + "\n".join(f"- **{plain(f.name, 120)}**: {plain(f.reason, 300)}" for f in shown)
            + (f"\n\n…and {more:,} more: the whole list is in the download below." if more else "")
        )
        if more:
            table = pd.DataFrame({"file": [f.name for f in failures], "reason": [f.reason for f in failures]})
            st.download_button(
                "Download the list of files left out (CSV)",
                export.frame_csv(table),
                file_name="files_left_out.csv",
                mime="text/csv",
                key=f"failures_{hash(tuple(f.name for f in failures))}",
            )


CHANNELS_PAGE = VIEWS / "channels.py"
Pick = Callable[[dict], tuple[str, int] | None]
"""Maps a clicked chart point to (layer, channel), or None for a point that is no channel."""


def _picked(chart_key: str, pick: Pick, source: str, fig: go.Figure) -> None:
    """on_select callback: remember the clicked channel for the Channels page (a page
    cannot be switched inside a callback; :func:`show_figure` does it after the chart).
    The point is given its trace's ``meta`` (a panel's layer) from the figure drawn: the
    browser's event names the trace by number only."""
    points = st.session_state[chart_key].selection.points
    if not points:
        return
    point, curve = dict(points[0]), points[0].get("curve_number")
    if point.get("meta") is None and isinstance(curve, int) and 0 <= curve < len(fig.data):
        point["meta"] = fig.data[curve].meta
    chosen = pick(point)
    if chosen is not None:
        ask_drill(Drill(chosen[0], int(chosen[1]), source), go=True)


def file_part(name: str) -> str:
    """A name made safe inside a download's file name (an image's, a class's)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")[:60] or "unnamed"


def show_figure(
    fig: go.Figure,
    name: str,
    source: Loaded | sevis.Provenance,
    frame: pd.DataFrame | Callable[[], pd.DataFrame] | None = None,
    key: str = "",
    pick: Pick | None = None,
    pick_source: str = "",
    lasso: bool = False,
) -> PlotlyState | None:
    """A chart and its exports: PNG and standalone HTML of the figure, CSV and Parquet
    of the numbers behind it, which name the model and weights. Files, and a table
    given as a callable, are made only when a button is clicked. With ``pick``, clicking
    a point opens that channel on the Channels page (of the data ``pick_source`` names
    in :func:`sevis.app.state.drill_sources`). With ``lasso``, a lasso or a box selects
    points, and the selection is returned (``.selection.points``)."""
    provenance = source.provenance if isinstance(source, Loaded) else source
    if provenance.untrained:
        fig = mark_untrained(fig)
    chart_key = f"chart_{key or name}"
    selected = None
    if lasso:
        selected = st.plotly_chart(fig, key=chart_key, on_select="rerun", selection_mode=("lasso", "box"))
    elif pick is None:
        st.plotly_chart(fig, key=chart_key)
    else:
        st.plotly_chart(
            fig,
            key=chart_key,
            on_select=lambda: _picked(chart_key, pick, pick_source, fig),
            selection_mode="points",
        )
        st.caption("Click a channel to open it on the Channels page.")
        if drill_requested():
            # NOTE query_params={}, not the default: the default clears the address, which Streamlit
            # refuses (an exception on the page) while a bound widget holds a value other than its
            # default, such as the model choice; the next page's widgets write theirs again
            st.switch_page(CHANNELS_PAGE, query_params={})

    def table() -> pd.DataFrame:
        assert frame is not None
        return export.with_provenance(frame() if callable(frame) else frame, provenance)

    add_export(name, fig, table if frame is not None else None)

    stem = f"{name}_{export.weights_tag(provenance)}"  # two checkpoints' exports never share a name
    buttons = [("HTML", "html", "text/html", lambda: export.figure_html(fig))]
    if export.png_available():
        buttons.insert(0, ("PNG", "png", "image/png", lambda: export.figure_png(fig)))
    if frame is not None:
        buttons += [
            ("CSV", "csv", "text/csv", lambda: export.frame_csv(table())),
            ("Parquet", "parquet", "application/vnd.apache.parquet", lambda: export.frame_parquet(table())),
        ]
    # NOTE one control per chart, the formats inside: a page of ten charts had forty buttons
    with st.popover(
        "Download",
        icon=":material/download:",
        help=f"This chart as {' or '.join(b[0] for b in buttons if b[1] in ('png', 'html'))}"
        + (", its numbers as CSV or Parquet" if frame is not None else "")
        + "; the file names carry the weights.",
        key=f"dl_{key or name}",
    ):
        for label, extension, mime, make in buttons:
            st.download_button(
                label,
                make,
                file_name=f"{stem}.{extension}",
                mime=mime,
                key=f"dl_{key or name}_{label}",
                on_click="ignore",
                icon=":material/download:",
            )
    return selected
