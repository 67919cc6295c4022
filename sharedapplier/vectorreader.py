"""RIOS 1.x's ``vectorreader`` names, which sharedapplier does not provide (but one).

The 1.x ``Vector``/``VectorReader`` rasterised a vector block by block for the 1.x reader.
``apply`` takes vector files as inputs and rasterises them itself, with the burn options
of ``ApplierControls`` (``setBurnValue``, ``setBurnAttribute``, ``setFilterSQL``,
``setAlltouched``, ``setVectorDatatype``, ``setVectorNull``, ``setVectorlayer``).
``DEFAULTBURNVALUE`` is provided; using any other name raises
:class:`~sharedapplier.rioserrors.NotProvidedError` saying what to do instead.
"""
from .rioserrors import notProvided

DEFAULTBURNVALUE = 1

_INSTEAD = ("give the vector file to applier.apply as an input and set the burn options "
            "on ApplierControls (setBurnValue, setBurnAttribute, setFilterSQL, ...)")

Vector = notProvided("vectorreader.Vector", _INSTEAD)
VectorReader = notProvided("vectorreader.VectorReader", _INSTEAD)
rasterizeProgressFunc = notProvided("vectorreader.rasterizeProgressFunc", _INSTEAD)
