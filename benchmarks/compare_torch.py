"""Op-by-op agreement of minigrad with PyTorch: forward values and gradients, in float32 and float64.

    /work/torchvenv/bin/python benchmarks/compare_torch.py        # a few seconds; needs torch
    MINIGRAD_DIR=/tmp/snap /work/torchvenv/bin/python benchmarks/compare_torch.py

The second form checks the minigrad.py in another folder (by default: the one above benchmarks/).
Re-run it after every change to minigrad.py: the agreement with PyTorch should stay as it was.
PyTorch is never a dependency of minigrad, only of this script.

Each case runs the same computation on the same numbers in both frameworks and compares the result;
then it calls backward() in both with the same random output gradient (a plain .sum() would let errors
cancel and would test every output position with the same weight) and compares the gradient of every
input. One compared array is one check. The groups:
    elementwise    + - * / between tensors, Python numbers and numpy arrays, on either side, over many
                   broadcasting shape pairs; neg; ** with number exponents (incl. x ** 0 at x = 0)
    matmul         2-D and batched, with broadcast batch axes, numpy arrays on either side
    reductions     sum, mean, max over axis None / int / negative / tuple, keepdims; ties in max
    indexing       reshape, transpose (numpy's meaning, against torch.permute), .T, t[index]
    functions      exp, log, relu (at 0 too), tanh, sigmoid, softmax, log_softmax along every axis,
                   with inputs of magnitude 1e4 (finite results, no numpy warnings)
    conv2d         stride 1 and 2, padding 0-2, 1 and 3 input channels, bias or none, non-square images
    max_pool2d     kernel 2 and 3, stride default, 1 and 2, ties (equal inputs, zeros after a ReLU)
    losses         cross_entropy (integer targets, mean) and mse_loss
    layers         Linear, Conv2d, MaxPool2d, Flatten, ReLU, Tanh, Sigmoid, Dropout (eval),
                   Sequential: forward, input and parameter gradients, with the weights copied
                   from minigrad's state_dict() or into its load_state_dict()
    optimizers     SGD (momentum, weight_decay) and Adam: 10 steps from the same weights with the same
                   gradients; the weights after every step
    init           default initialization of Linear and Conv2d: bounds, mean and spread, beside
                   PyTorch's
    end-to-end     a small MLP and a small CNN: three steps of cross_entropy, backward, SGD,
                   compared weight by weight

Tolerance: minigrad's value m agrees with PyTorch's t when |m - t| <= rtol |t| + atol T, where T is
the largest |t| of the compared array, or 1 if that is less: the rounding errors of a sum scale with its
terms, not with the result, and the terms are about as large as the inputs and output gradients
(numbers of order 1) or the largest result. rtol 1e-5 and atol 1e-6 in float32, 1e-10 and 1e-10 in
float64 (where a wrong formula cannot hide in rounding). Shapes and dtypes must be equal, and
infinities and NaNs in the same places.

The differences that README.md's "minigrad and PyTorch" table calls intended are bridged in the PyTorch
half of each case (axis/keepdims against dim/keepdim, numpy's transpose against permute, state dict
names layers.0.weight against 0.weight) and not reported.

Prints one line per group and a total; exit status 1 if anything disagrees. Not collected by pytest
(the name is not test_*), and does nothing when imported.
"""
import contextlib
import itertools
import operator
import os
import sys
import time
import warnings

if __name__ == "__main__":  # before numpy starts OpenBLAS: one thread, repeatable, kind to the machine
    os.environ["OPENBLAS_NUM_THREADS"] = "1"

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DTYPES = (np.float32, np.float64)
TOLERANCES = {np.dtype(np.float32): (1e-5, 1e-6), np.dtype(np.float64): (1e-10, 1e-10)}  # rtol, atol
SHOWN = 20  # disagreements printed per group
RNG = np.random.default_rng(0)  # the numbers of every case; the same run after run
mg = torch = F = None  # minigrad, torch and torch.nn.functional, imported by main()


# ---- comparing ----

class Checks:
    """Counts the checks of each group and keeps the disagreements, to print when the group ends."""

    def __init__(self):
        self.total, self.failed = 0, 0
        self.count, self.failures = 0, []

    def compare(self, case, what, mine, theirs):
        """One check: minigrad's array (None: no gradient, zeros) against PyTorch's tensor or array."""
        theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else np.asarray(theirs)
        mine = np.zeros_like(theirs) if mine is None else np.asarray(mine)
        self.expect(case, what, *difference(mine, theirs))

    def expect(self, case, what, ok, detail=""):
        self.count += 1
        if not ok:
            self.failures.append(f"{case}: {what}: {detail}")

    def end_group(self, name):
        verdict = f"{len(self.failures)} disagree" if self.failures else "all agree"
        print(f"{name}: {self.count} checks, {verdict}", flush=True)
        for failure in self.failures[:SHOWN]:
            print(f"    {failure}")
        if len(self.failures) > SHOWN:
            print(f"    ... and {len(self.failures) - SHOWN} more")
        self.total, self.failed = self.total + self.count, self.failed + len(self.failures)
        self.count, self.failures = 0, []


