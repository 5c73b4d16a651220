"""minigrad: a deep-learning library in one readable file, on numpy alone. Read it in order: Tensor and
backward(), the differentiable ops, no_grad and gradcheck, layer ops, losses, layers, optimizers, fit().

The design rule: every op computes its result and, right beside it, a `backward` closure that turns g,
the gradient of the loss with respect to the op's output, into the gradients with respect to its inputs
(g times the op's local derivative). Tensor.backward() calls these closures from the loss back to the
parameters: that is the chain rule, and all there is to reverse-mode autodiff. Each op's docstring states its
derivative and shows it with gradients(fn, *inputs), defined below the ops: d fn(...).sum() / d each input."""
import contextlib
import time

import numpy as np

_grad_enabled = True  # no_grad() switches it off: ops then record no graph

class ShapeError(ValueError):
    """Shapes that do not fit; the message names the op, the shapes, and the layer (in Module.__call__)."""

def _unbroadcast(grad, shape):
    """Sum a gradient over the axes that broadcasting added or stretched, back to the operand's shape."""
    if grad.shape == shape:
        return grad
    grad = grad.sum(axis=tuple(range(grad.ndim - len(shape))))
    return grad.sum(axis=tuple(i for i, n in enumerate(shape) if n == 1), keepdims=True)

def _tensor(x, dtype=None):  # a number or an array as a constant Tensor (no gradient), e.g. the 2 in a * 2
    return x if isinstance(x, Tensor) else Tensor(x, dtype=dtype)

