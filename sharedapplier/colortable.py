"""Colour tables of any size, stored in the raster attribute table, and named colour ramps.

A colour table here is a uint8 array of shape (4, n): rows red, green, blue and alpha, one
column per pixel value. Ramps are lists of control colours; :func:`genTable` interpolates
them linearly. The ColorBrewer ramps (Cynthia Brewer, colorbrewer2.org) use their largest
published class count; the matplotlib ramps (viridis, magma, plasma, inferno, cividis) are
sampled at 12 evenly spaced points.
"""
import numpy
from osgeo import gdal

from sharedapplier import rioserrors
from sharedapplier.rat import (
    findOrCreateNamedColumn,
    prepareValuesForRat,
    ratForUpdate,
    readRatValues,
    setRatOnBand,
    setRatRowCount,
    withBand,
)

RANDOM_NAME = "RANDOM"

RAMP = {}

_COLORBREWER = "Cynthia Brewer, colorbrewer2.org"
_MATPLOTLIB = "Stefan van der Walt, Nathaniel Smith, Jamie Nunez (matplotlib)"

# name: (type, author, control colours as hex RRGGBB)
_BUILTIN_RAMPS = {
    "Blues": ("Sequential", _COLORBREWER,
              "f7fbff deebf7 c6dbef 9ecae1 6baed6 4292c6 2171b5 08519c 08306b"),
    "BuGn": ("Sequential", _COLORBREWER,
             "f7fcfd e5f5f9 ccece6 99d8c9 66c2a4 41ae76 238b45 006d2c 00441b"),
    "BuPu": ("Sequential", _COLORBREWER,
             "f7fcfd e0ecf4 bfd3e6 9ebcda 8c96c6 8c6bb1 88419d 810f7c 4d004b"),
    "GnBu": ("Sequential", _COLORBREWER,
             "f7fcf0 e0f3db ccebc5 a8ddb5 7bccc4 4eb3d3 2b8cbe 0868ac 084081"),
    "Greens": ("Sequential", _COLORBREWER,
               "f7fcf5 e5f5e0 c7e9c0 a1d99b 74c476 41ab5d 238b45 006d2c 00441b"),
    "Greys": ("Sequential", _COLORBREWER,
              "ffffff f0f0f0 d9d9d9 bdbdbd 969696 737373 525252 252525 000000"),
    "OrRd": ("Sequential", _COLORBREWER,
             "fff7ec fee8c8 fdd49e fdbb84 fc8d59 ef6548 d7301f b30000 7f0000"),
    "Oranges": ("Sequential", _COLORBREWER,
                "fff5eb fee6ce fdd0a2 fdae6b fd8d3c f16913 d94801 a63603 7f2704"),
    "PuBu": ("Sequential", _COLORBREWER,
             "fff7fb ece7f2 d0d1e6 a6bddb 74a9cf 3690c0 0570b0 045a8d 023858"),
    "PuBuGn": ("Sequential", _COLORBREWER,
               "fff7fb ece2f0 d0d1e6 a6bddb 67a9cf 3690c0 02818a 016c59 014636"),
    "PuRd": ("Sequential", _COLORBREWER,
             "f7f4f9 e7e1ef d4b9da c994c7 df65b0 e7298a ce1256 980043 67001f"),
    "Purples": ("Sequential", _COLORBREWER,
                "fcfbfd efedf5 dadaeb bcbddc 9e9ac8 807dba 6a51a3 54278f 3f007d"),
    "RdPu": ("Sequential", _COLORBREWER,
             "fff7f3 fde0dd fcc5c0 fa9fb5 f768a1 dd3497 ae017e 7a0177 49006a"),
    "Reds": ("Sequential", _COLORBREWER,
             "fff5f0 fee0d2 fcbba1 fc9272 fb6a4a ef3b2c cb181d a50f15 67000d"),
    "YlGn": ("Sequential", _COLORBREWER,
             "ffffe5 f7fcb9 d9f0a3 addd8e 78c679 41ab5d 238443 006837 004529"),
    "YlGnBu": ("Sequential", _COLORBREWER,
               "ffffd9 edf8b1 c7e9b4 7fcdbb 41b6c4 1d91c0 225ea8 253494 081d58"),
    "YlOrBr": ("Sequential", _COLORBREWER,
               "ffffe5 fff7bc fee391 fec44f fe9929 ec7014 cc4c02 993404 662506"),
    "YlOrRd": ("Sequential", _COLORBREWER,
               "ffffcc ffeda0 fed976 feb24c fd8d3c fc4e2a e31a1c bd0026 800026"),
    "BrBG": ("Diverging", _COLORBREWER,
             "543005 8c510a bf812d dfc27d f6e8c3 f5f5f5 c7eae5 80cdc1 35978f 01665e 003c30"),
    "PRGn": ("Diverging", _COLORBREWER,
             "40004b 762a83 9970ab c2a5cf e7d4e8 f7f7f7 d9f0d3 a6dba0 5aae61 1b7837 00441b"),
    "PiYG": ("Diverging", _COLORBREWER,
             "8e0152 c51b7d de77ae f1b6da fde0ef f7f7f7 e6f5d0 b8e186 7fbc41 4d9221 276419"),
    "PuOr": ("Diverging", _COLORBREWER,
             "7f3b08 b35806 e08214 fdb863 fee0b6 f7f7f7 d8daeb b2abd2 8073ac 542788 2d004b"),
    "RdBu": ("Diverging", _COLORBREWER,
             "67001f b2182b d6604d f4a582 fddbc7 f7f7f7 d1e5f0 92c5de 4393c3 2166ac 053061"),
    "RdGy": ("Diverging", _COLORBREWER,
             "67001f b2182b d6604d f4a582 fddbc7 ffffff e0e0e0 bababa 878787 4d4d4d 1a1a1a"),
    "RdYlBu": ("Diverging", _COLORBREWER,
               "a50026 d73027 f46d43 fdae61 fee090 ffffbf e0f3f8 abd9e9 74add1 4575b4 313695"),
    "RdYlGn": ("Diverging", _COLORBREWER,
               "a50026 d73027 f46d43 fdae61 fee08b ffffbf d9ef8b a6d96a 66bd63 1a9850 006837"),
    "Spectral": ("Diverging", _COLORBREWER,
                 "9e0142 d53e4f f46d43 fdae61 fee08b ffffbf e6f598 abdda4 66c2a5 3288bd 5e4fa2"),
    "Accent": ("Qualitative", _COLORBREWER,
               "7fc97f beaed4 fdc086 ffff99 386cb0 f0027f bf5b17 666666"),
    "Dark2": ("Qualitative", _COLORBREWER,
              "1b9e77 d95f02 7570b3 e7298a 66a61e e6ab02 a6761d 666666"),
    "Paired": ("Qualitative", _COLORBREWER,
               "a6cee3 1f78b4 b2df8a 33a02c fb9a99 e31a1c fdbf6f ff7f00 cab2d6 6a3d9a ffff99 "
               "b15928"),
    "Pastel1": ("Qualitative", _COLORBREWER,
                "fbb4ae b3cde3 ccebc5 decbe4 fed9a6 ffffcc e5d8bd fddaec f2f2f2"),
    "Pastel2": ("Qualitative", _COLORBREWER,
                "b3e2cd fdcdac cbd5e8 f4cae4 e6f5c9 fff2ae f1e2cc cccccc"),
    "Set1": ("Qualitative", _COLORBREWER,
             "e41a1c 377eb8 4daf4a 984ea3 ff7f00 ffff33 a65628 f781bf 999999"),
    "Set2": ("Qualitative", _COLORBREWER,
             "66c2a5 fc8d62 8da0cb e78ac3 a6d854 ffd92f e5c494 b3b3b3"),
    "Set3": ("Qualitative", _COLORBREWER,
             "8dd3c7 ffffb3 bebada fb8072 80b1d3 fdb462 b3de69 fccde5 d9d9d9 bc80bd ccebc5 "
             "ffed6f"),
    "viridis": ("Perceptual", _MATPLOTLIB,
                "440154 482173 433e85 38588c 2d708e 25858e 1e9b8a 2ab07f 52c569 86d549 c2df23 "
                "fde725"),
    "magma": ("Perceptual", _MATPLOTLIB,
              "000004 120d31 331067 59157e 7e2482 a3307e c83e73 e95462 fa7d5e fea973 fed395 "
              "fcfdbf"),
    "plasma": ("Perceptual", _MATPLOTLIB,
               "0d0887 3e049c 6300a7 8606a6 a62098 c03a83 d5546e e76f5a f68d45 fdae32 fcd225 "
               "f0f921"),
    "inferno": ("Perceptual", _MATPLOTLIB,
                "000004 140b34 390963 5f136e 85216b a92e5e cb4149 e65d2f f78410 fcae12 f5db4c "
                "fcffa4"),
    "cividis": ("Perceptual", _MATPLOTLIB,
                "00224e 013271 2f426d 48526c 5e636f 727374 878478 9d9576 b6a96f cebc63 e7d150 "
                "fee838"),
    "gray": ("Sequential", "", "000000 ffffff"),
    "rainbow": ("Sequential", "", "ff0000 00ff00 0000ff"),
}