def difference(mine, theirs):
    """(True, "") if minigrad's array agrees with PyTorch's, else (False, what differs)."""
    if mine.shape != theirs.shape:
        return False, f"shape {mine.shape}, PyTorch {theirs.shape}"
    if mine.dtype != theirs.dtype:
        return False, f"dtype {mine.dtype}, PyTorch {theirs.dtype}"
    rtol, atol = TOLERANCES[theirs.dtype]
    finite = np.isfinite(theirs)
    if not np.array_equal(mine[~finite], theirs[~finite], equal_nan=True):
        return False, f"infinities or NaNs differ: {mine[~finite]}, PyTorch {theirs[~finite]}"
    error, size = np.abs(mine[finite] - theirs[finite]), np.abs(theirs[finite])
    if np.all(error <= rtol * size + atol * max(size.max(initial=0), 1)):
        return True, ""
    relative = error[size > 0] / size[size > 0]
    return False, (f"max abs error {error.max():.3g}, max rel error {relative.max(initial=np.inf):.3g} "
                   f"(max |PyTorch| {size.max():.3g})")


@contextlib.contextmanager
def no_warnings():
    """The warnings a user would see become errors: numpy's overflow, division by zero and invalid value
    (not underflow, which numpy ignores by default: e^-10000 is 0, rightly), and Python's warnings."""
    with np.errstate(over="raise", divide="raise", invalid="raise"), warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def check_op(checks, case, mine, theirs, inputs, dtype, strict=False):
    """Run one computation in both frameworks on the same numbers and compare the result, then, after
    backward() in both with the same random output gradient, the gradient of every input.
    mine and theirs take minigrad's and PyTorch's tensors; inputs maps names to arrays (cast to dtype).
    strict: minigrad must also give finite numbers without a warning. mine and theirs run at once, so
    the lambdas written in a loop may use the loop's variables."""
    case = f"{case}, {np.dtype(dtype).name}"
    arrays = {name: np.array(x, dtype=dtype) for name, x in inputs.items()}
    refs = {name: torch.tensor(x, requires_grad=True) for name, x in arrays.items()}
    expected = theirs(*refs.values())
    output_grad = RNG.standard_normal(expected.shape).astype(dtype)
    expected.backward(torch.tensor(output_grad))
    ours = {name: mg.Tensor(x.copy(), requires_grad=True) for name, x in arrays.items()}
    try:  # a crash is a disagreement too; the other cases still run
        with no_warnings() if strict else contextlib.nullcontext():
            result = mine(*ours.values())
            if result.shape == expected.shape:  # else the output gradient would not fit
                result.backward(output_grad.copy())
    except Exception as error:
        return checks.expect(case, "error", False, f"{type(error).__name__}: {error}")
    checks.compare(case, "result", result.data, expected)
    if result.shape != expected.shape:
        return
    for name in arrays:
        checks.compare(case, f"gradient of {name}", ours[name].grad, refs[name].grad)
    if strict:
        finite = [result.data] + [x.grad for x in ours.values() if x.grad is not None]
        checks.expect(case, "finite", all(np.isfinite(x).all() for x in finite), "a non-finite number")


def values(*shape, low=None):
    """Random numbers of a shape: normal, or in +-[low, 2] (away from 0, e.g. for division)."""
    if low is None:
        return RNG.standard_normal(shape)
    return RNG.uniform(low, 2, shape) * RNG.choice([-1, 1], shape)


# ---- elementwise arithmetic ----

BINARY = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}
SHAPE_PAIRS = [((), ()), ((), (3,)), ((3,), ()), ((4,), (4,)), ((3, 1), (1, 4)), ((2, 3, 4), (4,)),
               ((4,), (2, 3, 4)), ((1,), (2, 3)), ((2, 3), (1,)), ((2, 1, 4), (3, 1)),
               ((5, 1, 3), (1, 4, 1)), ((2, 3, 4), (2, 3, 4)), ((1, 1), (3,)),
               ((2, 3, 1, 5), (3, 4, 1))]
NUMBERS = [2.5, -0.75, 3]  # an int too: it becomes a float of the tensor's dtype, as in PyTorch
EXPONENTS = [0, 1, 2, 3, 2.0, 0.5, -1, -0.5, 1.5]