class Tensor:
    """An array that remembers the op and inputs it came from, so that gradients can flow back.
    Lists, numbers and integer arrays become float32; a floating-point numpy array keeps its dtype."""
    __array_ufunc__ = None  # makes numpy leave `array * tensor` to Tensor.__rmul__

    def __init__(self, data, requires_grad=False, dtype=None):
        data = data.data if isinstance(data, Tensor) else data
        keep_dtype = dtype is None and isinstance(data, (np.ndarray, np.generic)) and data.dtype.kind == "f"
        self.data = np.asarray(data, dtype=None if keep_dtype else dtype or np.float32)
        self.requires_grad, self.grad = requires_grad, None
        # the tensors this one was computed from, and the closure from g to their gradients (None: a leaf)
        self._parents, self._backward = (), None

    @staticmethod
    def from_op(data, parents, backward):
        """Wrap an op's result, recording its parents and backward closure if any parent needs a gradient.
        >>> gradients(lambda a: Tensor.from_op(a.data ** 2, (a,), lambda g: (g * 2 * a.data,)), [3.])   # a new op
        [array([6.], dtype=float32)]"""
        out = Tensor(data)
        if _grad_enabled and any(p.requires_grad for p in parents):
            out.requires_grad, out._parents, out._backward = True, parents, backward
        return out

    shape = property(lambda self: self.data.shape)
    ndim = property(lambda self: self.data.ndim)
    dtype = property(lambda self: self.data.dtype)
    T = property(lambda self: self.transpose())

    def item(self):
        """The number in a one-element tensor.
        >>> Tensor([[2.5]]).item()
        2.5"""
        return self.data.item()

    def numpy(self):
        """The numpy array behind the tensor (not a copy).
        >>> Tensor([1, 2]).numpy()
        array([1., 2.], dtype=float32)"""
        return self.data

    def detach(self):
        """The same numbers, cut off from the graph: no gradient flows back through them.
        >>> Tensor([1.], requires_grad=True).detach().requires_grad
        False"""
        return Tensor(self.data)

    def __repr__(self):
        body = np.array2string(self.data, separator=", ", threshold=20, prefix="Tensor(")
        return f"Tensor({body}{', requires_grad=True' if self.requires_grad else ''})"

    def backward(self, grad=None):
        """Add d(self)/d(leaf) to .grad of every leaf tensor with requires_grad that self depends on.
        A one-element tensor (a loss) needs no grad; gradients accumulate across calls, as in PyTorch.
        >>> x = Tensor([3.], requires_grad=True)
        >>> (x * x + x).backward(); x.grad   # 2x + 1: x is used on three paths, their gradients add
        array([7.], dtype=float32)"""
        if not self.requires_grad:
            raise RuntimeError("backward: no input of this tensor had requires_grad=True (or it was made in no_grad)")
        if grad is None and self.data.size != 1:
            raise ShapeError(f"backward: output {self.shape} is not one number: pass grad= of its shape, or .sum() it")
        grad = np.ones_like(self.data) if grad is None else np.array(getattr(grad, "data", grad), self.dtype)
        if grad.shape != self.shape:
            raise ShapeError(f"backward: grad has shape {grad.shape} but the output has shape {self.shape}")
        # each node after its parents: a depth-first walk with its own stack, as 10,000 nested calls would fail
        order, visited, stack = [], set(), [(self, False)]
        while stack:
            node, parents_done = stack.pop()
            if parents_done:
                order.append(node)
            elif node not in visited:
                visited.add(node)
                stack.append((node, True))
                stack.extend((p, False) for p in node._parents if p.requires_grad and p not in visited)
        grads, stored = {self: grad}, set()  # d(self)/d(node) for the nodes reached so far, summed over paths
        for node in reversed(order):  # from the output back to the leaves
            g = grads.pop(node)
            if node._backward is None:  # a leaf: .grad = a copy of g, or g itself if no one else can change it
                owned = type(g) is np.ndarray and g.base is None and g.dtype == node.dtype and id(g) not in stored
                node.grad = (g if owned else np.array(g, dtype=node.dtype)) if node.grad is None else node.grad + g
                stored.add(id(node.grad))
                continue
            for parent, parent_grad in zip(node._parents, node._backward(g)):
                if parent.requires_grad:
                    parent_grad = _unbroadcast(parent_grad, parent.shape)
                    grads[parent] = grads[parent] + parent_grad if parent in grads else parent_grad

    # ---- arithmetic, with numpy broadcasting: backward() sums each gradient back to its operand ----
    def _binary(self, other, op, ufunc, backward):
        other = _tensor(other, self.dtype)
        try:
            data = ufunc(self.data, other.data)
        except ValueError:  # name the op, both shapes, and the first pair of sizes that cannot broadcast
            a, b = next((a, b) for a, b in zip(self.shape[::-1], other.shape[::-1]) if a != b and 1 not in (a, b))
            raise ShapeError(f"{op}: shapes {self.shape} and {other.shape} do not broadcast: aligned from the "
                             f"right, sizes {a} and {b} differ and neither is 1") from None
        return Tensor.from_op(data, (self, other), lambda g: backward(g, self.data, other.data, data))

    def __add__(self, other):
        """a + b.  d/da = 1, d/db = 1.
        >>> gradients(lambda a, b: a + b, [1., 2.], 5.)   # b was added to both elements
        [array([1., 1.], dtype=float32), array(2., dtype=float32)]"""
        return self._binary(other, "add", np.add, lambda g, a, b, out: (g, g))

    def __sub__(self, other):
        """a - b.  d/da = 1, d/db = -1.
        >>> gradients(lambda a, b: a - b, [1., 2.], [5., 5.])
        [array([1., 1.], dtype=float32), array([-1., -1.], dtype=float32)]"""
        return self._binary(other, "sub", np.subtract, lambda g, a, b, out: (g, -g))

    def __mul__(self, other):
        """a * b.  d/da = b, d/db = a.
        >>> gradients(lambda a, b: a * b, [2., 3.], [10., 20.])
        [array([10., 20.], dtype=float32), array([2., 3.], dtype=float32)]"""
        return self._binary(other, "mul", np.multiply, lambda g, a, b, out: (g * b, g * a))

    def __truediv__(self, other):
        """a / b.  d/da = 1/b, d/db = -a/b^2.
        >>> gradients(lambda a, b: a / b, [6.], [2.])   # 1/2 and -6/4
        [array([0.5], dtype=float32), array([-1.5], dtype=float32)]"""
        return self._binary(other, "div", np.divide, lambda g, a, b, out: (g / b, -g * out / b))

    __radd__, __rmul__ = __add__, __mul__  # 2 + a is a + 2
    def __rsub__(self, other):
        return _tensor(other, self.dtype) - self
    def __rtruediv__(self, other):
        return _tensor(other, self.dtype) / self
    def __rmatmul__(self, other):
        return _tensor(other, self.dtype) @ self

    def __neg__(self):
        """-a.  d/da = -1.
        >>> gradients(lambda a: -a, [1., 2.])
        [array([-1., -1.], dtype=float32)]"""
        return Tensor.from_op(-self.data, (self,), lambda g: (-g,))

    def __pow__(self, exponent):
        """a ** p, for a number p.  d/da = p a^(p-1).
        >>> gradients(lambda a: a ** 2, [3., -1.])   # 2a
        [array([ 6., -2.], dtype=float32)]"""
        data = self.data ** exponent
        local = exponent * self.data ** (exponent - 1) if exponent else 0  # a^0 = 1 has slope 0, even at a = 0
        return Tensor.from_op(data, (self,), lambda g: (g * local,))

    def __matmul__(self, other):
        """a @ b, matrix product of the last two axes: (..., n, k) @ (..., k, m).  d/da = g b^T, d/db = a^T g.
        >>> gradients(lambda a, b: a @ b, [[1., 2.]], [[3.], [4.]])   # a: g b^T = [3, 4]; b: a^T g
        [array([[3., 4.]], dtype=float32), array([[1.],
               [2.]], dtype=float32)]"""
        other = _tensor(other, self.dtype)
        a, b = self.data, other.data
        if min(a.ndim, b.ndim) < 2:
            raise ShapeError(f"matmul: {self.shape} @ {other.shape}: each needs 2 or more axes; make a vector (1, n)")
        if a.shape[-1] != b.shape[-2]:
            raise ShapeError(f"matmul: {a.shape} @ {b.shape}: inner dimensions {a.shape[-1]} and {b.shape[-2]} differ")
        try:
            data = a @ b
        except ValueError:
            raise ShapeError(f"matmul: {self.shape} @ {other.shape}: the batch axes do not broadcast") from None
        return Tensor.from_op(data, (self, other), lambda g: (  # skip the product for an input needing none
            g @ b.swapaxes(-1, -2) if self.requires_grad else None,
            a.swapaxes(-1, -2) @ g if other.requires_grad else None))

    # ---- reductions: every input element reached the output once, so g flows straight back ----
    def sum(self, axis=None, keepdims=False):
        """Sum over axis (int, tuple, None: all).  d/da_i = 1 for each summed element.
        >>> gradients(lambda a: a.sum(axis=1), [[1., 2., 3.]])
        [array([[1., 1., 1.]], dtype=float32)]"""
        kept = self.data.sum(axis=axis, keepdims=True)  # reduced axes kept, with size 1: g broadcasts back
        return Tensor.from_op(kept if keepdims else kept.squeeze(axis), (self,),
                              lambda g: (np.broadcast_to(g.reshape(kept.shape), self.shape),))

    def mean(self, axis=None, keepdims=False):
        """Mean over axis (int, tuple, None: all), of n elements each.  d/da_i = 1/n.
        >>> gradients(Tensor.mean, [2., 4., 6., 8.])
        [array([0.25, 0.25, 0.25, 0.25], dtype=float32)]"""
        total = self.sum(axis, keepdims)
        return total * (total.data.size / self.data.size)  # times 1/n

    def max(self, axis=None, keepdims=False):
        """Maximum over axis (int, tuple, None: all).  d/da_i = 1 at the maximum (ties share it), else 0.
        >>> gradients(Tensor.max, [1., 5., 5.])   # two maxima: each gets half
        [array([0. , 0.5, 0.5], dtype=float32)]"""
        kept = self.data.max(axis=axis, keepdims=True)
        def backward(g):
            is_max = self.data == kept
            return (is_max * (g.reshape(kept.shape) / is_max.sum(axis=axis, keepdims=True, dtype=g.dtype)),)
        return Tensor.from_op(kept if keepdims else kept.squeeze(axis), (self,), backward)

    # ---- moving numbers around: the gradient moves back the same way ----
    def reshape(self, *shape):
        """The same numbers in another shape (-1: inferred).  d/da = g reshaped back.
        >>> gradients(lambda a: a.reshape(2, 2) * [[1., 2.], [3., 4.]], [1., 2., 3., 4.])
        [array([1., 2., 3., 4.], dtype=float32)]"""
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        try:
            data = self.data.reshape(shape)
        except ValueError:
            raise ShapeError(f"reshape: cannot reshape {self.shape} ({self.data.size} elements) into {shape}") from None
        return Tensor.from_op(data, (self,), lambda g: (g.reshape(self.shape),))

    def transpose(self, *axes):
        """Reorder the axes, with numpy's meaning (no axes: reverse them).  d/da = g with the order undone.
        >>> gradients(lambda a: a.T * [[1.], [2.], [3.]], [[1., 2., 3.]])
        [array([[1., 2., 3.]], dtype=float32)]"""
        axes = tuple(axes[0]) if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        try:
            data = self.data.transpose(axes or None)
        except ValueError:
            raise ShapeError(f"transpose: {axes} is not an order of the {self.ndim} axes of {self.shape}") from None
        undo = np.argsort([a % self.ndim for a in axes]) if axes else None  # argsort inverts a permutation
        return Tensor.from_op(data, (self,), lambda g: (g.transpose(undo),))

    def __getitem__(self, index):
        """a[index], with slices, integers and integer arrays.  d/da = g put back where it was taken from.
        >>> gradients(lambda a: a[[0, 0, 2]], [10., 20., 30.])   # a[0] was taken twice
        [array([2., 0., 1.], dtype=float32)]"""
        def backward(g):
            grad = np.zeros_like(self.data)
            np.add.at(grad, index, g)  # unlike grad[index] += g, adds g for every repeat of an index
            return (grad,)
        return Tensor.from_op(self.data[index], (self,), backward)

    # ---- elementwise functions ----
    def exp(self):
        """e^a.  d/da = e^a.
        >>> gradients(Tensor.exp, [0.])
        [array([1.], dtype=float32)]"""
        data = np.exp(self.data)
        return Tensor.from_op(data, (self,), lambda g: (g * data,))

    def log(self):
        """Natural logarithm.  d/da = 1/a.
        >>> gradients(Tensor.log, [4., 2.])
        [array([0.25, 0.5 ], dtype=float32)]"""
        return Tensor.from_op(np.log(self.data), (self,), lambda g: (g / self.data,))

    def relu(self):
        """max(a, 0).  d/da = 1 where a > 0, else 0.
        >>> gradients(Tensor.relu, [-1., 2.])
        [array([0., 1.], dtype=float32)]"""
        return Tensor.from_op(np.maximum(self.data, 0), (self,), lambda g: (g * (self.data > 0),))

    def tanh(self):
        """Hyperbolic tangent.  d/da = 1 - tanh(a)^2.
        >>> gradients(Tensor.tanh, [0.])
        [array([1.], dtype=float32)]"""
        data = np.tanh(self.data)
        return Tensor.from_op(data, (self,), lambda g: (g * (1 - data * data),))

    def sigmoid(self):
        """s = 1 / (1 + e^-a), computed as e^-log(1 + e^-a) so that no e^x overflows.  d/da = s (1 - s).
        >>> gradients(Tensor.sigmoid, [0.])   # s = 1/2
        [array([0.25], dtype=float32)]"""
        data = np.exp(-np.logaddexp(0, -self.data))
        return Tensor.from_op(data, (self,), lambda g: (g * data * (1 - data),))

    def softmax(self, axis=-1):
        """s_i = e^a_i / sum_j e^a_j along axis.  d/da = s (g - sum(g s)).
        >>> gradients(lambda a: a.softmax() * [1., 0.], [0., 0.])   # s = [1/2, 1/2]
        [array([ 0.25, -0.25], dtype=float32)]"""
        data = np.exp(_log_softmax(self.data, axis))
        return Tensor.from_op(data, (self,), lambda g: (data * (g - (g * data).sum(axis=axis, keepdims=True)),))

    def log_softmax(self, axis=-1):
        """a_i - log sum_j e^a_j along axis, finite even where softmax rounds to 0.  d/da = g - softmax(a) sum(g).
        >>> gradients(lambda a: a.log_softmax() * [1., 0.], [0., 0.])
        [array([ 0.5, -0.5], dtype=float32)]"""
        data = _log_softmax(self.data, axis)
        return Tensor.from_op(data, (self,), lambda g: (g - np.exp(data) * g.sum(axis=axis, keepdims=True),))

