"""Safe numpy expressions over raster blocks: the engine of ``sharedapplier calc``.

An expression such as ``(b - a) / (b + a)`` is parsed with :mod:`ast` and checked node by
node against a small grammar; anything outside it is refused with an
:class:`ExpressionError` naming the construct and its column. The checked tree is then
evaluated by walking it here: nothing is ever passed to ``eval`` or ``compile``, so no
Python name, attribute or builtin outside the tables below can be reached.

The grammar:

* numbers (int, float, complex, True/False) and the constants ``nan``, ``inf``, ``pi``, ``e``;
* the input names, each a (bands, rows, cols) array, and band selection ``a[0]`` /
  ``a[-1]`` with an integer constant (a 2-D (rows, cols) array);
* the operators ``+ - * / // % ** & | ^ ~ << >>``, unary ``+``/``-``, the comparisons
  ``== != < <= > >=`` (chains like ``0 < a < 10`` mean both comparisons hold, element by
  element) and parentheses;
* calls, by bare name or as ``np.NAME`` / ``numpy.NAME``, of the element-wise functions in
  :data:`FUNCTIONS` (``where(cond, x, y)`` is the conditional) and of the band reductions in
  :data:`REDUCTIONS`, which must be given ``axis=0`` (the only keyword accepted anywhere).

``and``, ``or``, ``not`` and ``x if c else y`` are refused with a hint (``&``, ``|``, ``~``,
``where``): on arrays they do not do what they seem to.
"""
from __future__ import annotations

import ast
import keyword
import operator
from dataclasses import dataclass

import numpy
from osgeo import gdal, gdal_array

from . import rioserrors


class ExpressionError(rioserrors.ParameterError):
    """An expression is not in the allowed grammar, or cannot be computed on its inputs."""


# ---------------------------------------------------------------------------------------
# What an expression may use


def _ufuncs(*names):
    """name -> (numpy function, (min args, max args)), taking the arity from the ufunc."""
    return {name: (getattr(numpy, name), (getattr(numpy, name).nin,) * 2) for name in names}


FUNCTIONS: dict = {
    **_ufuncs("abs", "absolute", "fabs", "sqrt", "cbrt", "square", "reciprocal", "negative",
              "exp", "exp2", "expm1", "log", "log2", "log10", "log1p",
              "sin", "cos", "tan", "arcsin", "arccos", "arctan", "arctan2", "hypot",
              "sinh", "cosh", "tanh", "arcsinh", "arccosh", "arctanh",
              "degrees", "radians", "deg2rad", "rad2deg",
              "floor", "ceil", "trunc", "rint", "sign", "signbit", "copysign",
              "add", "subtract", "multiply", "divide", "true_divide", "floor_divide",
              "power", "float_power", "fmod", "mod", "remainder",
              "minimum", "maximum", "fmin", "fmax",
              "isnan", "isinf", "isfinite",
              "greater", "greater_equal", "less", "less_equal", "equal", "not_equal",
              "logical_and", "logical_or", "logical_xor", "logical_not",
              "bitwise_and", "bitwise_or", "bitwise_xor", "invert",
              "left_shift", "right_shift"),
    "where": (numpy.where, (3, 3)),
    "clip": (numpy.clip, (3, 3)),
    "round": (numpy.round, (1, 2)),
    "nan_to_num": (numpy.nan_to_num, (1, 1)),
    **{name: (getattr(numpy, name), (1, 1))
       for name in ("float32", "float64", "int8", "int16", "int32", "int64",
                    "uint8", "uint16", "uint32", "uint64")},
}
"""Element-wise functions: name -> (numpy function, (fewest, most) positional arguments)."""

REDUCTIONS: dict = {
    **{name: (getattr(numpy, name), 1)
       for name in ("sum", "nansum", "prod", "nanprod", "mean", "nanmean", "median",
                    "nanmedian", "std", "nanstd", "var", "nanvar", "min", "max", "amin",
                    "amax", "nanmin", "nanmax", "argmin", "argmax", "any", "all",
                    "count_nonzero")},
    "percentile": (numpy.percentile, 2),
    "nanpercentile": (numpy.nanpercentile, 2),
}
"""Reductions across bands: name -> (numpy function, positional arguments); need axis=0."""