def check_elementwise(checks):
    for dtype in DTYPES:
        for symbol, op in BINARY.items():
            low = 0.5 if symbol == "/" else None  # keep divisors away from 0
            for a_shape, b_shape in SHAPE_PAIRS:
                a, b = values(*a_shape), values(*b_shape, low=low)
                case = f"a {symbol} b, {a_shape} {b_shape}"
                check_op(checks, case, op, op, {"a": a, "b": b}, dtype)
                # a numpy array on either side (on the left: minigrad's __r*__ methods); PyTorch
                # gets it as a tensor, as numpy 2 refuses `array * torch_tensor`
                a_array, b_array = np.array(a, dtype), np.array(b, dtype)
                check_op(checks, case + ", a a numpy array", lambda b: op(a_array, b),
                         lambda b: op(torch.tensor(a_array), b), {"b": b}, dtype)
                check_op(checks, case + ", b a numpy array", lambda a: op(a, b_array),
                         lambda a: op(a, torch.tensor(b_array)), {"a": a}, dtype)
            for number, shape in itertools.product(NUMBERS, [(), (3,), (2, 3)]):
                x = {"x": values(*shape, low=low)}
                check_op(checks, f"x {symbol} {number!r}, {shape}", lambda x: op(x, number),
                         lambda x: op(x, number), x, dtype)
                check_op(checks, f"{number!r} {symbol} x, {shape}", lambda x: op(number, x),
                         lambda x: op(number, x), x, dtype)
            # an array of the other dtype: minigrad computes in the tensor's dtype (the README's table:
            # float32 stays float32), PyTorch in the wider of the two; so PyTorch gets it in x's dtype
            other = np.array(values(3, low=low), np.float64 if dtype == np.float32 else np.float32)
            case = f"x {symbol} {other.dtype} array"
            check_op(checks, case, lambda x: op(x, other),
                     lambda x: op(x, torch.tensor(other, dtype=x.dtype)), {"x": values(3, low=low)}, dtype)
            check_op(checks, f"{other.dtype} array {symbol} x", lambda x: op(other, x),
                     lambda x: op(torch.tensor(other, dtype=x.dtype), x), {"x": values(3, low=low)},
                     dtype)
        # one tensor on several paths: backward() must add the gradients that meet
        for text, fn in [("x * x", lambda x: x * x), ("x - x", lambda x: x - x),
                         ("x / (x * x + 1)", lambda x: x / (x * x + 1)),
                         ("x + x * 2 - x / 3", lambda x: x + x * 2 - x / 3), ("-x", lambda x: -x)]:
            check_op(checks, text, fn, fn, {"x": values(3, 4)}, dtype)
        for exponent in EXPONENTS:
            fractional = exponent != int(exponent) or exponent < 0  # finite for x > 0 only
            x = np.abs(values(2, 5, low=0.2)) if fractional else values(2, 5)
            check_op(checks, f"x ** {exponent!r}", lambda x: x ** exponent, lambda x: x ** exponent,
                     {"x": x}, dtype)
            if not fractional:  # at x = 0: x ** 0 has slope 0 in PyTorch, x ** 1 slope 1
                check_op(checks, f"x ** {exponent!r} at 0", lambda x: x ** exponent,
                         lambda x: x ** exponent, {"x": np.zeros(4)}, dtype)


# ---- matrix products ----

MATMUL_SHAPES = [((2, 3), (3, 4)), ((1, 5), (5, 1)), ((4, 4), (4, 4)), ((2, 2, 3), (3, 4)),
                 ((3, 4), (2, 4, 5)), ((2, 3, 4), (2, 4, 5)), ((1, 3, 4), (2, 4, 5)),
                 ((2, 1, 3, 4), (5, 4, 2)), ((3, 1, 2, 3), (1, 4, 3, 2))]


def check_matmul(checks):
    for dtype in DTYPES:
        for a_shape, b_shape in MATMUL_SHAPES:
            inputs = {"a": values(*a_shape), "b": values(*b_shape)}
            case = f"a @ b, {a_shape} {b_shape}"
            check_op(checks, case, operator.matmul, operator.matmul, inputs, dtype)
            a, b = (np.array(inputs[k], dtype) for k in "ab")  # a constant array on either side
            check_op(checks, case + ", a a numpy array", lambda b: a @ b,
                     lambda b: torch.tensor(a) @ b, {"b": inputs["b"]}, dtype)
            check_op(checks, case + ", b a numpy array", lambda a: a @ b,
                     lambda a: a @ torch.tensor(b), {"a": inputs["a"]}, dtype)
        check_op(checks, "x @ x.T", lambda x: x @ x.T, lambda x: x @ x.T, {"x": values(3, 4)}, dtype)


# ---- reductions ----

def axes_of(ndim):
    """Every kind of axis argument that fits ndim axes: None, each int, negative, tuples."""
    axes = [None] + list(range(ndim)) + [-1]
    if ndim >= 2:
        axes += [(0, ndim - 1), (-1, 0), tuple(range(ndim))]
    if ndim >= 3:
        axes += [(1,), (0, 2)]
    return axes


def torch_reduction(name, axis, keepdims):
    """PyTorch's spelling of minigrad's x.name(axis, keepdims): dim and keepdim; max over axes is amax,
    which, like minigrad's max, splits the gradient among ties."""
    def reduce(x):
        dims = tuple(range(x.ndim)) if axis is None else axis
        fn = {"sum": torch.sum, "mean": torch.mean, "max": torch.amax}[name]
        return fn(x, dim=dims, keepdim=keepdims)
    return reduce