def _log_softmax(data, axis):
    shifted = data - data.max(axis=axis, keepdims=True)  # the same result, and no e^x can overflow
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))

@contextlib.contextmanager
def no_grad():
    """Inside `with no_grad():` ops record no graph and results do not require grad (for evaluation).
    >>> with no_grad():
    ...     (Tensor([1.], requires_grad=True) * 2).requires_grad
    False"""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous

def gradcheck(fn, *inputs, eps=1e-6, atol=1e-5, rtol=1e-3):
    """Compare backward() of fn with central differences (f(x + eps) - f(x - eps)) / 2 eps, in float64.
    Returns True, or raises AssertionError naming the input, the element and both values.
    >>> def square_with_wrong_derivative(a):  # d(a^2)/da is 2a, not a
    ...     return Tensor.from_op(a.data ** 2, (a,), lambda g: (g * a.data,))
    >>> gradcheck(square_with_wrong_derivative, np.array([3.]))
    Traceback (most recent call last):
    AssertionError: gradcheck: input 0, element (0,): backward gives 3, central difference gives 6"""
    inputs = [Tensor(np.array(getattr(x, "data", x), dtype=np.float64), requires_grad=True) for x in inputs]
    output = fn(*inputs)
    # a random weighting makes one number of several outputs, without letting errors cancel in a sum
    weights = np.random.default_rng(0).standard_normal(output.shape) if output.data.size > 1 else 1.0
    (output * weights).sum().backward()
    for k, x in enumerate(inputs):
        for index in np.ndindex(x.shape):
            original, values = x.data[index], []
            for shifted in (original + eps, original - eps):
                x.data[index] = shifted
                with no_grad():
                    values.append((fn(*inputs).data * weights).sum())
            x.data[index] = original
            numeric, analytic = (values[0] - values[1]) / (2 * eps), 0.0 if x.grad is None else x.grad[index]
            if not np.isclose(analytic, numeric, rtol=rtol, atol=atol):
                raise AssertionError(f"gradcheck: input {k}, element {index}: backward gives {analytic:.6g}, "
                                     f"central difference gives {numeric:.6g}")
    return True

