"""Op-by-op agreement of minigrad with PyTorch: forward values and gradients, float32 and float64.

    /tmp/torchv/bin/python benchmarks/compare_torch.py   # a few seconds; any Python with torch
    MINIGRAD_DIR=/tmp/old /tmp/torchv/bin/python benchmarks/compare_torch.py  # /tmp/old/minigrad.py

A case is the code of a computation, run on the same numbers in both; then backward() with the
same random output gradient (a .sum() would let errors cancel). The result and every gradient are
a check each. Groups: elementwise (+ - * / with tensors, numbers, numpy arrays, broadcast; neg;
**), matmul, reductions (sum, mean, max over every kind of axis, keepdims, ties), indexing
(reshape, transpose, .T, x[index]), functions (exp, log, relu, tanh, sigmoid, softmax,
log_softmax, inputs up to 1e4), conv2d (stride, padding, channels, bias), max_pool2d (kernels,
strides, ties), losses (cross_entropy, mse_loss), layers (each layer and Sequential, weights copied
both ways), optimizers (SGD, Adam: 10 steps), init (default initialization, statistically) and
end-to-end (3 SGD steps of an MLP and a CNN). m agrees with PyTorch's t when |m - t| <= rtol |t| +
atol T, T the largest |t| of the array or 1: rounding errors of a sum scale with its terms. What
README.md's "minigrad and PyTorch" table calls intended (axis for dim, transpose for permute,
layers.0.weight for 0.weight) is bridged. Exit status 1 if anything disagrees.
"""
import contextlib
import itertools
import os
import sys
import time
import warnings

if __name__ == "__main__":  # before numpy starts OpenBLAS: one thread, repeatable, kind to others
    os.environ["OPENBLAS_NUM_THREADS"] = "1"

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DTYPES = (np.float32, np.float64)
TOLERANCES = {np.dtype(np.float32): (1e-5, 1e-6), np.dtype(np.float64): (1e-10, 1e-10)}
SHOWN = 20  # disagreements printed per group
RNG = np.random.default_rng(0)  # the numbers of every case, the same run after run
mg = torch = F = None  # minigrad, torch and torch.nn.functional, imported by main()

class Checks:
    """Counts the checks of a group and keeps its disagreements, printed when the group ends."""

    def __init__(self):
        self.total, self.failed, self.count, self.failures = 0, 0, 0, []

    def compare(self, case, what, mine, theirs):
        """minigrad's array (None: no gradient, zeros) against PyTorch's tensor or array."""
        theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else np.asarray(theirs)
        mine = np.zeros_like(theirs) if mine is None else np.asarray(mine)
        self.expect(case, what, *difference(mine, theirs))

    def expect(self, case, what, ok, detail=""):
        self.count += 1
        if not ok:
            self.failures.append(f"{case}: {what}: {detail}")

    def end_group(self, name):
        print(f"{name}: {self.count} checks, "
              + (f"{len(self.failures)} disagree" if self.failures else "all agree"), flush=True)
        for failure in self.failures[:SHOWN]:
            print(f"    {failure}")
        self.total, self.failed = self.total + self.count, self.failed + len(self.failures)
        self.count, self.failures = 0, []

checks = Checks()

def difference(mine, theirs):
    """(True, "") if minigrad's array agrees with PyTorch's, else (False, what differs)."""
    if mine.shape != theirs.shape or mine.dtype != theirs.dtype:
        return False, f"{mine.dtype} {mine.shape}, PyTorch {theirs.dtype} {theirs.shape}"
    rtol, atol = TOLERANCES[theirs.dtype]
    finite = np.isfinite(theirs)
    if not np.array_equal(mine[~finite], theirs[~finite], equal_nan=True):
        return False, f"infinities or NaNs differ: {mine[~finite]}, PyTorch {theirs[~finite]}"
    error, size = np.abs(mine[finite] - theirs[finite]), np.abs(theirs[finite])
    if np.all(error <= rtol * size + atol * max(size.max(initial=0), 1)):
        return True, ""
    return False, f"max abs error {error.max():.3g} (max |PyTorch| {size.max():.3g})"