class ColorTableException(rioserrors.RiosError):
    """A colour ramp or colour table request is invalid."""


class ColorTableMissingException(ColorTableException):
    """A file has no colour table in its raster attribute table."""


def _hexToDescription(hexcolours):
    """{'red': str, 'green': str, 'blue': str} from space-separated RRGGBB strings."""
    colours = [[int(h[i:i + 2], 16) for i in (0, 2, 4)] for h in hexcolours.split()]
    return {name: " ".join(str(c[i]) for c in colours)
            for i, name in enumerate(("red", "green", "blue"))}


def loadBuiltinRamps():
    """(Re)load the built-in ramps into :data:`RAMP`."""
    for name, (ramptype, author, hexcolours) in _BUILTIN_RAMPS.items():
        RAMP[name] = {"author": author, "comments": "", "type": ramptype,
                      "description": _hexToDescription(hexcolours)}


def getRampNames():
    """Names of all ramps, including the pseudo-ramp RANDOM."""
    return list(RAMP.keys()) + [RANDOM_NAME]


def _parseComponents(name, channel, text):
    if not isinstance(text, str):
        raise ColorTableException(
            f"ramp {name!r}: {channel} must be a string of space-separated integers, "
            f"got {type(text).__name__}")
    try:
        values = [int(v) for v in text.split()]
    except ValueError as exc:
        raise ColorTableException(f"ramp {name!r}: bad {channel} value ({exc})") from exc
    if not values or min(values) < 0 or max(values) > 255:
        raise ColorTableException(
            f"ramp {name!r}: {channel} needs at least one value, each in 0..255")
    return values


