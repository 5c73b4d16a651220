"""Op-by-op agreement of minigrad with PyTorch: forward values and gradients, in float32 and float64.

    /work/torchvenv/bin/python benchmarks/compare_torch.py                       # about half a minute
    MINIGRAD_DIR=/tmp/snap /work/torchvenv/bin/python benchmarks/compare_torch.py  # another minigrad.py

Re-run it after every change to minigrad.py: the agreement with PyTorch should stay as it was. Needs
numpy and torch (PyTorch is never a dependency of minigrad, only of this script).

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
                   Sequential: forward, input and parameter gradients, weights copied from minigrad
    optimizers     SGD (momentum, weight_decay) and Adam: 10 steps from the same weights with the same
                   gradients; the weights after every step
    init           default initialization of Linear and Conv2d: bounds, mean and spread, beside PyTorch's
    end-to-end     a small MLP and a small CNN: cross_entropy, backward, SGD, three steps, weight by weight

Tolerance: minigrad's value m agrees with PyTorch's t when |m - t| <= rtol |t| + atol max|t|, the
maximum over the compared array (rounding errors of a sum scale with its terms, not with the result):
rtol 1e-5 and atol 1e-6 in float32, 1e-10 and 1e-10 in float64. Shapes and dtypes must be equal,
and infinities and NaNs in the same places.

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

if __name__ == "__main__":  # before numpy starts OpenBLAS: one thread, for repeatable sums and the shared machine
    os.environ["OPENBLAS_NUM_THREADS"] = "1"

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DTYPES = (np.float32, np.float64)
TOLERANCES = {np.dtype(np.float32): (1e-5, 1e-6), np.dtype(np.float64): (1e-10, 1e-10)}  # rtol, atol
RNG = np.random.default_rng(0)  # the numbers of every case; the same run after run
mg = torch = F = None  # minigrad, torch and torch.nn.functional, imported by main()


# ---- comparing ----

class Checks:
    """Counts the checks of each group and keeps the disagreements, to print when the group ends."""

    def __init__(self):
        self.total, self.failed = 0, 0
        self.count, self.failures = 0, []

    def compare(self, case, what, mine, theirs):
        """One check: minigrad's array (None: no gradient, i.e. zeros) against PyTorch's tensor or array."""
        theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else np.asarray(theirs)
        mine = np.zeros_like(theirs) if mine is None else np.asarray(mine)
        self.expect(case, what, *difference(mine, theirs))

    def expect(self, case, what, ok, detail=""):
        self.count += 1
        if not ok:
            self.failures.append(f"{case}: {what}: {detail}")

    def end_group(self, name):
        line = f"{name}: {self.count} checks, " + (f"{len(self.failures)} disagree" if self.failures else "all agree")
        print(line, *(f"    {failure}" for failure in self.failures[:20]), sep="\n", flush=True)
        if len(self.failures) > 20:
            print(f"    ... and {len(self.failures) - 20} more")
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
    if np.all(error <= rtol * size + atol * size.max(initial=0)):
        return True, ""
    relative = error[size > 0] / size[size > 0]
    return False, (f"max abs error {error.max():.3g}, max rel error {relative.max(initial=np.inf):.3g} "
                   f"(max |PyTorch| {size.max():.3g})")


@contextlib.contextmanager
def no_warnings():
    """numpy's floating-point warnings (overflow, invalid value, ...) and Python warnings become errors."""
    with np.errstate(all="raise"), warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def check_op(checks, case, mine, theirs, inputs, dtype, strict=False):
    """Run one computation in both frameworks on the same numbers and compare the result, then, after
    backward() in both with the same random output gradient, the gradient of every input.
    mine and theirs take minigrad's and PyTorch's tensors; inputs maps names to arrays (cast to dtype).
    strict: minigrad must also give finite numbers without a warning."""
    case = f"{case}, {np.dtype(dtype).name}"
    arrays = {name: np.array(x, dtype=dtype) for name, x in inputs.items()}
    refs = {name: torch.tensor(x, requires_grad=True) for name, x in arrays.items()}
    expected = theirs(*refs.values())
    output_grad = RNG.standard_normal(expected.shape).astype(dtype)
    expected.backward(torch.tensor(output_grad))
    try:
        ours = {name: mg.Tensor(x.copy(), requires_grad=True) for name, x in arrays.items()}
        with no_warnings() if strict else contextlib.nullcontext():
            result = mine(*ours.values())
            result.backward(output_grad.copy())
    except Exception as error:  # a crash is a disagreement too; the other cases still run
        return checks.expect(case, "error", False, f"{type(error).__name__}: {error}")
    checks.compare(case, "result", result.data, expected)
    for name in arrays:
        checks.compare(case, f"gradient of {name}", ours[name].grad, refs[name].grad)
    if strict:
        finite = [result.data] + [x.grad for x in ours.values() if x.grad is not None]
        checks.expect(case, "finite", all(np.isfinite(x).all() for x in finite), "a non-finite number")


