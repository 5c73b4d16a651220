"""minigrad: a deep-learning library in one readable file, on numpy alone.

Part 1 is the lesson, read top to bottom: Tensor, backward() and gradcheck; the differentiable ops;
no_grad; the losses; Module, Linear and ReLU; SGD and Adam; the training loop, fit(). It runs on
its own and trains a network on MNIST. Part 2 adds more ops, layers and tools: conv2d, max_pool2d,
Dropout, graph(), lr_find(). Part 3 is fit()'s watch over a run that fails.

The design rule: every op computes its result and, right beside it, a `backward` closure that turns
g, the gradient of the loss with respect to the op's output, into the gradients with respect to its
inputs: g times the op's derivative. Tensor.backward() calls these closures from the loss back to
the parameters: that is the chain rule, and all there is to reverse-mode autodiff. In docstrings,
"grad a = g b" says what the closure returns for input a; each op's example shows it on small
numbers with gradients(), which first checks it against finite differences (gradcheck)."""
import contextlib
import copy
import math
import sys
import time
import warnings

import numpy as np

_grad_enabled = True  # no_grad() switches it off: ops then record no graph

class ShapeError(ValueError):
    """Shapes that do not fit; its message names the op, the shapes and the layer."""

def _unbroadcast(grad, shape):
    """Sum a gradient over the axes that broadcasting added or stretched, back to an input's shape.
    >>> _unbroadcast(np.ones((2, 3)), (3,))   # b of shape (3,) was added to both rows of a (2, 3) a
    array([2., 2., 2.])"""
    if grad.shape == shape or grad.ndim < len(shape):  # (too few axes: backward() reports it)
        return grad
    grad = grad.sum(axis=tuple(range(grad.ndim - len(shape))))  # the axes broadcasting put in front
    stretched = [axis for axis, size in enumerate(shape) if size == 1 and grad.shape[axis] != 1]
    return grad.sum(axis=tuple(stretched), keepdims=True)

def _tensor(x, dtype):
    """x as a Tensor: a number or an array becomes a constant (the 2 in a * 2), in the dtype of the
    tensor beside it if that is floating (float32 times a float64 array stays float32)."""
    if isinstance(x, Tensor):
        return x
    return Tensor(x, dtype=dtype if dtype.kind == "f" else np.asarray(x).dtype, copy=False)

