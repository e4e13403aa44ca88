"""The wheel carries the sample photographs of ``assets/`` as ``sevis/assets``: the dashboard's
first page and the weights self-check read them (``sevis.models.assets_dir``). Everything
else about the build is in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithPhotographs(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "sevis" / "assets"
        target.mkdir(parents=True, exist_ok=True)
        for file in sorted(Path(__file__).resolve().parent.joinpath("assets").iterdir()):
            if file.is_file():  # the photographs and their sources' README
                shutil.copy2(file, target / file.name)


setup(cmdclass={"build_py": BuildWithPhotographs})