def values(*shape, low=None):
    """Random test numbers of a shape: normal, or uniform in [low, 2] (away from 0, e.g. for division)."""
    if low is None:
        return RNG.standard_normal(shape)
    return RNG.uniform(low, 2, shape) * RNG.choice([-1, 1], shape)


# ---- elementwise arithmetic ----

BINARY = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}
SHAPE_PAIRS = [((), ()), ((), (3,)), ((3,), ()), ((4,), (4,)), ((3, 1), (1, 4)), ((2, 3, 4), (4,)),
               ((4,), (2, 3, 4)), ((1,), (2, 3)), ((2, 3), (1,)), ((2, 1, 4), (3, 1)),
               ((5, 1, 3), (1, 4, 1)), ((2, 3, 4), (2, 3, 4)), ((1, 1), (3,)), ((2, 3, 1, 5), (3, 4, 1))]
NUMBERS = [2.5, -0.75, 3]  # a Python int too: minigrad makes it a float of the tensor's dtype, as PyTorch does
EXPONENTS = [0, 1, 2, 3, 2.0, 0.5, -1, -0.5, 1.5]


def check_elementwise(checks):
    for dtype in DTYPES:
        for symbol, op in BINARY.items():
            low = 0.5 if symbol == "/" else None  # keep divisors away from 0
            for a_shape, b_shape in SHAPE_PAIRS:
                inputs = {"a": values(*a_shape), "b": values(*b_shape, low=low)}
                check_op(checks, f"a {symbol} b, {a_shape} {b_shape}", op, op, inputs, dtype)
                # a numpy array on either side: minigrad's __r*__ methods; PyTorch gets it as a tensor
                # (numpy 2 refuses `array * torch_tensor`)
                for array_side in "ab":
                    constant = np.array(inputs[array_side], dtype)
                    shapes = f"{a_shape} {b_shape}, {array_side} a numpy array"
                    if array_side == "a":
                        check_op(checks, f"a {symbol} b, {shapes}", lambda b, c=constant: op(c, b),
                                 lambda b, c=constant: op(torch.tensor(c), b), {"b": inputs["b"]}, dtype)
                    else:
                        check_op(checks, f"a {symbol} b, {shapes}", lambda a, c=constant: op(a, c),
                                 lambda a, c=constant: op(a, torch.tensor(c)), {"a": inputs["a"]}, dtype)
            for number in NUMBERS:
                for shape in [(), (3,), (2, 3)]:
                    x = {"x": values(*shape, low=low)}
                    check_op(checks, f"x {symbol} {number!r}, {shape}", lambda x: op(x, number),
                             lambda x: op(x, number), x, dtype)
                    check_op(checks, f"{number!r} {symbol} x, {shape}", lambda x: op(number, x),
                             lambda x: op(number, x), x, dtype)
        # one tensor on several paths: backward() must add the gradients that meet
        for text, fn in [("x * x", lambda x: x * x), ("x - x", lambda x: x - x), ("x / (x * x + 1)",
                         lambda x: x / (x * x + 1)), ("x + x * 2 - x / 3", lambda x: x + x * 2 - x / 3)]:
            check_op(checks, text, fn, fn, {"x": values(3, 4)}, dtype)
        check_op(checks, "-x", operator.neg, operator.neg, {"x": values(2, 3)}, dtype)
        for exponent in EXPONENTS:
            fractional = exponent != int(exponent) or exponent < 0  # defined (and finite) for x > 0 only
            x = np.abs(values(2, 5, low=0.2)) if fractional else values(2, 5)
            power = lambda x, p=exponent: x ** p  # noqa: E731 (the same for both frameworks)
            check_op(checks, f"x ** {exponent!r}", power, power, {"x": x}, dtype)
            if not fractional:  # at x = 0: x ** 0 has slope 0 (PyTorch: 0 too), x ** 1 slope 1
                check_op(checks, f"x ** {exponent!r} at 0", power, power, {"x": np.zeros(4)}, dtype)


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
            check_op(checks, case + ", a a numpy array", lambda b: a @ b, lambda b: torch.tensor(a) @ b,
                     {"b": inputs["b"]}, dtype)
            check_op(checks, case + ", b a numpy array", lambda a: a @ b, lambda a: a @ torch.tensor(b),
                     {"a": inputs["a"]}, dtype)
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
                        ours = lambda x, n=name, a=axis, k=keepdims: getattr(x, n)(axis=a, keepdims=k)  # noqa: E731
                        case = f"x.{name}(axis={axis}, keepdims={keepdims}), {shape}"
                        check_op(checks, case, ours, torch_reduction(name, axis, keepdims),
                                 {"x": values(*shape)}, dtype)
                    # ties: small integers repeat, so several elements share a maximum
                    ties = RNG.integers(-2, 2, shape).astype(float)
                    check_op(checks, f"x.max(axis={axis}, keepdims={keepdims}) with ties, {shape}",
                             lambda x, a=axis, k=keepdims: x.max(axis=a, keepdims=k),
                             torch_reduction("max", axis, keepdims), {"x": ties}, dtype)
            check_op(checks, f"x.sum(), {shape}", lambda x: x.sum(), lambda x: x.sum(), {"x": values(*shape)},
                     dtype)
        check_op(checks, "x.max() all equal", lambda x: x.max(), torch.amax, {"x": np.ones((2, 3))}, dtype)


