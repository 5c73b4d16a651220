"""minigrad: a deep-learning library in one readable file (numpy only).

Read it top to bottom: the Tensor and its backward pass, the differentiable ops, no_grad and
gradcheck, convolution and losses, layers, optimizers, the training loop.

The design rule: every op computes its forward result and, right beside it, a closure giving the
derivative (the gradient of the loss with respect to each input, given the gradient `g` with respect
to the output). backward() only walks the recorded graph in reverse and multiplies these together:
that is the chain rule, and all there is to reverse-mode autodiff. Each op's docstring states its
derivative and proves it with gradcheck, which compares backward against finite differences.
"""
import contextlib
import time

import numpy as np

_grad_enabled = True  # switched off by no_grad(): then ops record no graph


class ShapeError(ValueError):
    """Shapes that do not fit: the message names the op (and layer) and both shapes."""

    def __init__(self, message, layer=None):
        super().__init__(message)
        self.layer = layer


def _broadcast_error(op, a_shape, b_shape):
    for a, b in zip(reversed(a_shape), reversed(b_shape)):
        if a != b and 1 not in (a, b):
            break
    return ShapeError(f"{op}: shapes {a_shape} and {b_shape} do not broadcast: aligned from the right, "
                      f"sizes {a} and {b} differ and neither is 1")


def _unbroadcast(grad, shape):
    """Sum a gradient over the axes that broadcasting added or stretched, back to the operand's shape."""
    if grad.shape == shape:
        return grad
    grad = grad.sum(axis=tuple(range(grad.ndim - len(shape))))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    return grad.sum(axis=stretched, keepdims=True) if stretched else grad