def check_reductions(checks):
    for dtype in DTYPES:
        for shape in [(5,), (3, 4), (2, 3, 4), (2, 1, 3, 2)]:
            for axis in axes_of(len(shape)):
                for keepdims in (False, True):
                    for name in ("sum", "mean", "max"):
                        case = f"x.{name}(axis={axis}, keepdims={keepdims}), {shape}"
                        reduce = lambda x: getattr(x, name)(axis=axis, keepdims=keepdims)
                        check_op(checks, case, reduce, torch_reduction(name, axis, keepdims),
                                 {"x": values(*shape)}, dtype)
                    # ties: small integers repeat, so several elements share a maximum
                    ties = RNG.integers(-2, 2, shape).astype(float)
                    check_op(checks, f"x.max(axis={axis}, keepdims={keepdims}) with ties, {shape}",
                             lambda x: x.max(axis=axis, keepdims=keepdims),
                             torch_reduction("max", axis, keepdims), {"x": ties}, dtype)
            check_op(checks, f"x.sum(), {shape}", lambda x: x.sum(), lambda x: x.sum(),
                     {"x": values(*shape)}, dtype)
        check_op(checks, "x.max(), all equal", lambda x: x.max(), torch.amax, {"x": np.ones((2, 3))},
                 dtype)


# ---- moving numbers around ----

RESHAPES = [((2, 3, 4), (6, 4)), ((2, 3, 4), (-1,)), ((2, 3, 4), (4, -1)), ((6,), (2, 3)),
            ((2, 3), (3, 1, 2)), ((), (1, 1)), ((1, 1), ()), ((2, 3, 4), (2, -1, 3))]
TRANSPOSES = [((2, 3), ()), ((2, 3), (1, 0)), ((2, 3, 4), ()), ((2, 3, 4), (2, 0, 1)),
              ((2, 3, 4), (1, 0, 2)), ((2, 3, 4), (-1, 0, 1)), ((2, 3, 4), (0, 1, 2)),
              ((2, 3, 4, 5), (3, 1, 0, 2)), ((4,), ())]
INDICES = [  # (shape, index): slices, ints (negative too), integer arrays with repeats, a mask
    ((5, 4), 2), ((5, 4), -1), ((5, 4), slice(1, 4)), ((5, 4), slice(None, None, 2)),
    ((5, 4), (slice(1, None), 2)), ((5, 4), (-2, slice(None, 3))), ((5, 4), [0, 0, 3]),
    ((5, 4), np.array([-1, 0, -1, 2])), ((5, 4), ([0, 2, 2], [1, 1, 3])),
    ((5, 4), (slice(None), [3, 3, 0])), ((5, 4), np.array([[0, 1], [1, 1]])),
    ((3, 4, 5), (slice(None), 1, [0, 4, 4])), ((3, 4, 5), (Ellipsis, -1)),
    ((3, 4, 5), (slice(None), 1, slice(1, 5, 2))), ((6,), slice(-4, -1)), ((6,), [5, 5, 5, -6]),
    ((3, 4), np.array([[True, False, True, True], [False] * 4, [True] * 4]))]
# Not here: an integer and an array apart, x[1, :, [0, 4, 4]]: numpy (and so minigrad, as the README's
# table says) puts the array's axis first, PyTorch in its place.


def index_text(index):
    """x[...] as one would type it: x[1, :, [0, 4, 4]]."""
    def text(part):
        if isinstance(part, slice):
            bounds = ["" if n is None else str(n) for n in (part.start, part.stop, part.step)]
            return ":".join(bounds[:2] if part.step is None else bounds)
        return "..." if part is Ellipsis else str(np.asarray(part).tolist())
    return f"x[{', '.join(map(text, index if isinstance(index, tuple) else (index,)))}]"


def torch_index(index):
    """The same index for a torch tensor: integer and boolean lists or arrays become tensors."""
    if isinstance(index, tuple):
        return tuple(torch_index(i) for i in index)
    return torch.as_tensor(np.asarray(index)) if isinstance(index, (list, np.ndarray)) else index


def check_indexing(checks):
    for dtype in DTYPES:
        for shape, new_shape in RESHAPES:
            x = {"x": values(*shape)}
            check_op(checks, f"x.reshape(*{new_shape}), {shape}", lambda x: x.reshape(*new_shape),
                     lambda x: x.reshape(new_shape), x, dtype)  # PyTorch wants () for ()
            check_op(checks, f"x.reshape({new_shape}), {shape}", lambda x: x.reshape(new_shape),
                     lambda x: x.reshape(new_shape), x, dtype)
        for shape, axes in TRANSPOSES:  # numpy's meaning: a full reordering; none given: reversed
            dims = axes or tuple(reversed(range(len(shape))))
            check_op(checks, f"x.transpose{axes}, {shape}", lambda x: x.transpose(*axes),
                     lambda x: x.permute(*dims), {"x": values(*shape)}, dtype)
            if axes:
                check_op(checks, f"x.transpose({axes}), {shape}", lambda x: x.transpose(axes),
                         lambda x: x.permute(*dims), {"x": values(*shape)}, dtype)
        for shape in [(4,), (2, 3), (2, 3, 4)]:  # .T reverses every axis, as in numpy
            check_op(checks, f"x.T, {shape}", lambda x: x.T,
                     lambda x: x.permute(*reversed(range(x.ndim))), {"x": values(*shape)}, dtype)
        for shape, index in INDICES:
            check_op(checks, f"{index_text(index)}, {shape}", lambda x: x[index],
                     lambda x: x[torch_index(index)], {"x": values(*shape)}, dtype)