class Tensor:
    """An array that remembers the op and inputs it was computed from, so that gradients flow back.
    Lists, numbers and integer arrays become float32; a numpy array of floats keeps its dtype."""
    __array_ufunc__ = None  # makes numpy leave `array * tensor` to Tensor.__rmul__
    grad = None
    # How it was computed: the op's name, its inputs, and the closure from g to their gradients.
    # A leaf (made by hand, or in no_grad) has none of them.
    op = None
    _parents = ()
    _backward = None
    _version = 0  # how often a step changed .data in place: a graph made before is out of date

    def __init__(self, data, requires_grad=False, dtype=None, copy=True):
        """data: a number, a list or an array; copied, as torch.tensor does, so that changing one
        changes nothing else. copy=False shares an array's memory when it needs no conversion."""
        array = np.asarray(data)  # of a Tensor: its own array (__array__)
        if array.dtype.kind not in "biuf":  # numpy would make NaN of None, and keep text
            hint = "a value never set?"
            if array.dtype.kind in "US":
                hint = "convert text with float(text)"
            raise TypeError(f"Tensor: {data!r:.50} is not numbers: {hint}")
        floating = isinstance(data, (np.ndarray, np.generic)) and array.dtype.kind == "f"
        if not (floating or isinstance(data, Tensor)):  # a list, a number, an integer array
            dtype = dtype or np.float32
        self.data = array.astype(dtype or array.dtype, copy=copy)
        if requires_grad and self.dtype.kind != "f":  # its gradient would be rounded
            raise TypeError(f"requires_grad: only floating tensors have gradients, not "
                            f"{self.dtype}")
        self.requires_grad = requires_grad

    def __repr__(self):
        """Its numbers (summarized if many), and the op that made it or whether it requires grad.
        >>> Tensor([1., 2.], requires_grad=True)
        Tensor([1., 2.], requires_grad=True)"""
        body = np.array2string(self.data, separator=", ", threshold=20, prefix="Tensor(")
        how = f", op={self.op}" if self.op else ", requires_grad=True" * self.requires_grad
        return f"Tensor({body}{how})"

    @staticmethod
    def from_op(data, parents, backward, name=None):
        """Wrap an op's result, recording its inputs (parents, a tuple) and its backward closure if
        an input needs a gradient. backward(g) returns one gradient (or None) per input, of the
        input's shape (or the output's, where the input was broadcast); it may use the arrays it
        captured as the op ran. name: for repr and graph(); by default the function it is in.
        >>> a = Tensor([3.], requires_grad=True)
        >>> Tensor.from_op(a.data ** 2, (a,), lambda g: (g * 2 * a.data,), "square")
        Tensor([9.], op=square)"""
        data = np.asarray(data)  # integer results stay integers, as in numpy: they need no gradient
        out = Tensor(data, dtype=data.dtype, copy=False)  # an op's result is a new array already
        if _grad_enabled and any(parent.requires_grad for parent in parents):
            out.requires_grad = True
            where = backward.__qualname__.rsplit(".<locals>", 1)[0]  # cube.<locals>.<lambda>
            out.op = name or where.split(".")[-1]
            out._parents = parents
            out._backward = backward
            out._versions = [parent._version for parent in parents]
        return out

    shape = property(lambda self: self.data.shape)
    ndim = property(lambda self: self.data.ndim)
    dtype = property(lambda self: self.data.dtype)

    def __len__(self):
        return len(self.data)

    def __array__(self, dtype=None, copy=None):  # np.asarray(t): the tensor's own array
        array = self.data if dtype is None else self.data.astype(dtype, copy=False)
        return array.copy() if copy else array  # numpy 1.x has no copy=None of its own

    def item(self):
        """The number in a one-element tensor.
        >>> Tensor([[2.5]]).item()
        2.5"""
        if self.data.size != 1:
            raise ValueError(f"item: a tensor of shape {self.shape} is not one number; take one "
                             f"(t[0]) or reduce it (t.sum(), t.mean())")
        return self.data.item()

    # ---- reverse-mode autodiff ----
    def backward(self, grad=None):
        """Add d(self)/d(leaf) to the .grad of every leaf that requires grad and that self depends
        on. A one-element tensor (a loss) needs no grad; .grad accumulates, as in PyTorch.
        >>> x = Tensor([3.], requires_grad=True)
        >>> y = Tensor.from_op(x.data ** 2, (x,), lambda g: (g * 2 * x.data,), "square")
        >>> y.backward()
        >>> x.grad   # grad x = g 2x, with g = dy/dy = 1
        array([6.], dtype=float32)
        >>> y.backward()
        >>> x.grad   # a second backward() adds to .grad
        array([12.], dtype=float32)"""
        if not self.requires_grad:
            raise RuntimeError("backward: no input of this tensor had requires_grad=True (or it "
                               "was computed inside no_grad)")
        if grad is None and self.data.size != 1:
            raise ShapeError(f"backward: the output {self.shape} is not one number: .sum() it, or "
                             f"pass grad= of its shape")
        if grad is not None and np.shape(grad) != self.shape:
            raise ShapeError(f"backward: grad {np.shape(grad)} is not of the output's shape, "
                             f"{self.shape}")
        grads = {self: np.ones_like(self.data) if grad is None else np.asarray(grad, self.dtype)}
        order = self._graph_order()  # each tensor before its inputs: from self to the leaves
        if any(node._versions != [p._version for p in node._parents] for node in order if node.op):
            raise RuntimeError("backward: a step changed the weights after the forward pass: "
                               "compute the loss again (forward, loss, zero_grad, backward, step)")
        for node in order:
            g = grads.pop(node, None)
            if g is None:  # no gradient flows into it: a constant, such as the input images
                continue
            if node.op is None:  # a leaf: every path to it is done, its gradient complete
                total = g if node.grad is None else node.grad + g
                node.grad = np.array(total, dtype=node.dtype)  # a copy: g may be shared
                continue
            input_grads = node._backward(g)
            if type(input_grads) not in (tuple, list) or len(input_grads) != len(node._parents):
                got = type(input_grads).__name__  # such as ndarray: (g * 2) without its comma
                got = f"{len(input_grads)} gradients" if got in ("tuple", "list") else got
                raise TypeError(f"backward of {node.op}: returned {got}, not a tuple of "
                                f"{len(node._parents)}, one per input: lambda g: (g * 2,)")
            for k, (parent, parent_grad) in enumerate(zip(node._parents, input_grads)):
                if parent_grad is None or not parent.requires_grad:
                    continue
                parent_grad = _unbroadcast(np.asarray(parent_grad), parent.shape)
                if parent_grad.shape != parent.shape:
                    raise ShapeError(f"backward of {node.op}: input {k} has shape {parent.shape},"
                                     f" its gradient {np.shape(input_grads[k])}")
                if parent in grads:  # another path to parent: the gradients of all paths add up
                    parent_grad = grads[parent] + parent_grad
                grads[parent] = parent_grad

    def _graph_order(self):
        """self and every tensor it was computed from, each before its inputs (a topological order):
        a depth-first walk lists a tensor once all its inputs are listed, and the list reversed puts
        it before them. backward() walks them in this order, so that the gradient of a tensor is
        complete, summed over every path from self, before it moves on."""
        order = []
        seen = set()

        def visit(node):
            if node not in seen:
                seen.add(node)
                for parent in reversed(node._parents):  # so that the first input is listed first
                    visit(parent)
                order.append(node)
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, 100_000))  # a call per op of a chain: a long RNN's too
        try:
            visit(self)
        finally:
            sys.setrecursionlimit(limit)
        return order[::-1]

    # ---- checking derivatives: each op's example below uses gradients(), which runs gradcheck ----
    @staticmethod
    def gradcheck(fn, *inputs, eps=1e-6, atol=1e-5, rtol=1e-3):
        """Compare backward() of fn with central differences (f(x + eps) - f(x - eps)) / 2 eps, in
        float64. Returns True, or raises AssertionError naming the input, the element, both values.
        >>> def square_with_wrong_derivative(a):  # grad a = g 2a, not g a
        ...     return Tensor.from_op(a.data ** 2, (a,), lambda g: (g * a.data,))
        >>> Tensor.gradcheck(square_with_wrong_derivative, [3.])
        Traceback (most recent call last):
        AssertionError: gradcheck: input 0, element (0,): backward gives 3, finite differences 6"""
        inputs = [Tensor(x, requires_grad=True, dtype=np.float64) for x in inputs]
        output = fn(*inputs)
        weights = np.ones(output.shape)
        if output.data.size > 1:  # weighted at random, so that errors in outputs cannot cancel out
            weights = np.random.default_rng(0).standard_normal(output.shape)
        output.backward(weights)
        for k, x in enumerate(inputs):
            for index in np.ndindex(x.shape):
                original = x.data[index]
                x.data[index] = original + eps
                above = (fn(*inputs).data * weights).sum()
                x.data[index] = original - eps
                below = (fn(*inputs).data * weights).sum()
                x.data[index] = original
                numeric = (above - below) / (2 * eps)
                analytic = 0.0 if x.grad is None else x.grad[index]
                if not np.isclose(analytic, numeric, rtol=rtol, atol=atol):
                    raise AssertionError(f"gradcheck: input {k}, element {index}: backward gives "
                                         f"{analytic:.6g}, finite differences {numeric:.6g}")
        return True

    @staticmethod
    def gradients(fn, *inputs):
        """The gradient of fn(*inputs).sum() for each input, once gradcheck has confirmed it.
        >>> def square(a):  # grad a = g 2a
        ...     return Tensor.from_op(a.data ** 2, (a,), lambda g: (g * 2 * a.data,))
        >>> Tensor.gradients(square, [3., -1.])
        [array([ 6., -2.], dtype=float32)]"""
        Tensor.gradcheck(fn, *inputs)
        inputs = [Tensor(x, requires_grad=True) for x in inputs]
        output = fn(*inputs)
        output.backward(np.ones_like(output.data))
        return [x.grad for x in inputs]

    # ---- arithmetic, broadcast as in numpy: backward() sums each gradient back to its input ----
    def _binary(self, other, name, ufunc, backward):
        """What +, -, *, / share: data = ufunc(a, b), broadcast as numpy does (or an error naming
        the op and both shapes), recorded with the closure g -> backward(g, a, b)."""
        other = _tensor(other, self.dtype)
        a, b = self.data, other.data
        try:
            data = ufunc(a, b)
        except ValueError:
            raise ShapeError(f"{name}: shapes {a.shape} and {b.shape} do not broadcast") from None
        return Tensor.from_op(data, (self, other), lambda g: backward(g, a, b), name)

    def __add__(self, other):
        """a + b.  grad a = g, grad b = g.
        >>> gradients(lambda a, b: a + b, [1., 2.], 5.)   # b was added to both elements
        [array([1., 1.], dtype=float32), array(2., dtype=float32)]"""
        return self._binary(other, "add", np.add, lambda g, a, b: (g, g))

    def __sub__(self, other):
        """a - b.  grad a = g, grad b = -g.
        >>> gradients(lambda a, b: a - b, [1., 2.], [5., 5.])
        [array([1., 1.], dtype=float32), array([-1., -1.], dtype=float32)]"""
        return self._binary(other, "sub", np.subtract, lambda g, a, b: (g, -g))

    def __mul__(self, other):
        """a * b.  grad a = g b, grad b = g a.
        >>> gradients(lambda a, b: a * b, [2., 3.], [10., 20.])
        [array([10., 20.], dtype=float32), array([2., 3.], dtype=float32)]"""
        return self._binary(other, "mul", np.multiply, lambda g, a, b: (g * b, g * a))

    def __truediv__(self, other):
        """a / b.  grad a = g / b, grad b = -g a / b^2.
        >>> gradients(lambda a, b: a / b, [6.], [2.])   # 1/2 and -6/4
        [array([0.5], dtype=float32), array([-1.5], dtype=float32)]"""
        return self._binary(other, "div", np.divide, lambda g, a, b: (g / b, -g * a / (b * b)))

    __radd__ = __add__  # 2 + a is a + 2
    __rmul__ = __mul__

    def __neg__(self):
        """-a.  grad a = -g.
        >>> gradients(lambda a: -a, [1., 2.])
        [array([-1., -1.], dtype=float32)]"""
        return Tensor.from_op(-self.data, (self,), lambda g: (-g,), "neg")

    def __pow__(self, exponent):
        """a ** p, for a number p.  grad a = g p a^(p-1).
        >>> gradients(lambda a: a ** 3, [2., -1.])   # 3a^2
        [array([12.,  3.], dtype=float32)]"""
        exponent = float(exponent)  # a Python number, which leaves float32 float32
        slope = exponent * self.data ** (exponent - 1) if exponent else 0  # a^0 has slope 0 at 0
        return Tensor.from_op(self.data ** exponent, (self,), lambda g: (g * slope,), "pow")

    def __matmul__(self, other):
        """a @ b, the matrix product of the last two axes: (..., n, k) @ (..., k, m).
        grad a = g b^T, grad b = a^T g (^T: the last two axes swapped).
        >>> gradients(lambda a, b: a @ b, [[1., 2.]], [[3.], [4.]])
        [array([[3., 4.]], dtype=float32), array([[1.],
               [2.]], dtype=float32)]"""
        other = _tensor(other, self.dtype)
        a, b = self.data, other.data
        error = ShapeError(f"matmul: {a.shape} @ {b.shape} do not fit (..., n, k) @ (..., k, m)")
        if min(a.ndim, b.ndim) < 2 or a.shape[-1] != b.shape[-2]:
            raise error
        try:
            data = a @ b
        except ValueError:  # batch axes that do not broadcast
            raise error from None

        def backward(g):
            return g @ b.swapaxes(-1, -2), a.swapaxes(-1, -2) @ g
        return Tensor.from_op(data, (self, other), backward, "matmul")

    # ---- reductions: each element is one term of its sum, so g flows back to each unchanged ----
    def sum(self, axis=None, keepdims=False):
        """Sum over axis (an int, a tuple, or None: all).  grad a_i = g, for each summed a_i.
        >>> gradients(lambda a: a.sum(axis=1), [[1., 2., 3.]])
        [array([[1., 1., 1.]], dtype=float32)]"""
        kept = self.data.sum(axis=axis, keepdims=True)  # summed axes kept, of size 1: g broadcasts
        shape = self.shape

        def backward(g):
            return (np.broadcast_to(g.reshape(kept.shape), shape),)
        return Tensor.from_op(kept if keepdims else kept.squeeze(axis), (self,), backward, "sum")

    def mean(self, axis=None, keepdims=False):
        """The sum over axis divided by n, the number of elements summed.  grad a_i = g / n.
        >>> gradients(Tensor.mean, [2., 4., 6., 8.])
        [array([0.25, 0.25, 0.25, 0.25], dtype=float32)]"""
        total = self.sum(axis, keepdims)
        return total / (self.data.size / total.data.size)

    # ---- elementwise functions ----
    def exp(self):
        """e^a.  grad a = g e^a.
        >>> gradients(Tensor.exp, [0., 1.])[0].round(4)   # e^0 and e^1
        array([1.    , 2.7183], dtype=float32)"""
        data = np.exp(self.data)
        return Tensor.from_op(data, (self,), lambda g: (g * data,), "exp")

    def log(self):
        """Natural logarithm.  grad a = g / a.
        >>> gradients(Tensor.log, [4., 2.])
        [array([0.25, 0.5 ], dtype=float32)]"""
        a = self.data
        return Tensor.from_op(np.log(a), (self,), lambda g: (g / a,), "log")

    def relu(self):
        """max(a, 0).  grad a = g where a > 0, else 0.
        >>> gradients(Tensor.relu, [-1., 2.])
        [array([0., 1.], dtype=float32)]"""
        data = np.maximum(self.data, 0)
        return Tensor.from_op(data, (self,), lambda g: (g * (data > 0),), "relu")  # data > 0: a > 0

