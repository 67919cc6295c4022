"""Read-only summaries of raster and vector files (RIOS's ``fileinfo`` names).

Every class here opens its file, copies what it needs into plain Python attributes and
closes the file again before returning, so no GDAL handle outlives the constructor. Open
failures become our own errors (``FileOpenError`` / ``VectorLayerError``) whether or not
GDAL exceptions are switched on, with GDAL's reason in the message.
"""
import ast
import math

import numpy
from osgeo import gdal, ogr, osr

from . import rioserrors

geometryTypeStringDict = {
    ogr.wkbPoint: "Point",
    ogr.wkbLineString: "Line",
    ogr.wkbPolygon: "Polygon",
}

_IMAGEINFO_STR_ORDER = (
    "nrows", "ncols", "rasterCount", "xMin", "xMax", "yMin", "yMax", "xRes", "yRes",
    "lnames", "layerType", "dataType", "dataTypeName", "nodataval", "transform", "projection",
)

_LAYER_STATS_KEYS = (
    ("mean", "STATISTICS_MEAN"),
    ("stddev", "STATISTICS_STDDEV"),
    ("max", "STATISTICS_MAXIMUM"),
    ("min", "STATISTICS_MINIMUM"),
    ("median", "STATISTICS_MEDIAN"),
    ("mode", "STATISTICS_MODE"),
    ("skipfactorx", "STATISTICS_SKIPFACTORX"),
    ("skipfactory", "STATISTICS_SKIPFACTORY"),
    ("histoMin", "STATISTICS_HISTOMIN"),
    ("histoMax", "STATISTICS_HISTOMAX"),
    ("histoNumBins", "STATISTICS_HISTONUMBINS"),
)


# ----------------------------------------------------------------------------------------
# Helpers shared with pixelgrid (PEP 8 names: not part of the RIOS interface)
# ----------------------------------------------------------------------------------------

def openDataset(filename, kind="raster"):
    """Open ``filename`` read-only as a raster or vector; raise our error on failure.

    Works the same with GDAL exceptions on or off, and keeps GDAL's own error printing
    quiet because the reason is carried in the exception we raise.
    """
    name = str(filename)
    flags = gdal.OF_RASTER if kind == "raster" else gdal.OF_VECTOR
    error_class = rioserrors.FileOpenError if kind == "raster" else rioserrors.VectorLayerError
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        gdal.ErrorReset()
        ds = gdal.OpenEx(name, flags | gdal.OF_VERBOSE_ERROR)
        reason = gdal.GetLastErrorMsg()
    except RuntimeError as exc:
        raise error_class(f"Unable to open '{name}' as a {kind}: {exc}") from exc
    finally:
        gdal.PopErrorHandler()
    if ds is None:
        reason = reason or f"not recognised as a {kind} by GDAL"
        raise error_class(f"Unable to open '{name}' as a {kind}: {reason}")
    return ds


def spatialRefFromWkt(wkt):
    """A SpatialReference built from WKT, in traditional GIS (x=east, y=north) axis order.

    Raises ``ParameterError`` when the WKT is empty or cannot be parsed.
    """
    if not wkt:
        raise rioserrors.ParameterError("No projection given (empty WKT)")
    sr = osr.SpatialReference()
    try:
        err = sr.ImportFromWkt(wkt)
    except RuntimeError as exc:
        raise rioserrors.ParameterError(f"Cannot parse projection WKT: {exc}") from exc
    if err != 0:
        raise rioserrors.ParameterError(f"Cannot parse projection WKT (OGR error {err})")
    preventGdal3axisSwap(sr)
    return sr


def spatialRefFromEpsg(epsg):
    """A SpatialReference for an EPSG code (int or digit string), traditional axis order."""
    sr = osr.SpatialReference()
    try:
        err = sr.ImportFromEPSG(int(epsg))
    except RuntimeError as exc:
        raise rioserrors.ParameterError(f"Unknown EPSG code {epsg}: {exc}") from exc
    if err != 0:
        raise rioserrors.ParameterError(f"Unknown EPSG code {epsg} (OGR error {err})")
    preventGdal3axisSwap(sr)
    return sr


