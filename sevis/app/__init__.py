"""The Streamlit dashboard: four pages over cached models, analyses and runs (``sevis dashboard``
or ``streamlit run app.py``; the entry script is :mod:`sevis.app.main`)."""

from pathlib import Path

__all__ = ["ENTRY", "VIEWS"]

ENTRY = Path(__file__).resolve().parent / "main.py"
"""The script Streamlit runs: ``streamlit run`` it, or call :func:`sevis.app.main.main` from one."""
VIEWS = ENTRY.parent / "views"
"""The pages, one script each (their file names are the pages' URL paths)."""