def gradients(fn, *inputs):
    """The gradient of fn(*inputs).sum() for each input as backward() gives it, once gradcheck has confirmed it.
    >>> gradients(lambda a, b: a * b + b, [2., 3.], [10., 20.])   # d/da = b, d/db = a + 1
    [array([10., 20.], dtype=float32), array([3., 4.], dtype=float32)]"""
    gradcheck(fn, *inputs)
    inputs = [Tensor(x, requires_grad=True) for x in inputs]
    fn(*inputs).sum().backward()
    return [x.grad for x in inputs]

# ---- the ops of network layers ----
def conv2d(x, weight, bias=None, stride=1, padding=0):
    """Slide (out, in, kh, kw) filters over (batch, in, height, width) images, as PyTorch's conv2d:
    with each image patch copied into a row of a matrix ("im2col"), all dot products are one
    matrix product.  d/dweight = g^T patches;  d/dbias = sum of g;  d/dx = g filters, each row
    added back onto its patch's pixels ("col2im").
    Inside, images are channels-last, (batch, height, width, channels), so that a patch's row and
    each addition of col2im are contiguous in memory. The output is a (batch, channels, y, x) view
    of such memory, which relu and max_pool2d keep: a next conv2d gets channels-last images free.
    >>> x = np.arange(9.).reshape(1, 1, 3, 3)  # d/dx: the number of 2x2 patches holding each pixel
    >>> gradients(conv2d, x, np.ones((1, 1, 2, 2)), [0.])[0].tolist()
    [[[[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]]]"""
    x, (out_channels, channels, kh, kw) = _tensor(x, weight.dtype), weight.shape
    if x.ndim != 4 or x.shape[1] != channels or bias is not None and bias.shape != (out_channels,):
        raise ShapeError(f"conv2d: input {x.shape} should be (batch, {channels}, height, width) "
                         f"for weight {weight.shape} (out, in, kh, kw) and bias ({out_channels},)")
    n, _, h, w = x.shape
    out_h, out_w = (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1
    if min(out_h, out_w, stride) < 1 or padding < 0:
        raise ShapeError(f"conv2d: a {kh}x{kw} kernel with stride {stride}, padding {padding} "
                         f"does not fit {x.shape}")
    images = x.data.transpose(0, 2, 3, 1)  # (n, h, w, in): a view
    if padding:
        images = np.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(images, (kh, kw), axis=(1, 2))
    windows = windows[:, ::stride, ::stride]  # (n, out_h, out_w, in, kh, kw): a patch per pixel
    if channels == 1:  # rows of kh*kw numbers copy slowly: copy along image rows, then transpose
        patches = windows.transpose(3, 4, 5, 0, 1, 2).reshape(kh * kw, -1).T
    else:  # the copy: (n*out_h*out_w, kh*kw*in), a row per output pixel, in (dy, dx, channel) order
        patches = windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, kh * kw * channels)
    filters = weight.data.transpose(0, 2, 3, 1).copy()  # (out, kh, kw, in): in a patch's order
    data = patches @ filters.reshape(out_channels, -1).T  # (n*out_h*out_w, out)
    if bias is not None:
        data += bias.data
    data = data.reshape(n, out_h, out_w, out_channels).transpose(0, 3, 1, 2)  # (n, out, y, x)
    def backward(g):
        g_rows = g.transpose(0, 2, 3, 1).reshape(-1, out_channels)  # (n*out_h*out_w, out): a view
        grad_x = None
        if x.requires_grad:  # the input images need no gradient: skip the col2im
            grad_images = np.zeros(images.shape, g.dtype)  # (n, h + 2 padding, w + 2 padding, in)
            for i, j in np.ndindex(kh, kw):  # pixel (i, j) of every patch gets g filters[:, i, j]
                share = (g_rows @ filters[:, i, j]).reshape(n, out_h, out_w, channels)
                grad_images[:, i:i + stride * out_h:stride, j:j + stride * out_w:stride] += share
            grad_x = grad_images[:, padding:padding + h, padding:padding + w].transpose(0, 3, 1, 2)
        grad_weight = (g_rows.T @ patches).reshape(filters.shape).transpose(0, 3, 1, 2).copy()
        grad_bias = None if bias is None else np.ones(len(g_rows), g.dtype) @ g_rows  # BLAS: fast
        return (grad_x, grad_weight) if bias is None else (grad_x, grad_weight, grad_bias)
    return Tensor.from_op(data, (x, weight) if bias is None else (x, weight, bias), backward)