def transformPoints(points, src_sr, dst_sr):
    """Transform an (n, 2) array of x/y points; points that fail come back as inf."""
    pts = numpy.asarray(points, dtype=numpy.float64).reshape(-1, 2)
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        ct = _coordinateTransformation(src_sr, dst_sr)
        try:
            out = ct.TransformPoints(pts.tolist())
        except RuntimeError:
            out = [_transformOne(ct, x, y) for x, y in pts.tolist()]
    finally:
        gdal.PopErrorHandler()
    return numpy.array([p[:2] for p in out], dtype=numpy.float64).reshape(-1, 2)


def _coordinateTransformation(src_sr, dst_sr):
    """An OSR transformation between two SRSs; ParameterError when none exists."""
    gdal.ErrorReset()
    try:
        ct = osr.CoordinateTransformation(src_sr, dst_sr)
    except RuntimeError as exc:
        raise rioserrors.ParameterError(f"Cannot transform between projections: {exc}") from exc
    if ct is None or getattr(ct, "this", None) is None:
        raise rioserrors.ParameterError(
            f"Cannot transform between projections: {gdal.GetLastErrorMsg()}")
    return ct


def _transformOne(ct, x, y):
    """Transform a single point, giving inf when it cannot be transformed."""
    try:
        return ct.TransformPoint(x, y)
    except RuntimeError:
        return (math.inf, math.inf)


def preventGdal3axisSwap(sr):
    """Set traditional GIS axis order (x=east, y=north) on ``sr`` when GDAL supports it."""
    if hasattr(sr, "SetAxisMappingStrategy"):
        sr.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)


def _formatLines(pairs):
    """One 'name value' line per pair, the name padded to 20 characters."""
    return "\n".join(f"{name:<20}{value}" for name, value in pairs)


# ----------------------------------------------------------------------------------------
# Raster information
# ----------------------------------------------------------------------------------------

class ImageInfo:
    """Georeferencing and per-band facts of a raster file, read once.

    ``isVector`` (False) tells it from a :class:`VectorFileInfo` among an applier's inputs.
    """

    isVector = False

    def __init__(self, filename, omitPerBand=False):
        ds = openDataset(filename, "raster")
        try:
            self._readDataset(ds, omitPerBand)
        finally:
            ds = None

    def _readDataset(self, ds, omit_per_band):
        gt = ds.GetGeoTransform()
        self.nrows = ds.RasterYSize
        self.ncols = ds.RasterXSize
        self.rasterCount = ds.RasterCount
        self.transform = gt
        self.xMin = gt[0]
        self.xRes = gt[1]
        self.yMax = gt[3]
        self.yRes = abs(gt[5])
        self.xMax = self.xMin + self.ncols * self.xRes
        self.yMin = self.yMax - self.nrows * self.yRes
        self.projection = ds.GetProjection()
        self.lnames = []
        self.nodataval = []
        if not omit_per_band:
            for i in range(self.rasterCount):
                band = ds.GetRasterBand(i + 1)
                self.lnames.append(band.GetDescription())
                self.nodataval.append(_bandNodata(band))
        self._readFirstBand(ds)

    def _readFirstBand(self, ds):
        self.layerType = None
        self.dataType = None
        self.dataTypeName = None
        if self.rasterCount > 0:
            band = ds.GetRasterBand(1)
            self.layerType = band.GetMetadataItem("LAYER_TYPE")
            self.dataType = band.DataType
            self.dataTypeName = gdal.GetDataTypeName(band.DataType)

    def __str__(self):
        return _formatLines((name, getattr(self, name)) for name in _IMAGEINFO_STR_ORDER)

    def layerNumberFromName(self, name):
        """The 1-based band number whose description is ``name``, or 0 if there is none."""
        if name in self.lnames:
            return self.lnames.index(name) + 1
        return 0

    def layerNameFromNumber(self, layerNumber):
        """The description of 1-based band ``layerNumber``."""
        if not 1 <= layerNumber <= len(self.lnames):
            raise rioserrors.GDALLayerNumberError(
                f"Layer number {layerNumber} is out of range: the image has "
                f"{len(self.lnames)} layer names (layers are numbered from 1)")
        return self.lnames[layerNumber - 1]

    def getCorners(self, outWKT=None, outEPSG=None, outPROJ4=None):
        """(ul_x, ul_y, ur_x, ur_y, lr_x, lr_y, ll_x, ll_y), optionally in another SRS."""
        corners = numpy.array([
            (self.xMin, self.yMax), (self.xMax, self.yMax),
            (self.xMax, self.yMin), (self.xMin, self.yMin)], dtype=numpy.float64)
        target_sr = _targetSpatialRef(outWKT, outEPSG, outPROJ4)
        if target_sr is not None:
            corners = transformPoints(corners, spatialRefFromWkt(self.projection), target_sr)
        return tuple(float(v) for v in corners.ravel())


