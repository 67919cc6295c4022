"""Tests of sharedapplier.pixelgrid against independent GDAL/OSR and numpy computations."""
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pytest
from conftest import write_raster
from osgeo import gdal, osr

from sharedapplier import rioserrors
from sharedapplier.const import BOUNDS_FROM_REFERENCE, INTERSECTION, UNION
from sharedapplier.pixelgrid import (
    PixelGridDefn,
    findCommonRegion,
    fixProjectionWkt,
    pixelGridFromFile,
    removeSurrounding,
)


def epsg_wkt(code):
    sr = osr.SpatialReference()
    sr.ImportFromEPSG(code)
    return sr.ExportToWkt()


UTM55 = epsg_wkt(32755)
UTM56 = epsg_wkt(32756)
LATLONG = epsg_wkt(4326)


def grid(xMin, yMax, ncols, nrows, res=10.0, projection=UTM55):
    return PixelGridDefn(projection=projection, xMin=xMin, xMax=xMin + ncols * res,
                         yMin=yMax - nrows * res, yMax=yMax, xRes=res, yRes=res)


def bounds(g):
    return (g.xMin, g.xMax, g.yMin, g.yMax)


def round_half_up(x):
    return float(Decimal(x).to_integral_value(rounding=ROUND_HALF_UP))


def expected_reprojection(src, target, snap=True):
    """Bounding box of 101 points per edge, transformed with OSR directly, then snapped."""
    s = osr.SpatialReference()
    s.ImportFromWkt(src.projection)
    t = osr.SpatialReference()
    t.ImportFromWkt(target.projection)
    for sr in (s, t):
        sr.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    corners = [(src.xMin, src.yMax), (src.xMax, src.yMax), (src.xMax, src.yMin),
               (src.xMin, src.yMin), (src.xMin, src.yMax)]
    pts = []
    for (x1, y1), (x2, y2) in zip(corners[:-1], corners[1:], strict=True):
        for k in range(101):
            f = k / 100
            pts.append((x1 + f * (x2 - x1), y1 + f * (y2 - y1)))
    out = np.array(osr.CoordinateTransformation(s, t).TransformPoints(pts))[:, :2]
    xMin, xMax = out[:, 0].min(), out[:, 0].max()
    yMin, yMax = out[:, 1].min(), out[:, 1].max()
    if not snap:
        return (xMin, xMax, yMin, yMax)

    def snapx(v):
        return target.xMin + round_half_up((v - target.xMin) / target.xRes) * target.xRes

    def snapy(v):
        return target.yMin + round_half_up((v - target.yMin) / target.yRes) * target.yRes

    return (snapx(xMin), snapx(xMax), snapy(yMin), snapy(yMax))


# ---- constructor, geotransform, dimensions, __str__ ---------------------------------------

def test_constructor_from_geotransform_overrides_explicit_extents():
    gt = (500000.0, 10.0, 0.0, 7000000.0, 0.0, -20.0)
    g = PixelGridDefn(geotransform=gt, nrows=30, ncols=40, projection=UTM55,
                      xMin=1.0, xMax=2.0, yMin=3.0, yMax=4.0)
    assert bounds(g) == (500000.0, 500400.0, 6999400.0, 7000000.0)
    assert (g.xRes, g.yRes) == (10.0, 20.0)
    assert g.projection is UTM55
    assert g.getDimensions() == (30, 40)
    assert g.makeGeoTransform() == gt


def test_geotransform_form_needs_all_three():
    gt = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
    g = PixelGridDefn(geotransform=gt, nrows=5, xMin=7, xMax=9, yMin=1, yMax=2, xRes=1, yRes=1)
    assert bounds(g) == (7, 9, 1, 2)


def test_explicit_values_stored_exactly_and_reassignable():
    g = PixelGridDefn(xMin=0, xMax=100, yMin=-50, yMax=50, xRes=-10, yRes=10)
    assert g.xRes == -10 and isinstance(g.xMin, int) and g.projection is None
    g.projection = UTM56
    assert g.projection == UTM56


def test_makegeotransform_zeros_are_floats():
    gt = PixelGridDefn(xMin=0, xMax=10, yMin=0, yMax=10, xRes=1, yRes=1).makeGeoTransform()
    assert gt == (0, 1, 0.0, 10, 0.0, -1)
    assert isinstance(gt[2], float) and isinstance(gt[4], float)


