"""The dashboard's pages, one script each, run by Streamlit (their file names are the URL paths)."""

__all__: list[str] = []