def max_pool2d(x, kernel_size, stride=None):
    """The maximum of each kernel_size x kernel_size window (stride: kernel_size) of (batch,
    channels, h, w) images.  d/dx = g at the maximum of each window (the first, on ties), else 0.
    >>> gradients(lambda x: max_pool2d(x, 2), [[[[1., 2.], [4., 3.]]]])[0].tolist()
    [[[[0.0, 0.0], [1.0, 0.0]]]]"""
    x, k, stride = _tensor(x), kernel_size, kernel_size if stride is None else stride
    if x.ndim != 4 or not 1 <= k <= min(x.shape[2:]) or stride < 1:
        raise ShapeError(f"max_pool2d: input {x.shape} should be (batch, channels, height, width) "
                         f"with each side at least kernel_size={k} >= 1, and stride={stride} >= 1")
    images, out_h, out_w = x.data, (x.shape[2] - k) // stride + 1, (x.shape[3] - k) // stride + 1
    # for each offset (i, j) in a window: the rows and columns of the pixel at (i, j) of all windows
    offsets = [(slice(i, i + stride * out_h, stride), slice(j, j + stride * out_w, stride))
               for i, j in np.ndindex(k, k)]
    planes = [images[:, :, rows, cols] for rows, cols in offsets]  # views (n, c, out_h, out_w)
    data = planes[0].copy(order="K")  # K: in the input's memory order (channels-last after conv2d)
    for plane in planes[1:]:  # k*k - 1 elementwise maxima of whole planes, views of the input
        np.maximum(data, plane, out=data)
    def backward(g):
        g_out = np.empty_like(data)  # g in the output's memory order: mixing orders is 2-3x slower
        g_out[...] = g
        grad, taken = np.zeros_like(images), np.zeros_like(data, dtype=bool)
        for (rows, cols), plane in zip(offsets, planes):
            is_max = plane == data
            is_max &= ~taken  # on a tie only the first maximum gets g, as in PyTorch
            taken |= is_max
            if stride >= k:  # windows do not overlap: a pixel gets g from one window at most
                np.multiply(g_out, is_max, out=grad[:, :, rows, cols])
            else:
                grad[:, :, rows, cols] += g_out * is_max
        return (grad,)
    return Tensor.from_op(data, (x,), backward)