def test_getdimensions_returns_ints_rounded_half_away():
    g = PixelGridDefn(xMin=0.0, xMax=25.0, yMin=0.0, yMax=15.0, xRes=10.0, yRes=10.0)
    nrows, ncols = g.getDimensions()
    assert (nrows, ncols) == (2, 3)
    assert type(nrows) is int and type(ncols) is int


def test_str_int_versus_float():
    gi = PixelGridDefn(xMin=100, xMax=200, yMin=0, yMax=50, xRes=10, yRes=10)
    gf = PixelGridDefn(xMin=100.0, xMax=200.0, yMin=0.0, yMax=50.0, xRes=10.0, yRes=10.0)
    assert str(gi) == "xMin:100,xMax:200,yMin:0,yMax:50,xRes:10,yRes:10"
    assert str(gf) == "xMin:100.0,xMax:200.0,yMin:0.0,yMax:50.0,xRes:10.0,yRes:10.0"


# ---- static helpers ------------------------------------------------------------------------

@pytest.mark.parametrize("x, expected", [
    (0.5, 1.0), (-0.5, -1.0), (1.5, 2.0), (2.5, 3.0), (-2.5, -3.0), (2.4, 2.0),
    (-2.6, -3.0), (0.0, 0.0), (7.0, 7.0),
    # just below one half in binary: must not round up (floor(x + 0.5) would give 1)
    (0.49999999999999994, 0.0),
    (2.4999999999999996, 2.0),
])
def test_roundaway(x, expected):
    result = PixelGridDefn.roundAway(x)
    assert result == expected and isinstance(result, float)


def test_roundaway_uses_exact_binary_value():
    # 0.1 * 25 == 2.5 exactly in binary; 0.7 / 0.2 is 3.4999999999999996
    assert PixelGridDefn.roundAway(0.1 * 25) == 3.0
    assert 0.7 / 0.2 < 3.5 and PixelGridDefn.roundAway(0.7 / 0.2) == 3.0
    assert PixelGridDefn.roundAway(-(0.7 / 0.2)) == -3.0
    assert PixelGridDefn.roundAway(2.5000000000000004) == 3.0


def test_getnumpix():
    assert PixelGridDefn.getNumPix(10.0, 0.0, 4.0) == 3  # 2.5 rounds away
    assert PixelGridDefn.getNumPix(10.0, 0.0, 5.0) == 2
    n = PixelGridDefn.getNumPix(700000.3, 500000.0, 30.0)
    assert n == 6667 and type(n) is int


@pytest.mark.parametrize("val, onGrid, res, expected", [
    (12.0, 0.0, 10.0, 10.0), (15.0, 0.0, 10.0, 20.0), (-15.0, 0.0, 10.0, -20.0),
    (12.0, 5.0, 10.0, 15.0), (9.99, 5.0, 10.0, 5.0), (20.0, 0.0, 10.0, 20.0),
])
def test_snaptogrid(val, onGrid, res, expected):
    assert PixelGridDefn.snapToGrid(val, onGrid, res) == expected


def test_densifyinterval_includes_both_ends():
    pts = PixelGridDefn.densifyInterval(1.0, 2.0, 3.0, 12.0, 101)
    assert pts.shape == (101, 2)
    assert tuple(pts[0]) == (1.0, 2.0) and tuple(pts[-1]) == (3.0, 12.0)
    assert np.allclose(np.diff(pts[:, 1]), 0.1)


# ---- comparisons ---------------------------------------------------------------------------

def test_equalpixsize_has_no_tolerance():
    a = grid(0, 100, 10, 10)
    b = grid(0, 100, 10, 10, res=10.0 + 1e-12)
    assert a.equalPixSize(grid(50, 500, 3, 3))
    assert not a.equalPixSize(b)


def test_equalprojection_uses_osr_issame():
    sr = osr.SpatialReference()
    sr.ImportFromEPSG(32755)
    wkt2 = sr.ExportToWkt(["FORMAT=WKT2_2018"])
    assert wkt2 != UTM55
    assert grid(0, 0, 1, 1).equalProjection(grid(0, 0, 1, 1, projection=wkt2))
    assert not grid(0, 0, 1, 1).equalProjection(grid(0, 0, 1, 1, projection=UTM56))