def _bandNodata(band):
    """The band's no-data value as a float, or None when it has none."""
    if band.DataType == getattr(gdal, "GDT_Int64", -1):
        value = band.GetNoDataValueAsInt64()
    elif band.DataType == getattr(gdal, "GDT_UInt64", -1):
        value = band.GetNoDataValueAsUInt64()
    else:
        value = band.GetNoDataValue()
    return None if value is None else float(value)


def _targetSpatialRef(out_wkt, out_epsg, out_proj4):
    """The SRS named by the first of WKT, EPSG code or PROJ string given (None if none)."""
    if out_wkt is not None:
        return spatialRefFromWkt(out_wkt)
    if out_epsg is not None:
        return spatialRefFromEpsg(out_epsg)
    if out_proj4 is not None:
        sr = osr.SpatialReference()
        try:
            err = sr.ImportFromProj4(out_proj4)
        except RuntimeError as exc:
            raise rioserrors.ParameterError(f"Cannot parse PROJ string: {exc}") from exc
        if err != 0:
            raise rioserrors.ParameterError(f"Cannot parse PROJ string {out_proj4!r}")
        preventGdal3axisSwap(sr)
        return sr
    return None


class ImageLayerStats:
    """Statistics stored on one band (STATISTICS_* metadata and histogram)."""

    def __init__(self, band):
        metadata = band.GetMetadata() or {}
        for attr, key in _LAYER_STATS_KEYS:
            setattr(self, attr, _parseLiteral(metadata.get(key)))
        self.histoCounts = _ratPixelCounts(band)
        if self.histoCounts is None:
            self.histoCounts = _metadataHistogram(metadata.get("STATISTICS_HISTOBINVALUES"))

    def __str__(self):
        return (f"Mean: {self.mean}, Stddev: {self.stddev}, Min: {self.min}, "
                f"Max: {self.max}, Median: {self.median}, Mode: {self.mode}")


def _parseLiteral(text):
    """A metadata string as a Python number where possible (None stays None)."""
    if text is None:
        return None
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _metadataHistogram(text):
    """The '|'-separated histogram counts from metadata, as a list (None if absent)."""
    if text is None:
        return None
    return [_parseLiteral(piece) for piece in text.split("|") if piece.strip()]


def _ratPixelCounts(band):
    """The PixelCount column of the band's RAT as an array, or None when there is none."""
    rat = band.GetDefaultRAT()
    if rat is None:
        return None
    col = _findColumnByUsage(rat, gdal.GFU_PixelCount)
    if col < 0 or rat.GetRowCount() == 0:
        return None
    return rat.ReadAsArray(col)