# ---- losses ----
def cross_entropy(logits, targets):
    """Mean over the batch of -log softmax(logits)[target], for (N, C) logits and N class indices.
    d/dlogits = (softmax(logits) - onehot(targets)) / N.
    >>> gradients(lambda z: cross_entropy(z, [0]), [[0., 0.]])   # softmax - onehot = [1/2 - 1, 1/2]
    [array([[-0.5,  0.5]], dtype=float32)]"""
    logits, targets = _tensor(logits), np.asarray(targets)
    n, classes = logits.shape if logits.ndim == 2 else (0, 0)
    if (targets.shape != (n,) or n == 0 or targets.dtype.kind not in "iu"
            or not 0 <= targets.min() <= targets.max() < classes):
        raise ShapeError(f"cross_entropy: logits {logits.shape} should be (batch, classes) and targets {targets.shape} "
                         f"{targets.dtype} one integer class index in 0..{classes - 1} per row")
    log_probs = _log_softmax(logits.data, axis=1)
    def backward(g):
        grad = np.exp(log_probs)
        grad[np.arange(n), targets] -= 1
        return (grad * (g / n),)
    return Tensor.from_op(-log_probs[np.arange(n), targets].mean(), (logits,), backward)

def mse_loss(prediction, target):
    """Mean of (prediction - target)^2 over its n elements.  d/dprediction = 2 (prediction - target) / n.
    >>> gradients(lambda p: mse_loss(p, [0., 0.]), [1., 3.])   # 2 (p - 0) / 2
    [array([1., 3.], dtype=float32)]"""
    if prediction.shape != np.shape(getattr(target, "data", target)):  # (N, 1) - (N,) would make (N, N)
        raise ShapeError(f"mse_loss: prediction {prediction.shape} and target {np.shape(target)} differ")
    return ((prediction - target) ** 2).mean()

# ---- layers ----
_rng = np.random.default_rng()  # draws initial weights, Dropout masks, and the batch order by default

def manual_seed(seed):
    """Seed initialization, Dropout and shuffling, so that a run can be repeated exactly.
    >>> manual_seed(0); first = Linear(2, 2).weight.data
    >>> manual_seed(0); bool((Linear(2, 2).weight.data == first).all())
    True"""
    global _rng
    _rng = np.random.default_rng(seed)

class Module:
    """A layer or a model. Parameters are found in its attributes: Tensors that require grad, Modules and
    lists of Modules (named like layers.0.weight). Calling it runs forward()."""
    training = True

    def __call__(self, *inputs):
        try:
            return self.forward(*inputs)
        except ShapeError as error:
            if not hasattr(error, "layer"):  # the innermost layer names itself; outer ones pass it on
                error.layer, error.args = self, (f"{self}: {error}",)
            raise

    def __repr__(self):  # its settings, as PyTorch shows them: Linear(in_features=784, out_features=10)
        settings = (f"{k}={v!r}" for k, v in vars(self).items() if k != "training" and not isinstance(v, Tensor))
        return f"{type(self).__name__}({', '.join(settings)})"

    def named_modules(self, prefix=""):
        yield prefix, self  # this module, then every module inside it, named like "layers.0."
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield from value.named_modules(f"{prefix}{name}.")
            for i, item in enumerate(value if isinstance(value, (list, tuple)) else ()):
                if isinstance(item, Module):
                    yield from item.named_modules(f"{prefix}{name}.{i}.")

    def named_parameters(self):
        return [(prefix + name, value) for prefix, module in self.named_modules()
                for name, value in vars(module).items() if isinstance(value, Tensor) and value.requires_grad]

    def parameters(self):
        return [parameter for _, parameter in self.named_parameters()]
    def zero_grad(self):
        for parameter in self.parameters():
            parameter.grad = None

    def train(self, mode=True):
        """Put this module and all inside it in training mode (Dropout active); eval() is train(False)."""
        for _, module in self.named_modules():
            module.training = mode
        return self
    def eval(self):
        return self.train(False)

    def state_dict(self):
        return {name: parameter.data.copy() for name, parameter in self.named_parameters()}
    def load_state_dict(self, state):
        """Copy arrays into the parameters of the same names, after checking every name and shape."""
        parameters = dict(self.named_parameters())
        if parameters.keys() != state.keys():
            raise KeyError(f"load_state_dict: missing {sorted(parameters.keys() - state.keys())}, "
                           f"unexpected {sorted(state.keys() - parameters.keys())}")
        for name, parameter in parameters.items():
            if np.shape(state[name]) != parameter.shape:
                raise ShapeError(f"load_state_dict: {name} is {np.shape(state[name])}, the model's {parameter.shape}")
        for name, parameter in parameters.items():
            parameter.data = np.array(state[name], dtype=parameter.dtype)