gradcheck = Tensor.gradcheck  # minigrad.gradcheck, as torch.autograd.gradcheck
gradients = Tensor.gradients

@contextlib.contextmanager
def no_grad():
    """Inside `with no_grad():` ops record no graph, and results do not require grad: to evaluate.
    >>> with no_grad():
    ...     (Tensor([1.], requires_grad=True) * 2).requires_grad
    False"""
    global _grad_enabled
    previous = _grad_enabled
    _grad_enabled = False
    try:
        yield
    finally:
        _grad_enabled = previous

# ---- losses ----
def _log_softmax(data, axis):
    """log(e^a_i / sum_j e^a_j) along axis, for arrays; finite even where e^a_i would overflow."""
    shifted = data - data.max(axis=axis, keepdims=True)  # the same result, and no e^x can overflow
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))

def cross_entropy(logits, targets):
    """The mean over the batch of -log softmax(logits)[target], for (N, C) logits, N class indices.
    grad logits = g (softmax(logits) - onehot(targets)) / N: one op with this simple gradient.
    >>> gradients(lambda z: cross_entropy(z, [0]), [[0., 0.]])   # softmax - onehot = [1/2 - 1, 1/2]
    [array([[-0.5,  0.5]], dtype=float32)]"""
    logits, targets = _tensor(logits, np.dtype(np.float32)), np.asarray(targets)
    n, classes = logits.shape if logits.ndim == 2 else (0, 0)
    if targets.shape != (n,) or n == 0 or targets.dtype.kind not in "iu":
        raise ShapeError(f"cross_entropy: logits {logits.shape} should be (batch, classes), "
                         f"targets {targets.dtype} {targets.shape} integer class indices, one a row"
                         f" (Tensor(labels) makes float32: pass the labels' integer array)")
    wrong = (targets < 0) | (targets >= classes)
    if wrong.any():
        row = int(wrong.argmax())
        raise ValueError(f"cross_entropy: target {targets[row]} (row {row}) is not a class index "
                         f"0..{classes - 1} of the {classes} outputs (labels 1..10?)")
    if logits.op == "softmax":
        raise ValueError("cross_entropy: the logits come from softmax: does the model end with "
                         "softmax? Remove it: cross_entropy applies log-softmax itself")
    log_probs = _log_softmax(logits.data, axis=1)
    rows = np.arange(n)

    def backward(g):
        grad = np.exp(log_probs)
        grad[rows, targets] -= 1
        return (grad * (g / n),)
    return Tensor.from_op(-log_probs[rows, targets].mean(), (logits,), backward, "cross_entropy")

def mse_loss(prediction, target):
    """The mean of (prediction - target)^2 over its n elements, composed of the ops above.
    grad prediction = g 2 (prediction - target) / n.
    >>> gradients(lambda p: mse_loss(p, [0., 0.]), [1., 3.])   # 2 (p - 0) / 2
    [array([1., 3.], dtype=float32)]"""
    if prediction.shape != np.shape(target):  # (N, 1) - (N,) would broadcast to (N, N)
        raise ShapeError(f"mse_loss: prediction {prediction.shape} and target "
                         f"{np.shape(target)} differ (for (N,) targets and (N, 1): y[:, None])")
    return ((prediction - target) ** 2).mean()

# ---- layers ----
_rng = np.random.default_rng()  # draws initial weights, Dropout masks, and batch orders

def manual_seed(seed):
    """Seed initialization, Dropout and shuffling, so that a run can be repeated exactly.
    >>> manual_seed(0)
    >>> first = Linear(2, 1).weight.data.copy()
    >>> manual_seed(0)
    >>> bool((Linear(2, 1).weight.data == first).all())
    True"""
    _rng.bit_generator.state = np.random.default_rng(seed).bit_generator.state

class Parameter(Tensor):
    """A tensor that a Module learns, as torch.nn.Parameter: parameters() finds the Parameters among
    a module's attributes, so a tensor a module merely keeps (self.hidden = ...) is not learned."""

    def __init__(self, data, requires_grad=True, dtype=None):
        super().__init__(data, requires_grad, dtype)

def _contents(value, name, seen):
    """(name, item) for value and all it holds: a module's attributes, the items of lists, tuples
    and dicts, however nested (layers.0.weight is module.layers[0].weight); each module once."""
    items = ()
    if isinstance(value, Module):
        if id(value) in seen:  # a layer used twice, or a module that holds its parent
            return
        seen.add(id(value))
        items = vars(value).items()
    elif isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    yield name, value
    for key, item in items:
        yield from _contents(item, f"{name}.{key}" if name else str(key), seen)

class Module:
    """A layer or a model. Its parameters are the Parameters among its attributes (and in its lists,
    tuples and dicts) and those of the Modules it holds. Calling it runs forward()."""
    training = True
    _in_repr = set()  # the modules whose repr is being made

    def __call__(self, *inputs):
        try:
            output = self.forward(*inputs)
        except ShapeError as error:  # name the innermost layer whose shapes do not fit
            if not hasattr(error, "layer"):
                error.layer = self
                error.args = (f"{self}: {error}",)
            raise
        if not isinstance(output, Tensor):  # None: `return x` forgotten; an array: .data used
            raise TypeError(f"{type(self).__name__}.forward returned {type(output).__name__}, not "
                            f"a Tensor: does it end with `return x`, and avoid .data?")
        return output

    def __repr__(self):  # its settings, as in PyTorch: Linear(in_features=784, out_features=10)
        if self in Module._in_repr:  # a module that holds its parent: met again inside its repr
            return f"{type(self).__name__}(...)"
        Module._in_repr.add(self)
        try:
            settings = [f"{name}={value!r}" for name, value in vars(self).items()
                        if not isinstance(value, Tensor) and name != "training"]
        finally:
            Module._in_repr.discard(self)
        return f"{type(self).__name__}({', '.join(settings)})"

    def named_modules(self):
        """(name, module) for this module, named "", and each module in it, such as "layers.0"."""
        return [(name, v) for name, v in _contents(self, "", set()) if isinstance(v, Module)]

    def named_parameters(self):
        """(name, parameter) pairs, each parameter once: a layer used twice is one set of weights,
        which a step must update once (it gets the gradients of both uses)."""
        names = {}  # parameter -> its first name; a dict keeps the order in which they were found
        for name, value in _contents(self, "", set()):
            if isinstance(value, Parameter):
                names.setdefault(value, name)
            elif isinstance(value, Tensor) and value.requires_grad and value.op is None:
                raise TypeError(f"{type(self).__name__}.{name} requires grad but is not a "
                                f"Parameter, so it is never learned: make it a Parameter(...)")
        return [(name, parameter) for parameter, name in names.items()]

    def parameters(self):
        return [parameter for _, parameter in self.named_parameters()]

    def zero_grad(self):
        for parameter in self.parameters():
            parameter.grad = None

    def train(self, mode=True):
        """Put this module and those in it in training mode (Dropout on); eval() is train(False)."""
        for _, module in self.named_modules():
            module.training = mode
        return self

    def eval(self):
        return self.train(False)

def _uniform_parameter(shape, fan_in):
    """PyTorch's default initialization: uniform in +-1/sqrt(fan_in), fan_in the inputs of each
    output. Random, so that units start different and learn different things; scaled by fan_in, so
    that wider layers do not make larger outputs."""
    bound = 1 / np.sqrt(fan_in)
    return Parameter(_rng.uniform(-bound, bound, shape).astype(np.float32))

class Linear(Module):
    """y = x @ weight^T + bias, for x of shape (..., in_features); weight (out_features,
    in_features). One op, not three (matmul, transpose, add): its gradients are
    grad x = g weight,  grad weight = g^T x,  grad bias = the sum of g over the rows."""

    def __init__(self, in_features, out_features, bias=True):
        self.in_features = in_features
        self.out_features = out_features
        self.weight = _uniform_parameter((out_features, in_features), in_features)
        self.bias = _uniform_parameter((out_features,), in_features) if bias else None

    def forward(self, x):
        x = _tensor(x, self.weight.dtype)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ShapeError(f"linear: input {x.shape} should be (batch, {self.in_features})")
        a, weight = x.data, self.weight.data
        data = a @ weight.T
        if self.bias is not None:
            data += self.bias.data

        def backward(g):
            g_rows = g.reshape(-1, self.out_features)  # a row per input row, whatever axes it had
            grad_x = g @ weight if x.requires_grad else None  # not for the input batch: it is slow
            grad_weight = g_rows.T @ a.reshape(-1, self.in_features)
            if self.bias is None:
                return grad_x, grad_weight
            return grad_x, grad_weight, g_rows.sum(axis=0)
        parents = (x, self.weight) if self.bias is None else (x, self.weight, self.bias)
        return Tensor.from_op(data, parents, backward, "linear")