CONSTANTS: dict = {"nan": numpy.nan, "inf": numpy.inf, "pi": numpy.pi, "e": numpy.e}
MODULE_NAMES = ("np", "numpy")
RESERVED_NAMES = frozenset(FUNCTIONS) | frozenset(REDUCTIONS) | frozenset(CONSTANTS) \
    | frozenset(MODULE_NAMES)

BINARY_OPERATORS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow, ast.BitAnd: operator.and_, ast.BitOr: operator.or_,
    ast.BitXor: operator.xor, ast.LShift: operator.lshift, ast.RShift: operator.rshift,
}
UNARY_OPERATORS = {ast.UAdd: operator.pos, ast.USub: operator.neg, ast.Invert: operator.invert}
COMPARISONS = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
}
NUMBER_TYPES = (int, float, complex)  # bool is an int

# Arithmetic never wraps round or overflows: where these would compute in an integer type,
# they compute in float64 instead (as OTB's BandMath and rio calc do), so ``(b - a) /
# (b + a)`` on UInt16 inputs is NDVI, the same as numpy on float64 copies of the inputs.
# With a floating operand numpy's own result type stands (``float32(b) - a`` is float32).
# Bitwise operators, comparisons, selections and casts keep integer types.
EXACT_BINARY = frozenset({ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod,
                          ast.Pow})
EXACT_UNARY = frozenset({ast.USub})
TYPE_KEEPING_FUNCTIONS = frozenset({
    "bitwise_and", "bitwise_or", "bitwise_xor", "invert", "left_shift", "right_shift",
    "logical_and", "logical_or", "logical_xor", "logical_not", "greater", "greater_equal",
    "less", "less_equal", "equal", "not_equal", "isnan", "isinf", "isfinite", "signbit",
    "where", "clip", "minimum", "maximum", "fmin", "fmax", "sign", "round", "nan_to_num",
    "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
    "uint64", "min", "max", "amin", "amax", "nanmin", "nanmax", "argmin", "argmax", "any",
    "all", "count_nonzero", "median", "nanmedian", "percentile", "nanpercentile"})


def _isInteger(value) -> bool:
    if isinstance(value, (numpy.ndarray, numpy.generic)):
        return value.dtype.kind in "biu"
    return isinstance(value, int)  # bool is an int


def exact(*operands) -> list:
    """The operands of one arithmetic step, in a type that holds its result: when every one
    is an integer (array, numpy or Python number), the arrays and numpy numbers as float64;
    otherwise as they are (a floating operand already makes numpy compute in floating
    point). Python numbers alone stay Python numbers."""
    if not all(_isInteger(value) for value in operands):
        return list(operands)
    return [value.astype(numpy.float64) if isinstance(value, (numpy.ndarray, numpy.generic))
            else value for value in operands]

# Python integers grow without bound: cap what ** and << may build from two constants, so
# an expression such as 9**9**9 is refused instead of computing for hours.
MAX_CONSTANT_BITS = 4096

# Friendly names of constructs the grammar does not allow.
_CONSTRUCT_NAMES = {
    ast.Lambda: "a lambda", ast.ListComp: "a list comprehension",
    ast.SetComp: "a set comprehension", ast.DictComp: "a dict comprehension",
    ast.GeneratorExp: "a generator expression", ast.NamedExpr: "an assignment (:=)",
    ast.JoinedStr: "an f-string", ast.FormattedValue: "an f-string",
    ast.Tuple: "a tuple", ast.List: "a list", ast.Set: "a set", ast.Dict: "a dict",
    ast.Starred: "a starred argument", ast.Slice: "a slice", ast.Await: "await",
    ast.Yield: "yield", ast.YieldFrom: "yield from",
}
_OPERATOR_SYMBOLS = {ast.MatMult: "@", ast.Is: "is", ast.IsNot: "is not", ast.In: "in",
                     ast.NotIn: "not in"}