def _findColumnByUsage(rat, usage):
    """Index of the first RAT column with the given usage, or -1."""
    for i in range(rat.GetColumnCount()):
        if rat.GetUsageOfCol(i) == usage:
            return i
    return -1


class ImageFileStats:
    """ImageLayerStats for every band of a file; indexable from 0, one entry per band."""

    def __init__(self, filename):
        ds = openDataset(filename, "raster")
        try:
            self.statsList = [ImageLayerStats(ds.GetRasterBand(i + 1))
                              for i in range(ds.RasterCount)]
        finally:
            ds = None

    def __getitem__(self, i):
        return self.statsList[i]

    def __len__(self):
        return len(self.statsList)

    def __str__(self):
        return "\n".join(f"Layer {i + 1}: {s}" for i, s in enumerate(self.statsList))


# ----------------------------------------------------------------------------------------
# Vector information
# ----------------------------------------------------------------------------------------

class VectorFileInfo:
    """A VectorLayerInfo per layer of a vector file; indexable from 0.

    ``isVector`` (True) tells it from an :class:`ImageInfo` among an applier's inputs, which
    are rasterised before they are read.
    """

    isVector = True

    def __init__(self, filename):
        ds = openDataset(filename, "vector")
        try:
            self.layerCount = ds.GetLayerCount()
            self._layers = [VectorLayerInfo(ds, i) for i in range(self.layerCount)]
        finally:
            ds = None

    def __getitem__(self, i):
        return self._layers[i]

    def __len__(self):
        return len(self._layers)

    def __str__(self):
        lines = []
        for i, layer in enumerate(self._layers):
            lines.append(f"Layer:{i}")
            lines.extend(f"  {name}: {value}" for name, value in vars(layer).items())
        return "\n".join(lines)


class VectorLayerInfo:
    """Name, extent, geometry type, fields and SRS of layer ``i`` of an open OGR dataset."""

    def __init__(self, ds, i):
        layer = ds.GetLayer(i)
        self.name = layer.GetName()
        self.featureCount = layer.GetFeatureCount()
        self.xMin, self.xMax, self.yMin, self.yMax = _layerExtent(layer)
        self.geomType = layer.GetGeomType()
        if self.geomType in geometryTypeStringDict:
            self.geomTypeStr = geometryTypeStringDict[self.geomType]
        self._readFields(layer.GetLayerDefn())
        self.spatialRef = _layerSpatialRef(layer)

    def _readFields(self, defn):
        fields = [defn.GetFieldDefn(k) for k in range(defn.GetFieldCount())]
        self.fieldCount = len(fields)
        self.fieldNames = [f.GetName() for f in fields]
        self.fieldTypes = [f.GetType() for f in fields]
        self.fieldTypeNames = [f.GetTypeName() for f in fields]


def _layerExtent(layer):
    """(xMin, xMax, yMin, yMax) of a layer, all None when OGR cannot give one."""
    try:
        extent = layer.GetExtent()
    except RuntimeError:
        extent = None
    if not extent:
        return (None, None, None, None)
    return tuple(extent)


def _layerSpatialRef(layer):
    """An independent copy of the layer's SRS in traditional axis order (None if none)."""
    sr = layer.GetSpatialRef()
    if sr is None:
        return None
    sr = sr.Clone()
    preventGdal3axisSwap(sr)
    return sr


# ----------------------------------------------------------------------------------------
# Raster attribute table statistics
# ----------------------------------------------------------------------------------------

