"""Sphinx configuration for the sharedapplier documentation.

Build with ``make docs``, which runs
``.venv/bin/python -m sphinx -W --keep-going -b html docs docs/_build/html``: warnings are
errors. The API pages use autodoc, so the package and GDAL's Python bindings must be
importable (the ``.venv`` made by the Makefile has both).
"""
import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "sharedapplier"
author = "sharedapplier contributors"
copyright = "sharedapplier contributors"
release = "0.1.0"

extensions = ["sphinx.ext.autodoc", "sphinx.ext.viewcode"]

# Members are listed per directive in api.rst. Do not put "members" here: in Sphinx a
# default "members" replaces the explicit lists given to automodule.
autodoc_member_order = "bysource"
autodoc_default_options = {"undoc-members": True}

exclude_patterns = ["_build"]
html_theme = "alabaster"
html_title = "sharedapplier"