def inputNameProblem(name: str) -> str | None:
    """Why ``name`` cannot name an input (None when it can)."""
    if not name.isidentifier() or not name.isascii():
        return "an input name must be a Python identifier (ASCII letters, digits, _)"
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        return f"'{name}' is a Python keyword"
    if name.startswith("_"):
        return "an input name may not start with '_'"
    if name in RESERVED_NAMES:
        return f"'{name}' is the name of a numpy function or constant the expression may use"
    return None


# ---------------------------------------------------------------------------------------
# Checking


def _where(node, text):
    """'column N' (or 'line L, column N') of a node, counted in characters from 1."""
    lines = text.splitlines() or [""]
    line = lines[node.lineno - 1] if 0 < node.lineno <= len(lines) else ""
    column = len(line.encode()[:node.col_offset].decode(errors="ignore")) + 1
    return f"column {column}" if node.lineno == 1 else f"line {node.lineno}, column {column}"


def _source(node, text):
    """The text of a node, shortened for messages."""
    segment = ast.get_source_segment(text, node) or type(node).__name__
    return segment if len(segment) <= 40 else segment[:37] + "..."


class _Checker:
    """Walks a parsed expression and raises ExpressionError at the first disallowed node."""

    def __init__(self, text, inputNames):
        self.text = text
        self.inputNames = frozenset(inputNames)
        self.used = set()

    def fail(self, node, message):
        raise ExpressionError(f"{message} (at {_where(node, self.text)})")

    def check(self, node):
        method = getattr(self, "check" + type(node).__name__, None)
        if method is None:
            self.fail(node, self.describe(node) + " is not allowed in an expression")
        method(node)

    def describe(self, node):
        if type(node) in _CONSTRUCT_NAMES:
            return _CONSTRUCT_NAMES[type(node)]
        return f"'{_source(node, self.text)}' ({type(node).__name__})"

    def checkExpression(self, node):
        self.check(node.body)

    def checkConstant(self, node):
        if not isinstance(node.value, NUMBER_TYPES):
            self.fail(node, f"the constant {node.value!r} is not allowed: only numbers")

    def checkName(self, node):
        name = node.id
        if name in self.inputNames:
            self.used.add(name)
        elif name in CONSTANTS:
            return
        elif name in FUNCTIONS or name in REDUCTIONS:
            self.fail(node, f"the function '{name}' must be called, e.g. {name}(...)")
        elif name in MODULE_NAMES:
            self.fail(node, f"'{name}' may only be used as {name}.FUNCTION(...)")
        elif name.startswith("_"):
            self.fail(node, f"the name '{name}' is not allowed")
        else:
            inputs = ", ".join(sorted(self.inputNames)) or "none"
            self.fail(node, f"unknown name '{name}': not an input (inputs: {inputs}) nor an "
                            "allowed numpy function or constant")

    def checkAttribute(self, node):
        base = node.value
        if not (isinstance(base, ast.Name) and base.id in MODULE_NAMES):
            self.fail(node, f"attribute access '.{node.attr}' is not allowed (only "
                            "np.FUNCTION or numpy.FUNCTION)")
        if node.attr in FUNCTIONS or node.attr in REDUCTIONS:
            self.fail(node, f"the function '{base.id}.{node.attr}' must be called")
        if node.attr not in CONSTANTS:
            self.fail(node, f"'{base.id}.{node.attr}' is not one of the numpy functions or "
                            "constants an expression may use")

    def checkSubscript(self, node):
        if not (isinstance(node.value, ast.Name) and node.value.id in self.inputNames):
            self.fail(node, "subscripts are only allowed as band selection on an input, "
                            "e.g. a[0]")
        if _bandIndex(node.slice) is None:
            self.fail(node, "a band selection needs one integer constant, e.g. a[0] or a[-1]")
        self.used.add(node.value.id)

    def checkBinOp(self, node):
        if type(node.op) not in BINARY_OPERATORS:
            symbol = _OPERATOR_SYMBOLS.get(type(node.op), type(node.op).__name__)
            self.fail(node, f"the operator {symbol} is not allowed")
        self.check(node.left)
        self.check(node.right)

    def checkUnaryOp(self, node):
        if isinstance(node.op, ast.Not):
            self.fail(node, "'not' is not allowed: use ~ or logical_not(...)")
        self.check(node.operand)

    def checkCompare(self, node):
        for op in node.ops:
            if type(op) not in COMPARISONS:
                self.fail(node, f"the comparison '{_OPERATOR_SYMBOLS[type(op)]}' is not "
                                "allowed")
        self.check(node.left)
        for comparator in node.comparators:
            self.check(comparator)

    def checkBoolOp(self, node):
        hint = "&" if isinstance(node.op, ast.And) else "|"
        word = "and" if isinstance(node.op, ast.And) else "or"
        self.fail(node, f"'{word}' is not allowed: use {hint} with parentheses, e.g. "
                        f"(a > 0) {hint} (b > 0)")

    def checkIfExp(self, node):
        self.fail(node, "'x if c else y' is not allowed: use where(c, x, y)")

    def checkCall(self, node):
        name = self.calledName(node)
        for arg in node.args:
            self.check(arg)
        if name in REDUCTIONS:
            self.checkReduction(node, name)
            return
        low, high = FUNCTIONS[name][1]
        if node.keywords:
            self.fail(node, f"{name}() takes no keyword arguments")
        if not low <= len(node.args) <= high:
            wanted = str(low) if low == high else f"{low} or {high}"
            self.fail(node, f"{name}() takes {wanted} argument(s), not {len(node.args)}")

    def calledName(self, node):
        """The whitelisted name a call calls, or fail."""
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) \
                and func.value.id in MODULE_NAMES:
            name = func.attr
        elif isinstance(func, ast.Name):
            name = func.id
        elif isinstance(func, ast.Attribute):
            self.check(func.value)  # name the innermost offender first, e.g. __import__
            self.check(func)
        else:
            self.fail(node, f"only numpy functions may be called, not {self.describe(func)}")
        if name not in FUNCTIONS and name not in REDUCTIONS:
            self.fail(node, f"calling '{_source(func, self.text)}' is not allowed: it is not "
                            "one of the numpy functions an expression may use")
        return name

    def checkReduction(self, node, name):
        count = REDUCTIONS[name][1]
        if len(node.args) != count:
            self.fail(node, f"{name}() takes {count} positional argument(s) and axis=0")
        keywords = [(k.arg, k.value) for k in node.keywords]
        if len(keywords) != 1 or keywords[0][0] != "axis" \
                or not _isConstant(keywords[0][1], 0):
            self.fail(node, f"{name}() must be given axis=0 (it reduces across bands), and "
                            "no other keyword")