@contextlib.contextmanager
def no_warnings():
    """What a user would see becomes an error: numpy's overflow, division by zero and invalid value
    (not underflow: e^-10000 is 0, rightly), and Python's warnings."""
    with np.errstate(over="raise", divide="raise", invalid="raise"), warnings.catch_warnings():
        warnings.simplefilter("error")
        yield

def to_torch(value, dtype):
    """A constant as PyTorch gets it: arrays and lists become tensors, of dtype if of floats (numpy
    2 refuses array * tensor; minigrad computes in the tensor's dtype, PyTorch in the wider)."""
    if isinstance(value, tuple):
        return tuple(to_torch(part, dtype) for part in value)
    if not isinstance(value, (list, np.ndarray)):
        return value
    array = np.asarray(value)
    kinds = {"f": dtype, "i": np.int64}  # floats in the case's dtype, integers int64 (as targets)
    return torch.as_tensor(array.astype(kinds.get(array.dtype.kind, array.dtype)))

def check(code, inputs, dtype, torch_code=None, constants=(), strict=False, models=None):
    """Run code (torch_code in PyTorch, if given) with inputs' names bound to tensors of dtype,
    constants' to their values (to_torch's in PyTorch), F to minigrad or torch.nn.functional and
    model to models' minigrad or PyTorch network; compare the results and the gradients of the
    inputs and of the models' parameters. strict: finite numbers, and no warnings, in minigrad."""
    constants = dict(constants)
    case = ", ".join([code] + [f"{k} {np.shape(v)}" for k, v in inputs.items()]
                     + [f"{k} {v.shape}" if isinstance(v, np.ndarray) and v.size > 12
                        else f"{k}={v!r}" for k, v in constants.items()]
                     + [np.dtype(dtype).name])
    arrays = {name: np.array(x, dtype=dtype) for name, x in inputs.items()}
    refs = {name: torch.tensor(x, requires_grad=True) for name, x in arrays.items()}
    theirs = {name: to_torch(value, dtype) for name, value in constants.items()}
    expected = eval(torch_code or code, {"F": F, "model": models and models[1], **theirs, **refs})
    output_grad = RNG.standard_normal(expected.shape).astype(dtype)
    expected.backward(torch.tensor(output_grad))
    ours = {name: mg.Tensor(x.copy(), requires_grad=True) for name, x in arrays.items()}
    try:  # a crash is a disagreement too; the other cases still run
        with no_warnings() if strict else contextlib.nullcontext():
            result = eval(code, {"F": mg, "model": models and models[0], **constants, **ours})
            if result.shape == expected.shape:  # else the output gradient would not fit
                result.backward(output_grad.copy())
    except Exception as error:
        return checks.expect(case, "error", False, f"{type(error).__name__}: {error}")
    checks.compare(case, "result", result.data, expected)
    if result.shape != expected.shape:
        return
    for name in arrays:
        checks.compare(case, f"gradient of {name}", ours[name].grad, refs[name].grad)
    if models:
        their_parameters = dict(models[1].named_parameters())
        for name, parameter in models[0].named_parameters():
            checks.compare(case, f"gradient of {name}", parameter.grad,
                           their_parameters[torch_name(name)].grad)
    if strict:
        finite = [result.data] + [x.grad for x in ours.values() if x.grad is not None]
        checks.expect(case, "finite", all(np.isfinite(x).all() for x in finite), "not finite")

def values(*shape, low=None):
    """Random numbers of a shape: normal, or in +-[low, 2] (away from 0, e.g. for division)."""
    if low is None:
        return RNG.standard_normal(shape)
    return RNG.uniform(low, 2, shape) * RNG.choice([-1, 1], shape)

SHAPE_PAIRS = [((), ()), ((), (3,)), ((3,), ()), ((4,), (4,)), ((3, 1), (1, 4)), ((2, 3, 4), (4,)),
               ((4,), (2, 3, 4)), ((1,), (2, 3)), ((2, 3), (1,)), ((2, 1, 4), (3, 1)),
               ((5, 1, 3), (1, 4, 1)), ((2, 3, 4), (2, 3, 4)), ((1, 1), (3,)),
               ((2, 3, 1, 5), (3, 4, 1))]
