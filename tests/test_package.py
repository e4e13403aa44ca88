"""First contact: imports stay light, errors share one base, the README's code runs."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch
from conftest import ROOT

import sevis


def python(code: str, cwd=ROOT, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


def test_the_command_line_parses_without_importing_torch():
    done = python(
        "import sys\n"
        "from sevis.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'timm', 'pyarrow', 'plotly') if m in sys.modules))"
    )
    assert done.returncode == 0, done.stderr
    assert "{extract,weights,ablate,report}" in done.stdout  # the help was printed
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_lazy_names_resolve_and_unknown_ones_fail():
    assert sevis.capture.__name__ == "capture" and sevis.Capture.__module__ == "sevis.hooks.capturing"
    assert set(sevis.__all__) <= set(dir(sevis))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        sevis.nope
    from sevis import _version

    assert sevis.__version__ == _version.__version__


def test_every_user_error_is_a_sevis_error():
    for name in (
        "ArchiveError",
        "CheckpointError",
        "DataError",
        "ImageError",
        "RunError",
        "UnknownLayerError",
        "UnknownModelError",
        "WeightsUnavailableError",
    ):
        assert issubclass(getattr(sevis, name), sevis.SevisError), name


def readme_snippets() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.mark.slow
def test_the_readme_python_snippets_run_as_written(tmp_path, senet_state):
    """The library section runs in a folder holding the README's photographs, with the
    SENet checkpoint where timm's download lands (torch hub's cache), offline."""
    snippets = readme_snippets()
    assert snippets, "the README has Python snippets"
    from PIL import Image

    for name, photo in (("cat", "chelsea.png"), ("cup", "coffee.png")):
        image = Image.open(ROOT / "assets" / photo).convert("RGB")
        image.save(tmp_path / f"{name}.jpg")
        image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(tmp_path / f"{name}2.jpg")
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.save(senet_state, hub / "se_resnet50-ce0d4300.pth")
    env = {
        "PATH": "/usr/bin:/bin",
        "TORCH_HOME": str(tmp_path / "torch"),
        "HF_HUB_OFFLINE": "1",
        "SEVIS_WEIGHTS_DIR": str(tmp_path / "weights"),
        "PYTHONPATH": str(ROOT),
        "MPLBACKEND": "Agg",
    }
    outputs = []
    for i, code in enumerate(snippets):
        # NOTE .show() needs a notebook or a browser; here each figure shown is counted.
        prologue = "import plotly.graph_objects as go\nshown = []\ngo.Figure.show = lambda fig: shown.append(fig)\n"
        epilogue = "\nprint('figures shown:', len(shown), 'traces:', sum(len(f.data) for f in shown))\n"
        done = python(prologue + code + epilogue, cwd=tmp_path, env=env)
        assert done.returncode == 0, f"snippet {i + 1} failed:\n{code}\n{done.stderr[-3000:]}"
        outputs.append(done.stdout)
    library, whatif = outputs[:2]
    # the what-if snippet: the effect per image, the ablation table, four figures (ablation,
    # map, volcano, depth curve against the untrained network)
    assert "top1_changed" in whatif and "stage 5" in whatif and "top1_change" in whatif
    assert "effect" in whatif and "figures shown: 4" in whatif
    done = subprocess.CompletedProcess([], 0, library, "")
    assert "torch.Size([1, 2048])" in done.stdout
    assert "['SE_2_3', 'SE_3_4', 'SE_4_6', 'SE_5_1', 'SE_5_2', 'SE_5_3']" in done.stdout
    assert "nan" not in done.stdout  # two images per class: every spread is defined
    # cat and cup, each a band and a line; the mean of class means; all images
    assert "figures shown: 1 traces: 6" in done.stdout


@pytest.mark.slow
def test_the_built_wheel_ships_every_subpackage(tmp_path):
    """`pip install .` gives the whole package: every module of sevis/ is in the wheel, and
    the installed command answers --help from a fresh venv (no torch needed for that)."""
    import shutil
    import venv
    import zipfile

    # NOTE from a copy: setuptools builds in the tree's build/, which may hold an older layout.
    source = tmp_path / "source"
    shutil.copytree(ROOT / "sevis", source / "sevis", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = tmp_path.glob("sevis-*.whl")
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("sevis/")}
    expected = {p.relative_to(ROOT).as_posix() for p in (ROOT / "sevis").rglob("*.py")} | {"sevis/py.typed"}
    assert expected <= shipped, sorted(expected - shipped)
    assert {n.split("/")[1] for n in shipped if n.count("/") == 2} >= {
        "analysis",
        "attention",
        "data",
        "figures",
        "hooks",
        "jobs",
        "models",
        "runs",
        "stats",
    }
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    installed = subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "--no-deps", "--quiet", str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    helped = subprocess.run(
        [str(bin_dir / "sevis"), "--help"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert helped.returncode == 0 and "{extract,weights,ablate,report}" in helped.stdout, helped.stderr[-2000:]


def test_every_limit_is_in_the_readme_and_the_image_with_its_default():
    """Each SEVIS_* limit is one row of README's table and one ENV of the Docker image,
    both with the default `Limits` has."""
    from dataclasses import fields

    from sevis.limits import _ENV, Limits

    readme = (ROOT / "README.md").read_text()
    dockerfile = (ROOT / "Dockerfile").read_text()
    defaults = {f.name: f.default for f in fields(Limits)}
    for name, (variable, unit) in _ENV.items():
        default = f"{defaults[name] / unit:g}"
        assert re.search(rf"^\| `{variable}` \| .* \| {default} \|$", readme, flags=re.M), variable
        assert re.search(rf"^\s+{variable}={default} \\$", dockerfile, flags=re.M), variable