# ---- elementwise functions ----

def with_extremes(shape, magnitude):
    """Normal numbers, times magnitude, with exact zeros and +-magnitude in the first places."""
    x = values(*shape) * magnitude
    x.flat[:3] = [0, magnitude, -magnitude]
    return x


def check_functions(checks):
    for dtype in DTYPES:
        for shape in [(5,), (3, 4), (2, 3, 4)]:
            x = values(*shape)
            check_op(checks, f"x.exp(), {shape}", lambda x: x.exp(), torch.exp, {"x": 2 * x}, dtype)
            check_op(checks, f"x.log(), {shape}", lambda x: x.log(), torch.log,
                     {"x": np.abs(x) + 0.1}, dtype)
            # relu at exactly 0: PyTorch's gradient there is 0, and so must minigrad's be
            check_op(checks, f"x.relu() with zeros, {shape}", lambda x: x.relu(), torch.relu,
                     {"x": with_extremes(shape, 1.0)}, dtype)
            for magnitude in (1.0, 10.0, 1e4):  # 1e4: e^x overflows; the results must not
                case = f"magnitude {magnitude:g}, {shape}"
                strict = magnitude > 10
                x = {"x": with_extremes(shape, magnitude)}
                check_op(checks, f"x.tanh(), {case}", lambda x: x.tanh(), torch.tanh, x, dtype,
                         strict)
                check_op(checks, f"x.sigmoid(), {case}", lambda x: x.sigmoid(), torch.sigmoid, x, dtype,
                         strict)
                check_op(checks, f"x.softmax(), {case}", lambda x: x.softmax(),
                         lambda x: x.softmax(-1), x, dtype, strict)
                check_op(checks, f"x.log_softmax(), {case}", lambda x: x.log_softmax(),
                         lambda x: x.log_softmax(-1), x, dtype, strict)
                for axis in list(range(len(shape))) + [-1]:
                    check_op(checks, f"x.softmax({axis}), {case}", lambda x: x.softmax(axis),
                             lambda x: x.softmax(axis), x, dtype, strict)
                    check_op(checks, f"x.log_softmax({axis}), {case}", lambda x: x.log_softmax(axis),
                             lambda x: x.log_softmax(axis), x, dtype, strict)


# ---- convolution and pooling ----

IMAGES = [(5, 5), (6, 7), (4, 6)]  # (height, width), non-square too


def check_conv2d(checks):
    for dtype in DTYPES:
        for (height, width), kernel, stride, padding, channels, bias in itertools.product(
                IMAGES, (1, 2, 3), (1, 2), (0, 1, 2), (1, 3), (True, False)):
            batch, out_channels = 1 + padding % 2, 2 + kernel % 2
            inputs = {"x": values(batch, channels, height, width),
                      "w": values(out_channels, channels, kernel, kernel)}
            if bias:
                inputs["b"] = values(out_channels)
            case = (f"conv2d(x {(batch, channels, height, width)}, w {inputs['w'].shape}, "
                    f"{'b' if bias else 'no bias'}, stride={stride}, padding={padding})")
            ours = lambda *t: mg.conv2d(*t, stride=stride, padding=padding)  # x, w[, b]
            theirs = lambda *t: F.conv2d(*t, stride=stride, padding=padding)
            check_op(checks, case, ours, theirs, inputs, dtype)
            if kernel == 3 and padding == 1:  # images that need no gradient: only the weights get one
                x = np.array(inputs.pop("x"), dtype)
                check_op(checks, case + ", x a numpy array", lambda *t: ours(x, *t),
                         lambda *t: theirs(torch.tensor(x), *t), inputs, dtype)


def pool_inputs(shape):
    """Images for max pooling: distinct numbers, and three kinds of ties."""
    return {"distinct": values(*shape), "all equal": np.full(shape, 0.5),
            "zeros after a ReLU": np.maximum(values(*shape), 0),
            "small integers": RNG.integers(0, 3, shape)}


def check_max_pool2d(checks):
    """On ties PyTorch gives the gradient to the first maximum of each window (in row-major order)."""
    for dtype in DTYPES:
        for shape in [(2, 3, 6, 6), (1, 2, 7, 5), (2, 1, 4, 4)]:
            for kind, x in pool_inputs(shape).items():
                for kernel in (2, 3):
                    for stride in (None, 1, 2):
                        check_op(checks, f"max_pool2d(x, {kernel}, stride={stride}), {kind} {shape}",
                                 lambda x: mg.max_pool2d(x, kernel, stride),
                                 lambda x: F.max_pool2d(x, kernel, stride), {"x": x}, dtype)


# ---- losses ----