class Tensor:
    """An n-dimensional array that remembers how it was computed, so gradients can flow back.

    Lists, numbers and integer arrays become float32; a floating numpy array keeps its dtype.
    >>> Tensor([[1, 2, 3]], requires_grad=True)
    Tensor([[1., 2., 3.]], requires_grad=True)
    """
    __array_ufunc__ = None  # makes `ndarray * Tensor` call Tensor.__rmul__ instead of numpy's loop

    def __init__(self, data, requires_grad=False, dtype=None):
        data = data.data if isinstance(data, Tensor) else data
        if dtype is None and not (isinstance(data, (np.ndarray, np.generic)) and data.dtype.kind == "f"):
            dtype = np.float32
        self.data = np.asarray(data, dtype=dtype)
        self.requires_grad = requires_grad
        self.grad = None
        self._parents = ()      # the tensors this one was computed from
        self._backward = None   # maps the gradient of this tensor to the gradients of its parents

    @staticmethod
    def from_op(data, parents, backward):
        """The result of an op: records parents and derivative unless no input needs a gradient."""
        out = Tensor(data)
        if _grad_enabled and any(p.requires_grad for p in parents):
            out.requires_grad, out._parents, out._backward = True, parents, backward
        return out

    shape = property(lambda self: self.data.shape)
    ndim = property(lambda self: self.data.ndim)
    dtype = property(lambda self: self.data.dtype)
    T = property(lambda self: self.transpose())

    def item(self):
        return self.data.item()

    def numpy(self):
        return self.data

    def detach(self):
        return Tensor(self.data)

    def __repr__(self):
        body = np.array2string(self.data, separator=", ", threshold=20, prefix="Tensor(")
        return f"Tensor({body}{', requires_grad=True' if self.requires_grad else ''})"

    def backward(self, grad=None):
        """Fill .grad of every tensor this one depends on (that requires grad) with d(self)/d(tensor).

        Gradients add up (+=) across calls, as in PyTorch; call zero_grad() between steps.
        >>> x = Tensor([3.0], requires_grad=True)
        >>> (x * x + x).backward(); x.grad   # d(x^2 + x)/dx = 2x + 1; x is used twice, paths add
        array([7.], dtype=float32)
        """
        if not self.requires_grad:
            raise RuntimeError("backward: this tensor does not require grad: no input had requires_grad=True, "
                               "or it was computed under no_grad()")
        if grad is None:
            if self.data.size != 1:
                raise ShapeError(f"backward: the output has shape {self.shape}, not a single number; "
                                 f"pass grad= (an array of shape {self.shape}), or reduce it first, e.g. .sum()")
            grad = np.ones_like(self.data)
        grad = np.asarray(grad.data if isinstance(grad, Tensor) else grad, dtype=self.dtype)
        if grad.shape != self.shape:
            raise ShapeError(f"backward: grad has shape {grad.shape} but the output has shape {self.shape}")
        grads = {self: grad}  # gradient of self with respect to each node, summed over all paths
        for node in reversed(self._topological_order()):
            g = grads.pop(node)
            if node._backward is None:  # a leaf: a parameter or an input the user created
                node.grad = np.array(g, dtype=node.dtype) if node.grad is None else node.grad + g
                continue
            for parent, parent_grad in zip(node._parents, node._backward(g)):
                if parent.requires_grad:
                    parent_grad = _unbroadcast(parent_grad, parent.shape)
                    grads[parent] = grads[parent] + parent_grad if parent in grads else parent_grad

    def _topological_order(self):
        """Every node that requires grad, each after all of its parents: a depth-first walk with an
        explicit stack, so a chain of 10,000 ops does not hit Python's recursion limit."""
        order, visited, stack = [], set(), [(self, False)]
        while stack:
            node, parents_done = stack.pop()
            if parents_done:
                order.append(node)
            elif node not in visited:
                visited.add(node)
                stack.append((node, True))
                stack.extend((p, False) for p in node._parents if p.requires_grad and p not in visited)
        return order

    # ---- elementwise arithmetic: numpy broadcasting, gradients summed back by backward() ----

    def _binary(self, other, op, ufunc, backward):
        other = other if isinstance(other, Tensor) else Tensor(other, dtype=self.dtype)
        try:
            data = ufunc(self.data, other.data)
        except ValueError:
            raise _broadcast_error(op, self.shape, other.shape) from None
        return Tensor.from_op(data, (self, other), lambda g: backward(g, self.data, other.data, data))

    def __add__(self, other):
        """a + b.  d/da = 1, d/db = 1.
        >>> a, b = Tensor([1., 2.], requires_grad=True), Tensor(5., requires_grad=True)
        >>> (a + b).sum().backward(); a.grad, b.grad   # b was broadcast to both elements
        (array([1., 1.], dtype=float32), array(2., dtype=float32))
        >>> gradcheck(lambda a, b: a + b, np.ones((3, 1, 4)), np.ones((2, 4)))
        True
        """
        return self._binary(other, "add", np.add, lambda g, a, b, out: (g, g))

    def __sub__(self, other):
        """a - b.  d/da = 1, d/db = -1.
        >>> a, b = Tensor([1., 2.], requires_grad=True), Tensor([5., 5.], requires_grad=True)
        >>> (a - b).sum().backward(); b.grad
        array([-1., -1.], dtype=float32)
        >>> gradcheck(lambda a, b: a - b, np.ones((5,)), np.ones((3, 5)))
        True
        """
        return self._binary(other, "sub", np.subtract, lambda g, a, b, out: (g, -g))

    def __mul__(self, other):
        """a * b.  d/da = b, d/db = a.
        >>> a, b = Tensor([2., 3.], requires_grad=True), Tensor([10., 20.], requires_grad=True)
        >>> (a * b).sum().backward(); a.grad, b.grad
        (array([10., 20.], dtype=float32), array([2., 3.], dtype=float32))
        >>> gradcheck(lambda a, b: a * b, np.ones((3, 1, 4)), np.arange(8.).reshape(2, 4))
        True
        """
        return self._binary(other, "mul", np.multiply, lambda g, a, b, out: (g * b, g * a))

    def __truediv__(self, other):
        """a / b.  d/da = 1/b, d/db = -a/b^2.
        >>> a, b = Tensor([6.], requires_grad=True), Tensor([2.], requires_grad=True)
        >>> (a / b).backward(); a.grad, b.grad   # 1/2 and -6/4
        (array([0.5], dtype=float32), array([-1.5], dtype=float32))
        >>> gradcheck(lambda a, b: a / b, np.ones((2, 3)), np.arange(1., 4.))
        True
        """
        return self._binary(other, "div", np.divide, lambda g, a, b, out: (g / b, -g * out / b))

    __radd__, __rmul__ = __add__, __mul__  # 2 + a is a + 2

    def __rsub__(self, other):
        return Tensor(other, dtype=self.dtype) - self

    def __rtruediv__(self, other):
        return Tensor(other, dtype=self.dtype) / self

    def __neg__(self):
        """-a.  d/da = -1.
        >>> a = Tensor([1., 2.], requires_grad=True); (-a).sum().backward(); a.grad
        array([-1., -1.], dtype=float32)
        >>> gradcheck(lambda a: -a, np.ones((2, 3)))
        True
        """
        return Tensor.from_op(-self.data, (self,), lambda g: (-g,))

    def __pow__(self, exponent):
        """a ** p for a number p.  d/da = p * a^(p-1).
        >>> a = Tensor([3.], requires_grad=True); (a ** 2).backward(); a.grad
        array([6.], dtype=float32)
        >>> gradcheck(lambda a: a ** 3.5, np.arange(1., 7.).reshape(2, 3))
        True
        """
        if not isinstance(exponent, (int, float)):
            raise TypeError(f"pow: the exponent must be a Python number, got {type(exponent).__name__}")
        data = self.data ** exponent
        return Tensor.from_op(data, (self,), lambda g: (g * exponent * self.data ** (exponent - 1),))

    # ---- matrix product ----

    def __matmul__(self, other):
        """a @ b: (..., n, k) @ (..., k, m).  d/da = g @ b^T, d/db = a^T @ g.
        >>> a, b = Tensor([[1., 2.]], requires_grad=True), Tensor([[3.], [4.]], requires_grad=True)
        >>> (a @ b).backward(); a.grad, b.grad
        (array([[3., 4.]], dtype=float32), array([[1.],
               [2.]], dtype=float32))
        >>> gradcheck(lambda a, b: a @ b, np.ones((4, 2, 3)), np.arange(6.).reshape(3, 2))
        True
        """
        other = other if isinstance(other, Tensor) else Tensor(other, dtype=self.dtype)
        a, b = self.data, other.data
        if a.ndim < 2 or b.ndim < 2:
            raise ShapeError(f"matmul: {self.shape} @ {other.shape}: both operands need at least 2 dimensions; "
                             f"make a vector of n numbers a (1, n) row or an (n, 1) column with reshape")
        if a.shape[-1] != b.shape[-2]:
            raise ShapeError(f"matmul: {self.shape} @ {other.shape}: inner dimensions "
                             f"{a.shape[-1]} and {b.shape[-2]} differ")
        try:
            data = a @ b
        except ValueError:
            raise _broadcast_error("matmul (batch dimensions)", a.shape[:-2], b.shape[:-2]) from None

        def backward(g):  # skip the product no one needs: the data batch never requires grad
            grad_a = g @ b.swapaxes(-1, -2) if self.requires_grad else None
            if not other.requires_grad:
                return grad_a, None
            if b.ndim == 2:  # (..., n, k) @ (k, m): fold the batch into rows, one 2-D product
                return grad_a, a.reshape(-1, a.shape[-1]).T @ g.reshape(-1, g.shape[-1])
            return grad_a, a.swapaxes(-1, -2) @ g
        return Tensor.from_op(data, (self, other), backward)

    def __rmatmul__(self, other):
        return Tensor(other, dtype=self.dtype) @ self

    # ---- reductions ----

    def _reduced(self, axis):
        """Normalize axis (None, int or tuple) to a tuple of non-negative axes; count elements reduced."""
        axes = range(self.ndim) if axis is None else axis if isinstance(axis, tuple) else (axis,)
        axes = tuple(a % self.ndim if -self.ndim <= a < self.ndim else None for a in axes)
        if None in axes:
            raise ShapeError(f"reduce: axis {axis} is out of range for shape {self.shape}")
        return axes, int(np.prod([self.shape[i] for i in axes]))

    def _expand(self, g, axis, keepdims):
        """Put the reduced axes back (size 1) so g broadcasts against the input."""
        return g if keepdims or axis is None and g.ndim == self.ndim else np.expand_dims(g, self._reduced(axis)[0])

    def sum(self, axis=None, keepdims=False):
        """Sum over axis (None: all).  d/da_i = 1 for every summed element.
        >>> a = Tensor([[1., 2.], [3., 4.]], requires_grad=True); a.sum(axis=1).sum().backward(); a.grad
        array([[1., 1.],
               [1., 1.]], dtype=float32)
        >>> gradcheck(lambda a: a.sum(axis=(0, 2), keepdims=True), np.ones((2, 3, 4)))
        True
        """
        data = self.data.sum(axis=axis, keepdims=keepdims)
        return Tensor.from_op(data, (self,), lambda g: (
            np.broadcast_to(self._expand(g, axis, keepdims), self.shape),))

    def mean(self, axis=None, keepdims=False):
        """Mean over axis (None: all) of n elements.  d/da_i = 1/n.
        >>> a = Tensor([2., 4., 6., 8.], requires_grad=True); a.mean().backward(); a.grad
        array([0.25, 0.25, 0.25, 0.25], dtype=float32)
        >>> gradcheck(lambda a: a.mean(axis=-1), np.ones((2, 3, 4)))
        True
        """
        count = self._reduced(axis)[1]
        return self.sum(axis, keepdims) * (1.0 / count)

    def max(self, axis=None, keepdims=False):
        """Maximum over axis (None: all).  d/da_i = 1 where a_i is the maximum (ties share it), else 0.
        >>> a = Tensor([1., 5., 3.], requires_grad=True); a.max().backward(); a.grad
        array([0., 1., 0.], dtype=float32)
        >>> gradcheck(lambda a: a.max(axis=0), np.array([[1., 5.], [4., 2.]]))
        True
        """
        data = self.data.max(axis=axis, keepdims=keepdims)

        def backward(g):
            is_max = self.data == self._expand(data, axis, keepdims)
            share = is_max / is_max.sum(axis=axis, keepdims=True)
            return (share * self._expand(g, axis, keepdims),)
        return Tensor.from_op(data, (self,), backward)

    # ---- shape and indexing: moving numbers around, so the gradient is moved back ----

    def reshape(self, *shape):
        """The same numbers in a new shape (-1: inferred).  d/da = g reshaped back to a's shape.
        >>> a = Tensor([1., 2., 3., 4.], requires_grad=True)
        >>> (a.reshape(2, 2) * Tensor([[1., 2.], [3., 4.]])).sum().backward(); a.grad
        array([1., 2., 3., 4.], dtype=float32)
        >>> gradcheck(lambda a: a.reshape(3, -1), np.ones((2, 3, 2)))
        True
        """
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        try:
            data = self.data.reshape(shape)
        except ValueError:
            raise ShapeError(f"reshape: cannot reshape {self.shape} ({self.data.size} elements) into "
                             f"{shape}") from None
        return Tensor.from_op(data, (self,), lambda g: (g.reshape(self.shape),))

    def transpose(self, *axes):
        """Reorder the axes as numpy does (no axes: reverse them).  d/da = g with the order undone.
        >>> a = Tensor([[1., 2., 3.]], requires_grad=True)
        >>> (a.T * Tensor([[1.], [2.], [3.]])).sum().backward(); a.grad
        array([[1., 2., 3.]], dtype=float32)
        >>> gradcheck(lambda a: a.transpose(1, 2, 0), np.ones((2, 3, 4)))
        True
        """
        axes = tuple(axes[0]) if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        try:
            data = self.data.transpose(axes or None)
        except ValueError:
            raise ShapeError(f"transpose: axes {axes} are not a reordering of the {self.ndim} axes "
                             f"of {self.shape}") from None
        undo = np.argsort([a % self.ndim for a in axes]) if axes else None
        return Tensor.from_op(data, (self,), lambda g: (g.transpose(undo),))

    def __getitem__(self, index):
        """a[index] with slices, integers and integer arrays.  d/da = g put back where it was taken from;
        an element taken twice gets both gradients.
        >>> a = Tensor([10., 20., 30.], requires_grad=True); a[[0, 0, 2]].sum().backward(); a.grad
        array([2., 0., 1.], dtype=float32)
        >>> gradcheck(lambda a: a[1:, [0, 2, 0]], np.ones((3, 4)))
        True
        """
        index = index.data.astype(np.intp) if isinstance(index, Tensor) else index

        def backward(g):
            grad = np.zeros_like(self.data)
            np.add.at(grad, index, g)  # unlike grad[index] += g, adds every repeat of an index
            return (grad,)
        return Tensor.from_op(self.data[index], (self,), backward)

    # ---- elementwise functions ----

    def exp(self):
        """e^a.  d/da = e^a.
        >>> a = Tensor([0.], requires_grad=True); a.exp().backward(); a.grad
        array([1.], dtype=float32)
        >>> gradcheck(Tensor.exp, np.linspace(-2, 2, 6))
        True
        """
        data = np.exp(self.data)
        return Tensor.from_op(data, (self,), lambda g: (g * data,))

    def log(self):
        """Natural logarithm.  d/da = 1/a.
        >>> a = Tensor([4.], requires_grad=True); a.log().backward(); a.grad
        array([0.25], dtype=float32)
        >>> gradcheck(Tensor.log, np.linspace(0.5, 3, 6))
        True
        """
        return Tensor.from_op(np.log(self.data), (self,), lambda g: (g / self.data,))

    def relu(self):
        """max(a, 0).  d/da = 1 where a > 0, else 0.
        >>> a = Tensor([-1., 2.], requires_grad=True); a.relu().sum().backward(); a.grad
        array([0., 1.], dtype=float32)
        >>> gradcheck(Tensor.relu, np.array([-1.5, -0.2, 0.3, 2.]))
        True
        """
        data = np.maximum(self.data, 0)
        return Tensor.from_op(data, (self,), lambda g: (g * (self.data > 0),))

    def tanh(self):
        """Hyperbolic tangent.  d/da = 1 - tanh(a)^2.
        >>> a = Tensor([0.], requires_grad=True); a.tanh().backward(); a.grad
        array([1.], dtype=float32)
        >>> gradcheck(Tensor.tanh, np.linspace(-3, 3, 7))
        True
        """
        data = np.tanh(self.data)
        return Tensor.from_op(data, (self,), lambda g: (g * (1 - data * data),))

    def sigmoid(self):
        """1 / (1 + e^-a), computed as e^-log(1 + e^-a) so that no e^x overflows.  d/da = s (1 - s).
        >>> a = Tensor([0.], requires_grad=True); a.sigmoid().backward(); a.grad   # s(0) = 1/2
        array([0.25], dtype=float32)
        >>> gradcheck(Tensor.sigmoid, np.linspace(-5, 5, 7))
        True
        """
        data = np.exp(-np.logaddexp(0, -self.data))
        return Tensor.from_op(data, (self,), lambda g: (g * data * (1 - data),))

    def softmax(self, axis=-1):
        """e^a_i / sum_j e^a_j along axis (shifted by the maximum: same result, no overflow).
        d/da = s * (g - sum(g * s)).
        >>> a = Tensor([0., 0.], requires_grad=True)
        >>> (a.softmax() * Tensor([1., 0.])).sum().backward(); a.grad   # s = [1/2, 1/2]
        array([ 0.25, -0.25], dtype=float32)
        >>> gradcheck(Tensor.softmax, np.array([[1., 2., 3.], [1e2, 0., -1e2]]))
        True
        """
        e = np.exp(self.data - self.data.max(axis=axis, keepdims=True))
        data = e / e.sum(axis=axis, keepdims=True)
        return Tensor.from_op(data, (self,), lambda g: (data * (g - (g * data).sum(axis=axis, keepdims=True)),))

    def log_softmax(self, axis=-1):
        """a_i - log sum_j e^a_j along axis, finite even where softmax rounds to 0.
        d/da = g - softmax(a) * sum(g).
        >>> a = Tensor([0., 0.], requires_grad=True)
        >>> (a.log_softmax() * Tensor([1., 0.])).sum().backward(); a.grad
        array([ 0.5, -0.5], dtype=float32)
        >>> gradcheck(Tensor.log_softmax, np.array([[1., 2., 3.], [1e4, 0., -1e4]]))
        True
        """
        shifted = self.data - self.data.max(axis=axis, keepdims=True)
        data = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
        return Tensor.from_op(data, (self,), lambda g: (g - np.exp(data) * g.sum(axis=axis, keepdims=True),))


