"""RIOS 1.x's ``inputcollection`` names, which sharedapplier does not provide.

``InputCollection`` was the 1.x reader's internal list of open inputs and their resampling.
Here :class:`sharedapplier.imagereader.ImageReader` and ``apply`` work that out themselves
(:func:`sharedapplier.applier.makeWorkingGrid`,
:func:`sharedapplier.imagereader.prepareInputs`). The names can be imported; using one raises
:class:`~sharedapplier.rioserrors.NotProvidedError` saying what to do instead.
"""
from .rioserrors import notProvided

_INSTEAD = ("read the images with imagereader.ImageReader (allowResample() to resample "
            "them) or applier.apply, which find the working grid and resample themselves")

InputCollection = notProvided("inputcollection.InputCollection", _INSTEAD)
InputIterator = notProvided("inputcollection.InputIterator", _INSTEAD)