def addRamp(name, red, green, blue):
    """Add a ramp from space-separated strings of red, green and blue control values."""
    if not isinstance(name, str):
        raise ColorTableException(f"a ramp name must be a string, got {type(name).__name__}")
    if name in RAMP or name == RANDOM_NAME:
        raise ColorTableException(f"a ramp called {name!r} already exists")
    parsed = [_parseComponents(name, ch, text)
              for ch, text in (("red", red), ("green", green), ("blue", blue))]
    if len({len(p) for p in parsed}) != 1:
        raise ColorTableException(
            f"ramp {name!r}: red, green and blue have different numbers of values "
            f"({[len(p) for p in parsed]})")
    RAMP[name] = {"author": "", "comments": "", "type": "User",
                  "description": {"red": red, "green": green, "blue": blue}}


def _rampControlColours(colorType):
    """A (3, k) float array of the control colours of a ramp."""
    if colorType not in RAMP:
        raise ColorTableException(
            f"unknown colour ramp {colorType!r}; valid names: {getRampNames()}")
    desc = RAMP[colorType]["description"]
    return numpy.array([[float(v) for v in desc[ch].split()]
                        for ch in ("red", "green", "blue")])


def _controlPositions(numEntries, colorType, ncontrol, colorPoints):
    if colorPoints is None:
        return numpy.linspace(0, numEntries, ncontrol)
    points = numpy.asarray(colorPoints, dtype=numpy.float64)
    if points.shape != (ncontrol,):
        raise ColorTableException(
            f"colorPoints has {points.size} values but ramp {colorType!r} has "
            f"{ncontrol} control colours")
    if numpy.any(numpy.diff(points) <= 0):
        raise ColorTableException("colorPoints must be strictly increasing")
    return points


def _randomTable(numEntries):
    table = numpy.empty((4, numEntries), dtype=numpy.uint8)
    table[:3] = numpy.random.default_rng().integers(0, 255, size=(3, numEntries))
    return table


