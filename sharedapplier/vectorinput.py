"""Vector inputs: burn one layer into a temporary raster, then read it like any raster.

The layer is rasterised once per run, in the main process, on the working grid when the
vector shares its projection (so no resampling is needed), otherwise in the vector's own
projection at the working grid's pixel size there, and then warped onto the grid like
any other input (so polygon edges follow the reprojection).

``filtersql`` accepts two forms: a full statement starting with ``SELECT`` is run as
GDAL's SQL statement; anything else is a WHERE clause applied to the chosen layer.
"""
from __future__ import annotations

import numpy
from osgeo import gdal_array, osr

from . import rioserrors
from .fileinfo import ImageInfo
from .inputspec import prepareInputSpec
from .pixelgrid import PixelGridDefn

_CREATION_OPTIONS = ["TILED=YES", "COMPRESS=DEFLATE", "BIGTIFF=IF_SAFER"]


def _option(controls, option, name):
    return controls.getOptionForImagename(option, name)


def _chooseLayer(info, filename, layer):
    """The VectorLayerInfo for an index or a name, or a clear error."""
    names = [info[i].name for i in range(info.layerCount)]
    if isinstance(layer, str):
        if layer not in names:
            raise rioserrors.VectorLayerError(
                f"Vector '{filename}' has no layer named '{layer}' (layers: {names}); fix "
                "setVectorlayer")
        return info[names.index(layer)]
    if not 0 <= int(layer) < info.layerCount:
        raise rioserrors.VectorLayerError(
            f"Vector '{filename}' has {info.layerCount} layer(s); layer index {layer} given to "
            "setVectorlayer does not exist")
    return info[int(layer)]


def _sameProjection(layerInfo, workinggrid) -> bool:
    sr = layerInfo.spatialRef
    if sr is None:
        return True
    grid = osr.SpatialReference(wkt=workinggrid.projection)
    return bool(sr.IsSame(grid))


def _gridInVectorSrs(layerInfo, workinggrid) -> PixelGridDefn:
    """The working grid's area in the vector's projection, at an equivalent pixel size."""
    wkt = layerInfo.spatialRef.ExportToWkt()
    src = osr.SpatialReference(wkt=workinggrid.projection)
    dst = osr.SpatialReference(wkt=wkt)
    for sr in (src, dst):
        sr.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    tr = osr.CoordinateTransformation(src, dst)
    nrows, ncols = workinggrid.getDimensions()
    cx = workinggrid.xMin + workinggrid.xRes * (ncols // 2)
    cy = workinggrid.yMin + workinggrid.yRes * (nrows // 2)
    c = tr.TransformPoint(cx, cy)
    right = tr.TransformPoint(cx + workinggrid.xRes, cy)
    below = tr.TransformPoint(cx, cy - workinggrid.yRes)
    target = PixelGridDefn(xMin=0.0, xMax=1.0, yMin=0.0, yMax=1.0,
                           xRes=abs(right[0] - c[0]), yRes=abs(c[1] - below[1]), projection=wkt)
    return workinggrid.reproject(target, snap=False)


def rasterizeOptions(name, filename, info, workinggrid, controls) -> dict:
    """The gdal.RasterizeOptions keywords for one vector input."""
    layer = _chooseLayer(info, filename, _option(controls, "vectorlayer", name))
    if _sameProjection(layer, workinggrid):
        grid = workinggrid
    else:
        grid = _gridInVectorSrs(layer, workinggrid)
    dtype = numpy.dtype(_option(controls, "vectordatatype", name))
    nullval = _option(controls, "vectornull", name)
    options = dict(
        outputBounds=(grid.xMin, grid.yMin, grid.xMax, grid.yMax), xRes=grid.xRes,
        yRes=grid.yRes, outputType=gdal_array.NumericTypeCodeToGDALTypeCode(dtype),
        initValues=[nullval], noData=nullval, creationOptions=list(_CREATION_OPTIONS),
        allTouched=bool(_option(controls, "alltouched", name)))
    attribute = _option(controls, "burnattribute", name)
    if attribute is not None:
        if attribute not in layer.fieldNames:
            raise rioserrors.VectorAttributeError(
                f"Layer '{layer.name}' of '{filename}' has no attribute '{attribute}' "
                f"(attributes: {layer.fieldNames}); fix setBurnAttribute")
        options["attribute"] = attribute
    else:
        options["burnValues"] = [_option(controls, "burnvalue", name)]
    sql = _option(controls, "filtersql", name)
    if sql is not None and sql.lstrip().upper().startswith("SELECT"):
        options["SQLStatement"] = sql
    else:
        options["layers"] = [layer.name]
        if sql is not None:
            options["where"] = sql
    return options


def prepareVectorSpec(name, seqNum, filename, info, workinggrid, controls, tmpfileMgr,
                      rasterizer):
    """Rasterise a vector input (through the run's RasterizationMgr) and describe it."""
    options = rasterizeOptions(name, filename, info, workinggrid, controls)
    rasterfile = rasterizer.rasterize(filename, options, tmpfileMgr)
    spec = prepareInputSpec(name, seqNum, filename, ImageInfo(rasterfile), workinggrid,
                            controls, tmpfileMgr, sourcefile=rasterfile)
    spec.isVector = True
    return spec
