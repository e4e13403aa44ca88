"""First contact: the documentation site builds with no warnings, its code runs as written, the
README stays short and shows the dashboard as it is, and the notebook runs.

The library pages are one session, as a reader in a notebook would run them: their Python
blocks run in the site's order in one interpreter, offline, with pretrained weights where a
user's machine keeps them (the SENet file in torch hub's cache, the SGE file in the weights
folder; random values in the real layouts, as everywhere in the tests).
"""

from __future__ import annotations

import inspect
import json
import re
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from conftest import ROOT

import sevis

DOCS = ROOT / "docs"
SHOW_COUNTER = (
    "import plotly.graph_objects as go\nshown = []\n"
    "go.Figure.show = lambda fig, *a, **k: shown.append(fig)  # .show() needs a notebook or a browser\n"
)


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", path.read_text(), flags=re.S | re.M)


def nav_pages() -> list[str]:
    """The site's pages in its navigation's order (mkdocs.yml)."""
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)

    def walk(items) -> list[str]:
        out = []
        for item in items:
            for value in item.values():
                out += walk(value) if isinstance(value, list) else [value]
        return out

    return walk(config["nav"])


def run_python(code: str, cwd: Path, home: Path) -> subprocess.CompletedProcess:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "TORCH_HOME": str(home / "torch"),
        "HF_HOME": str(home / "hf"),
        "HF_HUB_OFFLINE": "1",
        "SEVIS_WEIGHTS_DIR": str(home / "weights"),
        "SEVIS_CACHE_DIR": str(home / "cache"),
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture
def weights_home(tmp_path, senet_state, sge_file) -> Path:
    """A home where the pretrained files are where sevis and timm look for them."""
    import shutil

    hub = tmp_path / "home" / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.save(senet_state, hub / "se_resnet50-ce0d4300.pth")
    (tmp_path / "home" / "weights").mkdir()
    shutil.copy(sge_file, tmp_path / "home" / "weights" / "sge_resnet50.pth.tar")
    return tmp_path / "home"