class ReLU(Module):
    def forward(self, x):
        return x.relu()

class Sequential(Module):
    """Layers applied one after another."""

    def __init__(self, *layers):
        for i, layer in enumerate(layers):  # Sequential([...]), Sequential(ReLU): PyTorch habits
            if isinstance(layer, type) or not callable(layer):
                what = f"the class {layer.__name__}" if isinstance(layer, type) else "a " + type(
                    layer).__name__
                raise TypeError(f"Sequential: layer {i} is {what}, not a layer: pass made layers, "
                                f"one argument each: Sequential(Linear(2, 8), ReLU())")
        self.layers = list(layers)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

# ---- optimizers: each step moves every parameter against its gradient ----
class Optimizer:
    """What SGD and Adam share: the parameters, the learning rate lr, weight decay, and step()."""

    def __init__(self, params, lr, weight_decay):
        params = params.parameters() if isinstance(params, Module) else params  # SGD(model) too
        if callable(params) or isinstance(params, Tensor):  # list() of a tensor makes its rows
            raise TypeError(f"{type(self).__name__}: pass a list of tensors, model.parameters() "
                            f"(called) or [weight]")
        params = list(params)
        if not all(isinstance(p, Tensor) for p in params) or not params:
            raise TypeError(f"{type(self).__name__}: the parameters must be tensors, such as "
                            f"model.parameters(); got {params!r:.50}")
        self.params = list(dict.fromkeys(params))  # each once, even if listed twice
        self.lr = lr
        self.weight_decay = weight_decay
        self.epochs = 0  # fit()'s epochs with it: a second fit() continues the run

    def zero_grad(self):
        for parameter in self.params:
            parameter.grad = None

    def step(self):
        for i, parameter in enumerate(self.params):
            if parameter.grad is None:  # no gradient reached it: it stays as it is
                continue
            grad = parameter.grad
            if self.weight_decay:  # the gradient of weight_decay/2 w^2, a pull towards 0
                grad = grad + self.weight_decay * parameter.data
            self.update(i, parameter.data, grad)
            parameter._version += 1  # graphs made before this step are out of date

class SGD(Optimizer):
    """Gradient descent with momentum, as PyTorch computes it: v = momentum v + g;  w = w - lr v."""

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0):
        super().__init__(params, lr, weight_decay)
        self.momentum = momentum
        self.velocities = [np.zeros_like(p.data) for p in self.params]

    def update(self, i, w, g):  # in place: a step allocates few new arrays
        v = self.velocities[i]
        v *= self.momentum
        v += g
        w -= self.lr * v

class Adam(Optimizer):
    """Adam, as PyTorch computes it: m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
    w = w - lr m' / (sqrt(v') + eps), where m' = m / (1 - b1^t) and v' = v / (1 - b2^t) undo the
    pull of these running averages towards their start, 0; t counts the steps of each parameter."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr, weight_decay)
        self.betas = betas
        self.eps = eps
        self.steps = [0] * len(self.params)
        self.m = [np.zeros_like(p.data) for p in self.params]
        self.v = [np.zeros_like(p.data) for p in self.params]

    def update(self, i, w, g):
        b1, b2 = self.betas
        m, v = self.m[i], self.v[i]
        self.steps[i] += 1
        t = self.steps[i]
        m += (1 - b1) * (g - m)  # m = b1 m + (1 - b1) g, in place
        v += (1 - b2) * (g * g - v)
        w -= self.lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + self.eps)

# ---- training: mini-batches, evaluation, the training loop ----
def _dataset(X, y, model):
    """X and y as numpy arrays, one target per sample; X in the dtype of the model's weights
    (float64 pixels, from X / 255.0, would make a float32 model compute in float64)."""
    X = Tensor(X, dtype=next((p.dtype for p in model.parameters()), None), copy=False).data
    y = np.asarray(y)
    if X.ndim == 0 or y.ndim == 0 or len(X) != len(y) or len(X) == 0:
        raise ShapeError(f"X {X.shape} and y {y.shape} need a sample a row, and a target each")
    return X, y

def _is_classes(y):
    """Targets that are class indices: non-negative integers, one per sample. Decided once from all
    of y, never per batch: a batch of a hinge loss's targets in {-1, 1} may hold only 1s."""
    return y.ndim == 1 and y.dtype.kind in "iu" and y.min() >= 0

def _epoch(model, X, y, batch_size, loss_fn, step=None, rng=None):
    """One pass over (X, y) in mini-batches (shuffled to train): the mean loss and, for class
    targets and a score per class, the accuracy (else None). step(output, loss, number) trains."""
    total = correct = 0
    classes = _is_classes(y)
    order = rng.permutation(len(X)) if step else np.arange(len(X))
    for number, start in enumerate(range(0, len(X), batch_size), 1):
        xb, yb = X[order[start:start + batch_size]], y[order[start:start + batch_size]]
        output = model(Tensor(xb, copy=False))  # a batch is a new array: no need to copy it
        loss = loss_fn(output, yb)
        if step:
            step(output, loss, number)
        total += loss.item() * len(yb)
        classes = classes and output.ndim == 2 and output.shape[1] > 1  # a score per class
        correct += (output.data.argmax(axis=1) == yb).sum() if classes else 0
    return total / len(X), float(correct / len(X)) if classes else None

@contextlib.contextmanager
def _mode(model, training):
    """model in training (or eval) mode inside; after, each module back in its own mode."""
    modes = [(module, module.training) for _, module in model.named_modules()]
    model.train(training)
    try:
        yield
    finally:
        for module, mode in modes:
            module.training = mode

def evaluate(model, X, y, batch_size=1000, loss_fn=None):
    """(mean loss, accuracy) on (X, y): in eval mode, without a graph, a chunk at a time.
    >>> evaluate(Sequential(), np.array([[5., 0.], [5., 0.]]), np.array([0, 1]))[1]   # 1 right of 2
    0.5"""
    X, y = _dataset(X, y, model)
    with _mode(model, False), no_grad():
        return _epoch(model, X, y, batch_size, loss_fn or cross_entropy)

def fit(model, optimizer, X, y, epochs=1, batch_size=64, validation=None, loss_fn=None, rng=None,
        verbose=True, check=True):
    """Train on mini-batches of (X, y); return the history, a dict per epoch (with accuracies where
    they mean something). Unless check=False, a run that diverges or cannot learn stops with
    DivergenceError or NotLearningError (Part 3), which say what was seen and what to try. A
    second fit() with the same optimizer continues the run: its epochs are numbered on.
    >>> X, y = np.array([[-1.], [1.]] * 32), np.array([0, 1] * 32)
    >>> manual_seed(0)
    >>> model = Linear(1, 2)
    >>> fit(model, SGD(model, lr=0.5), X, y, epochs=5, verbose=False, check=False)[-1]["train_acc"]
    1.0"""
    loss_fn = loss_fn or cross_entropy
    rng = _rng if rng is None else np.random.default_rng(rng)
    X, y = _dataset(X, y, model)
    watch = _Watch.of(model, optimizer, X, y, loss_fn) if check else None
    history = []
    for epoch in range(optimizer.epochs + 1, optimizer.epochs + epochs + 1):
        def step(output, loss, number):
            if watch:
                watch.before_step(output, loss, epoch, number)  # stops a loss that diverged
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if watch:
                watch.after_step(loss, epoch, number)  # can the network still learn?
        start = time.perf_counter()
        model.train()
        train_loss, train_acc = _epoch(model, X, y, batch_size, loss_fn, step, rng)
        optimizer.epochs = epoch
        record = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc}
        if validation is not None:
            record["val_loss"], record["val_acc"] = evaluate(model, *validation, loss_fn=loss_fn)
        history.append({key: value for key, value in record.items() if value is not None})
        history[-1]["seconds"] = time.perf_counter() - start
        if verbose:
            print("  ".join(f"{key} {value:.4f}" if isinstance(value, float) else f"{key} {value}"
                            for key, value in history[-1].items()))
    return history