# ---- moving numbers around ----

RESHAPES = [((2, 3, 4), (6, 4)), ((2, 3, 4), (-1,)), ((2, 3, 4), (4, -1)), ((6,), (2, 3)),
            ((2, 3), (3, 1, 2)), ((), (1, 1)), ((1, 1), ()), ((2, 3, 4), (2, -1, 3))]
TRANSPOSES = [((2, 3), ()), ((2, 3), (1, 0)), ((2, 3, 4), ()), ((2, 3, 4), (2, 0, 1)), ((2, 3, 4), (1, 0, 2)),
              ((2, 3, 4), (-1, 0, 1)), ((2, 3, 4), (0, 1, 2)), ((2, 3, 4, 5), (3, 1, 0, 2)), ((4,), ())]
INDICES = [  # (shape, index): slices, ints (negative too), integer arrays with repeats, masks
    ((5, 4), 2), ((5, 4), -1), ((5, 4), slice(1, 4)), ((5, 4), slice(None, None, 2)),
    ((5, 4), (slice(1, None), 2)), ((5, 4), (-2, slice(None, 3))), ((5, 4), [0, 0, 3]),
    ((5, 4), np.array([-1, 0, -1, 2])), ((5, 4), ([0, 2, 2], [1, 1, 3])), ((5, 4), (slice(None), [3, 3, 0])),
    ((5, 4), np.array([[0, 1], [1, 1]])), ((3, 4, 5), (1, slice(None), [0, 4, 4])),
    ((3, 4, 5), (Ellipsis, -1)), ((3, 4, 5), (slice(None), 1, slice(1, 5, 2))), ((6,), slice(-4, -1)),
    ((6,), [5, 5, 5, -6]), ((3, 4), np.array([[True, False, True, True], [False] * 4, [True] * 4]))]