def test_equalprojection_none_is_empty():
    assert grid(0, 0, 1, 1, projection=None).equalProjection(grid(0, 0, 1, 1, projection=""))
    assert not grid(0, 0, 1, 1, projection=None).equalProjection(grid(0, 0, 1, 1))


def test_iscomparable():
    a = grid(0, 100, 10, 10)
    assert a.isComparable(grid(1000, 5000, 3, 3))
    assert not a.isComparable(grid(0, 100, 10, 10, res=20.0))
    assert not a.isComparable(grid(0, 100, 10, 10, projection=UTM56))


def test_alignedwith_whole_pixel_offsets():
    a = grid(500000.0, 7000000.0, 10, 10)
    assert a.alignedWith(grid(500030.0, 6999950.0, 4, 4))
    assert a.alignedWith(grid(499900.0, 7000200.0, 40, 40))
    assert not a.alignedWith(grid(500005.0, 7000000.0, 10, 10))  # half a pixel in x
    assert not a.alignedWith(grid(500000.0, 7000005.0, 10, 10))  # half a pixel in y


def test_alignedwith_tolerance_is_0001_res_over_largest_dimension():
    # 10 m pixels, largest dimension 10 px -> tolerance 0.001 * 10 / 10 = 0.001 m
    a = grid(0.0, 1000.0, 10, 10)
    assert a.alignedWith(grid(0.0005, 1000.0, 10, 10))
    assert not a.alignedWith(grid(0.002, 1000.0, 10, 10))
    # a 1000-pixel grid shrinks the tolerance to 1e-5 m
    big = grid(0.0, 1000.0, 1000, 10)
    assert not big.alignedWith(grid(0.0005, 1000.0, 10, 10))
    assert big.alignedWith(grid(0.000005, 1000.0, 10, 10))


def test_alignedwith_requires_comparable():
    a = grid(0.0, 1000.0, 10, 10)
    assert not a.alignedWith(grid(0.0, 1000.0, 10, 10, projection=UTM56))
    assert not a.alignedWith(grid(0.0, 1000.0, 5, 5, res=20.0))


def test_surrounds_is_inclusive():
    a = grid(0.0, 1000.0, 10, 10)
    assert a.surrounds(grid(0.0, 1000.0, 10, 10))
    assert a.surrounds(grid(20.0, 980.0, 3, 3))
    assert not a.surrounds(grid(-10.0, 1000.0, 3, 3))
    assert not a.surrounds(grid(20.0, 1010.0, 3, 3))


def test_equivalentprojection():
    a = grid(600000.0, 6000000.0, 100, 100, res=30.0)
    same = osr.SpatialReference()
    same.ImportFromEPSG(32755)
    strategy = same.GetAxisMappingStrategy()
    assert a.equivalentProjection(same, 0.5)
    assert same.GetAxisMappingStrategy() == strategy  # caller's object untouched
    assert not a.equivalentProjection(UTM56, 0.5)
    assert a.equivalentProjection(UTM55, 0.0)


# ---- intersection and union ----------------------------------------------------------------

def test_intersection_keeps_self_resolution_and_projection():
    a = grid(0.0, 1000.0, 50, 50)
    b = grid(200.0, 800.0, 50, 50)
    c = a.intersection(b)
    assert bounds(c) == (200.0, 500.0, 500.0, 800.0)
    assert (c.xRes, c.yRes) == (10.0, 10.0) and c.projection is a.projection


def test_union():
    a = grid(0.0, 1000.0, 50, 50)
    u = a.union(grid(200.0, 800.0, 50, 50))
    assert bounds(u) == (0.0, 700.0, 300.0, 1000.0)


def test_intersection_and_union_none_when_not_comparable():
    a = grid(0.0, 1000.0, 10, 10)
    b = grid(0.0, 1000.0, 10, 10, res=20.0)
    assert a.intersection(b) is None and a.union(b) is None


@pytest.mark.parametrize("other", [
    grid(1000.0, 1000.0, 10, 10),  # touches at x = 100 pixels away: xMin == xMax
    grid(100.0, 1000.0, 10, 10),   # touches the right edge
    grid(0.0, 900.0, 10, 10),      # touches the bottom edge
    grid(5000.0, 5000.0, 10, 10),  # far away
])
def test_intersection_without_overlap_raises(other):
    a = grid(0.0, 1000.0, 10, 10)
    with pytest.raises(rioserrors.IntersectionError, match="no area in common"):
        a.intersection(other)


# ---- reproject ------------------------------------------------------------------------------