# ==== Part 2: more ops, layers and tools: reshaping and indexing, softmax, tanh and sigmoid;
# convolution and pooling (for images), Dropout; PyTorch's and numpy's habits; seeing the graph,
# finding a learning rate. The lesson above does not need them. ====
class _MoreTensorMethods:
    """More of Tensor's methods, written here out of the lesson's way; the loop below adds them."""

    # ---- moving numbers around: the gradient moves back the same way ----
    def reshape(self, *shape):
        """The same numbers in another shape (-1: inferred).  grad a = g, reshaped back.
        >>> gradients(lambda a: a.reshape(2, 2) * [[10., 20.], [30., 40.]], [1., 2., 3., 4.])
        [array([10., 20., 30., 40.], dtype=float32)]"""
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        try:
            data = self.data.reshape(shape)
        except ValueError:
            raise ShapeError(f"reshape: cannot reshape {self.shape} into {shape}") from None
        original = self.shape
        return Tensor.from_op(data, (self,), lambda g: (g.reshape(original),), "reshape")

    def transpose(self, *axes):
        """Reorder the axes, with numpy's meaning (none given: reverse them).  grad a = g, the order
        undone.
        >>> gradients(lambda a: a.transpose() * [[10.], [20.], [30.]], [[1., 2., 3.]])
        [array([[10., 20., 30.]], dtype=float32)]"""
        axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        try:
            data = self.data.transpose(axes or None)
        except ValueError:
            raise ShapeError(f"transpose: {axes} is not an order of the axes of "
                             f"{self.shape}") from None
        undo = np.argsort([axis % self.ndim for axis in axes]) if axes else None  # the inverse
        return Tensor.from_op(data, (self,), lambda g: (g.transpose(undo),), "transpose")

    T = property(lambda self: self.transpose())  # the axes reversed, as in numpy

    def __getitem__(self, index):
        """a[index], with slices, integers and integer arrays.  grad a = g, put back where taken.
        >>> gradients(lambda a: a[[0, 0, 2]], [10., 20., 30.])   # a[0] was taken twice
        [array([2., 0., 1.], dtype=float32)]"""
        if isinstance(index, Tensor):  # x[Tensor(i)] indexes by i's numbers, as in PyTorch
            index = index.data
        a = self.data

        def backward(g):
            grad = np.zeros_like(a)
            np.add.at(grad, index, g)  # unlike grad[index] += g, adds g for each repeat of an index
            return (grad,)
        return Tensor.from_op(a[index], (self,), backward, "getitem")

    def max(self, axis=None, keepdims=False):
        """Maximum over axis (an int, a tuple, or None: all).  grad a_i = g where a_i is the
        maximum, else 0; maxima that tie share g, as in torch.amax.
        >>> gradients(Tensor.max, [1., 5., 5.])   # two maxima: each gets half
        [array([0. , 0.5, 0.5], dtype=float32)]"""
        a = self.data
        kept = a.max(axis=axis, keepdims=True)

        def backward(g):
            is_max = a == kept
            ties = is_max.sum(axis=axis, keepdims=True, dtype=g.dtype)
            return (is_max * (g.reshape(kept.shape) / ties),)
        return Tensor.from_op(kept if keepdims else kept.squeeze(axis), (self,), backward, "max")

    # ---- more elementwise functions ----
    def tanh(self):
        """Hyperbolic tangent.  grad a = g (1 - tanh(a)^2).
        >>> gradients(Tensor.tanh, [0., 1.])[0].round(4)   # 1 - 0^2 and 1 - 0.7616^2
        array([1.  , 0.42], dtype=float32)"""
        data = np.tanh(self.data)
        return Tensor.from_op(data, (self,), lambda g: (g * (1 - data * data),), "tanh")

    def sigmoid(self):
        """s = 1 / (1 + e^-a), as e^-log(1 + e^-a) so that no e^x overflows.  grad a = g s (1 - s).
        >>> gradients(Tensor.sigmoid, [0., 2.])[0].round(4)   # s = 1/2 and 0.8808
        array([0.25 , 0.105], dtype=float32)"""
        data = np.exp(-np.logaddexp(0, -self.data))
        return Tensor.from_op(data, (self,), lambda g: (g * data * (1 - data),), "sigmoid")

    def softmax(self, axis=-1):
        """s_i = e^a_i / sum_j e^a_j along axis.  grad a = s (g - sum(g s)).
        >>> gradients(lambda a: a.softmax() * [1., 0.], [0., 0.])   # s = [1/2, 1/2]
        [array([ 0.25, -0.25], dtype=float32)]"""
        s = np.exp(_log_softmax(self.data, axis))

        def backward(g):
            return (s * (g - (g * s).sum(axis=axis, keepdims=True)),)
        return Tensor.from_op(s, (self,), backward, "softmax")

    def log_softmax(self, axis=-1):
        """a_i - log sum_j e^a_j along axis, finite where softmax rounds to 0.
        grad a = g - s sum(g), with s the softmax of a.
        >>> gradients(lambda a: a.log_softmax() * [1., 0.], [0., 0.])
        [array([ 0.5, -0.5], dtype=float32)]"""
        data = _log_softmax(self.data, axis)

        def backward(g):
            return (g - np.exp(data) * g.sum(axis=axis, keepdims=True),)
        return Tensor.from_op(data, (self,), backward, "log_softmax")

    def __rsub__(self, other):  # 2 - a
        return _tensor(other, self.dtype) - self

    def __rtruediv__(self, other):
        return _tensor(other, self.dtype) / self

    def __rmatmul__(self, other):
        return _tensor(other, self.dtype) @ self

    # ---- PyTorch's habits: in-place updates, the numpy array, a tensor as a number ----
    def _in_place(self, other, ufunc, op):
        """a -= b and the rest, as in PyTorch: in place on a's array where no gradient flows (inside
        no_grad: the update of a weight); a tensor computed with gradients gets a new one (a - b).
        >>> w = Tensor([1., 2.], requires_grad=True)
        >>> with no_grad():
        ...     w -= 0.5 * np.array([2., 2.])
        >>> w
        Tensor([0., 1.], requires_grad=True)"""
        if _grad_enabled and self.requires_grad:
            if self.op is None:
                raise RuntimeError(f"in-place update of {self!r:.40}, which requires grad: the "
                                   f"graph cannot record it; update it inside `with no_grad():`")
            return op(self, other)
        ufunc(self.data, np.asarray(other), out=self.data)
        self._version += 1  # graphs that used the old values are out of date
        return self

    def __iadd__(self, other):
        return self._in_place(other, np.add, Tensor.__add__)

    def __isub__(self, other):
        return self._in_place(other, np.subtract, Tensor.__sub__)

    def __imul__(self, other):
        return self._in_place(other, np.multiply, Tensor.__mul__)

    def __itruediv__(self, other):
        return self._in_place(other, np.true_divide, Tensor.__truediv__)

    def numpy(self):
        """The numpy array behind the tensor, not a copy: a change to one is a change to both.
        >>> t = Tensor([1., 2.])
        >>> t.numpy()[0] = 5.
        >>> t
        Tensor([5., 2.])"""
        return self.data

    def detach(self):
        """The same numbers in the same memory, as in PyTorch, cut off from the graph.
        >>> w = Tensor([1.], requires_grad=True)
        >>> d = w.detach()
        >>> d.data[0] = 7.
        >>> d.requires_grad, w
        (False, Tensor([7.], requires_grad=True))"""
        return Tensor(self.data, copy=False)

    def __float__(self):  # float(loss)
        return float(self.item())

    def __bool__(self):  # `if t:` means the value of one element; more are ambiguous
        return bool(self.item())

    def __format__(self, spec):  # f"{loss:.3f}" formats the number; f"{t}" shows the tensor
        return format(self.item(), spec) if spec else str(self)

    def _compare(self, other, ufunc):
        """==, <, ... elementwise, as in PyTorch: a tensor of bools, which has no gradient."""
        if other is None or isinstance(other, str):  # t == None is False
            return NotImplemented
        return Tensor(ufunc(self.data, _tensor(other, self.dtype).data), dtype=bool, copy=False)

    __eq__ = lambda self, other: self._compare(other, np.equal)
    __ne__ = lambda self, other: self._compare(other, np.not_equal)
    __lt__ = lambda self, other: self._compare(other, np.less)
    __le__ = lambda self, other: self._compare(other, np.less_equal)
    __gt__ = lambda self, other: self._compare(other, np.greater)
    __ge__ = lambda self, other: self._compare(other, np.greater_equal)

for _name, _method in vars(_MoreTensorMethods).items():
    if callable(_method) or isinstance(_method, property):  # (__eq__ leaves Tensor's hash as is)
        setattr(Tensor, _name, _method)

class Tanh(Module):
    def forward(self, x):
        return x.tanh()

class Sigmoid(Module):
    def forward(self, x):
        return x.sigmoid()

class Flatten(Module):
    def forward(self, x):
        return x.reshape(x.shape[0], -1)