@contextlib.contextmanager
def no_grad():
    """Inside `with no_grad():` ops record no graph and results do not require grad (for evaluation).
    >>> w = Tensor([1.], requires_grad=True)
    >>> with no_grad():
    ...     (w * 2).requires_grad
    False
    """
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


def gradcheck(fn, *inputs, eps=1e-6, atol=1e-5, rtol=1e-3):
    """Check backward() of fn against central differences (f(x+eps) - f(x-eps)) / 2eps, in float64.

    Returns True, or raises AssertionError naming the input, the element and both values.
    >>> def square_with_wrong_derivative(a):  # d(a^2)/da is 2a, not a
    ...     return Tensor.from_op(a.data ** 2, (a,), lambda g: (g * a.data,))
    >>> gradcheck(square_with_wrong_derivative, np.array([3.]))
    Traceback (most recent call last):
    AssertionError: gradcheck: input 0, element (0,): backward gives 3, central difference gives 6
    """
    inputs = [Tensor(np.array(getattr(x, "data", x), dtype=np.float64), requires_grad=True) for x in inputs]
    output = fn(*inputs)
    # several outputs are weighted at random into one number: a wrong derivative cannot hide in a sum
    weights = np.random.default_rng(0).standard_normal(output.shape) if output.data.size > 1 else 1.0
    (output * weights).sum().backward()
    for k, x in enumerate(inputs):
        for index in np.ndindex(x.shape):
            original = x.data[index]
            with no_grad():
                x.data[index] = original + eps
                plus = (fn(*inputs).data * weights).sum()
                x.data[index] = original - eps
                minus = (fn(*inputs).data * weights).sum()
            x.data[index] = original
            numeric = (plus - minus) / (2 * eps)
            analytic = 0.0 if x.grad is None else x.grad[index]
            if not np.isclose(analytic, numeric, rtol=rtol, atol=atol):
                raise AssertionError(f"gradcheck: input {k}, element {index}: backward gives {analytic:.6g}, "
                                     f"central difference gives {numeric:.6g}")
    return True