def check_losses(checks):
    for dtype in DTYPES:
        for (n, classes), magnitude in itertools.product([(1, 2), (4, 3), (8, 10)], (1.0, 10.0, 1e4)):
            logits = {"logits": values(n, classes) * magnitude}
            targets = RNG.integers(0, classes, n)
            for kind, given in [("int64", targets), ("int32", targets.astype(np.int32)),
                                ("a list", targets.tolist())]:
                case = f"cross_entropy(logits {(n, classes)} x {magnitude:g}, targets {kind})"
                check_op(checks, case, lambda z: mg.cross_entropy(z, given),
                         lambda z: F.cross_entropy(z, torch.as_tensor(targets)), logits, dtype,
                         strict=magnitude > 10)
        for shape in [(5,), (3, 4), (2, 3, 4), (4, 1)]:
            prediction, target = values(*shape), values(*shape)
            check_op(checks, f"mse_loss(prediction, target), {shape}", mg.mse_loss, F.mse_loss,
                     {"prediction": prediction, "target": target}, dtype)
            constant = np.array(target, dtype)
            check_op(checks, f"mse_loss(prediction, numpy array), {shape}",
                     lambda p: mg.mse_loss(p, constant), lambda p: F.mse_loss(p, torch.tensor(constant)),
                     {"prediction": prediction}, dtype)


# ---- layers ----
# Each model is written once, as a function of a namespace: minigrad and torch.nn have the same layer
# names and arguments, so make(mg) and make(torch.nn) build the same network.

def mlp(nn):
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))


def cnn(nn):
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 5))


MODELS = [  # (name, make, input shape)
    ("Linear(6, 4)", lambda nn: nn.Linear(6, 4), (3, 6)),
    ("Linear(6, 4, bias=False)", lambda nn: nn.Linear(6, 4, bias=False), (3, 6)),
    ("Linear(1, 1), batch 1", lambda nn: nn.Linear(1, 1), (1, 1)),
    ("Linear(6, 4), (batch, ..., in) input", lambda nn: nn.Linear(6, 4), (2, 3, 6)),
    ("Linear(6, 4), one vector", lambda nn: nn.Linear(6, 4), (6,)),
    ("Conv2d(2, 3, 3)", lambda nn: nn.Conv2d(2, 3, 3), (2, 2, 5, 6)),
    ("Conv2d(2, 3, 3, stride=2, padding=1, bias=False)",
     lambda nn: nn.Conv2d(2, 3, 3, stride=2, padding=1, bias=False), (2, 2, 7, 5)),
    ("Conv2d(1, 2, 2, padding=2)", lambda nn: nn.Conv2d(1, 2, 2, padding=2), (1, 1, 4, 4)),
    ("MaxPool2d(2)", lambda nn: nn.MaxPool2d(2), (2, 3, 4, 6)),
    ("MaxPool2d(3, stride=1)", lambda nn: nn.MaxPool2d(3, stride=1), (1, 2, 5, 5)),
    ("Flatten()", lambda nn: nn.Flatten(), (2, 3, 2, 2)),
    ("ReLU()", lambda nn: nn.ReLU(), (3, 4)),
    ("Tanh()", lambda nn: nn.Tanh(), (3, 4)),
    ("Sigmoid()", lambda nn: nn.Sigmoid(), (3, 4)),
    ("Dropout(0.5), eval mode", lambda nn: nn.Dropout(0.5), (3, 4)),
    ("MLP", mlp, (4, 6)),
    ("MLP with Tanh, Dropout (eval mode), Sigmoid", lambda nn: nn.Sequential(
        nn.Linear(6, 5), nn.Tanh(), nn.Dropout(0.2), nn.Linear(5, 4, bias=False), nn.Sigmoid()), (4, 6)),
    ("nested Sequential", lambda nn: nn.Sequential(
        nn.Sequential(nn.Linear(4, 4), nn.ReLU()), nn.Linear(4, 2)), (3, 4)),
    ("CNN", cnn, (2, 1, 8, 8)),
    # sizes of the demo's and the benchmark's networks: long sums, where float32 rounding adds up
    ("Linear(784, 128)", lambda nn: nn.Linear(784, 128), (16, 784)),
    ("Conv2d(16, 32, 5)", lambda nn: nn.Conv2d(16, 32, 5), (4, 16, 12, 12)),
    ("CNN with overlapping pooling", lambda nn: nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.MaxPool2d(3, stride=1), nn.Tanh(), nn.Conv2d(4, 2, 2, stride=2),
        nn.Flatten(), nn.Linear(2 * 2 * 2, 3)), (2, 3, 8, 8)),
]


def torch_name(name):
    """PyTorch's name for a minigrad parameter: a Sequential's layers are numbered without "layers."."""
    return name.replace("layers.", "")


def twin_models(make, dtype, weights_from="minigrad"):
    """The same network in both frameworks, in dtype, the weights copied from one into the other."""
    ours, theirs = make(mg), make(torch.nn).to(torch.float64 if dtype == np.float64 else torch.float32)
    if dtype == np.float64:  # minigrad has no .double(): give each parameter float64 numbers instead
        for parameter in ours.parameters():
            parameter.data = parameter.data.astype(np.float64)
    if weights_from == "minigrad":
        theirs.load_state_dict({torch_name(name): torch.tensor(array)
                                for name, array in ours.state_dict().items()})
    else:
        their_state = theirs.state_dict()
        ours.load_state_dict({name: their_state[torch_name(name)].numpy() for name in ours.state_dict()})
    return ours, theirs