NUMBERS = [2.5, -0.75, 3]  # an int too: it becomes a float of the tensor's dtype, as in PyTorch
# one tensor on several paths: backward() must add the gradients that meet
PATHS = ["x * x", "x - x", "x / (x * x + 1)", "x + x * 2 - x / 3", "-x"]
MATMUL_SHAPES = [((2, 3), (3, 4)), ((1, 5), (5, 1)), ((4, 4), (4, 4)), ((2, 2, 3), (3, 4)),
                 ((3, 4), (2, 4, 5)), ((2, 3, 4), (2, 4, 5)), ((1, 3, 4), (2, 4, 5)),
                 ((2, 1, 3, 4), (5, 4, 2)), ((3, 1, 2, 3), (1, 4, 3, 2))]

def check_binary(code, a, b, dtype):
    """code (of a and b) on two tensors, then with a, then b, a numpy array (minigrad's __r*__)."""
    check(code, {"a": a, "b": b}, dtype)
    check(code, {"b": b}, dtype, constants={"a": np.array(a, dtype)})
    check(code, {"a": a}, dtype, constants={"b": np.array(b, dtype)})

def check_elementwise(dtype):
    for symbol in "+-*/":
        low = 0.5 if symbol == "/" else None  # keep divisors away from 0
        for a_shape, b_shape in SHAPE_PAIRS:
            check_binary(f"a {symbol} b", values(*a_shape), values(*b_shape, low=low), dtype)
        for number, shape in itertools.product(NUMBERS, [(), (3,), (2, 3)]):
            x = {"x": values(*shape, low=low)}
            check(f"x {symbol} {number!r}", x, dtype)
            check(f"{number!r} {symbol} x", x, dtype)
        # an array of the other dtype: minigrad computes in the tensor's dtype (the README's table:
        # float32 stays float32), PyTorch in the wider one; so PyTorch gets it in x's dtype
        wider = np.float64 if dtype == np.float32 else np.float32
        other = {"c": np.array(values(3, low=low), wider)}
        check(f"x {symbol} c", {"x": values(3, low=low)}, dtype, constants=other)
        check(f"c {symbol} x", {"x": values(3, low=low)}, dtype, constants=other)
    for code in PATHS:
        check(code, {"x": values(3, 4)}, dtype)
    for exponent in [0, 1, 2, 3, 2.0, 0.5, -1, -0.5, 1.5]:
        fractional = exponent != int(exponent) or exponent < 0  # finite for x > 0 only
        x = np.abs(values(2, 5, low=0.2)) if fractional else values(2, 5)
        check(f"x ** {exponent!r}", {"x": x}, dtype)
        if not fractional:  # at x = 0: x ** 0 has slope 0 in PyTorch, x ** 1 slope 1
            check(f"x ** {exponent!r}", {"x": np.zeros(4)}, dtype)

def check_matmul(dtype):
    for a_shape, b_shape in MATMUL_SHAPES:
        check_binary("a @ b", values(*a_shape), values(*b_shape), dtype)
    check("x @ x.T", {"x": values(3, 4)}, dtype)

def axes_of(ndim):
    """Every kind of axis argument that fits ndim axes: None, each int, negative, tuples."""
    axes = [None] + list(range(ndim)) + [-1]
    if ndim >= 2:
        axes += [(0, ndim - 1), (-1, 0), tuple(range(ndim))]
    if ndim >= 3:
        axes += [(1,), (0, 2)]
    return axes