def _log_softmax(data, axis):
    shifted = data - data.max(axis=axis, keepdims=True)  # the same result, and no e^x overflows
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


# ---- the ops of a network layer: each is one node, so the graph stays small and fast ----

def linear(x, weight, bias=None):
    """x @ weight^T + bias: a whole Linear layer as one op.
    d/dx = g @ weight, d/dweight = g^T @ x, d/dbias = g summed over the batch.
    >>> x, w = Tensor([[1., 2.]], requires_grad=True), Tensor([[3., 4.]], requires_grad=True)
    >>> linear(x, w).backward(); x.grad, w.grad
    (array([[3., 4.]], dtype=float32), array([[1., 2.]], dtype=float32))
    >>> gradcheck(linear, np.ones((5, 3)), np.arange(6.).reshape(2, 3), np.ones(2))
    True
    """
    x = x if isinstance(x, Tensor) else Tensor(x, dtype=weight.dtype)
    if x.ndim != 2 or x.shape[1] != weight.shape[1]:
        raise ShapeError(f"linear: input {x.shape} should be (batch, {weight.shape[1]}) for weight {weight.shape}")
    data = x.data @ weight.data.T
    if bias is not None:
        data += bias.data

    def backward(g):
        grad_x = g @ weight.data if x.requires_grad else None
        return (grad_x, g.T @ x.data) + ((g.sum(axis=0),) if bias is not None else ())
    return Tensor.from_op(data, (x, weight) if bias is None else (x, weight, bias), backward)