def test_reproject_between_utm_zones_matches_independent_osr():
    src = grid(700000.0, 6020000.0, 200, 200, res=100.0, projection=UTM55)
    target = grid(100005.0, 6100005.0, 10, 10, res=30.0, projection=UTM56)
    r = src.reproject(target)
    assert bounds(r) == pytest.approx(expected_reprojection(src, target), abs=1e-6)
    assert (r.xRes, r.yRes) == (30.0, 30.0) and r.projection is target.projection
    for v in (r.xMin, r.xMax):
        assert abs((v - target.xMin) / 30.0 - round((v - target.xMin) / 30.0)) < 1e-9
    for v in (r.yMin, r.yMax):
        assert abs((v - target.yMin) / 30.0 - round((v - target.yMin) / 30.0)) < 1e-9


def test_reproject_without_snap_is_raw_bounding_box():
    src = grid(700000.0, 6020000.0, 200, 200, res=100.0, projection=UTM55)
    target = grid(100005.0, 6100005.0, 10, 10, res=30.0, projection=UTM56)
    r = src.reproject(target, snap=False)
    assert bounds(r) == pytest.approx(expected_reprojection(src, target, snap=False), abs=1e-6)


def test_reproject_latlong_onto_utm():
    src = grid(147.0, -35.0, 50, 50, res=0.01, projection=LATLONG)
    target = grid(500000.0, 6000000.0, 10, 10, res=25.0, projection=UTM55)
    r = src.reproject(target)
    assert bounds(r) == pytest.approx(expected_reprojection(src, target), abs=1e-6)
    assert 490000 < r.xMin < 500010 and 6126000 < r.yMax < 6128000  # ~147E, 35S


def test_reproject_snaps_each_bound_to_nearest_line():
    target = grid(0.0, 100.0, 10, 10, res=10.0)
    r = grid(14.0, 86.0, 5, 5, res=10.0).reproject(target)  # same projection
    # xMin 14 -> 10 (inwards by 4), xMax 64 -> 60, yMin 36 -> 40, yMax 86 -> 90
    assert bounds(r) == (10.0, 60.0, 40.0, 90.0)
    r = grid(15.0, 85.0, 5, 5, res=10.0).reproject(target)  # exactly half: away from origin
    assert bounds(r) == (20.0, 70.0, 40.0, 90.0)


# ---- findCommonRegion -----------------------------------------------------------------------

def test_bounds_from_reference_returns_reference():
    ref = grid(0.0, 1000.0, 10, 10)
    others = [grid(5000.0, 9000.0, 10, 10, projection=UTM56)]
    assert findCommonRegion(others, ref, BOUNDS_FROM_REFERENCE) is ref


def test_intersection_of_aligned_inputs_is_arithmetic():
    a = grid(500000.0, 7000000.0, 100, 80)
    b = grid(500300.0, 7000200.0, 100, 100)
    result = findCommonRegion([a, b], a, INTERSECTION)
    assert bounds(result) == (500300.0, 501000.0, 6999200.0, 7000000.0)
    assert result.projection is a.projection


def test_union_of_aligned_inputs_is_arithmetic():
    a = grid(500000.0, 7000000.0, 100, 80)
    b = grid(500300.0, 7000200.0, 100, 100)
    result = findCommonRegion([a, b], a, UNION)
    assert bounds(result) == (500000.0, 501300.0, 6999200.0, 7000200.0)


def test_reference_extent_is_not_part_of_the_combination():
    a = grid(500000.0, 7000000.0, 100, 100)
    b = grid(500100.0, 6999900.0, 100, 100)
    tinyref = grid(499000.0, 7005000.0, 2, 2)  # aligned, outside both inputs
    assert bounds(findCommonRegion([a, b], tinyref)) == (500100.0, 501000.0,
                                                         6999000.0, 6999900.0)


def test_non_aligned_input_is_snapped_onto_reference():
    ref = grid(0.0, 1000.0, 100, 100)
    shifted = grid(105.0, 895.0, 20, 20)  # half a pixel off in both directions
    result = findCommonRegion([ref, shifted], ref, INTERSECTION)
    # 105 -> 110, 305 -> 310, 695 -> 690 (snapped relative to ref.yMin=0), 895 -> 900
    assert bounds(result) == (110.0, 310.0, 700.0, 900.0)


