"""Command-line tools: the ``sharedapplier`` console script and the RIOS-named aliases.

``sharedapplier demo|cleanup|calcstats|printstats|bench`` is :func:`main.main`; the
RIOS-compatible ``rioscalcstats`` and ``riosprintstats`` scripts live in :mod:`.stats`.
"""