def conv2d(x, weight, bias=None, stride=1, padding=0):
    """Slide (out, in, kh, kw) filters over (batch, in, height, width) images, as PyTorch's conv2d.

    Each output pixel is one filter's dot product with one image patch, so copying every patch into
    a row of a matrix ("im2col") turns the whole convolution into a single matmul.
    d/dweight = g^T @ patches;  d/dx = g @ filters, each row added back onto its patch ("col2im").
    >>> x = Tensor(np.arange(9.).reshape(1, 1, 3, 3), requires_grad=True)
    >>> y = conv2d(x, Tensor(np.ones((1, 1, 2, 2)))); y.data[0, 0]   # sums of the 2x2 patches
    array([[ 8., 12.],
           [20., 24.]])
    >>> y.sum().backward(); x.grad[0, 0]   # the number of patches each pixel is in
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    >>> gradcheck(lambda x, w, b: conv2d(x, w, b, stride=2, padding=1),
    ...           np.arange(32.).reshape(1, 2, 4, 4), np.ones((3, 2, 3, 3)), np.ones(3))
    True
    """
    if x.ndim != 4 or weight.ndim != 4 or x.shape[1] != weight.shape[1]:
        raise ShapeError(f"conv2d: input {x.shape} should be (batch, {weight.shape[1]}, height, width) "
                         f"for weight {weight.shape} (out_channels, in_channels, kh, kw)")
    (n, c, h, w), (out_channels, _, kh, kw) = x.shape, weight.shape
    out_h, out_w = (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1
    if out_h < 1 or out_w < 1:
        raise ShapeError(f"conv2d: a {kh}x{kw} kernel does not fit in input {x.shape} with padding {padding}")
    padded = np.pad(x.data, ((0, 0), (0, 0), (padding, padding), (padding, padding))) if padding else x.data
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]
    patches = windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * out_h * out_w, c * kh * kw)
    filters = weight.data.reshape(out_channels, -1)
    data = patches @ filters.T
    if bias is not None:
        data += bias.data
    # rows are (image, y, x) and columns channels: viewed as (batch, channels, height, width), no copy
    data = data.reshape(n, out_h, out_w, out_channels).transpose(0, 3, 1, 2)

    def backward(g):
        g_rows = g.transpose(0, 2, 3, 1).reshape(-1, out_channels)
        grad_x = None
        if x.requires_grad:
            grad_patches = (g_rows @ filters).reshape(n, out_h, out_w, c, kh, kw).transpose(0, 3, 1, 2, 4, 5)
            grad_padded = np.zeros_like(padded)
            for i in range(kh):  # each kernel offset adds onto the pixels it touched
                for j in range(kw):
                    grad_padded[:, :, i:i + stride * out_h:stride, j:j + stride * out_w:stride] += grad_patches[..., i, j]
            grad_x = grad_padded[:, :, padding:padding + h, padding:padding + w]
        grad_weight = (g_rows.T @ patches).reshape(weight.shape)
        return (grad_x, grad_weight) + ((g_rows.sum(axis=0),) if bias is not None else ())
    return Tensor.from_op(data, (x, weight) if bias is None else (x, weight, bias), backward)