def check_reductions(dtype):
    """PyTorch spells axis and keepdims dim and keepdim; its max over axes is amax, which, like
    minigrad's max, splits the gradient among ties."""
    for shape in [(5,), (3, 4), (2, 3, 4), (2, 1, 3, 2)]:
        for axis, keepdims in itertools.product(axes_of(len(shape)), (False, True)):
            dims = tuple(range(len(shape))) if axis is None else axis
            for name, torch_name in [("sum", "sum"), ("mean", "mean"), ("max", "amax")]:
                check(f"x.{name}(axis={axis}, keepdims={keepdims})", {"x": values(*shape)}, dtype,
                      f"x.{torch_name}(dim={dims}, keepdim={keepdims})")
            # ties: small integers repeat, so several elements share a maximum
            check(f"x.max(axis={axis}, keepdims={keepdims})",
                  {"x": RNG.integers(-2, 2, shape).astype(float)}, dtype,
                  f"x.amax(dim={dims}, keepdim={keepdims})")
        check("x.sum()", {"x": values(*shape)}, dtype)
    check("x.max()", {"x": np.ones((2, 3))}, dtype, "x.amax()")  # all equal

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
# Not here: an integer and an array apart, x[1, :, [0, 4, 4]]: numpy (and so minigrad, as the
# README's table says) puts the array's axis first, PyTorch in its place.

def check_indexing(dtype):
    """numpy's transpose (a full reordering; none given: reversed, as .T) is PyTorch's permute."""
    for shape, new in RESHAPES:
        check(f"x.reshape{new}", {"x": values(*shape)}, dtype, f"x.reshape({new})")
        check(f"x.reshape({new})", {"x": values(*shape)}, dtype)
    for shape, axes in TRANSPOSES:
        permute = f"x.permute{axes or tuple(reversed(range(len(shape))))}"
        check(f"x.transpose{axes}", {"x": values(*shape)}, dtype, permute)
        if axes:
            check(f"x.transpose({axes})", {"x": values(*shape)}, dtype, permute)
    for shape in [(4,), (2, 3), (2, 3, 4)]:
        check("x.T", {"x": values(*shape)}, dtype, f"x.permute{tuple(reversed(range(len(shape))))}")
    for shape, index in INDICES:
        check("x[i]", {"x": values(*shape)}, dtype, constants={"i": index})

def with_extremes(shape, magnitude):
    """Normal numbers, times magnitude, with exact zeros and +-magnitude in the first places."""
    x = values(*shape) * magnitude
    x.flat[:3] = [0, magnitude, -magnitude]
    return x

def check_functions(dtype):
    for shape in [(5,), (3, 4), (2, 3, 4)]:
        x = values(*shape)
        check("x.exp()", {"x": 2 * x}, dtype)
        check("x.log()", {"x": np.abs(x) + 0.1}, dtype)
        # relu at exactly 0: PyTorch's gradient there is 0, and so must minigrad's be
        check("x.relu()", {"x": with_extremes(shape, 1.0)}, dtype)
        for magnitude in (1.0, 10.0, 1e4):  # 1e4: e^x overflows; the results must not
            x, strict = {"x": with_extremes(shape, magnitude)}, magnitude > 10
            check("x.tanh()", x, dtype, strict=strict)
            check("x.sigmoid()", x, dtype, strict=strict)
            for name in ("softmax", "log_softmax"):  # minigrad's default axis is -1, PyTorch's none
                check(f"x.{name}()", x, dtype, f"x.{name}(-1)", strict=strict)
                for axis in list(range(len(shape))) + [-1]:
                    check(f"x.{name}({axis})", x, dtype, strict=strict)

def check_conv2d(dtype):
    for (height, width), kernel, stride, padding, channels, bias in itertools.product(
            [(5, 5), (6, 7), (4, 6)], (1, 2, 3), (1, 2), (0, 1, 2), (1, 3), (True, False)):
        batch, out_channels = 1 + padding % 2, 2 + kernel % 2
        inputs = {"x": values(batch, channels, height, width),
                  "w": values(out_channels, channels, kernel, kernel)}
        if bias:
            inputs["b"] = values(out_channels)
        code = f"F.conv2d(x, w{', b' * bias}, stride={stride}, padding={padding})"
        check(code, inputs, dtype)
        if kernel == 3 and padding == 1:  # images that need no gradient: only the weights get one
            constant = {"x": np.array(inputs.pop("x"), dtype)}
            check(code, inputs, dtype, constants=constant)