def _uniform_parameter(shape, fan_in=None):
    """PyTorch's default initialization, uniform in +-1/sqrt(fan_in): a sum of fan_in inputs so weighted keeps
    their scale, so signals neither vanish nor explode layer after layer; random weights make units differ."""
    bound = 1 / np.sqrt(fan_in or np.prod(shape[1:]))  # fan_in: the inputs of each output, by default
    return Tensor(_rng.uniform(-bound, bound, shape).astype(np.float32), requires_grad=True)

class Linear(Module):
    """y = x @ weight^T + bias, weight (out_features, in_features) initialized by _uniform_parameter; one op
    rather than three (matmul, transpose, add), for speed.  d/dx = g weight, d/dweight = g^T x, d/dbias = sum(g)."""
    def __init__(self, in_features, out_features, bias=True):
        self.in_features, self.out_features = in_features, out_features
        self.weight = _uniform_parameter((out_features, in_features))
        self.bias = _uniform_parameter((out_features,), in_features) if bias else None

    def forward(self, x):
        x, weight, bias = _tensor(x, self.weight.dtype), self.weight, self.bias
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ShapeError(f"linear: input {x.shape} should be (batch, {self.in_features}) for weight {weight.shape}")
        data = x.data @ weight.data.T
        if bias is not None:
            data += bias.data
        def backward(g):  # the input batch needs no gradient: skip its product
            grad_x = g @ weight.data if x.requires_grad else None
            return (grad_x, g.T @ x.data) if bias is None else (grad_x, g.T @ x.data, g.sum(axis=0))
        return Tensor.from_op(data, (x, weight) if bias is None else (x, weight, bias), backward)

class Conv2d(Module):
    """conv2d with weight (out_channels, in_channels, k, k), initialized by _uniform_parameter."""
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True):
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.stride, self.padding = stride, padding
        self.weight = _uniform_parameter((out_channels, in_channels, kernel_size, kernel_size))
        self.bias = _uniform_parameter((out_channels,), in_channels * kernel_size**2) if bias else None

    def forward(self, x):
        return conv2d(x, self.weight, self.bias, self.stride, self.padding)

class MaxPool2d(Module):
    def __init__(self, kernel_size, stride=None):
        self.kernel_size, self.stride = kernel_size, stride
    def forward(self, x):
        return max_pool2d(x, self.kernel_size, self.stride)

class Flatten(Module):
    def forward(self, x):
        return x.reshape(x.shape[0], -1)

class ReLU(Module):
    forward = staticmethod(Tensor.relu)  # ReLU()(x) is x.relu()

class Tanh(Module):
    forward = staticmethod(Tensor.tanh)  # Tanh()(x) is x.tanh()

class Sigmoid(Module):
    forward = staticmethod(Tensor.sigmoid)  # Sigmoid()(x) is x.sigmoid()

class Dropout(Module):
    """In training, zero each element with probability p and scale the rest by 1/(1-p) ("inverted"
    dropout): the expected value stays the same, so in eval mode it passes x through unchanged."""

    def __init__(self, p=0.5):
        if not 0 <= p < 1:
            raise ValueError(f"Dropout: p, the probability of zeroing an element, must be in [0, 1); got {p}")
        self.p = p

    def forward(self, x):
        keep = _rng.random(x.shape, dtype=np.float32) >= self.p if self.training and self.p else None
        return x if keep is None else x * (keep / (1 - self.p))

class Sequential(Module):  # layers applied one after another
    def __init__(self, *layers):
        self.layers = list(layers)
    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

# ---- optimizers: each step moves every parameter against its gradient ----
class Optimizer:
    def __init__(self, params, lr, weight_decay):
        self.params = list(params.parameters() if isinstance(params, Module) else params)  # SGD(model) works too
        self.lr, self.weight_decay = lr, weight_decay
        if not self.params:
            raise ValueError(f"{type(self).__name__}: the parameter list is empty; pass model.parameters()")
        if not lr > 0:
            raise ValueError(f"{type(self).__name__}: the learning rate must be positive, got lr={lr}")

    def zero_grad(self):
        for parameter in self.params:
            parameter.grad = None

    def step(self):
        for i, parameter in enumerate(self.params):
            if parameter.grad is not None:  # weight decay adds the gradient of weight_decay/2 * w^2
                grad = parameter.grad + self.weight_decay * parameter.data if self.weight_decay else parameter.grad
                self.update(i, parameter.data, grad)  # the subclass's rule, changing the weights in place

class SGD(Optimizer):
    """Gradient descent with momentum, as PyTorch computes it: v = momentum v + g;  w = w - lr v."""
    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0):
        super().__init__(params, lr, weight_decay)
        self.momentum, self.velocities = momentum, [np.zeros_like(p.data) for p in self.params]

    def update(self, i, w, g):  # in place, so that a step allocates no new arrays
        v = self.velocities[i]
        v *= self.momentum
        v += g
        w -= self.lr * v