def max_pool2d(x, kernel_size, stride=None):
    """Maximum of each kernel_size x kernel_size window of (batch, channels, height, width) images;
    stride defaults to kernel_size.  d/dx = g at the maximum of each window (the first, on ties), else 0.
    >>> x = Tensor([[[[1., 2.], [4., 3.]]]], requires_grad=True)
    >>> max_pool2d(x, 2).sum().backward(); x.grad[0, 0]
    array([[0., 0.],
           [1., 0.]], dtype=float32)
    >>> gradcheck(lambda x: max_pool2d(x, 2, stride=1), np.random.default_rng(0).random((1, 2, 3, 4)))
    True
    """
    k, stride = kernel_size, stride or kernel_size
    if x.ndim != 4 or x.shape[2] < k or x.shape[3] < k:
        raise ShapeError(f"max_pool2d: input {x.shape} should be (batch, channels, height, width) "
                         f"with height and width at least the kernel size {k}")
    windows = np.lib.stride_tricks.sliding_window_view(x.data, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]
    windows = windows.reshape(windows.shape[:4] + (k * k,))
    winner = windows.argmax(axis=-1)
    out_h, out_w = winner.shape[2:]

    def backward(g):
        grad = np.zeros_like(x.data)
        for offset in range(k * k):  # each window position sends g where it held the maximum
            i, j = divmod(offset, k)
            grad[:, :, i:i + stride * out_h:stride, j:j + stride * out_w:stride] += g * (winner == offset)
        return (grad,)
    return Tensor.from_op(windows.max(axis=-1), (x,), backward)


# ---- losses ----

def cross_entropy(logits, targets):
    """Mean over the batch of -log softmax(logits)[target], from (N, C) logits and N class indices.
    d/dlogits = (softmax(logits) - onehot(targets)) / N.
    >>> logits = Tensor([[0., 0.]], requires_grad=True)
    >>> loss = cross_entropy(logits, np.array([0])); round(loss.item(), 4)   # -log(1/2)
    0.6931
    >>> loss.backward(); logits.grad
    array([[-0.5,  0.5]], dtype=float32)
    >>> gradcheck(lambda z: cross_entropy(z, np.array([2, 0])), np.array([[1., 2., 3.], [1e4, 0., -1e4]]))
    True
    """
    targets = np.asarray(getattr(targets, "data", targets))
    if logits.ndim != 2 or targets.shape != logits.shape[:1]:
        raise ShapeError(f"cross_entropy: logits {logits.shape} should be (batch, classes) and targets "
                         f"{targets.shape} one class index per row, ({logits.shape[0]},)")
    n, classes = logits.shape
    if targets.dtype.kind not in "iu" or targets.size and not 0 <= targets.min() <= targets.max() < classes:
        raise ValueError(f"cross_entropy: targets must be integer class indices in 0..{classes - 1}, "
                         f"got {targets.dtype} values {targets.min() if targets.size else ''}..{targets.max() if targets.size else ''}")
    rows = np.arange(n)
    log_probs = _log_softmax(logits.data, axis=1)

    def backward(g):
        grad = np.exp(log_probs)
        grad[rows, targets] -= 1
        return (grad * (g / n),)
    return Tensor.from_op(-log_probs[rows, targets].mean(), (logits,), backward)


def mse_loss(prediction, target):
    """Mean of (prediction - target)^2 over all n elements.  d/dprediction = 2 (prediction - target) / n.
    >>> p = Tensor([1., 3.], requires_grad=True); mse_loss(p, np.array([0., 0.])).backward(); p.grad
    array([1., 3.], dtype=float32)
    >>> gradcheck(lambda p: mse_loss(p, np.ones((2, 3))), np.arange(6.).reshape(2, 3))
    True
    """
    target = target if isinstance(target, Tensor) else Tensor(target, dtype=prediction.dtype)
    if prediction.shape != target.shape:  # broadcasting (N, 1) against (N,) would compare every pair
        raise ShapeError(f"mse_loss: prediction {prediction.shape} and target {target.shape} differ; "
                         f"reshape one to match the other")
    return ((prediction - target) ** 2).mean()


# ---- layers ----

_rng = np.random.default_rng()  # behind weight initialization, Dropout, and shuffling by default


def manual_seed(seed):
    """Seed the random numbers of initialization, Dropout and shuffling, so that runs repeat exactly.
    >>> manual_seed(0); first = Linear(2, 2).weight.data
    >>> manual_seed(0); bool((Linear(2, 2).weight.data == first).all())
    True
    """
    global _rng
    _rng = np.random.default_rng(seed)


class Module:
    """Base of layers and models: parameters are found in attributes (Tensors that require grad,
    Modules, lists of Modules); calling the module runs forward().
    >>> class Net(Module):
    ...     def __init__(self):
    ...         self.layers = [Linear(2, 3), Linear(3, 1)]
    ...     def forward(self, x):
    ...         return self.layers[1](self.layers[0](x).relu())
    >>> list(Net().state_dict())
    ['layers.0.weight', 'layers.0.bias', 'layers.1.weight', 'layers.1.bias']
    """
    training = True

    def __call__(self, *inputs):
        try:
            return self.forward(*inputs)
        except ShapeError as error:
            if error.layer is not None:  # an inner layer has named itself already
                raise
            raise ShapeError(f"{self}: {error}", layer=self) from None

    def __repr__(self):
        return f"{type(self).__name__}()"

    def _named_children(self):
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value
            elif isinstance(value, (list, tuple)):
                yield from ((f"{name}.{i}", item) for i, item in enumerate(value) if isinstance(item, Module))

    def named_parameters(self, prefix=""):
        for name, value in vars(self).items():
            if isinstance(value, Tensor) and value.requires_grad:
                yield prefix + name, value
        for name, child in self._named_children():
            yield from child.named_parameters(f"{prefix}{name}.")

    def parameters(self):
        return [parameter for _, parameter in self.named_parameters()]

    def zero_grad(self):
        for parameter in self.parameters():
            parameter.grad = None

    def train(self, mode=True):
        """Training mode (Dropout active), for this module and all inside it; eval() switches it off."""
        self.training = mode
        for _, child in self._named_children():
            child.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def state_dict(self):
        return {name: parameter.data.copy() for name, parameter in self.named_parameters()}

    def load_state_dict(self, state):
        """Copy arrays into the parameters of the same names; checks everything before changing anything."""
        parameters = dict(self.named_parameters())
        missing, unexpected = parameters.keys() - state.keys(), state.keys() - parameters.keys()
        if missing or unexpected:
            raise KeyError(f"load_state_dict: missing {sorted(missing)}, unexpected {sorted(unexpected)}")
        for name, parameter in parameters.items():
            if np.shape(state[name]) != parameter.shape:
                raise ShapeError(f"load_state_dict: {name} has shape {np.shape(state[name])} in the state dict "
                                 f"but {parameter.shape} in the model")
        for name, parameter in parameters.items():
            parameter.data = np.array(state[name], dtype=parameter.dtype)