class ColumnStats:
    """Statistics of one RAT column, weighted by the histogram (pixel count) by default.

    Attributes: count, mean, stddev (population), min, max, sum; median and mode are None.
    A string column gives an object whose attributes are all None.
    """

    def __init__(self, band, columnName, includeImageNull=False, histogramweighted=True):
        self.count = self.mean = self.stddev = None
        self.min = self.max = self.sum = None
        self.median = self.mode = None
        rat = band.GetDefaultRAT()
        col = _findColumnByName(rat, columnName)
        coltype = rat.GetTypeOfCol(col)
        if coltype == gdal.GFT_String:
            return
        values = rat.ReadAsArray(col).astype(numpy.float64)
        weights = _rowWeights(rat, histogramweighted)
        if not includeImageNull:
            _zeroNullRow(weights, band.GetNoDataValue())
        self._compute(values, weights, coltype == gdal.GFT_Integer)

    def _compute(self, values, weights, int_column):
        total = weights.sum()
        self.count = _asNumber(total, True)
        self.sum = _asNumber((values * weights).sum(), int_column)
        used = weights != 0
        if used.any():
            self.min = _asNumber(values[used].min(), int_column)
            self.max = _asNumber(values[used].max(), int_column)
        if total != 0:
            mean = (values * weights).sum() / total
            self.mean = float(mean)
            self.stddev = float(numpy.sqrt((weights * (values - mean) ** 2).sum() / total))


def _findColumnByName(rat, columnName):
    """Index of the RAT column named ``columnName``; AttributeTableColumnError if none."""
    col = -1 if rat is None else _columnIndexOrMinusOne(rat, columnName)
    if col >= 0:
        return col
    raise rioserrors.AttributeTableColumnError(
        f"Raster attribute table has no column named '{columnName}'")


def _rowWeights(rat, histogramweighted):
    """Per-row weights: the pixel-count column if wanted and present, else all ones."""
    nrows = rat.GetRowCount()
    if histogramweighted:
        col = _findColumnByUsage(rat, gdal.GFU_PixelCount)
        if col < 0:
            col = _columnIndexOrMinusOne(rat, "Histogram")
        if col >= 0:
            return rat.ReadAsArray(col).astype(numpy.float64)
    return numpy.ones(nrows, dtype=numpy.float64)


def _columnIndexOrMinusOne(rat, name):
    """Index of the first RAT column called ``name``, or -1."""
    for i in range(rat.GetColumnCount()):
        if rat.GetNameOfCol(i) == name:
            return i
    return -1


def _zeroNullRow(weights, nullValue):
    """Give the row whose index equals the image null a weight of zero."""
    if nullValue is None or not float(nullValue).is_integer():
        return
    row = int(nullValue)
    if 0 <= row < len(weights):
        weights[row] = 0


def _asNumber(value, want_int):
    """A numpy scalar as a Python int when wanted and whole, else as a float."""
    value = float(value)
    return int(value) if want_int and value.is_integer() else value


class RatStats:
    """A ColumnStats attribute for each numeric RAT column (or each in ``columnlist``)."""

    def __init__(self, filename, columnlist=None, layernum=1, includeImageNull=False,
                 histogramweighted=True):
        ds = openDataset(filename, "raster")
        try:
            band = _getBand(ds, layernum, filename)
            rat = band.GetDefaultRAT()
            names = columnlist if columnlist is not None else _allColumnNames(rat)
            for name in names:
                col = _findColumnByName(rat, name)
                if rat.GetTypeOfCol(col) != gdal.GFT_String:
                    setattr(self, name, ColumnStats(band, name, includeImageNull,
                                                    histogramweighted))
        finally:
            band = rat = None
            ds = None


def _getBand(ds, layernum, filename):
    """Band ``layernum`` (1-based) of ``ds``; GDALLayerNumberError when out of range."""
    if not 1 <= layernum <= ds.RasterCount:
        raise rioserrors.GDALLayerNumberError(
            f"Layer {layernum} does not exist in '{filename}' "
            f"(it has {ds.RasterCount} layers, numbered from 1)")
    return ds.GetRasterBand(layernum)


def _allColumnNames(rat):
    """Names of every RAT column ([] when the band has no RAT)."""
    if rat is None:
        return []
    return [rat.GetNameOfCol(i) for i in range(rat.GetColumnCount())]