def test_input_in_another_zone_is_reprojected_then_intersected():
    ref = grid(600000.0, 6100000.0, 2000, 2000, res=50.0, projection=UTM55)
    other = grid(150000.0, 6050000.0, 300, 300, res=100.0, projection=UTM56)
    result = findCommonRegion([ref, other], ref, INTERSECTION)
    ex = expected_reprojection(other, ref)
    expected = (max(ref.xMin, ex[0]), min(ref.xMax, ex[1]),
                max(ref.yMin, ex[2]), min(ref.yMax, ex[3]))
    assert bounds(result) == pytest.approx(expected, abs=1e-6)
    assert (result.xRes, result.yRes) == (50.0, 50.0)
    assert result.equalProjection(ref)


def test_union_across_zones():
    ref = grid(600000.0, 6100000.0, 200, 200, res=50.0, projection=UTM55)
    other = grid(150000.0, 6050000.0, 300, 300, res=100.0, projection=UTM56)
    result = findCommonRegion([ref, other], ref, UNION)
    ex = expected_reprojection(other, ref)
    expected = (min(ref.xMin, ex[0]), max(ref.xMax, ex[1]),
                min(ref.yMin, ex[2]), max(ref.yMax, ex[3]))
    assert bounds(result) == pytest.approx(expected, abs=1e-6)


def test_other_combine_value_gives_first_grid():
    ref = grid(0.0, 1000.0, 100, 100)
    first = grid(105.0, 895.0, 20, 20)
    result = findCommonRegion([first, grid(0.0, 1000.0, 5, 5)], ref, combine=99)
    assert bounds(result) == (110.0, 310.0, 700.0, 900.0)


def test_findcommonregion_no_overlap_raises():
    a = grid(0.0, 1000.0, 10, 10)
    b = grid(5000.0, 1000.0, 10, 10)
    with pytest.raises(rioserrors.IntersectionError, match="no area in common"):
        findCommonRegion([a, b], a, INTERSECTION)


def test_findcommonregion_empty_list():
    assert findCommonRegion([], grid(0.0, 10.0, 1, 1)) is None


def test_global_grid_is_dropped_before_intersection():
    small = grid(600000.0, 6100000.0, 100, 100, res=30.0, projection=UTM55)
    world = PixelGridDefn(projection=LATLONG, xMin=-180.0, xMax=180.0, yMin=-90.0, yMax=90.0,
                          xRes=0.1, yRes=0.1)
    result = findCommonRegion([world, small], small, INTERSECTION)
    assert bounds(result) == bounds(small)


# ---- removeSurrounding ----------------------------------------------------------------------

def test_removesurrounding_identical_grids_keeps_one_original():
    a = grid(600000.0, 6100000.0, 10, 10)
    b = grid(600000.0, 6100000.0, 10, 10)
    result = removeSurrounding([a, b])
    assert len(result) == 1 and result[0] is b


def test_removesurrounding_nested_keeps_innermost():
    outer = grid(600000.0, 6100000.0, 100, 100)
    middle = grid(600100.0, 6099900.0, 50, 50)
    inner = grid(600200.0, 6099800.0, 10, 10)
    assert removeSurrounding([outer, middle, inner]) == [inner]
    assert removeSurrounding([inner, outer, middle]) == [inner]


def test_removesurrounding_overlapping_kept_in_order():
    a = grid(600000.0, 6100000.0, 100, 100)
    b = grid(600500.0, 6099500.0, 100, 100)
    c = grid(599000.0, 6100500.0, 20, 20)
    assert removeSurrounding([a, b, c]) == [a, b, c]


def test_removesurrounding_compares_across_projections():
    utm = grid(600000.0, 6100000.0, 100, 100, projection=UTM55)
    latlong = PixelGridDefn(projection=LATLONG, xMin=140.0, xMax=155.0, yMin=-45.0,
                            yMax=-30.0, xRes=0.01, yRes=0.01)
    assert removeSurrounding([latlong, utm]) == [utm]
    assert removeSurrounding([utm]) == [utm]


def test_removesurrounding_without_projection_changes_nothing():
    a = grid(0.0, 1000.0, 100, 100, projection=None)
    b = grid(100.0, 900.0, 10, 10, projection=None)
    assert removeSurrounding([a, b]) == [a, b]
    assert bounds(findCommonRegion([a, b], a)) == bounds(b)


# ---- pixelGridFromFile and fixProjectionWkt ------------------------------------------------