class _MoreModuleMethods:
    """More of Module's methods, added to it by the loop below."""

    def __setattr__(self, name, value):  # as in PyTorch: a Parameter's place takes a Parameter
        if isinstance(vars(self).get(name), Parameter) and not isinstance(value, (Parameter,
                                                                                  type(None))):
            raise TypeError(f"{name} = a {type(value).__name__} would no longer be learned: update"
                            f" it in place, with no_grad(): layer.{name} -= lr * layer.{name}.grad")
        object.__setattr__(self, name, value)

    def state_dict(self):
        return {name: parameter.data.copy() for name, parameter in self.named_parameters()}

    def load_state_dict(self, state):
        """Copy arrays (or another model's tensors) into the parameters of the same names, once
        every name and shape fits: nothing is half loaded."""
        arrays = {name: np.asarray(value) for name, value in state.items()}
        parameters = dict(self.named_parameters())
        for name in sorted(parameters.keys() | arrays.keys()):
            mine = parameters[name].shape if name in parameters else "missing"
            theirs = arrays[name].shape if name in arrays else "missing"
            if mine != theirs:
                raise ShapeError(f"load_state_dict: {name} is {theirs} in the state and {mine} "
                                 f"in the model")
        arrays = {name: arrays[name].astype(p.dtype) for name, p in parameters.items()}  # first
        for name, parameter in parameters.items():
            parameter.data[...] = arrays[name]  # in place, as PyTorch does
            parameter._version += 1

for _name, _method in vars(_MoreModuleMethods).items():
    if callable(_method):
        setattr(Module, _name, _method)

class batches:
    """(X, y) mini-batches of batch_size rows, the last maybe smaller; like a DataLoader, it can be
    looped over again and again, each pass in a new random order (unless shuffle=False).
    >>> [len(y) for X, y in batches(np.zeros((5, 2)), np.arange(5), batch_size=2)]
    [2, 2, 1]"""

    def __init__(self, X, y, batch_size, shuffle=True, rng=None):
        self.X, self.y = np.asarray(X), np.asarray(y)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.rng = _rng if rng is None else np.random.default_rng(rng)

    def __len__(self):  # batches in a pass
        return math.ceil(len(self.X) / self.batch_size)

    def __iter__(self):
        order = self.rng.permutation(len(self.X)) if self.shuffle else np.arange(len(self.X))
        for start in range(0, len(order), self.batch_size):
            part = order[start:start + self.batch_size]
            yield self.X[part], self.y[part]

# ---- convolution and pooling ----
def conv2d(x, weight, bias=None, stride=1, padding=0):
    """Slide (out, in, kh, kw) filters over (batch, in, height, width) images, as PyTorch's conv2d:
    with each image patch copied into a row of a matrix ("im2col"), all dot products are one matrix
    product.  grad weight = g^T patches;  grad bias = the sum of g;  grad x = g filters, each row
    added back onto the pixels of its patch ("col2im").
    >>> x = np.arange(9.).reshape(1, 1, 3, 3)  # grad x: how many 2x2 patches hold each pixel
    >>> gradients(conv2d, x, np.ones((1, 1, 2, 2)), [0.])[0].tolist()
    [[[[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]]]"""
    weight = _tensor(weight, np.dtype(np.float32))
    x = _tensor(x, weight.dtype)
    if weight.ndim != 4:
        raise ShapeError(f"conv2d: weight {weight.shape} should be (out, in, kh, kw)")
    n, _, h, w = x.shape if x.ndim == 4 else (0, 0, 0, 0)
    out_channels, channels, kh, kw = weight.shape
    if x.ndim != 4 or x.shape[1] != channels or min(h + 2 * padding - kh, w + 2 * padding - kw) < 0:
        raise ShapeError(f"conv2d: input {x.shape} should be (batch, {channels}, height, width) of "
                         f"at least the kernel's {kh}x{kw}, for weight {weight.shape}")
    out_h = (h + 2 * padding - kh) // stride + 1
    out_w = (w + 2 * padding - kw) // stride + 1
    patches = _im2col(x.data, kh, kw, stride, padding)  # (n*out_h*out_w, kh*kw*in)
    filters = weight.data.transpose(0, 2, 3, 1).copy()  # (out, kh, kw, in): in a patch's order
    data = patches @ filters.reshape(out_channels, -1).T  # (n*out_h*out_w, out)
    if bias is not None:
        bias = _tensor(bias, weight.dtype)
        data += bias.data
    data = data.reshape(n, out_h, out_w, out_channels).transpose(0, 3, 1, 2)  # (n, out, y, x) view

    def backward(g):
        g_rows = g.transpose(0, 2, 3, 1).reshape(-1, out_channels)  # (n*out_h*out_w, out)
        grad_x = None
        if x.requires_grad:  # not for the input images: it is slow
            grad_x = _col2im(g_rows, filters, x.shape, stride, padding, (out_h, out_w))
        grad_weight = (g_rows.T @ patches).reshape(filters.shape).transpose(0, 3, 1, 2)
        grad_bias = np.ones(len(g_rows), g.dtype) @ g_rows  # the sum of the rows, fast with BLAS
        return (grad_x, grad_weight) if bias is None else (grad_x, grad_weight, grad_bias)
    parents = (x, weight) if bias is None else (x, weight, bias)
    return Tensor.from_op(data, parents, backward, "conv2d")

# Inside conv2d, images are channels-last, (batch, height, width, channels), so that a patch's row
# and each addition of col2im are contiguous in memory. Its output is a (batch, channels, y, x) view
# of such memory, which relu and max_pool2d keep: the next conv2d gets channels-last images free.
def _im2col(images, kh, kw, stride, padding):
    """(n, in, h, w) images as a matrix with a row per output pixel: the kh x kw x in numbers of
    its patch, in (dy, dx, channel) order."""
    images = images.transpose(0, 2, 3, 1)  # (n, h, w, in): a view
    if padding:
        images = np.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(images, (kh, kw), axis=(1, 2))
    windows = windows[:, ::stride, ::stride]  # (n, out_h, out_w, in, kh, kw): a patch per pixel
    if images.shape[3] == 1:  # rows of kh*kw numbers copy slowly: copy along image rows, then .T
        return windows.transpose(3, 4, 5, 0, 1, 2).reshape(kh * kw, -1).T
    return windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, kh * kw * images.shape[3])  # the copy

def _col2im(g_rows, filters, shape, stride, padding, out_size):
    """The gradient of conv2d's (n, in, h, w) input: pixel (i, j) of every patch gets g_rows @
    filters[:, i, j], one matrix product per offset (i, j) in a patch."""
    n, channels, h, w = shape
    (out_h, out_w), kh, kw = out_size, filters.shape[1], filters.shape[2]
    grad = np.zeros((n, h + 2 * padding, w + 2 * padding, channels), g_rows.dtype)
    for i, j in np.ndindex(kh, kw):
        share = (g_rows @ filters[:, i, j]).reshape(n, out_h, out_w, channels)
        grad[:, i:i + stride * out_h:stride, j:j + stride * out_w:stride] += share
    return grad[:, padding:padding + h, padding:padding + w].transpose(0, 3, 1, 2)

def max_pool2d(x, kernel_size, stride=None):
    """The maximum of each kernel_size x kernel_size window (stride: kernel_size) of (batch,
    channels, h, w) images.  grad x = g at the maximum of each window, else 0; on a tie, at the
    first maximum only, as in PyTorch.
    >>> gradients(lambda x: max_pool2d(x, 2), [[[[1., 2.], [4., 3.]]]])[0].tolist()
    [[[[0.0, 0.0], [1.0, 0.0]]]]"""
    x = _tensor(x, np.dtype(np.float32))
    k = kernel_size
    stride = stride or k
    if x.ndim != 4 or not k <= min(x.shape[2:]):
        raise ShapeError(f"max_pool2d: input {x.shape} should be (batch, channels, height, width) "
                         f"with each side at least kernel_size={k}")
    images = x.data
    out_h = (x.shape[2] - k) // stride + 1
    out_w = (x.shape[3] - k) // stride + 1
    # for each offset (i, j) in a window: the rows and columns of the pixel at (i, j) of all windows
    offsets = [(slice(i, i + stride * out_h, stride), slice(j, j + stride * out_w, stride))
               for i, j in np.ndindex(k, k)]
    planes = [images[:, :, rows, cols] for rows, cols in offsets]  # views (n, c, out_h, out_w)
    data = planes[0].copy(order="K")  # K: in the input's memory order (channels-last after conv2d)
    for plane in planes[1:]:
        np.maximum(data, plane, out=data)

    def backward(g):
        g_out = np.empty_like(data)  # g in the output's memory order: mixing orders is 2-3x slower
        g_out[...] = g
        grad = np.zeros_like(images)
        taken = np.zeros_like(data, dtype=bool)  # the windows whose maximum got g already
        for (rows, cols), plane in zip(offsets, planes):
            is_max = (plane == data) & ~taken  # a later maximum that ties gets nothing
            taken |= is_max
            if stride >= k:  # windows do not overlap: a pixel gets g from one window at most
                np.multiply(g_out, is_max, out=grad[:, :, rows, cols])
            else:
                grad[:, :, rows, cols] += g_out * is_max
        return (grad,)
    return Tensor.from_op(data, (x,), backward, "max_pool2d")