class Adam(Optimizer):
    """Adam, as PyTorch: m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  w = w - lr m' / (sqrt(v') + eps), where
    m' = m / (1 - b1^t) and v' = v / (1 - b2^t) undo the pull of these running averages towards their start, 0."""
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr, weight_decay)
        self.betas, self.eps, self.steps = betas, eps, [0] * len(self.params)  # t counts each parameter's steps
        self.m, self.v = ([np.zeros_like(p.data) for p in self.params] for _ in range(2))

    def update(self, i, w, g):
        (b1, b2), m, v = self.betas, self.m[i], self.v[i]
        self.steps[i] += 1
        m += (1 - b1) * (g - m)  # m = b1 m + (1 - b1) g, in place
        v += (1 - b2) * (g * g - v)
        w -= self.lr * (m / (1 - b1 ** self.steps[i])) / (np.sqrt(v / (1 - b2 ** self.steps[i])) + self.eps)

# ---- training loop ----
class DivergenceError(RuntimeError):
    """The loss became NaN or infinite, or exploded: fit() stops rather than train on garbage."""

def batches(X, y, batch_size, shuffle=True, rng=None):
    """Yield (X, y) mini-batches of batch_size rows, in random order; the last one may be smaller.
    >>> [len(y) for X, y in batches(np.zeros((5, 2)), np.arange(5), batch_size=2)]
    [2, 2, 1]"""
    if len(X) != len(y):
        raise ShapeError(f"batches: X has {len(X)} samples but y has {len(y)}")
    rng = _rng if rng is None else np.random.default_rng(rng)
    order = rng.permutation(len(X)) if shuffle else np.arange(len(X))
    for start in range(0, len(X), batch_size):
        yield X[order[start:start + batch_size]], y[order[start:start + batch_size]]

def evaluate(model, X, y, batch_size=1000, loss_fn=None):
    """(mean loss, accuracy) of a classifier on (X, y): in eval mode, without a graph, a chunk at a time.
    >>> evaluate(Sequential(), np.array([[5., 0.], [5., 0.]]), np.array([0, 1]))[1]   # an identity: right once in two
    0.5"""
    loss_fn, was_training, total_loss, correct = loss_fn or cross_entropy, model.training, 0.0, 0
    model.eval()
    with no_grad():
        for xb, yb in batches(X, y, batch_size, shuffle=False):
            output = model(Tensor(xb))
            total_loss += loss_fn(output, yb).item() * len(xb)
            correct += int((output.data.argmax(axis=1) == yb).sum())
    model.train(was_training)
    return total_loss / len(X), correct / len(X)

def fit(model, optimizer, X, y, epochs=1, batch_size=64, validation=None, loss_fn=None, rng=None, verbose=True):
    """Train on mini-batches of (X, y); return the history, a dict per epoch. Stops with DivergenceError
    when the loss becomes NaN or infinite or grows past 1000 times its first value.
    >>> manual_seed(0); X, y = np.array([[-1.], [1.]] * 32), np.array([0, 1] * 32); model = Linear(1, 2)
    >>> fit(model, SGD(model.parameters(), lr=0.5), X, y, epochs=5, verbose=False)[-1]["train_acc"]
    1.0"""
    loss_fn, rng = loss_fn or cross_entropy, _rng if rng is None else np.random.default_rng(rng)
    history, first_loss, steps = [], None, -(-len(X) // batch_size)  # steps: batches an epoch, rounded up
    for epoch in range(1, epochs + 1):
        start, total_loss, correct, seen = time.perf_counter(), 0.0, 0, 0
        model.train()
        for step, (xb, yb) in enumerate(batches(X, y, batch_size, rng=rng), 1):
            output = model(Tensor(xb))
            loss = loss_fn(output, yb)
            value = loss.item()
            first_loss = value if first_loss is None else first_loss
            if not np.isfinite(value) or first_loss > 0 and value > 1e3 * first_loss:
                raise DivergenceError(f"training diverged at epoch {epoch}, step {step}: loss {value:.4g}, first "
                                      f"{first_loss:.4g}. The learning rate lr={optimizer.lr:g} is the likely cause: "
                                      f"try a smaller one, such as lr={optimizer.lr / 10:g}.")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total_loss, seen = total_loss + value * len(xb), seen + len(xb)
            correct += int((output.data.argmax(axis=1) == yb).sum()) if output.ndim == 2 else 0
            if verbose and (step % max(1, steps // 50) == 0 or step == steps):  # about 50 updates an epoch
                print(f"\repoch {epoch}/{epochs} batch {step}/{steps} loss {total_loss / seen:.4f}", end="", flush=True)
        record = {"epoch": epoch, "train_loss": total_loss / seen, "train_acc": correct / seen}
        if validation is not None:
            record["val_loss"], record["val_acc"] = evaluate(model, *validation, loss_fn=loss_fn)
        history.append(dict(record, seconds=time.perf_counter() - start))
        if verbose:
            print("\r" + "  ".join(f"{k} {v:.4f}" if type(v) is float else f"{k} {v}" for k, v in history[-1].items()))
    return history