def _isConstant(node, value):
    return isinstance(node, ast.Constant) and type(node.value) is int and node.value == value


def _bandIndex(node):
    """The integer of a band-selection subscript (``0``, ``-1``), or None."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) \
            and isinstance(node.operand, ast.Constant) and type(node.operand.value) is int:
        return -node.operand.value
    return None


def _parse(text):
    """The ast of ``text`` (mode 'eval'), or ExpressionError for a syntax error."""
    if not text.strip():
        raise ExpressionError("the expression is empty")
    try:
        return ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        where = f"at column {e.offset}" if e.offset else "at the end"
        if e.lineno and e.lineno > 1:
            where = f"at line {e.lineno}, " + where.replace("at ", "")
        raise ExpressionError(f"syntax error: {e.msg} ({where})") from None
    except (ValueError, RecursionError, MemoryError) as e:
        raise ExpressionError(f"the expression cannot be parsed: {e}") from None


@dataclass(frozen=True)
class CheckedExpression:
    """A parsed expression that passed the checks, and the input names it uses."""

    text: str
    tree: ast.Expression
    usedNames: tuple

    def evaluate(self, arrays: dict):
        """The value of the expression with ``arrays`` (name -> array) as the inputs."""
        try:
            return _Evaluator(self.text, arrays).evaluate(self.tree.body)
        except RecursionError:
            raise ExpressionError("the expression is nested too deeply") from None


def checkExpression(text: str, inputNames) -> CheckedExpression:
    """Parse ``text`` and check it against the grammar; raise ExpressionError if it fails."""
    text = text.strip()
    tree = _parse(text)
    checker = _Checker(text, inputNames)
    try:
        checker.check(tree)
    except RecursionError:
        raise ExpressionError("the expression is nested too deeply") from None
    return CheckedExpression(text, tree, tuple(sorted(checker.used)))


# ---------------------------------------------------------------------------------------
# Evaluating


class _Evaluator:
    """Computes a checked tree; errors become ExpressionError naming the failing part."""

    def __init__(self, text, arrays):
        self.text = text
        self.arrays = arrays

    def evaluate(self, node):
        try:
            return getattr(self, "eval" + type(node).__name__)(node)
        except ExpressionError:
            raise
        except (ArithmeticError, ValueError, TypeError, IndexError) as e:
            raise ExpressionError(f"'{_source(node, self.text)}' (at "
                                  f"{_where(node, self.text)}) failed: {e}") from e

    def evalConstant(self, node):
        return node.value

    def evalName(self, node):
        if node.id in self.arrays:
            return self.arrays[node.id]
        return CONSTANTS[node.id]

    def evalAttribute(self, node):
        return CONSTANTS[node.attr]

    def evalSubscript(self, node):
        array = self.arrays[node.value.id]
        index = _bandIndex(node.slice)
        nbands = array.shape[0]
        if not -nbands <= index < nbands:
            raise ExpressionError(
                f"'{_source(node, self.text)}' (at {_where(node, self.text)}): input "
                f"'{node.value.id}' has {nbands} band(s), {node.value.id}[0] to "
                f"{node.value.id}[{nbands - 1}]")
        return array[index]

    def evalBinOp(self, node):
        left = self.evaluate(node.left)
        right = self.evaluate(node.right)
        _checkIntegerGrowth(node, left, right, self.text)
        if type(node.op) in EXACT_BINARY:
            left, right = exact(left, right)
        return BINARY_OPERATORS[type(node.op)](left, right)

    def evalUnaryOp(self, node):
        operand = self.evaluate(node.operand)
        if type(node.op) in EXACT_UNARY:
            (operand,) = exact(operand)
        return UNARY_OPERATORS[type(node.op)](operand)

    def evalCompare(self, node):
        left = self.evaluate(node.left)
        result = None
        for op, comparatorNode in zip(node.ops, node.comparators, strict=True):
            right = self.evaluate(comparatorNode)
            value = COMPARISONS[type(op)](left, right)
            result = value if result is None else numpy.logical_and(result, value)
            left = right
        return result

    def evalCall(self, node):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id
        args = [self.evaluate(arg) for arg in node.args]
        if name not in TYPE_KEEPING_FUNCTIONS:
            args = exact(*args)
        if name in REDUCTIONS:
            return REDUCTIONS[name][0](*args, axis=0)
        return FUNCTIONS[name][0](*args)


def _checkIntegerGrowth(node, left, right, text):
    """Refuse ** and << on two Python ints whose result would be enormous."""
    if not (isinstance(left, int) and isinstance(right, int)):
        return
    if isinstance(node.op, ast.Pow):
        bits = max(left.bit_length(), 1) * abs(right)
    elif isinstance(node.op, ast.LShift):
        bits = left.bit_length() + right
    else:
        return
    if bits > MAX_CONSTANT_BITS:
        raise ExpressionError(f"'{_source(node, text)}' (at {_where(node, text)}) would be "
                              f"an integer of about {bits} bits; constants are limited to "
                              f"{MAX_CONSTANT_BITS} bits")


# ---------------------------------------------------------------------------------------
# Output types


def gdalDtype(dtype) -> numpy.dtype | None:
    """``dtype`` if GDAL can write it unchanged (round trip through a GDAL type), else None."""
    dtype = numpy.dtype(dtype)
    if dtype == numpy.bool_:
        return None
    code = gdal_array.NumericTypeCodeToGDALTypeCode(dtype)
    if not code:
        return None
    back = gdal_array.GDALTypeCodeToNumericTypeCode(code)
    return dtype if back is not None and numpy.dtype(back) == dtype else None


def writableDtype(dtype) -> numpy.dtype:
    """The type an expression result of ``dtype`` is written as when no type is asked for.

    Booleans become uint8; types GDAL lacks become the smallest wider one it has.
    """
    dtype = numpy.dtype(dtype)
    if dtype == numpy.bool_:
        return numpy.dtype(numpy.uint8)
    if gdalDtype(dtype) is not None:
        return dtype
    for wider in (numpy.int16, numpy.float32, numpy.float64, numpy.complex128):
        if numpy.can_cast(dtype, wider) and gdalDtype(wider) is not None:
            return numpy.dtype(wider)
    raise ExpressionError(f"the expression gives {dtype} values, which GDAL cannot write; "
                          "choose an output type")


def parseDtype(name: str) -> numpy.dtype:
    """The numpy dtype for a GDAL type name (Byte, Float32) or a numpy one (uint8, float32)."""
    code = gdal.GetDataTypeByName(name)
    if code:
        numeric = gdal_array.GDALTypeCodeToNumericTypeCode(code)
        if numeric is None or gdal_array.NumericTypeCodeToGDALTypeCode(numeric) != code:
            raise rioserrors.ParameterError(f"type '{name}' has no numpy equivalent that "
                                            "GDAL writes as that type")
        return numpy.dtype(numeric)
    try:
        dtype = numpy.dtype(name.lower())
        writable = gdalDtype(dtype) is not None
    except (TypeError, ValueError, SyntaxError):
        raise rioserrors.ParameterError(
            f"unknown type '{name}': use a GDAL or numpy type name such as Byte, UInt16, "
            "Int32, Float32, Float64 or uint8, float32") from None
    if not writable:
        raise rioserrors.ParameterError(f"type '{name}' ({dtype}) cannot be written by this "
                                        "GDAL")
    return dtype


def castBlock(result: numpy.ndarray, dtype, invalid: numpy.ndarray | None = None,
              nodata=None) -> numpy.ndarray:
    """``result`` as ``dtype``, with the pixels in ``invalid`` (and non-finite ones) fixed.

    Floats going to an integer type are rounded and clipped to its range, integers are
    clipped. Pixels that are NaN/Inf, or set in ``invalid``, become ``nodata``; without a
    no-data value, non-finite pixels are left to float types and become 0 in integer ones.
    """
    dtype = numpy.dtype(dtype)
    nonFinite = None
    if result.dtype.kind in "fc" and (nodata is not None or dtype.kind in "iub"):
        nonFinite = ~numpy.isfinite(result)
    if result.dtype.kind == "c" and dtype.kind != "c":
        result = result.real
    with numpy.errstate(invalid="ignore"):  # NaN/Inf to integers: overwritten below
        out = _convert(result, dtype)
    if nonFinite is not None and nonFinite.any():
        out[nonFinite] = 0 if nodata is None else nodata
    if invalid is not None and nodata is not None:
        out[numpy.broadcast_to(invalid, out.shape)] = nodata
    return out


def _convert(result, dtype):
    """Convert with GDAL-like rounding and clipping instead of numpy's wrap-around."""
    if dtype.kind in "iu" and result.dtype.kind in "iuf":
        info = numpy.iinfo(dtype)
        if result.dtype.kind == "f":
            result = numpy.clip(numpy.rint(result), info.min, info.max)
        else:
            source = numpy.iinfo(result.dtype)
            low, high = max(info.min, source.min), min(info.max, source.max)
            if (low, high) != (source.min, source.max):
                result = numpy.clip(result, low, high)
    return result.astype(dtype)  # always a copy: the caller may write into it