class Conv2d(Module):
    """conv2d with weight (out_channels, in_channels, k, k), initialized as Linear's."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True):
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        fan_in = in_channels * kernel_size ** 2
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        self.weight = _uniform_parameter(shape, fan_in)
        self.bias = _uniform_parameter((out_channels,), fan_in) if bias else None

    def forward(self, x):
        return conv2d(x, self.weight, self.bias, self.stride, self.padding)

class MaxPool2d(Module):
    def __init__(self, kernel_size, stride=None):
        self.kernel_size = kernel_size
        self.stride = stride

    def forward(self, x):
        return max_pool2d(x, self.kernel_size, self.stride)

class Dropout(Module):
    """In training, zero each element with probability p and scale the others by 1/(1 - p)
    ("inverted" dropout): the expected value stays the same, so that in eval mode x passes as is."""

    def __init__(self, p=0.5):
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        keep = _rng.random(x.shape, dtype=np.float32) >= self.p
        return x * (keep.astype(x.dtype) / (1 - self.p))

# ---- seeing the graph ----
def _brief(array):
    """An array in a few characters: its numbers if there are at most 4, else its norm."""
    if array.size <= 4:
        return np.array2string(array.ravel(), precision=4, separator=", ")
    return f"norm {np.linalg.norm(array):.4g}"

def _graph(self, params=None):
    """The graph that computed this tensor, a line per tensor in the order backward() visits
    them: its number, its op and inputs (a leaf: its name in params, a dict of name -> tensor
    or a model), its shape, its value (the norm of a large one) and, once backward() has run,
    the gradient that reached each leaf.
    >>> w, b = Tensor([2.], requires_grad=True), Tensor([1.], requires_grad=True)
    >>> x, y = Tensor([3.]), Tensor([10.])
    >>> loss = ((w * x + b) - y) ** 2
    >>> loss.backward()
    >>> print(loss.graph({"w": w, "b": b, "x": x, "y": y}))
    #1 pow(#2)      (1,)  [9.]
    #2 sub(#3, #8)  (1,)  [-3.]
    #3 add(#4, #7)  (1,)  [7.]
    #4 mul(#5, #6)  (1,)  [6.]
    #5 w            (1,)  [2.]   grad [-18.]
    #6 x            (1,)  [3.]
    #7 b            (1,)  [1.]   grad [-6.]
    #8 y            (1,)  [10.]"""
    params = params.named_parameters() if isinstance(params, Module) else params
    names = {tensor: name for name, tensor in dict(params or {}).items()}
    nodes = self._graph_order()
    number = {node: f"#{i}".ljust(len(str(len(nodes))) + 1) for i, node in enumerate(nodes, 1)}
    rows = []
    for node in nodes:
        what = names.get(node, "leaf")
        if node.op:
            what = f"{node.op}({', '.join(number[parent].strip() for parent in node._parents)})"
        gradient = "requires_grad" if node.requires_grad and not node.op else ""
        gradient = f"grad {_brief(node.grad)}" if node.grad is not None else gradient
        rows.append([f"{number[node]} {what}", str(node.shape), _brief(node.data), gradient])
    widths = [max(len(row[column]) for row in rows) for column in range(3)] + [0]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in rows)

Tensor.graph = _graph