def check_layers(checks):
    for dtype, (name, make, shape), weights_from in itertools.product(
            DTYPES, MODELS, ["minigrad", "PyTorch (load_state_dict)"]):
        case = f"{name}, weights from {weights_from}, {np.dtype(dtype).name}"
        ours, theirs = twin_models(make, dtype, weights_from)
        names = [torch_name(name) for name in ours.state_dict()]
        checks.expect(case, "parameter names", names == list(theirs.state_dict()),
                      f"{names}, PyTorch {list(theirs.state_dict())}")
        ours.eval()  # Dropout passes its input through
        theirs.eval()
        check_layer(checks, case, ours, theirs, values(*shape), dtype)


def check_layer(checks, case, ours, theirs, x, dtype):
    """Forward and backward through both models: the output, the input's gradient, each parameter's."""
    x = np.array(x, dtype)
    x_ours, x_theirs = mg.Tensor(x.copy(), requires_grad=True), torch.tensor(x, requires_grad=True)
    expected = theirs(x_theirs)
    output_grad = RNG.standard_normal(expected.shape).astype(dtype)
    expected.backward(torch.tensor(output_grad))
    try:
        result = ours(x_ours)
        result.backward(output_grad.copy())
    except Exception as error:
        return checks.expect(case, "error", False, f"{type(error).__name__}: {error}")
    checks.compare(case, "result", result.data, expected)
    checks.compare(case, "gradient of the input", x_ours.grad, x_theirs.grad)
    their_parameters = dict(theirs.named_parameters())
    for name, parameter in ours.named_parameters():
        checks.compare(case, f"gradient of {name}", parameter.grad,
                       their_parameters[torch_name(name)].grad)


# ---- optimizers ----
# As with the layers, minigrad and torch.optim share names and arguments: make(mg), make(torch.optim).

OPTIMIZERS = [
    ("SGD(lr=0.1)", lambda optim, params: optim.SGD(params, lr=0.1)),
    ("SGD(lr=0.1, momentum=0.9)", lambda optim, params: optim.SGD(params, lr=0.1, momentum=0.9)),
    ("SGD(lr=0.1, weight_decay=0.01)",
     lambda optim, params: optim.SGD(params, lr=0.1, weight_decay=0.01)),
    ("SGD(lr=0.05, momentum=0.9, weight_decay=0.1)",
     lambda optim, params: optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=0.1)),
    ("Adam()", lambda optim, params: optim.Adam(params)),
    ("Adam(lr=0.01, weight_decay=0.01)",
     lambda optim, params: optim.Adam(params, lr=0.01, weight_decay=0.01)),
    ("Adam(lr=0.01, betas=(0.8, 0.99), eps=1e-6)",
     lambda optim, params: optim.Adam(params, lr=0.01, betas=(0.8, 0.99), eps=1e-6)),
]
STEPS = 10


def check_optimizers(checks):
    """The weights after each of 10 steps from the same weights with the same gradients. The gradients'
    scale differs per parameter (Adam divides it out, but not from eps), and the last parameter has no
    gradient at step 4: both frameworks then leave it alone, its momentum and Adam's step count too."""
    for dtype, (name, make) in itertools.product(DTYPES, OPTIMIZERS):
        case = f"{name}, {np.dtype(dtype).name}"
        ours, theirs = twin_models(lambda nn: nn.Sequential(nn.Linear(6, 5), nn.Linear(5, 3, bias=False)),
                                   dtype)
        optimizer, their_optimizer = make(mg, ours.parameters()), make(torch.optim, theirs.parameters())
        parameters = list(zip(ours.parameters(), theirs.parameters()))
        for step in range(1, STEPS + 1):
            for k, (parameter, their_parameter) in enumerate(parameters):
                if step == 4 and k == len(parameters) - 1:
                    parameter.grad, their_parameter.grad = None, None
                else:
                    grad = RNG.standard_normal(parameter.shape).astype(dtype) * 10.0 ** (1 - k)
                    parameter.grad, their_parameter.grad = grad, torch.tensor(grad)
            optimizer.step()
            their_optimizer.step()
            compare_weights(checks, case, f"after step {step}", ours, theirs)


def compare_weights(checks, case, when, ours, theirs):
    their_state = theirs.state_dict()
    for name, weights in ours.state_dict().items():
        checks.compare(case, f"{name} {when}", weights, their_state[torch_name(name)])


# ---- initialization ----

INIT_LAYERS = [  # (name, make, fan_in): PyTorch draws weight and bias uniformly in +-1/sqrt(fan_in)
    ("Linear(784, 128)", lambda nn: nn.Linear(784, 128), 784),
    ("Linear(10, 5000)", lambda nn: nn.Linear(10, 5000), 10),
    ("Conv2d(3, 64, 5)", lambda nn: nn.Conv2d(3, 64, 5), 75),
    ("Conv2d(16, 128, 3)", lambda nn: nn.Conv2d(16, 128, 3), 144),
]