def check_max_pool2d(dtype):
    """On ties PyTorch gives the gradient to the first maximum of each window (row-major order):
    equal inputs, zeros after a ReLU and small integers tie."""
    for shape in [(2, 3, 6, 6), (1, 2, 7, 5), (2, 1, 4, 4)]:
        images = [values(*shape), np.full(shape, 0.5), np.maximum(values(*shape), 0),
                  RNG.integers(0, 3, shape)]
        for x, kernel, stride in itertools.product(images, (2, 3), (None, 1, 2)):
            check(f"F.max_pool2d(x, {kernel}, {stride})", {"x": x}, dtype)

def check_losses(dtype):
    for (n, classes), magnitude in itertools.product([(1, 2), (4, 3), (8, 10)], (1.0, 10.0, 1e4)):
        logits = {"z": values(n, classes) * magnitude}
        targets = RNG.integers(0, classes, n)
        for given in [targets, targets.astype(np.int32), targets.tolist()]:  # all int64 for PyTorch
            check("F.cross_entropy(z, y)", logits, dtype, constants={"y": given},
                  strict=magnitude > 10)
    for shape in [(5,), (3, 4), (2, 3, 4), (4, 1)]:
        prediction, target = values(*shape), values(*shape)
        check("F.mse_loss(p, t)", {"p": prediction, "t": target}, dtype)
        constant = {"t": np.array(target, dtype)}
        check("F.mse_loss(p, t)", {"p": prediction}, dtype, constants=constant)

# minigrad and torch.nn share layer names and arguments, and so do minigrad and torch.optim: each
# network or optimizer below is the code that builds it, run with nn (optim) as either framework.

MLP = "nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))"
CNN = ("nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), "
       "nn.Linear(4 * 4 * 4, 5))")
MODELS = [  # (code, input shape)
    ("nn.Linear(6, 4)", (3, 6)), ("nn.Linear(6, 4, bias=False)", (3, 6)),
    ("nn.Linear(1, 1)", (1, 1)), ("nn.Linear(6, 4)", (2, 3, 6)), ("nn.Linear(6, 4)", (6,)),
    ("nn.Conv2d(2, 3, 3)", (2, 2, 5, 6)),
    ("nn.Conv2d(2, 3, 3, stride=2, padding=1, bias=False)", (2, 2, 7, 5)),
    ("nn.Conv2d(1, 2, 2, padding=2)", (1, 1, 4, 4)), ("nn.MaxPool2d(2)", (2, 3, 4, 6)),
    ("nn.MaxPool2d(3, stride=1)", (1, 2, 5, 5)), ("nn.Flatten()", (2, 3, 2, 2)),
    ("nn.ReLU()", (3, 4)), ("nn.Tanh()", (3, 4)), ("nn.Sigmoid()", (3, 4)),
    ("nn.Dropout(0.5)", (3, 4)),  # in eval mode, as every model here: it passes its input through
    (MLP, (4, 6)), (CNN, (2, 1, 8, 8)),
    ("nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Dropout(0.2), nn.Linear(5, 4, bias=False), "
     "nn.Sigmoid())", (4, 6)),
    ("nn.Sequential(nn.Sequential(nn.Linear(4, 4), nn.ReLU()), nn.Linear(4, 2))", (3, 4)),
    # the sizes of the demo's and the benchmark's networks: long sums, where float32 rounding grows
    ("nn.Linear(784, 128)", (16, 784)), ("nn.Conv2d(16, 32, 5)", (4, 16, 12, 12)),
    ("nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(3, stride=1), nn.Tanh(), "
     "nn.Conv2d(4, 2, 2, stride=2), nn.Flatten(), nn.Linear(2 * 2 * 2, 3))", (2, 3, 8, 8)),
]
OPTIMIZERS = ["optim.SGD(params, lr=0.1)", "optim.SGD(params, lr=0.1, momentum=0.9)",
              "optim.SGD(params, lr=0.1, weight_decay=0.01)",
              "optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=0.1)", "optim.Adam(params)",
              "optim.Adam(params, lr=0.01, weight_decay=0.01)",
              "optim.Adam(params, lr=0.01, betas=(0.8, 0.99), eps=1e-6)"]