# ---- finding a learning rate ----
def lr_find(model, optimizer, X, y, start=1e-7, end=10.0, steps=300, batch_size=64, loss_fn=None,
            rng=0):
    """The learning-rate range test (Smith, 2015): train for `steps` steps with the learning rate
    rising exponentially from start to end, until the loss explodes; then put the model, the
    optimizer and minigrad's random numbers back as they were. Returns (rates, losses, suggestion):
    the losses smoothed over recent steps, and a tenth of the rate where they were lowest, a rate
    that still makes progress but stays clear of the explosion.
    >>> X, y = np.array([[-1.], [1.]] * 32), np.array([0, 1] * 32)
    >>> manual_seed(0)
    >>> model = Linear(1, 2)
    >>> before = model.weight.data.copy()
    >>> rates, losses, suggestion = lr_find(model, SGD(model, lr=0.1), X, y, steps=60)
    >>> len(rates) == len(losses), bool((model.weight.data == before).all())   # weights put back
    (True, True)"""
    loss_fn = loss_fn or cross_entropy
    X, y = _dataset(X, y, model)
    _check_optimizer(model, optimizer, "lr_find")
    weights = model.state_dict()
    grads = [parameter.grad for parameter in model.parameters()]
    modes = [(module, module.training) for _, module in model.named_modules()]
    optimizer_state = {k: v for k, v in vars(optimizer).items() if k != "params"}
    optimizer_state = copy.deepcopy(optimizer_state, {id(p): p for p in optimizer.params})
    random_state = _rng.bit_generator.state
    rates = start * (end / start) ** np.linspace(0, 1, steps)
    loader = batches(X, y, batch_size, rng=rng)

    def endless():  # pass after pass over the data, each in a new order
        while True:
            yield from loader
    losses = []
    average = 0.0
    model.train()  # as fit trains: Dropout on
    try:
        for step, (rate, (xb, yb)) in enumerate(zip(rates, endless()), 1):
            optimizer.lr = rate
            loss = loss_fn(model(Tensor(xb, copy=False)), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            average = 0.9 * average + 0.1 * loss.item()
            losses.append(average / (1 - 0.9 ** step))  # less the average's pull towards 0
            best = min(losses)
            if not math.isfinite(losses[-1]) or losses[-1] - best > 3 * (abs(best) or 1):
                break  # exploded: risen above the lowest by 3 times its size (a loss may be < 0)
    finally:
        model.load_state_dict(weights)
        for parameter, grad in zip(model.parameters(), grads):
            parameter.grad = grad
        for module, mode in modes:
            module.training = mode
        vars(optimizer).update(optimizer_state)
        _rng.bit_generator.state = random_state
    losses = np.array(losses)
    finite = np.isfinite(losses)  # the last loss, where it exploded, may be NaN or infinite
    if not finite.any():
        raise ValueError("lr_find: every loss was NaN or infinite; check the inputs and the model")
    rates = rates[:len(losses)][finite]
    return rates, losses[finite], rates[losses[finite].argmin()] / 10


# ==== Part 3: fit's watch. Each alarm rests on a fact that proves its cause. ====
class DivergenceError(RuntimeError):
    """fit() stopped: the loss became NaN or infinite, or exploded. lr: the rate to try, or None."""

    def __init__(self, message, lr=None):
        super().__init__(message)
        self.lr = lr

    def advice(self, rate="lr={:g}", finder="lr_find(model, optimizer, X, y)"):  # or a command's
        tried = f" Try {rate.format(self.lr)}, or find a rate with {finder}." if self.lr else ""
        return self.args[0] + tried

    __str__ = advice

class NotLearningError(DivergenceError):
    """fit() stopped: the network cannot learn (a layer's units all dead, weights that stay)."""

def _check_optimizer(model, optimizer, where):
    """Refuse an optimizer that holds none of the model's parameters: it would train nothing."""
    if not set(map(id, optimizer.params)) & set(map(id, model.parameters())):
        raise ValueError(f"{where}: the optimizer holds none of the model's parameters: make it "
                         f"after the model (making the model again makes new parameters)")

def _check_data(X, y):
    """Refuse NaN or infinite numbers and identical inputs; return each feature's range."""
    low, high = X.min(axis=0), X.max(axis=0)  # not finite where a feature holds NaN or inf
    for name, data in (("X", X), ("y", y)):
        if not np.isfinite(low - high if name == "X" else data).all():
            bad = ~np.isfinite(data.reshape(len(data), -1)).all(axis=1)
            raise ValueError(f"fit: {bad.sum()} of the {len(data)} samples of {name} hold NaN or "
                             f"infinite numbers, the first {name}[{bad.argmax()}]: fix or drop it")
    if len(X) > 1 and (low == high).all():
        raise ValueError(f"fit: all {len(X)} samples of X are the same: they carry no information")
    return low, high

def _rate(optimizer, factor):
    """factor times lr, or the usual rate (SGD 0.01, Adam 1e-3) if that is further that way."""
    usual = {Adam: 1e-3, SGD: 0.01}.get(type(optimizer), optimizer.lr * factor)
    return (min if factor < 1 else max)(usual, optimizer.lr * factor)

class _Watch:
    """A run's evidence, kept on its optimizer across calls of fit; few comparisons a step."""
    first = suspect = start = None  # the first loss, the last check's finding, a start's fault
    steps, sums, squares = 0, None, 0.0  # of 10 gradients sampled in every 100 steps

    @classmethod
    def of(cls, model, optimizer, X, y, loss_fn):
        """The optimizer's watch if it watches this model and loss, else a new one."""
        if not _grad_enabled:
            raise RuntimeError("fit: called inside no_grad(), where no gradient is computed")
        _check_optimizer(model, optimizer, "fit")
        watch = getattr(optimizer, "_watch", None)
        if watch is None or watch.model is not model or watch.loss_fn is not loss_fn:
            watch = optimizer._watch = cls()
            watch.model, watch.optimizer, watch.loss_fn = model, optimizer, loss_fn
            watch.names = {p: n.rpartition(".")[0] or "model" for n, p in model.named_parameters()}
            watch.params = [p for p in optimizer.params if p in watch.names]
        if not any(p.requires_grad for p in watch.params):
            raise ValueError("fit: every parameter of the model is frozen (requires_grad=False)")
        if optimizer.lr == 0:  # as lr //= 10 makes of 0.1
            raise NotLearningError("fit: the learning rate is 0.", lr=_rate(optimizer, 10))
        watch.features = _check_data(X, y)
        if _is_classes(y) and (y == y[0]).all():
            warnings.warn(f"fit: every target is class {y[0]}", RuntimeWarning, stacklevel=3)
        watch.guessing = float(y.var(axis=0).mean()) if loss_fn is mse_loss else None  # y's mean
        watch.targets = (float(y.mean()), float(y.std())) if loss_fn is mse_loss else (0, 1)
        return watch

    def before_step(self, output, loss, epoch, step):
        """Stop a loss that is not finite or exploded; at the run's first step, check its start."""
        value = float(loss.data)
        if self.first is None:
            self._start(output, loss, value)
        scale = max(self.first, self.guessing or math.inf)  # a loss of one's own: no scale known
        if math.isfinite(value) and not value > 1000 * scale > 0:
            self.last, self.peak = value, max(self.peak, value)
            return
        seen = f"training diverged at epoch {epoch}, step {step}: the loss is {value:.4g}"
        seen += (f", over 1000 times {scale:.4g}, its start or guessing's" if math.isfinite(value)
                 else f", made by {_first_not_finite(loss)}")
        cause = self.start
        if self.last > self.first:  # a loss that rose: the rate
            seen += f", after rising from {self.first:.4g} at the start to {self.last:.4g}"
        elif not math.isfinite(value):  # from a loss that did not rise: the op
            cause = cause or ("Keep that op's inputs where it is finite (log above 0, a divisor "
                              "away from 0), or compute it stably (cross_entropy takes scores).")
        if cause:
            raise DivergenceError(f"{seen}.\n  {cause}")
        raise DivergenceError(f"{seen}.\n  The learning rate lr={self.optimizer.lr:g} is the "
                              f"likely cause.", lr=_rate(self.optimizer, 0.1))

    def _start(self, output, loss, value):
        """The first step: layers that learn badly; a first loss far above an untrained one's."""
        self.first = self.peak = self.last = value
        self.weights = [p.data.copy() for p in self.params]
        self.born = {layer: dead for layer, dead, _ in _dead_units(loss, self.names)}
        for node in loss._graph_order():
            if node.op in ("linear", "conv2d") and node._parents[0].op in ("linear", "conv2d"):
                pair = [self.names.get(n._parents[1], "a layer") for n in (node._parents[0], node)]
                warnings.warn(f"{pair[0]} and then {pair[1]}, with nothing between them, are one "
                              f"linear map: put a ReLU() between", RuntimeWarning, stacklevel=4)
        if self.loss_fn is cross_entropy:
            self.guessing = math.log(output.shape[1])  # an untrained network's loss: ln C
            if output.op == "relu":
                warnings.warn("the scores given to cross_entropy come out of a ReLU, so none can "
                              "go below 0: drop the last ReLU", RuntimeWarning, stacklevel=4)
        if not value > 6 * (self.guessing or math.inf):  # Karpathy: "verify the loss at init"
            return
        low, high = self.features
        at = np.unravel_index(np.maximum(-low, high).argmax(), low.shape)
        self.start = "The likely cause: the initial weights (inputs and targets near unit scale)."
        if abs(self.targets[0]) > self.targets[1]:
            self.start = (f"The likely cause: targets far from 0, their mean {self.targets[0]:.4g} "
                          f"against their spread {self.targets[1]:.4g}: standardize them.")
        if max(-low[at], high[at]) > 10:
            self.start = (f"The likely cause: inputs far from unit scale, X[:, "
                          f"{', '.join(map(str, at))}] ranging {low[at]:.4g}..{high[at]:.4g}: "
                          f"standardize each feature (images of 0..255: divide by 255).")
        warnings.warn(f"the first loss, {value:.4g}, is {value / self.guessing:.3g} times "
                      f"{self.guessing:.4g}, an untrained network's. {self.start}", RuntimeWarning,
                      stacklevel=4)

    def after_step(self, loss, epoch, step):
        """Every 100 steps: stop a layer of dead units, or still weights that a gradient pulls."""
        self.steps += 1
        if self.steps % 10 == 0:
            grads = [np.zeros_like(p.data) if p.grad is None else p.grad for p in self.params]
            self.sums = [g + total for g, total in zip(grads, self.sums or [0] * len(grads))]
            self.squares += sum(np.vdot(g, g) for g in grads)
        if self.steps % 100:
            return
        moved = max(np.linalg.norm(p.data - w) / (np.linalg.norm(w) or 1)
                    for p, w in zip(self.params, self.weights))
        self.weights = [p.data.copy() for p in self.params]
        pull = math.sqrt(self.squares / 10 / (sum(np.vdot(w, w) for w in self.weights) or 1))
        # a pull, not noise (a tenth): the samples' mean squared is over half their mean square
        same_way = sum(np.vdot(total, total) for total in self.sums) > 5 * self.squares
        self.sums, self.squares = None, 0.0
        dead = [(layer, n) for layer, dead, n in _dead_units(loss, self.names) if dead == n]
        found = "dead" if dead else "still" if moved < 1e-3 and pull >= 0.01 and same_way else None
        last, self.suspect = self.suspect, found
        if found is None or found != last:
            return
        seen = f"training stopped at epoch {epoch}, step {step}, at two checks in a row: "
        lr, rate = self.optimizer.lr, _rate(self.optimizer, 10 if found == "still" else 0.1)
        if found == "still":
            raise NotLearningError(f"{seen}no weight moved over {moved * 100:.2g}% in 100 steps, "
                                   f"though the gradient, {pull:.2g} times their size, pulled one "
                                   f"way: lr={lr:g} is too small.", lr=rate)
        where = " and ".join(f"all {n} units after {layer}" for layer, n in dead)
        seen += f"{where} output 0 for every sample of the batch: they are dead, and stay dead.\n  "
        born = [layer for layer, n in dead if self.born.get(layer) == n]
        if born:
            raise NotLearningError(f"{seen}They were dead from the first step: the inputs or the "
                                   f"initial weights leave every unit of {born[0]} below 0.")
        raise NotLearningError(f"{seen}They fired at the first step: a step too large killed them "
                               f"(loss up to {self.peak:.4g}); lr={lr:g} is too large.", lr=rate)

def _first_not_finite(loss):
    """The op (or leaf) that made the first number that is not finite, from finite inputs: the
    step's tensors in the order they were computed, as PyTorch's anomaly mode finds it."""
    for node in reversed(loss._graph_order()):
        bad = ~np.isfinite(node.data)
        if bad.any():
            at = np.unravel_index(bad.argmax(), bad.shape)
            if node.op in ("log", "div"):  # the input of log, the divisor of div
                held = np.broadcast_to(node._parents[-1].data, bad.shape)[at]
                word = "of an input holding" if node.op == "log" else "by"
                return f"{node.op} {word} {held:g} (at {list(map(int, at))})"
            how = "overflowing" if np.isinf(node.data[at]) else f"with {node.data[at]}"
            return f"{node.op or 'a leaf'} {how} (at {list(map(int, at))})"

def _dead_units(loss, names):
    """(layer, dead units, units) for each ReLU right after a layer of the model; a unit (a feature
    or a channel: axis 1) is dead if it output 0 for every sample."""
    for node in reversed(loss._graph_order()):  # from the input side: the first layer first
        inner = node._parents[0] if node.op == "relu" and node.ndim > 1 else None
        if inner is not None and inner.op in ("linear", "conv2d") and inner._parents[1] in names:
            fires = (node.data > 0).any(axis=tuple(axis for axis in range(node.ndim) if axis != 1))
            yield names[inner._parents[1]], int((~fires).sum()), fires.size