def check_init(checks):
    """Random, so checked statistically, in both frameworks against the same law, uniform(-b, b) with
    b = 1/sqrt(fan_in): every number within +-b, the largest close to b, the mean within 5 standard
    errors of 0, the standard deviation within 5 standard errors of b/sqrt(3), half within +-b/2."""
    mg.manual_seed(0)
    torch.manual_seed(0)
    for name, make, fan_in in INIT_LAYERS:
        b = 1 / np.sqrt(fan_in)
        ours, theirs = make(mg).state_dict(), make(torch.nn).state_dict()
        for weight_name, weights in ours.items():
            for framework, w in [("minigrad", weights), ("PyTorch", theirs[weight_name].numpy())]:
                case, n = f"{name} {weight_name} ({w.size} numbers), {framework}", w.size
                largest, spread, inner = np.abs(w).max(), w.std(), np.mean(np.abs(w) <= b / 2)
                checks.expect(case, "dtype", w.dtype == np.float32, f"{w.dtype}")
                checks.expect(case, "within +-b", largest <= b * (1 + 1e-6),
                              f"max |w| {largest:.6g}, b {b:.6g}")
                # the largest of n draws falls short of b by b/n on average: by 10 b/n once in e^10
                checks.expect(case, "reaches b", largest >= b * (1 - 10 / n),
                              f"max |w| {largest:.6g}, b {b:.6g}")
                checks.expect(case, "mean", abs(w.mean()) <= 5 * b / np.sqrt(3 * n),
                              f"mean {w.mean():.3g}, standard error {b / np.sqrt(3 * n):.3g}")
                # the standard error of the standard deviation b/sqrt(3) of uniform(-b, b): b/sqrt(15 n)
                checks.expect(case, "spread", abs(spread - b / np.sqrt(3)) <= 5 * b / np.sqrt(15 * n),
                              f"std {spread:.6g}, expected {b / np.sqrt(3):.6g}")
                checks.expect(case, "half within +-b/2", abs(inner - 0.5) <= 5 * 0.5 / np.sqrt(n),
                              f"{inner:.4f} of the numbers")


# ---- end to end ----

def check_end_to_end(checks):
    """Three training steps of a small MLP and a small CNN: forward, cross_entropy, backward, SGD with
    momentum; the loss, every gradient and every weight after each step."""
    networks = [("MLP", mlp, (8, 6), 3), ("CNN", cnn, (8, 1, 8, 8), 5)]
    for dtype, (name, make, shape, classes) in itertools.product(DTYPES, networks):
        case = f"{name}, {np.dtype(dtype).name}"
        ours, theirs = twin_models(make, dtype)
        optimizer = mg.SGD(ours.parameters(), lr=0.1, momentum=0.9)
        their_optimizer = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9)
        for step in range(1, 4):
            x, y = np.array(values(*shape), dtype), RNG.integers(0, classes, shape[0])
            loss = mg.cross_entropy(ours(mg.Tensor(x)), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            their_loss = F.cross_entropy(theirs(torch.tensor(x)), torch.tensor(y))
            their_optimizer.zero_grad()
            their_loss.backward()
            their_optimizer.step()
            checks.compare(case, f"loss at step {step}", loss.data, their_loss)
            their_parameters = dict(theirs.named_parameters())
            for parameter_name, parameter in ours.named_parameters():
                checks.compare(case, f"gradient of {parameter_name} at step {step}", parameter.grad,
                               their_parameters[torch_name(parameter_name)].grad)
            compare_weights(checks, case, f"after step {step}", ours, theirs)


# ---- running ----

GROUPS = [("elementwise", check_elementwise), ("matmul", check_matmul), ("reductions", check_reductions),
          ("indexing", check_indexing), ("functions", check_functions), ("conv2d", check_conv2d),
          ("max_pool2d", check_max_pool2d), ("losses", check_losses), ("layers", check_layers),
          ("optimizers", check_optimizers), ("init", check_init), ("end-to-end", check_end_to_end)]


def main():
    global mg, torch, F
    folder = os.path.abspath(os.environ.get("MINIGRAD_DIR") or REPO)
    sys.path.insert(0, folder)
    if not os.path.isfile(os.path.join(folder, "minigrad.py")):  # else a pip-installed one would do
        sys.exit(f"compare_torch.py: there is no minigrad.py in {folder} (MINIGRAD_DIR names the folder)")
    import minigrad as mg
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        sys.exit("compare_torch.py needs PyTorch: run it with a Python that has torch "
                 "(on the project's machine: /work/torchvenv/bin/python)")
    torch.set_num_threads(1)  # as OPENBLAS_NUM_THREADS=1 for numpy
    print(f"minigrad from {mg.__file__}; numpy {np.__version__}, torch {torch.__version__}")
    checks, start = Checks(), time.perf_counter()
    for name, group in GROUPS:
        try:
            group(checks)
        except Exception as error:  # a crash (most likely an API change) stops its group, not the run
            checks.expect(name, "stopped by an error", False, f"{type(error).__name__}: {error}")
        checks.end_group(name)
    print(f"{checks.total} checks, {checks.failed} disagree ({time.perf_counter() - start:.0f} s)")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
