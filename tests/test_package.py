"""First contact: imports stay light, errors share one base, the wheel ships the whole package
(the docs' code runs in test_docs.py)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from conftest import ROOT, build_wheel

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
    assert "{extract,weights,ablate,importance,reproduce,report,dashboard}" in done.stdout  # the help was printed
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


@pytest.mark.slow
def test_the_built_wheel_ships_every_subpackage(tmp_path):
    """`pip install .` gives the whole package: every module of sevis/ is in the wheel, and
    the installed command answers --help from a fresh venv (no torch needed for that)."""
    import venv
    import zipfile

    wheel = build_wheel(tmp_path)
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("sevis/")}
    expected = {p.relative_to(ROOT).as_posix() for p in (ROOT / "sevis").rglob("*.py")} | {"sevis/py.typed"}
    expected |= {f"sevis/assets/{p.name}" for p in (ROOT / "assets").iterdir()}  # the sample photographs
    assert expected <= shipped, sorted(expected - shipped)
    assert {n.split("/")[1] for n in shipped if n.count("/") == 2} >= {
        "analysis",
        "app",
        "assets",
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
    commands = "{extract,weights,ablate,importance,reproduce,report,dashboard}"
    assert helped.returncode == 0 and commands in helped.stdout, helped.stderr[-2000:]


STREAMLIT_GC = """
from streamlit import config
from streamlit.web import bootstrap

def serve(main_script_path, is_hello, args, flag_options):  # Streamlit's `run`, up to serving
    print(config.get_option("runner.postScriptGC"))

bootstrap.run = serve
{start}
"""


@pytest.mark.parametrize(
    ("start", "cwd"),
    [
        ("from streamlit.web.cli import main\nmain(['run', 'app.py'])", ROOT),  # a checkout, as the Docker image
        ("from sevis.cli import main\nmain(['dashboard'])", None),  # from the wheel, anywhere
    ],
    ids=["streamlit run app.py", "sevis dashboard"],
)
def test_the_dashboard_runs_without_a_full_collection_after_each_run(start, cwd, tmp_path):
    """Streamlit collects all garbage after every script run (runner.postScriptGC): with torch
    loaded that is ~0.3 s holding the interpreter's lock, 90 % of a warm page, and the server
    stops answering through a burst of sessions (BENCHMARKS.md 8b). Off however the dashboard
    starts (the Docker image copies the checkout's config); the environment can turn it on."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_")}
    done = python(STREAMLIT_GC.format(start=start), cwd=cwd or tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False"]
    env["STREAMLIT_RUNNER_POST_SCRIPT_GC"] = "true"
    on = python(STREAMLIT_GC.format(start=start), cwd=cwd or tmp_path, env=env)
    assert on.stdout.split() == ["True"], on.stderr


def test_every_limit_is_in_the_readme_and_the_image_with_its_default():
    """Each SEVIS_* limit is one row of the docs' table (Running it for a group) and one ENV of the Docker image,
    both with the default `Limits` has."""
    from dataclasses import fields

    from sevis.limits import _ENV, Limits

    readme = (ROOT / "docs" / "group.md").read_text()
    dockerfile = (ROOT / "Dockerfile").read_text()
    defaults = {f.name: f.default for f in fields(Limits)}
    for name, (variable, unit) in _ENV.items():
        default = f"{defaults[name] / unit:g}"
        assert re.search(rf"^\| `{variable}` \| .* \| {default} \|$", readme, flags=re.M), variable
        assert re.search(rf"^\s+{variable}={default} \\$", dockerfile, flags=re.M), variable


def test_a_cpu_only_install_that_cannot_reach_its_index_says_so_and_installs_nothing(tmp_path):
    """`make install TORCH=cpu` where PyTorch's CPU index is out of reach (here a closed port):
    a sentence saying so and what to do instead, not pip's retries, and no torch half-installed."""
    venv = tmp_path / "venv"
    done = subprocess.run(
        ["make", f"VENV={venv}", "TORCH=cpu", "TORCH_CPU_INDEX=http://127.0.0.1:9/whl/cpu", f"{venv}/.installed"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    assert "PyTorch's CPU index http://127.0.0.1:9/whl/cpu cannot be reached from here; nothing was installed" in (
        done.stdout
    )
    assert "Without TORCH=cpu" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    assert not list(venv.glob("lib/python*/site-packages/torch")) and not (venv / ".installed").exists()
