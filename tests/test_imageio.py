"""Tests of sharedapplier.imageio (spec 9.5)."""
import pytest

from sharedapplier import const, imageio
from sharedapplier.imageio import Coord, pix2wld, wld2pix

GT = (500000.0, 10.0, 0.0, 7000000.0, 0.0, -10.0)
ROTATED = (1000.0, 2.0, 0.5, 3000.0, 0.25, -3.0)


def test_coord():
    c = Coord(1.5, -2)
    assert (c.x, c.y) == (1.5, -2)
    assert c == Coord(1.5, -2) and c != Coord(1.5, 2)
    assert repr(c) == "Coord(1.5, -2)"


def test_pix2wld_north_up():
    c = pix2wld(GT, 3, 4)
    assert (c.x, c.y) == (500030.0, 6999960.0)


@pytest.mark.parametrize("col,row", [(0, 0), (2.5, 7.25), (-3, 10)])
def test_pix2wld_matches_formula_with_rotation(col, row):
    c = pix2wld(ROTATED, col, row)
    g = ROTATED
    assert c.x == pytest.approx(g[0] + col * g[1] + row * g[2])
    assert c.y == pytest.approx(g[3] + col * g[4] + row * g[5])


def test_wld2pix_north_up():
    c = wld2pix(GT, 500025.0, 6999985.0)
    assert (c.x, c.y) == pytest.approx((2.5, 1.5))


@pytest.mark.parametrize("col,row", [(0, 0), (2.5, 7.25), (-3, 10), (1000.125, 0.5)])
def test_wld2pix_inverts_pix2wld(col, row):
    world = pix2wld(ROTATED, col, row)
    back = wld2pix(list(ROTATED), world.x, world.y)
    assert (back.x, back.y) == pytest.approx((col, row))


def test_wld2pix_singular_transform():
    with pytest.raises(ValueError, match="cannot be inverted"):
        wld2pix((0, 0, 0, 0, 0, 0), 1, 1)


def test_footprint_constants_reexported():
    assert imageio.INTERSECTION == const.INTERSECTION == 0
    assert imageio.UNION == const.UNION == 1
    assert imageio.BOUNDS_FROM_REFERENCE == const.BOUNDS_FROM_REFERENCE == 2