INIT_LAYERS = {"nn.Linear(784, 128)": 784, "nn.Linear(10, 5000)": 10,  # code: fan_in
               "nn.Conv2d(3, 64, 5)": 75, "nn.Conv2d(16, 128, 3)": 144}

def torch_name(name):
    """PyTorch's name for a minigrad parameter: its Sequential numbers layers without "layers."."""
    return name.replace("layers.", "")

def twin_models(code, dtype, weights_from="minigrad"):
    """The same network in both frameworks, in dtype, the weights copied from one into the other."""
    ours, theirs = eval(code, {"nn": mg}), eval(code, {"nn": torch.nn})
    theirs.to(torch.float64 if dtype == np.float64 else torch.float32)
    if dtype == np.float64:  # minigrad has no .double(): give each parameter float64 numbers
        for parameter in ours.parameters():
            parameter.data = parameter.data.astype(np.float64)
    if weights_from == "minigrad":
        state = ours.state_dict()
        theirs.load_state_dict({torch_name(k): torch.tensor(v) for k, v in state.items()})
    else:
        their_state = theirs.state_dict()
        ours.load_state_dict({k: their_state[torch_name(k)].numpy() for k in ours.state_dict()})
    return ours, theirs

def compare_weights(case, when, ours, theirs):
    their_state = theirs.state_dict()
    for name, weights in ours.state_dict().items():
        checks.compare(case, f"{name} {when}", weights, their_state[torch_name(name)])

def check_layers(dtype):
    for (code, shape), source in itertools.product(MODELS, ["minigrad", "PyTorch"]):
        case = f"{code}, input {shape}, weights from {source}"
        ours, theirs = twin_models(code, dtype, source)
        names = [torch_name(name) for name in ours.state_dict()]
        checks.expect(case, "parameter names", names == list(theirs.state_dict()),
                      f"{names}, PyTorch {list(theirs.state_dict())}")
        ours.eval()
        theirs.eval()
        check("model(x)", {"x": values(*shape)}, dtype, models=(ours, theirs))

def check_optimizers(dtype):
    """The weights after each of 10 steps from the same weights with the same gradients, whose scale
    differs per parameter (Adam divides it out, but not from eps); the last parameter has no
    gradient at step 4: both frameworks then leave it alone, its momentum and step count too."""
    for code in OPTIMIZERS:
        case = f"{code}, {np.dtype(dtype).name}"
        ours, theirs = twin_models("nn.Sequential(nn.Linear(6, 5), nn.Linear(5, 3, bias=False))",
                                   dtype)
        optimizers = [eval(code, {"optim": mg, "params": ours.parameters()}),
                      eval(code, {"optim": torch.optim, "params": theirs.parameters()})]
        parameters = list(zip(ours.parameters(), theirs.parameters()))
        for step in range(1, 11):
            for k, (parameter, their_parameter) in enumerate(parameters):
                if step == 4 and k == len(parameters) - 1:
                    parameter.grad, their_parameter.grad = None, None
                else:
                    grad = RNG.standard_normal(parameter.shape).astype(dtype) * 10.0 ** (1 - k)
                    parameter.grad, their_parameter.grad = grad, torch.tensor(grad)
            for optimizer in optimizers:
                optimizer.step()
            compare_weights(case, f"after step {step}", ours, theirs)