def _rampTable(numEntries, colorType, colorPoints):
    control = _rampControlColours(colorType)
    xp = _controlPositions(numEntries, colorType, control.shape[1], colorPoints)
    x = numpy.linspace(0, numEntries, numEntries)
    table = numpy.empty((4, numEntries), dtype=numpy.uint8)
    for i in range(3):
        table[i] = numpy.interp(x, xp, control[i]).astype(numpy.uint8)
    return table


def genTable(numEntries, colorType, ignoreVal=None, colorPoints=None):
    """A (4, numEntries) uint8 colour table interpolated from a named ramp (alpha 255).

    Column ``ignoreVal`` (if given) is all zeros, i.e. transparent black.
    """
    if colorType == RANDOM_NAME:
        table = _randomTable(numEntries)
    else:
        table = _rampTable(numEntries, colorType, colorPoints)
    table[3] = 255
    if ignoreVal is not None:
        if not 0 <= ignoreVal < numEntries:
            raise ColorTableException(
                f"ignoreVal {ignoreVal} is outside the table of {numEntries} entries")
        table[:, int(ignoreVal)] = 0
    return table


_COLOR_COLUMNS = ((gdal.GFU_Red, "Red"), (gdal.GFU_Green, "Green"), (gdal.GFU_Blue, "Blue"),
                  (gdal.GFU_Alpha, "Alpha"))


def _tableFromBand(gdalBand):
    rat = gdalBand.GetDefaultRAT()
    where = f"band {gdalBand.GetBand()} of {gdalBand.GetDataset().GetDescription()!r}"
    if rat is None or rat.GetRowCount() == 0:
        raise ColorTableMissingException(f"{where} has no raster attribute table rows")
    table = numpy.empty((4, rat.GetRowCount()), dtype=numpy.uint8)
    for i, (usage, name) in enumerate(_COLOR_COLUMNS):
        idx = rat.GetColOfUsage(usage)
        if idx < 0:
            raise ColorTableMissingException(
                f"{where} has no {name} column in its raster attribute table")
        table[i] = numpy.clip(readRatValues(rat, idx), 0, 255)
    return table


def getTable(imgFile, bandNumber=1):
    """The colour table stored in a band's RAT, as a uint8 (4, n) array."""
    return withBand(imgFile, bandNumber, False, _tableFromBand)


def _checkedTable(colorTable):
    table = numpy.asarray(colorTable)
    if table.ndim != 2 or table.shape[0] != 4 or table.shape[1] == 0:
        raise rioserrors.ArrayShapeError(
            "a colour table must have shape (4, n) with rows red, green, blue, alpha; "
            f"got shape {table.shape}")
    if table.min() < 0 or table.max() > 255:
        raise ColorTableException(
            f"colour table values must lie in 0..255; got {table.min()}..{table.max()}")
    return table


def _setTableApi(gdalBand, table):
    ct = gdal.ColorTable()
    for i, entry in enumerate(table.T.tolist()):
        ct.SetColorEntry(i, tuple(int(v) for v in entry))
    gdalBand.SetColorTable(ct)


def _setTableRat(gdalBand, table):
    rat = ratForUpdate(gdalBand)
    indexes = []
    for usage, name in _COLOR_COLUMNS:
        idx = rat.GetColOfUsage(usage)
        if idx < 0:
            idx = findOrCreateNamedColumn(rat, name, gdal.GFT_Integer, usage)
        indexes.append(idx)
    setRatRowCount(rat, table.shape[1])
    for row, idx in enumerate(indexes):
        values = prepareValuesForRat(table[row].astype(numpy.int32), rat.GetTypeOfCol(idx),
                                        rat.GetUsageOfCol(idx), rat.GetNameOfCol(idx))
        rat.WriteArray(values, idx)
    setRatOnBand(gdalBand, rat)


def setTable(imgFile, colorTable, bandNumber=1, colorTableAPI=False):
    """Store a (4, n) colour table in a band's RAT, or with GDAL's colour-table API."""
    table = _checkedTable(colorTable)
    setter = _setTableApi if colorTableAPI else _setTableRat
    withBand(imgFile, bandNumber, True, lambda band: setter(band, table))


loadBuiltinRamps()