def torch_index(index):
    """The same index for a torch tensor: integer and boolean lists or arrays become tensors."""
    if isinstance(index, tuple):
        return tuple(torch_index(i) for i in index)
    return torch.as_tensor(np.asarray(index)) if isinstance(index, (list, np.ndarray)) else index


def check_indexing(checks):
    for dtype in DTYPES:
        for shape, new_shape in RESHAPES:
            x = {"x": values(*shape)}
            check_op(checks, f"x.reshape{new_shape}", lambda x: x.reshape(*new_shape),
                     lambda x: x.reshape(*new_shape), x, dtype)
            check_op(checks, f"x.reshape({new_shape})", lambda x: x.reshape(new_shape),
                     lambda x: x.reshape(new_shape), x, dtype)
        for shape, axes in TRANSPOSES:  # numpy's meaning: a full reordering; none given: reversed
            dims = axes or tuple(reversed(range(len(shape))))
            check_op(checks, f"x.transpose{axes}, {shape}", lambda x: x.transpose(*axes),
                     lambda x: x.permute(*dims), {"x": values(*shape)}, dtype)
            if axes:
                check_op(checks, f"x.transpose({axes}), {shape}", lambda x: x.transpose(axes),
                         lambda x: x.permute(*dims), {"x": values(*shape)}, dtype)
        for shape in [(4,), (2, 3), (2, 3, 4)]:  # .T reverses every axis, as in numpy
            check_op(checks, f"x.T, {shape}", lambda x: x.T, lambda x: x.permute(*reversed(range(x.ndim))),
                     {"x": values(*shape)}, dtype)
        for shape, index in INDICES:
            check_op(checks, f"x[{index!r}], {shape}".replace("\n", ""), lambda x: x[index],
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
            check_op(checks, f"x.log(), {shape}", lambda x: x.log(), torch.log, {"x": np.abs(x) + 0.1}, dtype)
            # relu at exactly 0: PyTorch's gradient there is 0, and so must minigrad's be
            check_op(checks, f"x.relu() with zeros, {shape}", lambda x: x.relu(), torch.relu,
                     {"x": with_extremes(shape, 1.0)}, dtype)
            for magnitude in (1.0, 10.0, 1e4):  # 1e4: e^x overflows; the results must not
                case = f"magnitude {magnitude:g}, {shape}"
                strict = magnitude > 10
                x = {"x": with_extremes(shape, magnitude)}
                check_op(checks, f"x.tanh(), {case}", lambda x: x.tanh(), torch.tanh, x, dtype, strict)
                check_op(checks, f"x.sigmoid(), {case}", lambda x: x.sigmoid(), torch.sigmoid, x, dtype, strict)
                check_op(checks, f"x.softmax(), {case}", lambda x: x.softmax(), lambda x: x.softmax(-1), x, dtype,
                         strict)
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
            inputs = {"x": values(batch, channels, height, width), "w": values(out_channels, channels, kernel, kernel)}
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
            "zeros after a ReLU": np.maximum(values(*shape), 0), "small integers": RNG.integers(0, 3, shape)}


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
            for kind, given in [("int64", targets), ("int32", targets.astype(np.int32)), ("a list", list(targets))]:
                check_op(checks, f"cross_entropy(logits {(n, classes)} x {magnitude:g}, targets {kind})",
                         lambda z: mg.cross_entropy(z, given),
                         lambda z: F.cross_entropy(z, torch.as_tensor(targets)), logits, dtype, magnitude > 10)
        for shape in [(5,), (3, 4), (2, 3, 4), (4, 1)]:
            prediction, target = values(*shape), values(*shape)
            check_op(checks, f"mse_loss(prediction, target), {shape}", mg.mse_loss, F.mse_loss,
                     {"prediction": prediction, "target": target}, dtype)
            constant = np.array(target, dtype)
            check_op(checks, f"mse_loss(prediction, numpy array), {shape}", lambda p: mg.mse_loss(p, constant),
                     lambda p: F.mse_loss(p, torch.tensor(constant)), {"prediction": prediction}, dtype)