def check_init(dtype):
    """Statistically, in both, against uniform(-b, b), b = 1/sqrt(fan_in), float32 (both draw it):
    the largest of n draws falls short of b by b/n on average, by 10 b/n once in e^10; standard
    errors: of the mean b/sqrt(3 n), of the std b/sqrt(15 n), of the share within b/2 0.5/sqrt(n).
    """
    mg.manual_seed(0)
    torch.manual_seed(0)
    for code, fan_in in INIT_LAYERS.items() if dtype == np.float32 else ():
        b, ours, theirs = 1 / np.sqrt(fan_in), eval(code, {"nn": mg}), eval(code, {"nn": torch.nn})
        for key, model in itertools.product(ours.state_dict(), [ours, theirs]):
            w = np.asarray(model.state_dict()[key])
            n, top, inner = w.size, np.abs(w).max(), np.mean(np.abs(w) <= b / 2)
            case = f"{code} {key}, {'minigrad' if model is ours else 'PyTorch'}"
            for what, ok in [("float32", w.dtype == np.float32),
                             ("within b", top <= b * (1 + 1e-6)),
                             ("reaches b", top >= b * (1 - 10 / n)),
                             ("mean", abs(w.mean()) <= 5 * b / np.sqrt(3 * n)),
                             ("std", abs(w.std() - b / np.sqrt(3)) <= 5 * b / np.sqrt(15 * n)),
                             ("half within b/2", abs(inner - 0.5) <= 5 * 0.5 / np.sqrt(n))]:
                checks.expect(case, what, ok, f"max {top:.6g}, b {b:.6g}, mean {w.mean():.3g}, "
                              f"std {w.std():.6g}, within b/2 {inner:.4f}")

def check_end_to_end(dtype):
    """Three steps of a small MLP and CNN: forward, cross_entropy, backward, SGD with momentum; the
    loss, every gradient and every weight after each step."""
    for code, shape, classes in [(MLP, (8, 6), 3), (CNN, (8, 1, 8, 8), 5)]:
        case = f"{code}, {np.dtype(dtype).name}"
        ours, theirs = twin_models(code, dtype)
        optimizer = mg.SGD(ours.parameters(), lr=0.1, momentum=0.9)
        their_optimizer = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9)
        for step in range(1, 4):
            x, y = np.array(values(*shape), dtype), RNG.integers(0, classes, shape[0])
            loss = mg.cross_entropy(ours(mg.Tensor(x)), y)
            their_loss = F.cross_entropy(theirs(torch.tensor(x)), torch.tensor(y))
            for each_loss, each_optimizer in [(loss, optimizer), (their_loss, their_optimizer)]:
                each_optimizer.zero_grad()
                each_loss.backward()
                each_optimizer.step()
            checks.compare(case, f"loss at step {step}", loss.data, their_loss)
            their_parameters = dict(theirs.named_parameters())
            for key, parameter in ours.named_parameters():
                checks.compare(case, f"{key}'s gradient at step {step}", parameter.grad,
                               their_parameters[torch_name(key)].grad)
            compare_weights(case, f"after step {step}", ours, theirs)

GROUPS = {"elementwise": check_elementwise, "matmul": check_matmul, "reductions": check_reductions,
          "indexing": check_indexing, "functions": check_functions, "conv2d": check_conv2d,
          "max_pool2d": check_max_pool2d, "losses": check_losses, "layers": check_layers,
          "optimizers": check_optimizers, "init": check_init, "end-to-end": check_end_to_end}

def main():
    global mg, torch, F
    folder = os.path.abspath(os.environ.get("MINIGRAD_DIR") or REPO)
    if not os.path.isfile(os.path.join(folder, "minigrad.py")):  # else a pip-installed one would do
        sys.exit(f"compare_torch.py: no minigrad.py in {folder} (MINIGRAD_DIR names the folder)")
    sys.path.insert(0, folder)
    import minigrad as mg
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        sys.exit("compare_torch.py needs PyTorch: run it with a Python that has torch")
    torch.set_num_threads(1)  # as OPENBLAS_NUM_THREADS=1 for numpy
    print(f"minigrad from {mg.__file__}; numpy {np.__version__}, torch {torch.__version__}")
    start = time.perf_counter()
    for name, group in GROUPS.items():
        for dtype in DTYPES:
            try:
                group(dtype)
            except Exception as error:  # a crash (an API change?) stops its group, not the run
                checks.expect(name, "stopped", False, f"{type(error).__name__}: {error}")
        checks.end_group(name)
    print(f"{checks.total} checks, {checks.failed} disagree ({time.perf_counter() - start:.0f} s)")
    return 1 if checks.failed else 0

if __name__ == "__main__":
    sys.exit(main())