# ---------------------------------------------------------------------------------------
# The user function


class BlockCalculator:
    """The per-block user function of ``calc``: evaluates an expression into one output.

    Plain attributes only, so it pickles (by reference to this module) into worker
    processes; each worker re-checks the expression text on its first block.
    ``inputNodata`` maps an input name to its per-band no-data values (None: none); with
    ``nodata`` set, output pixels where a used input is no-data become ``nodata``.
    """

    def __init__(self, expression: str, inputNames, dtype=None, nodata=None,
                 inputNodata: dict | None = None, outputName: str = "output"):
        self.expression = expression
        self.inputNames = tuple(inputNames)
        self.dtype = None if dtype is None else numpy.dtype(dtype).str
        self.nodata = nodata
        self.inputNodata = dict(inputNodata or {})
        self.outputName = outputName
        self._checked = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_checked"] = None
        return state

    @property
    def checked(self) -> CheckedExpression:
        if self._checked is None:
            self._checked = checkExpression(self.expression, self.inputNames)
        return self._checked

    def __call__(self, info, inputs, outputs) -> None:
        arrays = {name: getattr(inputs, name) for name in self.inputNames}
        setattr(outputs, self.outputName, self.compute(arrays))

    def compute(self, arrays: dict) -> numpy.ndarray:
        """The output block (bands, rows, cols) for input blocks ``arrays`` (name -> array)."""
        shape = next(iter(arrays.values())).shape[1:]
        used = {name: arrays[name] for name in self.checked.usedNames}
        with numpy.errstate(all="ignore"):
            result = toBlock(self.checked.evaluate(used), shape)
            dtype = writableDtype(result.dtype) if self.dtype is None else self.dtype
            invalid = self.nodataMask(used, result.shape[0])
            return castBlock(result, dtype, invalid, self.nodata)

    def nodataMask(self, arrays: dict, nbands: int) -> numpy.ndarray | None:
        """Where a used input is no-data: per band when band counts match, else any band."""
        if self.nodata is None:
            return None
        mask = None
        for name, array in arrays.items():
            values = self.inputNodata.get(name)
            if not values or all(v is None for v in values):
                continue
            inputMask = _equalsNodata(array, values)
            if inputMask.shape[0] != nbands:
                inputMask = inputMask.any(axis=0, keepdims=True)
            mask = inputMask if mask is None else mask | inputMask
        return mask

    def trial(self, inputs: dict) -> numpy.ndarray:
        """The output of small blocks with the inputs' band counts and types.

        ``inputs`` maps each input name to (band count, dtype). Raises ExpressionError when
        the expression cannot be computed on such inputs (wrong band, shapes, types).
        """
        arrays = {name: numpy.ones((nbands, 5, 7), dtype) for name, (nbands, dtype)
                  in inputs.items()}
        return self.compute(arrays)


def _equalsNodata(array, values):
    """Boolean (bands, rows, cols): where each band equals its own no-data value."""
    mask = numpy.zeros(array.shape, bool)
    for band, value in enumerate(values[:array.shape[0]]):
        if value is None:
            continue
        if numpy.isnan(value):
            mask[band] = numpy.isnan(array[band]) if array.dtype.kind in "fc" else False
        else:
            mask[band] = array[band] == value
    return mask


def toBlock(value, shape) -> numpy.ndarray:
    """An expression value as a 3-D (bands, rows, cols) block of ``shape`` (rows, cols)."""
    value = numpy.asarray(value)
    if value.ndim == 0:
        return numpy.full((1, *shape), value)
    if value.ndim == 2:
        value = value[numpy.newaxis]
    if value.ndim != 3 or value.shape[1:] != tuple(shape):
        raise rioserrors.ArrayShapeError(
            f"the expression gives an array of shape {value.shape}, not an image block of "
            f"{tuple(shape)} pixels (bands, rows, cols)")
    return value