# ---- layers ----
# Each model is written once, as a function of a namespace: minigrad and torch.nn have the same layer
# names and arguments, so make(mg) and make(torch.nn) build the same network.

MODELS = [  # (name, make, input shape)
    ("Linear(6, 4)", lambda nn: nn.Linear(6, 4), (3, 6)),
    ("Linear(6, 4, bias=False)", lambda nn: nn.Linear(6, 4, bias=False), (3, 6)),
    ("Linear(1, 1), batch 1", lambda nn: nn.Linear(1, 1), (1, 1)),
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
    ("Dropout(0.5) in eval mode", lambda nn: nn.Dropout(0.5), (3, 4)),
    ("MLP", lambda nn: nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)), (4, 6)),
    ("MLP with Tanh, Dropout, Sigmoid", lambda nn: nn.Sequential(
        nn.Linear(6, 5), nn.Tanh(), nn.Dropout(0.2), nn.Linear(5, 4, bias=False), nn.Sigmoid()), (4, 6)),
    ("nested Sequential", lambda nn: nn.Sequential(nn.Sequential(nn.Linear(4, 4), nn.ReLU()), nn.Linear(4, 2)),
     (3, 4)),
    ("CNN", lambda nn: nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                     nn.Linear(4 * 4 * 4, 5)), (2, 1, 8, 8)),
    ("CNN with overlapping pooling", lambda nn: nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.MaxPool2d(3, stride=1), nn.Tanh(), nn.Conv2d(4, 2, 2, stride=2), nn.Flatten(),
        nn.Linear(2 * 2 * 2, 3)), (2, 3, 8, 8)),
]


def torch_name(name):
    """PyTorch's name for a minigrad parameter: a Sequential's layers are numbered without "layers."."""
    return name.replace("layers.", "")


def twin_models(make, dtype):
    """The same network in both frameworks, in dtype, with PyTorch's weights copied from minigrad's."""
    ours, theirs = make(mg), make(torch.nn).to(torch.float64 if dtype == np.float64 else torch.float32)
    if dtype == np.float64:  # minigrad has no .double(): give each parameter float64 numbers instead
        for parameter in ours.parameters():
            parameter.data = parameter.data.astype(np.float64)
    state = {torch_name(name): torch.tensor(array) for name, array in ours.state_dict().items()}
    theirs.load_state_dict(state)
    return ours, theirs


def check_layers(checks):
    for dtype in DTYPES:
        for name, make, shape in MODELS:
            case = f"{name}, {np.dtype(dtype).name}"
            try:
                ours, theirs = twin_models(make, dtype)
            except Exception as error:
                checks.expect(case, "copying the weights", False, f"{type(error).__name__}: {error}")
                continue
            names = [torch_name(n) for n, _ in ours.named_parameters()]
            checks.expect(case, "parameter names", names == [n for n, _ in theirs.named_parameters()],
                          f"{names}, PyTorch {[n for n, _ in theirs.named_parameters()]}")
            ours.eval(), theirs.eval()  # Dropout passes its input through

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
        checks.compare(case, f"gradient of {name}", parameter.grad, their_parameters[torch_name(name)].grad)
