"""The dashboard from a checkout: ``streamlit run app.py`` (the Docker image runs this too).

Installed from a wheel, ``sevis dashboard`` starts the same pages; both run
:func:`sevis.app.main.main` (its docstring lists the environment it reads).
"""

from sevis.app.main import main

main()