def test_the_site_builds_with_no_warnings_and_lists_every_command(tmp_path):
    built = subprocess.run(
        [str(Path(sys.executable).parent / "mkdocs"), "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-4000:]
    logged = [line for line in built.stderr.splitlines() if re.match(r"(WARNING|ERROR)\s+-", line)]
    assert logged == [], built.stderr[-4000:]
    cli = (tmp_path / "site" / "cli" / "index.html").read_text()
    for command in ("extract", "weights list", "weights fetch", "weights check", "ablate", "report", "dashboard"):
        assert f"sevis {command}</code>" in cli, command  # a section per command, from the parser
    assert "--weights-dir" in cli and "--per-class" in cli and "--baseline" in cli
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    for name in ("sevis.analyse", "sevis.stats.two_class_test", "sevis.figures.class_profiles", "sevis.jobs.extract"):
        assert name in api, name
    started = (tmp_path / "site" / "getting-started" / "index.html").read_text()
    assert "sample_photos" in started  # the README's example, included


def test_every_page_of_the_site_is_in_its_navigation():
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert pages == set(nav_pages())


def public_objects() -> dict[str, object]:
    """Every public name of the package root and of each subpackage."""
    import importlib

    found = {f"sevis.{n}": getattr(sevis, n) for n in sevis.__all__ if n != "__version__"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for init in sorted((ROOT / "sevis").glob("*/__init__.py")):
            module = importlib.import_module(f"sevis.{init.parent.name}")
            found |= {f"{module.__name__}.{n}": getattr(module, n) for n in module.__all__}
    return found


def test_every_public_function_and_class_has_its_own_docstring():
    missing = []
    for name, obj in public_objects().items():
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue  # constants are described where they are defined (the site shows them)
        doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
        generated = inspect.isclass(obj) and (doc or "").startswith(f"{obj.__name__}(")  # a dataclass's
        if not (doc or "").strip() or generated:
            missing.append(name)
    assert missing == []


def code_blocks(path: Path) -> list[tuple[str, str]]:
    """(language, code) of each fenced block; a fence left open fails here, not in a reader's page."""
    fences = re.findall(r"^```.*$", path.read_text(), flags=re.M)
    assert len(fences) % 2 == 0, f"{path.name}: a code fence is not closed"
    return re.findall(r"^```(\w*)\n(.*?)^```$", path.read_text(), flags=re.S | re.M)


def test_every_code_block_is_of_a_kind_a_test_runs_or_checks():
    """python: run (the README's, the library pages'); bash: each `sevis` line parsed, the make
    lines are the quick start CI runs; text: written by the parser; toml and nginx: checked below."""
    kinds = {language for path in [ROOT / "README.md", *DOCS.rglob("*.md")] for language, _ in code_blocks(path)}
    assert kinds <= {"python", "bash", "text", "toml", "nginx"}, kinds
    pages_with_python = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md") if python_blocks(p)}
    assert pages_with_python <= {p for p in nav_pages() if p.startswith("library/")}  # the ones run in order


def test_the_group_page_configuration_matches_the_dashboard():
    """The login section is TOML that Streamlit's `st.login` reads; the proxy sends to the port
    the dashboard listens on and lets through an upload as large as the dashboard takes."""
    import tomllib

    from sevis.cli import build_parser

    blocks = dict(code_blocks(DOCS / "group.md"))
    auth = tomllib.loads(blocks["toml"])["auth"]
    assert set(auth) == {"redirect_uri", "cookie_secret", "client_id", "client_secret", "server_metadata_url"}
    assert auth["redirect_uri"].endswith("/sevis/oauth2callback")  # under the proxy's path
    nginx = blocks["nginx"]
    port = build_parser().parse_args(["dashboard"]).port
    assert f"proxy_pass http://127.0.0.1:{port}/sevis/;" in nginx
    upload = re.search(r"STREAMLIT_SERVER_MAX_UPLOAD_SIZE` \| [^|]+\| (\d+)", (DOCS / "group.md").read_text())
    assert upload and f"client_max_body_size {upload.group(1)}m;" in nginx
    assert "proxy_set_header Upgrade $http_upgrade;" in nginx and 'proxy_set_header Connection "upgrade";' in nginx


def test_every_command_in_the_docs_parses():
    """Each `sevis …` line of a shell block is a command the parser takes."""
    from sevis.cli import build_parser

    parser = build_parser()
    checked = 0
    for path in [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]:
        for block in re.findall(r"^```bash\n(.*?)^```", path.read_text(), flags=re.S | re.M):
            for line in block.splitlines():
                words = shlex.split(line, comments=True)
                while words and "=" in words[0]:  # VAR=value before the command
                    words = words[1:]
                if words[:1] != ["sevis"]:
                    continue
                words = words[: words.index("&&")] if "&&" in words else words
                try:
                    parser.parse_args(words[1:])
                except SystemExit:
                    pytest.fail(f"{path.name}: {line}")
                checked += 1
    assert checked >= 15


def test_the_readme_is_short_and_shows_current_screenshots():
    readme = ROOT / "README.md"
    assert readme.stat().st_size < 12_000
    for path in (readme, *DOCS.rglob("*.md")):
        for picture in re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", path.read_text()):
            assert (path.parent / picture).is_file(), (path.name, picture)
    sys.path.insert(0, str(DOCS))
    try:
        from screenshots import STAMP, sources_digest
    finally:
        sys.path.remove(str(DOCS))
    stamp = json.loads(STAMP.read_text())
    assert stamp["sha256"] == sources_digest(), "the dashboard or its figures changed: run `make screenshots`"
    for page in ("images", "classes", "compare", "channels"):
        assert (DOCS / "images" / f"{page}.png").stat().st_size > 20_000, page


@pytest.mark.slow
def test_the_readme_example_runs_offline_as_written(tmp_path):
    """No weights anywhere and no hub: the example falls back to random weights and writes
    its figure."""
    (code,) = python_blocks(ROOT / "README.md")
    (tmp_path / "home").mkdir()
    done = run_python(code, tmp_path, tmp_path / "home")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "'SE_2_3', 'SE_3_4', 'SE_4_6', 'SE_5_1', 'SE_5_2', 'SE_5_3'" in done.stdout
    figure = (tmp_path / "figure7.html").read_text()
    assert "SE_4_6: mean excitation per class" in figure
    for trace in ("cat (n=1)", "cup (n=1)", "all images (n=4)"):
        assert f'"name":"{trace}"' in figure, trace


@pytest.mark.slow
def test_the_library_pages_run_in_order_as_written(tmp_path, weights_home):
    pages = [p for p in nav_pages() if p.startswith("library/")]
    assert len(pages) == 5
    script = SHOW_COUNTER
    for page in pages:
        blocks = python_blocks(DOCS / page)
        assert blocks, page
        script += f"print('== {page}', flush=True)\n" + "\n".join(blocks)
        script += "\nprint('figures shown:', len(shown), 'traces:', [len(f.data) for f in shown], flush=True)\n"
    done = run_python(script, tmp_path, weights_home)
    assert done.returncode == 0, done.stderr[-3000:]
    parts = dict(re.findall(r"^== (\S+)\n(.*?)(?=^== |\Z)", done.stdout, flags=re.S | re.M))
    capture, statistics, figures, knockouts, runs = (parts[p] for p in pages)
    assert "torch.Size([1, 2048])" in capture and "{}" in capture
    assert "SK_2_1 (1, 64, 2) 1.0" in capture
    assert "['SE_2_3', 'SE_3_4', 'SE_4_6', 'SE_5_1', 'SE_5_2', 'SE_5_3']" in statistics
    assert "notes.txt" in statistics  # the broken file named, the other four analysed
    assert "nan" not in statistics.split("\n")[0]  # two images per class: every spread is defined
    assert "channel" in statistics and "NullBand" in statistics
    # class profiles: cat and cup, each a band and a line, the mean of class means, all images;
    # the volcano; the depth curve trained against untrained; the SGE overlay
    assert "figures shown: 4 traces: [6," in figures
    assert (tmp_path / "class_profiles.html").stat().st_size > 10_000
    assert "top1_changed" in knockouts and "stage 5" in knockouts and "top1_change" in knockouts
    assert "figures shown: 6" in knockouts  # + the ablation chart, the importance scatter
    assert "'rho': " in knockouts and "'channels': 256" in knockouts  # every 8th of 2,048 channels
    omega, images = runs.splitlines()[0].split()
    assert 0 <= float(omega) <= 1 and images == "4"  # the run holds the four photographs of data/
    assert re.search(r"image +label +layer +channel +value", runs) and "n02123045/cat" in runs  # the extremes
    assert "figures shown: 7" in runs  # + the map
    assert (tmp_path / "run.parquet").is_file()


@pytest.mark.slow
def test_the_notebook_runs_and_draws_inline(tmp_path, weights_home, monkeypatch):
    import nbclient
    import nbformat

    for name, value in {
        "TORCH_HOME": weights_home / "torch",
        "HF_HUB_OFFLINE": "1",
        "SEVIS_WEIGHTS_DIR": weights_home / "weights",
        "SEVIS_CACHE_DIR": weights_home / "cache",
        "PYTHONPATH": ROOT,
    }.items():
        monkeypatch.setenv(name, str(value))  # the kernel is a child process: it inherits them
    notebook = nbformat.read(ROOT / "examples" / "tour.ipynb", as_version=4)
    assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code"), "committed without outputs"
    nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    ).execute()
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    plots = [o for o in outputs if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(plots) == 2  # Figure 6 and the SGE overlay, inline
    assert any("top1_changed" in o.get("data", {}).get("text/plain", "") for o in outputs)  # the knock-out table