def _uniform_parameter(shape, fan_in):
    """PyTorch's default: uniform in +-1/sqrt(fan_in). The weighted sum of fan_in inputs then keeps the
    inputs' scale, so signals neither vanish nor blow up layer after layer; being random (not zero),
    the units start different and so learn different features."""
    bound = 1 / np.sqrt(fan_in)
    return Tensor(_rng.uniform(-bound, bound, shape).astype(np.float32), requires_grad=True)


class Linear(Module):
    """y = x @ weight^T + bias; weight (out_features, in_features), both initialized as _uniform_parameter.
    >>> Linear(784, 128)(Tensor(np.zeros((64, 784)))).shape
    (64, 128)
    """

    def __init__(self, in_features, out_features, bias=True):
        self.in_features, self.out_features = in_features, out_features
        self.weight = _uniform_parameter((out_features, in_features), in_features)
        self.bias = _uniform_parameter((out_features,), in_features) if bias else None

    def forward(self, x):
        return linear(x, self.weight, self.bias)

    def __repr__(self):
        return f"Linear({self.in_features}, {self.out_features})"


class Conv2d(Module):
    """conv2d with weight (out_channels, in_channels, k, k), initialized as _uniform_parameter with
    fan_in = in_channels * k * k.
    >>> Conv2d(1, 16, 5, padding=2)(Tensor(np.zeros((8, 1, 28, 28)))).shape
    (8, 16, 28, 28)
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True):
        self.args = (in_channels, out_channels, kernel_size, stride, padding)
        fan_in = in_channels * kernel_size * kernel_size
        self.weight = _uniform_parameter((out_channels, in_channels, kernel_size, kernel_size), fan_in)
        self.bias = _uniform_parameter((out_channels,), fan_in) if bias else None

    def forward(self, x):
        return conv2d(x, self.weight, self.bias, stride=self.args[3], padding=self.args[4])

    def __repr__(self):
        return "Conv2d({}, {}, kernel_size={}, stride={}, padding={})".format(*self.args)


class MaxPool2d(Module):
    def __init__(self, kernel_size, stride=None):
        self.kernel_size, self.stride = kernel_size, stride

    def forward(self, x):
        return max_pool2d(x, self.kernel_size, self.stride)

    def __repr__(self):
        return f"MaxPool2d({self.kernel_size})"


class Flatten(Module):
    def forward(self, x):
        return x.reshape(x.shape[0], -1)


class ReLU(Module):
    def forward(self, x):
        return x.relu()


class Tanh(Module):
    def forward(self, x):
        return x.tanh()


class Sigmoid(Module):
    def forward(self, x):
        return x.sigmoid()


class Dropout(Module):
    """In training, zero each element with probability p and scale the rest by 1/(1-p) ("inverted"
    dropout: the expected value is unchanged, so eval mode is the identity and needs no rescaling).
    >>> x = Tensor(np.ones(4)); Dropout(0.5).eval()(x) is x
    True
    """

    def __init__(self, p=0.5):
        if not 0 <= p < 1:
            raise ValueError(f"Dropout: p is the probability of zeroing an element, in [0, 1); got {p}")
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        return x * ((_rng.random(x.shape, dtype=np.float32) >= self.p) / (1 - self.p))

    def __repr__(self):
        return f"Dropout({self.p})"


class Sequential(Module):
    """Apply layers one after another.
    >>> Sequential(Linear(4, 3), ReLU(), Linear(3, 2))(Tensor(np.ones((5, 4)))).shape
    (5, 2)
    """

    def __init__(self, *layers):
        self.layers = list(layers)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

    def __repr__(self):
        return f"Sequential({', '.join(map(repr, self.layers))})"


# ---- optimizers ----

class Optimizer:
    def __init__(self, params, lr, weight_decay):
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__}: the parameter list is empty; pass model.parameters()")
        if not lr > 0:
            raise ValueError(f"{type(self).__name__}: the learning rate must be positive, got lr={lr}")
        self.lr, self.weight_decay = lr, weight_decay

    def zero_grad(self):
        for parameter in self.params:
            parameter.grad = None

    def _gradients(self):
        """(parameter, gradient + weight_decay * parameter) for the parameters a backward reached."""
        for parameter in self.params:
            if parameter.grad is not None:
                grad = parameter.grad
                yield parameter, grad + self.weight_decay * parameter.data if self.weight_decay else grad


class SGD(Optimizer):
    """Gradient descent with momentum, as PyTorch: v = momentum * v + g;  w = w - lr * v.
    >>> w = Tensor([1.], requires_grad=True); optimizer = SGD([w], lr=0.1, momentum=0.5)
    >>> for step in range(2):  # dloss/dw = 2: v = 2, then 0.5 * 2 + 2 = 3; w = 1 - 0.2 - 0.3
    ...     optimizer.zero_grad(); (2 * w).backward(); optimizer.step()
    >>> w.data
    array([0.5], dtype=float32)
    """

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0):
        super().__init__(params, lr, weight_decay)
        self.momentum = momentum
        self.velocities = {id(p): np.zeros_like(p.data) for p in self.params}

    def step(self):
        for parameter, grad in self._gradients():
            velocity = self.velocities[id(parameter)]
            velocity *= self.momentum
            velocity += grad
            parameter.data -= self.lr * velocity


class Adam(Optimizer):
    """Adam, as PyTorch: steps scaled per parameter by running averages of the gradient and its square,
    m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  w = w - lr m' / (sqrt(v') + eps), where
    m' = m / (1-b1^t) and v' = v / (1-b2^t) undo the pull towards the zeros they start from.
    >>> w = Tensor([1.], requires_grad=True); optimizer = Adam([w], lr=0.1)
    >>> (2 * w).backward(); optimizer.step(); w.data   # m' = 2, v' = 4: w = 1 - 0.1 * 2 / 2
    array([0.9], dtype=float32)
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr, weight_decay)
        self.betas, self.eps, self.t = betas, eps, 0
        self.moments = {id(p): (np.zeros_like(p.data), np.zeros_like(p.data)) for p in self.params}

    def step(self):
        self.t += 1
        b1, b2 = self.betas
        for parameter, grad in self._gradients():
            m, v = self.moments[id(parameter)]
            m *= b1
            m += (1 - b1) * grad
            v *= b2
            v += (1 - b2) * grad * grad
            parameter.data -= self.lr * (m / (1 - b1 ** self.t)) / (np.sqrt(v / (1 - b2 ** self.t)) + self.eps)