def test_pixelgridfromfile(tmp_path):
    gt = (300000.0, 25.0, 0.0, 6200000.0, 0.0, -25.0)
    path = write_raster(tmp_path / "a.tif", np.zeros((7, 9), np.uint8), geotransform=gt)
    g = pixelGridFromFile(path)
    assert bounds(g) == (300000.0, 300225.0, 6199825.0, 6200000.0)
    assert g.getDimensions() == (7, 9)
    ds = gdal.Open(path)
    assert g.projection == ds.GetProjection()
    ds = None


def test_pixelgridfromfile_hfa(tmp_path):
    path = write_raster(tmp_path / "a.img", np.zeros((4, 5), np.int16), driver="HFA")
    g = pixelGridFromFile(path)
    assert g.getDimensions() == (4, 5) and g.xRes == 10.0


def test_pixelgridfromfile_missing(tmp_path):
    with pytest.raises(rioserrors.FileOpenError, match="nothere.tif"):
        pixelGridFromFile(tmp_path / "nothere.tif")


BOGUS = "TOWGS84[-16.237,3.51,9.939,1.4157e-06,2.1477e-06,1.3429e-07,1.91e-07]"


def gda94_wkt_with(towgs84):
    wkt = epsg_wkt(28355)
    return wkt.replace('SPHEROID["GRS 1980",6378137,298.257222101,AUTHORITY["EPSG","7019"]],',
                       'SPHEROID["GRS 1980",6378137,298.257222101,AUTHORITY["EPSG","7019"]],'
                       + towgs84 + ",")


def test_fixprojectionwkt_zeros_towgs84_for_gda94():
    wkt = gda94_wkt_with(BOGUS)
    assert BOGUS in wkt
    fixed = fixProjectionWkt(wkt)
    assert BOGUS not in fixed and "TOWGS84[0,0,0,0,0,0,0]" in fixed
    sr = osr.SpatialReference()
    assert sr.ImportFromWkt(fixed) == 0
    assert sr.GetTOWGS84() == (0.0,) * 7


def test_fixprojectionwkt_renames_icsm():
    wkt = gda94_wkt_with(BOGUS).replace('GEOGCS["GDA94"', 'GEOGCS["GDA94-ICSM"')
    fixed = fixProjectionWkt(wkt)
    assert "GDA94-ICSM" not in fixed and 'GEOGCS["GDA94"' in fixed


def test_fixprojectionwkt_leaves_others_alone():
    agd66 = epsg_wkt(4202)  # AGD66, has a real TOWGS84 clause in GDAL's WKT1
    assert fixProjectionWkt(agd66) == agd66
    assert fixProjectionWkt(UTM55) == UTM55
    assert fixProjectionWkt("") == "" and fixProjectionWkt(None) is None


@pytest.mark.parametrize("osr_exceptions", [False, True])
def test_reproject_tolerates_untransformable_points(osr_exceptions):
    world = PixelGridDefn(projection=LATLONG, xMin=-180.0, xMax=180.0, yMin=-90.0, yMax=90.0,
                          xRes=1.0, yRes=1.0)
    target = grid(500000.0, 6000000.0, 10, 10, res=1000.0, projection=UTM55)
    was_on = osr.GetUseExceptions()
    try:
        if osr_exceptions:
            osr.UseExceptions()
        else:
            osr.DontUseExceptions()
        r = world.reproject(target)
    finally:
        if was_on:
            osr.UseExceptions()
        else:
            osr.DontUseExceptions()
    assert all(np.isfinite(bounds(r))) and r.xMin < r.xMax and r.yMin < r.yMax


def test_reproject_between_missing_and_real_projection_fails_clearly():
    with pytest.raises(rioserrors.ParameterError, match="no projection"):
        grid(0.0, 100.0, 10, 10, projection=None).reproject(grid(0.0, 100.0, 10, 10))


def test_local_coordinate_system_grids_still_combine():
    local = osr.SpatialReference()
    local.SetLocalCS("site grid")
    wkt = local.ExportToWkt()
    a = grid(0.0, 1000.0, 100, 100, projection=wkt)
    b = grid(100.0, 900.0, 10, 10, projection=wkt)
    assert removeSurrounding([a, b]) == [a, b]  # cannot go to lat/long: nothing dropped
    assert bounds(findCommonRegion([a, b], a)) == bounds(b)
