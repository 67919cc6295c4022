"""Sphinx configuration for the sharedapplier documentation.

Build with ``pip install -e ".[docs]"`` then ``sphinx-build docs docs/_build``. The API pages use
autodoc, so the package (and GDAL's Python bindings) must be importable.
"""
import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "sharedapplier"
author = "sharedapplier contributors"
copyright = "sharedapplier contributors"
release = "0.1.0"

extensions = ["sphinx.ext.autodoc", "sphinx.ext.viewcode"]
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": False}
exclude_patterns = ["_build"]
html_theme = "alabaster"