# ---- training loop ----

class DivergenceError(RuntimeError):
    """Training stopped because the loss became NaN or infinite, or exploded."""


def batches(X, y, batch_size, shuffle=True, rng=None):
    """Yield (X, y) mini-batches of batch_size rows in random order; the last one may be smaller.
    >>> [len(yb) for xb, yb in batches(np.zeros((5, 2)), np.arange(5), batch_size=2)]
    [2, 2, 1]
    """
    if len(X) != len(y):
        raise ShapeError(f"batches: X has {len(X)} samples but y has {len(y)}")
    order = (_rng if rng is None else np.random.default_rng(rng)).permutation(len(X)) if shuffle else np.arange(len(X))
    for start in range(0, len(X), batch_size):
        rows = order[start:start + batch_size]
        yield X[rows], y[rows]


def evaluate(model, X, y, batch_size=1000, loss_fn=None):
    """(mean loss, accuracy) of model on (X, y): in eval mode, under no_grad, batch_size rows at a time."""
    loss_fn = loss_fn or cross_entropy
    was_training, total_loss, correct = model.training, 0.0, 0
    model.eval()
    with no_grad():
        for xb, yb in batches(X, y, batch_size, shuffle=False):
            output = model(Tensor(xb))
            total_loss += loss_fn(output, yb).item() * len(xb)
            correct += int((output.data.argmax(axis=1) == yb).sum())
    model.train(was_training)
    return total_loss / len(X), correct / len(X)


def fit(model, optimizer, X, y, epochs=1, batch_size=64, validation=None, loss_fn=None, rng=None, verbose=True):
    """Train with mini-batches; return the history, one dict per epoch. Stops with DivergenceError
    when the loss becomes NaN or infinite or grows past 1000 times its first value."""
    loss_fn = loss_fn or cross_entropy
    rng = _rng if rng is None else np.random.default_rng(rng)
    history, first_loss, steps = [], None, -(-len(X) // batch_size)
    for epoch in range(1, epochs + 1):
        model.train()
        start = last_print = time.perf_counter()
        total_loss, correct, seen = 0.0, 0, 0
        for step, (xb, yb) in enumerate(batches(X, y, batch_size, rng=rng), 1):
            output = model(Tensor(xb))
            loss = loss_fn(output, yb)
            value = loss.item()
            first_loss = value if first_loss is None else first_loss
            if not np.isfinite(value) or first_loss > 0 and value > 1e3 * first_loss:
                raise DivergenceError(f"training diverged at epoch {epoch}, step {step}: the loss is {value:.4g} "
                                      f"(it started at {first_loss:.4g}). The learning rate lr={optimizer.lr:g} is "
                                      f"the likely cause: try a smaller one, such as lr={optimizer.lr / 10:g}.")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total_loss, seen = total_loss + value * len(xb), seen + len(xb)
            correct += int((output.data.argmax(axis=1) == yb).sum()) if output.ndim == 2 else 0
            if verbose and (step == steps or time.perf_counter() - last_print > 0.2):
                last_print = time.perf_counter()
                print(f"\repoch {epoch}/{epochs}  batch {step}/{steps}  loss {total_loss / seen:.4f}", end="", flush=True)
        record = {"epoch": epoch, "train_loss": total_loss / seen, "train_acc": correct / seen}
        if validation is not None:
            record["val_loss"], record["val_acc"] = evaluate(model, *validation, loss_fn=loss_fn)
        record["seconds"] = time.perf_counter() - start
        history.append(record)
        if verbose:
            print("\r" + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items()))
    return history
