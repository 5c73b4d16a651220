"""minigrad: a deep-learning library in one readable file, on numpy alone.

Part 1 alone is the lesson, read top to bottom: Tensor, backward() and gradcheck; the
differentiable ops; no_grad; the losses; Module, Linear and the activations; SGD and Adam; the
training loop, fit(). That is enough to train a network on MNIST. Part 2 adds more layers and tools:
conv2d and max_pool2d, Dropout, graph(), lr_find(). Part 3 holds the guard rails: the checks that
Part 1 calls in one line each (a name that says what it checks), their messages, and fit()'s watch
over a run that fails.

The design rule: every op computes its result and, right beside it, a `backward` closure that turns
g, the gradient of the loss with respect to the op's output, into the gradients with respect to its
inputs: g times the op's derivative. Tensor.backward() calls these closures from the loss back to
the parameters: that is the chain rule, and all there is to reverse-mode autodiff. In docstrings,
"grad a = g b" says what the closure returns for input a; each op's example shows it on small
numbers with gradients(), which first checks it against finite differences (gradcheck)."""
import collections
import contextlib
import copy
import decimal
import math
import numbers
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
    if grad.shape == shape or grad.ndim < len(shape):  # (too few axes: the caller reports it)
        return grad
    grad = grad.sum(axis=tuple(range(grad.ndim - len(shape))))  # the axes broadcasting put in front
    stretched = [axis for axis, size in enumerate(shape) if size == 1 and grad.shape[axis] != 1]
    return grad.sum(axis=tuple(stretched), keepdims=True)

def _log_softmax(data, axis):
    """log(e^a_i / sum_j e^a_j) along axis, for arrays; finite even where e^a_i would overflow."""
    shifted = data - data.max(axis=axis, keepdims=True)  # the same result, and no e^x can overflow
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))

def _tensor(x, dtype=None, op="Tensor"):
    """x as a Tensor: a number or an array becomes a constant (the 2 in a * 2), in dtype if that is
    a floating one, so that a float32 tensor times a float64 array stays float32."""
    if isinstance(x, Tensor):
        return x
    _check_numbers(x, op)
    if dtype is not None and dtype.kind != "f":  # beside an integer tensor, as in numpy: i - 1
        dtype = np.asarray(x).dtype               # stays integer, i * 0.5 gives 0.5s, not 0s
    return Tensor(x, dtype=dtype, copy=False)

def _numpy(x):
    """x as a numpy array: a Tensor's own array, or a list or an array as numpy reads it."""
    return np.asarray(x.data if isinstance(x, Tensor) else x)

class Tensor:
    """An array that remembers the op and inputs it was computed from, so that gradients flow back.
    Lists, numbers and integer arrays become float32; a numpy array of floats keeps its dtype."""
    __array_ufunc__ = None  # makes numpy leave `array * tensor` to Tensor.__rmul__
    _version = 0  # how often an optimizer or load_state_dict changed .data in place

    def __init__(self, data, requires_grad=False, dtype=None, copy=True):
        """data: a number, a list or an array; copied, as torch.tensor does, so that changing one
        changes nothing else. copy=False shares an array's memory when it needs no conversion."""
        data = data.data if isinstance(data, Tensor) else data
        floating = isinstance(data, (np.ndarray, np.generic)) and data.dtype.kind == "f"
        if not floating:  # a number, a list, an integer array: float32, as PyTorch's default
            _check_numbers(data, "Tensor")  # numpy would make NaN of None, numbers of text
            dtype = dtype or np.float32
        self.data = np.array(data, dtype=dtype) if copy else np.asarray(data, dtype=dtype)
        self.requires_grad = requires_grad
        if requires_grad:
            _check_can_require_grad(self)  # only floating tensors have gradients
        self.grad = None
        # How it was computed: the op's name, its inputs, and the closure from g to their gradients.
        # A leaf (made by hand, or in no_grad) has none of them.
        self.op = None
        self._parents = ()
        self._backward = None

    def __repr__(self):
        """Its numbers (summarized if many), and the op that made it or whether it requires grad.
        >>> Tensor([1., 2.], requires_grad=True)
        Tensor([1., 2.], requires_grad=True)"""
        body = np.array2string(self.data, separator=", ", threshold=20, prefix="Tensor(")
        if self.op:
            return f"Tensor({body}, op={self.op})"
        if self.requires_grad:
            return f"Tensor({body}, requires_grad=True)"
        return f"Tensor({body})"

    @staticmethod
    def from_op(data, parents, backward, name=None):
        """Wrap an op's result, recording its inputs (parents, a tuple) and its backward closure if
        an input needs a gradient. backward(g) gets g read-only and returns one gradient (or None)
        per input, of the input's shape (or the output's, where the input was broadcast), as new
        arrays (a leaf may keep one as its .grad); it may use the arrays it captured as the op ran:
        they hold the values the result was computed from.
        name: the op's name, for repr and graph(); by default the function the closure is in.
        >>> a = Tensor([3.], requires_grad=True)
        >>> Tensor.from_op(a.data ** 2, (a,), lambda g: (g * 2 * a.data,), "square")
        Tensor([9.], op=square)"""
        _check_from_op(parents, backward)  # a tuple of Tensors, and a function of g
        data = np.asarray(data)  # integer results stay integers, as in numpy: they need no gradient
        out = Tensor(data, dtype=data.dtype, copy=False)  # an op's result is a new array already
        if _grad_enabled and any(parent.requires_grad for parent in parents):
            out.requires_grad = True
            out.op = name or _closure_name(backward)
            out._parents = parents
            out._backward = backward
            out._versions = [parent._version for parent in parents]  # for _check_unchanged
        return out

    @property
    def shape(self):
        return self.data.shape

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def dtype(self):
        return self.data.dtype

    def item(self):
        """The number in a one-element tensor.
        >>> Tensor([[2.5]]).item()
        2.5"""
        _check_one_number(self, "item")
        return self.data.item()

    def numpy(self):
        """The numpy array behind the tensor (not a copy).
        >>> Tensor([1, 2]).numpy()
        array([1., 2.], dtype=float32)"""
        return self.data

    def detach(self):
        """The same numbers (in the same memory, as in PyTorch), cut off from the graph.
        >>> Tensor([1.], requires_grad=True).detach().requires_grad
        False"""
        return Tensor(self.data, copy=False)

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
        _check_backward_start(self, grad)  # self requires grad; a loss, or a grad of self's shape
        grad = np.ones_like(self.data) if grad is None else np.array(_numpy(grad), self.dtype)
        grads = {self: grad}  # d(self)/d(tensor) for each tensor reached so far, summed over paths
        kept = set()  # the arrays that leaves keep as their .grad: no two leaves may share one
        order = self._graph_order()  # each tensor before its inputs: from self to the leaves
        _check_unchanged(order)  # the inputs of every op still hold the values it computed from
        for node in order:
            g = grads.pop(node, None)
            if g is None:  # no gradient flows into it: a constant, such as the input images
                continue
            if node._backward is None:  # a leaf: every path to it is done, its gradient complete
                node._accumulate(g, kept)
                continue
            try:
                input_grads = node._backward(_read_only(g))  # other gradients may share g
            except ValueError as error:  # such as numpy's "output array is read-only"
                raise _closure_error(node, error)
            _check_closure_result(node, input_grads)  # one array, or None, per input
            for parent, parent_grad in zip(node._parents, input_grads):
                if parent_grad is None or not parent.requires_grad:
                    continue
                if getattr(parent_grad, "shape", None) != parent.shape:  # broadcast in this op
                    _check_broadcast_gradient(node, parent, parent_grad)
                    parent_grad = _unbroadcast(np.asarray(parent_grad), parent.shape)
                if parent in grads:  # another path to parent: the gradients of all paths add up
                    grads[parent] = grads[parent] + parent_grad
                else:
                    grads[parent] = parent_grad

    def _graph_order(self):
        """self and every tensor it was computed from, each before its inputs (a topological order),
        found by the graph alone: a depth-first walk lists a tensor once all its inputs are listed,
        and the list reversed puts it before them. backward() walks them in this order, so that the
        gradient of a tensor is complete, summed over every path from self, before it moves on."""
        order = []
        seen = set()
        stack = [self]
        while stack:  # an explicit stack, not recursion: a long graph would exceed Python's limit
            node = stack.pop()
            if isinstance(node, list):  # [tensor], pushed below its inputs: they are all listed
                order.append(node[0])
            elif node not in seen:
                seen.add(node)
                stack.append([node])
                stack.extend(node._parents)
        return order[::-1]

    def _accumulate(self, g, kept):
        """Add g to this leaf's .grad. A new array that no other leaf keeps, as the gradient of a
        layer's weight is, becomes .grad itself, uncopied: copying costs a sixth of a small step.
        It is never changed in place after: a closure may have returned an array it also keeps."""
        _check_can_require_grad(self)  # an integer leaf would round its gradient
        if self.grad is not None:  # gradients accumulate, as in PyTorch, until zero_grad()
            self.grad = np.add(self.grad, g, dtype=self.dtype)
        elif g.base is None and g.flags.writeable and g.dtype == self.dtype and id(g) not in kept:
            self.grad = g
            kept.add(id(g))
        else:
            self.grad = np.array(g, dtype=self.dtype)

    # ---- checking derivatives: each op's example below uses gradients(), which runs gradcheck
    # (minigrad.gradients and minigrad.gradcheck, the names given to them after this class) ----
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
        # several outputs weighted at random, so that errors in different outputs cannot cancel out
        weights = np.ones(output.shape)
        if output.data.size > 1:
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
        """The gradient of fn(*inputs).sum() for each input, as backward() gives it, once gradcheck
        has confirmed it.
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
        the op and the sizes that do not fit), recorded with the closure g -> backward(g, a, b)."""
        other = _tensor(other, self.dtype, name)
        a, b = self.data, other.data
        try:
            data = ufunc(a, b)
        except ValueError:
            raise _broadcast_error(name, self.shape, other.shape) from None
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

    def __rsub__(self, other):  # 2 - a
        return _tensor(other, self.dtype, "sub") - self

    def __rtruediv__(self, other):
        return _tensor(other, self.dtype, "div") / self

    def _in_place(self, other, ufunc, op):
        """a -= b and the rest, as in PyTorch: in place on a's array where no gradient flows (inside
        no_grad, the update of a weight); a tensor computed with gradients gets a new one (a - b).
        >>> w = Tensor([1., 2.], requires_grad=True)
        >>> with no_grad():
        ...     w -= 0.5 * np.array([2., 2.])
        >>> w
        Tensor([0., 1.], requires_grad=True)"""
        if _grad_enabled and self.requires_grad:
            if self.op is None:
                raise RuntimeError(f"{op}: {self!r:.40} requires grad; its change is not part of "
                                   f"the graph: update it inside `with no_grad():`")
            return getattr(Tensor, f"__{op}__")(self, other)
        ufunc(self.data, _numpy(other), out=self.data)
        self._version += 1  # graphs that used the old values are out of date
        return self

    def __iadd__(self, other):
        return self._in_place(other, np.add, "add")

    def __isub__(self, other):
        return self._in_place(other, np.subtract, "sub")

    def __imul__(self, other):
        return self._in_place(other, np.multiply, "mul")

    def __itruediv__(self, other):
        return self._in_place(other, np.true_divide, "truediv")

    def __array__(self, dtype=None, copy=None):  # np.array(t), as for a torch tensor on the CPU
        array = self.data if dtype is None else self.data.astype(dtype, copy=False)
        return array.copy() if copy else array  # numpy 1.x has no copy=None of its own

    def __len__(self):
        return len(self.data)

    def __neg__(self):
        """-a.  grad a = -g.
        >>> gradients(lambda a: -a, [1., 2.])
        [array([-1., -1.], dtype=float32)]"""
        return Tensor.from_op(-self.data, (self,), lambda g: (-g,), "neg")

    def __pow__(self, exponent):
        """a ** p, for a number p.  grad a = g p a^(p-1).
        >>> gradients(lambda a: a ** 2, [3., -1.])   # 2a
        [array([ 6., -2.], dtype=float32)]"""
        _check_exponent(exponent)  # a number, not a tensor
        exponent = np.asarray(exponent).item()  # a Python number, which leaves float32 float32
        data = self.data ** exponent
        if exponent == 0:
            slope = 0  # a^0 = 1 has slope 0, even at a = 0, where p a^(p-1) would be 0 * inf
        else:
            slope = exponent * self.data ** (exponent - 1)
        return Tensor.from_op(data, (self,), lambda g: (g * slope,), "pow")

    def __matmul__(self, other):
        """a @ b, the matrix product of the last two axes: (..., n, k) @ (..., k, m).
        grad a = g b^T, grad b = a^T g (^T: the last two axes swapped).
        >>> gradients(lambda a, b: a @ b, [[1., 2.]], [[3.], [4.]])
        [array([[3., 4.]], dtype=float32), array([[1.],
               [2.]], dtype=float32)]"""
        other = _tensor(other, self.dtype, "matmul")
        a, b = self.data, other.data
        _check_matmul(a, b)  # 2 or more axes each; inner sizes and batch axes that fit
        data = a @ b

        def backward(g):  # no product for an input that needs no gradient; batch axes summed back
            grad_a = _unbroadcast(g @ b.swapaxes(-1, -2), a.shape) if self.requires_grad else None
            grad_b = _unbroadcast(a.swapaxes(-1, -2) @ g, b.shape) if other.requires_grad else None
            return grad_a, grad_b
        return Tensor.from_op(data, (self, other), backward, "matmul")

    def __rmatmul__(self, other):
        return _tensor(other, self.dtype, "matmul") @ self

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
        """Mean over axis (an int, a tuple, or None: all), of n elements each.  grad a_i = g / n.
        >>> gradients(Tensor.mean, [2., 4., 6., 8.])
        [array([0.25, 0.25, 0.25, 0.25], dtype=float32)]"""
        kept = self.data.mean(axis=axis, keepdims=True)  # nan, as in numpy, for no elements at all
        share = kept.size / max(self.data.size, 1)  # 1/n
        shape = self.shape

        def backward(g):
            return (np.broadcast_to(g.reshape(kept.shape) * share, shape),)
        return Tensor.from_op(kept if keepdims else kept.squeeze(axis), (self,), backward, "mean")

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

    # ---- moving numbers around: the gradient moves back the same way ----
    def reshape(self, *shape):
        """The same numbers in another shape (-1: inferred).  grad a = g, reshaped back.
        >>> gradients(lambda a: a.reshape(2, 2) * [[1., 2.], [3., 4.]], [1., 2., 3., 4.])
        [array([1., 2., 3., 4.], dtype=float32)]"""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):  # reshape((2, 2)), as numpy
            shape = tuple(shape[0])
        try:
            data = self.data.reshape(shape)
        except ValueError:
            raise ShapeError(f"reshape: cannot reshape {self.shape} ({self.data.size} elements) "
                             f"into {shape}") from None
        original = self.shape
        return Tensor.from_op(data, (self,), lambda g: (g.reshape(original),), "reshape")

    def transpose(self, *axes):
        """Reorder the axes, with numpy's meaning (none given: reverse them).  grad a = g, the order
        undone.
        >>> gradients(lambda a: a.transpose() * [[1.], [2.], [3.]], [[1., 2., 3.]])
        [array([[1., 2., 3.]], dtype=float32)]"""
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):  # transpose((1, 0)), as numpy
            axes = tuple(axes[0])
        try:
            data = self.data.transpose(axes or None)
        except ValueError:
            raise ShapeError(f"transpose: {axes} is not an order of the {self.ndim} axes of "
                             f"{self.shape}") from None
        undo = np.argsort([axis % self.ndim for axis in axes]) if axes else None  # inverse order
        return Tensor.from_op(data, (self,), lambda g: (g.transpose(undo),), "transpose")

    @property
    def T(self):  # the axes reversed, as in numpy
        return self.transpose()

    def __getitem__(self, index):
        """a[index], with slices, integers and integer arrays.  grad a = g, put back where taken.
        >>> gradients(lambda a: a[[0, 0, 2]], [10., 20., 30.])   # a[0] was taken twice
        [array([2., 0., 1.], dtype=float32)]"""
        a = self.data
        data, index = _checked_index(a, index)  # x[Tensor(i)] indexes by i's numbers

        def backward(g):
            grad = np.zeros_like(a)
            np.add.at(grad, index, g)  # unlike grad[index] += g, adds g for each repeat of an index
            return (grad,)
        return Tensor.from_op(data, (self,), backward, "getitem")

    # ---- elementwise functions ----
    def exp(self):
        """e^a.  grad a = g e^a.
        >>> gradients(Tensor.exp, [0.])
        [array([1.], dtype=float32)]"""
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

    def tanh(self):
        """Hyperbolic tangent.  grad a = g (1 - tanh(a)^2).
        >>> gradients(Tensor.tanh, [0.])
        [array([1.], dtype=float32)]"""
        data = np.tanh(self.data)
        return Tensor.from_op(data, (self,), lambda g: (g * (1 - data * data),), "tanh")

    def sigmoid(self):
        """s = 1 / (1 + e^-a), as e^-log(1 + e^-a) so that no e^x overflows.  grad a = g s (1 - s).
        >>> gradients(Tensor.sigmoid, [0.])   # s = 1/2
        [array([0.25], dtype=float32)]"""
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
def cross_entropy(logits, targets):
    """The mean over the batch of -log softmax(logits)[target], for (N, C) logits, N class indices.
    grad logits = g (softmax(logits) - onehot(targets)) / N: one op with this simple gradient,
    rather than log_softmax and a mean, whose closures would compute the same in more steps.
    >>> gradients(lambda z: cross_entropy(z, [0]), [[0., 0.]])   # softmax - onehot = [1/2 - 1, 1/2]
    [array([[-0.5,  0.5]], dtype=float32)]"""
    logits = _tensor(logits)
    targets = _numpy(targets)
    _check_class_targets(logits, targets)  # (N, C) logits; N integer targets in 0..C-1
    _check_not_probabilities(logits)  # softmax before cross_entropy: a classic mistake
    log_probs = _log_softmax(logits.data, axis=1)
    n = len(targets)
    rows = np.arange(n)

    def backward(g):
        grad = np.exp(log_probs)
        grad[rows, targets] -= 1
        return (grad * (g / n),)
    return Tensor.from_op(-log_probs[rows, targets].mean(), (logits,), backward, "cross_entropy")

def mse_loss(prediction, target):
    """The mean of (prediction - target)^2 over its n elements.
    grad prediction = g 2 (prediction - target) / n.
    >>> gradients(lambda p: mse_loss(p, [0., 0.]), [1., 3.])   # 2 (p - 0) / 2
    [array([1., 3.], dtype=float32)]"""
    target_shape = np.shape(getattr(target, "data", target))
    if prediction.shape != target_shape:  # (N, 1) - (N,) would broadcast to (N, N)
        raise ShapeError(f"mse_loss: prediction {prediction.shape}, target {target_shape} differ")
    return ((prediction - target) ** 2).mean()

# ---- layers ----
_rng = np.random.default_rng()  # draws initial weights, Dropout masks, and batch orders

def manual_seed(seed):
    """Seed initialization, Dropout and shuffling, so that a run can be repeated exactly.
    >>> manual_seed(0)
    >>> first = _rng.random()
    >>> manual_seed(0)
    >>> _rng.random() == first
    True"""
    _rng.bit_generator.state = np.random.default_rng(seed).bit_generator.state

class Parameter(Tensor):
    """A tensor that a Module learns, as torch.nn.Parameter: parameters() finds the Parameters among
    a module's attributes, so a tensor a module merely keeps (self.hidden = ...) is not learned, and
    a frozen one (requires_grad = False) stays a parameter, saved and loaded with the others."""

    def __init__(self, data, requires_grad=True, dtype=None):
        super().__init__(data, requires_grad, dtype)

def _named_attributes(module):
    """(name, value) for each attribute of module, and for each item of its lists, tuples and dicts,
    however nested (layers.0 for module.layers[0], heads.a for module.heads["a"]): where Module
    looks for parameters and modules."""
    stack = list(vars(module).items())[::-1]
    while stack:
        name, value = stack.pop()
        if isinstance(value, (list, tuple)):
            stack.extend((f"{name}.{i}", item) for i, item in reversed(list(enumerate(value))))
        elif isinstance(value, dict):
            stack.extend((f"{name}.{key}", item) for key, item in reversed(list(value.items())))
        else:
            yield name, value

class Module:
    """A layer or a model. Its parameters are the Parameters among its attributes (and in its lists,
    tuples and dicts) and those of the Modules it holds, named as layers.0.weight. Calling it runs
    forward()."""
    training = True
    _in_repr = set()  # the modules whose repr is being made: one met again is shown by its class

    def __call__(self, *inputs):
        try:
            output = self.forward(*inputs)
        except ShapeError as error:  # a shape that does not fit: name the layer too
            raise _named_by_layer(error, self)
        _check_forward_output(self, output)  # not None: a forward() that forgot its return
        return output

    def __setattr__(self, name, value):
        _check_parameter_kept(self, name, value)  # layer.weight = a Tensor would not be learned
        object.__setattr__(self, name, value)

    def __repr__(self):  # its settings, as in PyTorch: Linear(in_features=784, out_features=10)
        if self in Module._in_repr:  # inside its own repr: a module that holds its parent
            return f"{type(self).__name__}(...)"
        Module._in_repr.add(self)
        try:
            settings = [f"{name}={value!r}" for name, value in vars(self).items()
                        if name != "training" and not isinstance(value, Tensor)]
        finally:
            Module._in_repr.discard(self)
        return f"{type(self).__name__}({', '.join(settings)})"

    def named_modules(self, prefix="", seen=None):
        """This module, then every module in it, each once, with its name, such as "layers.0."."""
        seen = set() if seen is None else seen
        seen.add(id(self))  # a module that holds its parent would otherwise be walked forever
        yield prefix, self
        for name, value in _named_attributes(self):
            if isinstance(value, Module) and id(value) not in seen:
                yield from value.named_modules(f"{prefix}{name}.", seen)

    def named_parameters(self):
        """(name, parameter) pairs, each parameter once: a layer used twice is one set of weights,
        which a step must update once (it gets the gradients of both uses), under its first name."""
        names = {}  # parameter -> name; a dict keeps the order in which they were found
        for prefix, module in self.named_modules():
            for name, value in _named_attributes(module):
                if isinstance(value, Parameter):
                    names.setdefault(value, prefix + name)
                _check_not_a_plain_leaf(module, name, value)  # a Tensor that would never be learned
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

    def state_dict(self):
        return {name: parameter.data.copy() for name, parameter in self.named_parameters()}

    def load_state_dict(self, state):
        """Copy arrays (or tensors: another model's parameters) into the parameters of the same
        names, once all names, shapes and values fit."""
        parameters = dict(self.named_parameters())
        arrays = _checked_state(parameters, state)  # all converted first: nothing half loaded
        for name, parameter in parameters.items():
            parameter.data[...] = arrays[name]  # in place, as PyTorch does
            parameter._version += 1

def _uniform_parameter(shape, fan_in=None):
    """PyTorch's default initialization: uniform in +-1/sqrt(fan_in), fan_in the inputs of each
    output (by default, all axes but the first). Random, so that units start different and learn
    different things; scaled by fan_in, so that wider layers do not make larger outputs. It does not
    keep a signal's scale: from unit-variance inputs, 512 units, the deviation is 0.58, 0.33, 0.11
    after 1, 2, 4 layers (0.34, 0.14, 0.02 with ReLUs); PyTorch keeps it from Lua Torch, for
    compatibility. He (Kaiming) initialization, deviation sqrt(2/fan_in), keeps it through ReLUs
    (0.83, 0.81, 0.78); the shallow networks here learn well with either."""
    bound = 1 / np.sqrt(fan_in or np.prod(shape[1:]))
    return Parameter(_rng.uniform(-bound, bound, shape).astype(np.float32))

class Linear(Module):
    """y = x @ weight^T + bias, for x of shape (..., in_features); the weight, (out_features,
    in_features), initialized by _uniform_parameter. One op, not three (matmul, transpose, add).
    grad x = g weight,  grad weight = g^T x,  grad bias = the sum of g over the rows."""

    def __init__(self, in_features, out_features, bias=True):
        self.in_features = _whole_number("Linear", "in_features", in_features, 1)
        self.out_features = _whole_number("Linear", "out_features", out_features, 1)
        self.weight = _uniform_parameter((out_features, in_features))
        self.bias = _uniform_parameter((out_features,), in_features) if bias else None

    def forward(self, x):
        x = _tensor(x, self.weight.dtype, "linear")
        _check_linear_input(self, x)  # (..., in_features)
        a = x.data
        weight = self.weight.data
        data = a @ weight.T
        if self.bias is not None:
            data += self.bias.data

        def backward(g):  # no product for what needs no gradient: the input batch, frozen weights
            g_rows = g.reshape(-1, self.out_features)  # a row per input row, whatever axes it had
            grad_x = g @ weight if x.requires_grad else None
            grad_weight = None
            if self.weight.requires_grad:
                grad_weight = g_rows.T @ a.reshape(-1, self.in_features)
            if self.bias is None:
                return grad_x, grad_weight
            return grad_x, grad_weight, g_rows.sum(axis=0)
        parents = (x, self.weight) if self.bias is None else (x, self.weight, self.bias)
        return Tensor.from_op(data, parents, backward, "linear")

class ReLU(Module):
    def forward(self, x):
        return x.relu()

class Tanh(Module):
    def forward(self, x):
        return x.tanh()

class Sigmoid(Module):
    def forward(self, x):
        return x.sigmoid()

class Sequential(Module):
    """Layers applied one after another."""

    def __init__(self, *layers):
        _check_layers(layers)
        self.layers = list(layers)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

# ---- optimizers: each step moves every parameter against its gradient ----
class Optimizer:
    """What SGD and Adam share: the parameters, the learning rate lr, weight decay, and step()."""

    def __init__(self, params, lr, weight_decay):
        if isinstance(params, Module):  # SGD(model) works too
            params = params.parameters()
        params = _checked_parameters(self, params, lr)  # a list of tensors, and a rate above 0
        self.params = list(dict.fromkeys(params))  # each once, even if listed twice
        self.lr = lr
        self.weight_decay = weight_decay

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

    def update(self, i, w, g):
        """Change w, parameter number i, in place, given its gradient g: the optimizer's rule."""
        raise NotImplementedError

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
        m = self.m[i]
        v = self.v[i]
        self.steps[i] += 1
        t = self.steps[i]
        m += (1 - b1) * (g - m)  # m = b1 m + (1 - b1) g, in place
        v += (1 - b2) * (g * g - v)
        w -= self.lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + self.eps)

# ---- training: mini-batches, the training loop, evaluation ----
def _dataset(X, y, caller, model):
    """X and y as numpy arrays, from arrays, lists or Tensors; X in the dtype of the model's weights
    (float64 pixels, from X / 255.0, would make a float32 model compute in float64)."""
    dtype = next((p.dtype for p in model.parameters()), None)
    X = Tensor(X, dtype=dtype, copy=False).data
    y = _numpy(y)
    _check_samples(X, y, caller)
    return X, y

def batches(X, y, batch_size, shuffle=True, rng=None):
    """(X, y) mini-batches of batch_size rows, the last maybe smaller; like a DataLoader, it can be
    looped over again and again, each pass in a new random order (unless shuffle=False).
    >>> [len(y) for X, y in batches(np.zeros((5, 2)), np.arange(5), batch_size=2)]
    [2, 2, 1]"""
    X, y = _numpy(X), _numpy(y)
    _check_samples(X, y, "batches")
    batch_size = _whole_number("batches", "batch_size", batch_size, 1)
    return _Batches(X, y, batch_size, shuffle, _rng if rng is None else np.random.default_rng(rng))

class _Batches:
    def __init__(self, X, y, batch_size, shuffle, rng):
        self.X, self.y, self.batch_size, self.shuffle, self.rng = X, y, batch_size, shuffle, rng

    def __len__(self):  # batches a pass
        return math.ceil(len(self.X) / self.batch_size)

    def __iter__(self):
        order = self.rng.permutation(len(self.X)) if self.shuffle else np.arange(len(self.X))
        for start in range(0, len(order), self.batch_size):
            part = order[start:start + self.batch_size]
            yield self.X[part], self.y[part]

def _is_classes(y):
    """Targets that are class indices: non-negative integers, one per sample. Decided once from all
    of y, never per batch: a batch of a hinge loss's targets in {-1, 1} may hold only 1s."""
    return y.ndim == 1 and y.dtype.kind in "iu" and y.min() >= 0

def _correct(output, y):
    """How many rows of output have their largest score at their target class, for y known to be
    class indices; None where that means nothing: outputs that are not scores per class."""
    if output.ndim != 2 or output.shape[1] < 2:
        return None
    return int((output.data.argmax(axis=1) == y).sum())

class _Tally:
    """An epoch's running sums: the loss over its samples and, where accuracy means something, how
    many rows had their largest score at their target class."""

    def __init__(self, y):
        self.samples = 0
        self.loss = 0.0  # the sum of the samples' losses
        self.correct = 0 if _is_classes(y) else None  # decided once, from all of y

    def add(self, output, yb, loss):
        """A batch: its outputs, its targets and its mean loss."""
        self.samples += len(yb)
        self.loss += loss * len(yb)
        right = None if self.correct is None else _correct(output, yb)
        self.correct = None if right is None else self.correct + right

    def means(self):
        """The mean loss, and the accuracy (None where it means nothing)."""
        accuracy = None if self.correct is None else self.correct / self.samples
        return self.loss / self.samples, accuracy

def evaluate(model, X, y, batch_size=1000, loss_fn=None):
    """(mean loss, accuracy) on (X, y): in eval mode, without a graph, a chunk at a time. The
    accuracy is None unless y holds class indices and the model gives a score per class.
    >>> evaluate(Sequential(), np.array([[5., 0.], [5., 0.]]), np.array([0, 1]))[1]   # 1 right of 2
    0.5"""
    loss_fn = loss_fn or cross_entropy
    X, y = _dataset(X, y, "evaluate", model)
    modes = [(module, module.training) for _, module in model.named_modules()]
    model.eval()
    tally = _Tally(y)
    try:
        with no_grad():
            for xb, yb in batches(X, y, batch_size, shuffle=False):
                output = model(Tensor(xb, copy=False))
                tally.add(output, yb, loss_fn(output, yb).item())
    finally:  # each module back in its own mode, even after an error
        for module, mode in modes:
            module.training = mode
    return tally.means()

def fit(model, optimizer, X, y, epochs=1, batch_size=64, validation=None, loss_fn=None, rng=None,
        verbose=True, check=True):
    """Train on mini-batches of (X, y); return the history, a dict per epoch (with accuracies where
    they mean something: see _Tally). Unless check=False, a run that diverges or cannot learn
    stops with DivergenceError or NotLearningError, which say what was seen and what to try.
    verbose prints a line per epoch, and on a terminal a progress line rewritten in place.
    >>> X, y = np.array([[-1.], [1.]] * 32), np.array([0, 1] * 32)
    >>> manual_seed(0)
    >>> model = Linear(1, 2)
    >>> fit(model, SGD(model.parameters(), lr=0.5), X, y, epochs=5, verbose=False)[-1]["train_acc"]
    1.0"""
    loss_fn = loss_fn or cross_entropy
    rng = _rng if rng is None else np.random.default_rng(rng)
    X, y = _dataset(X, y, "fit", model)
    batch_size = _whole_number("fit", "batch_size", batch_size, 1)
    watch = _Watch(model, optimizer, X, y, loss_fn, batch_size) if check else _Unwatched()
    steps = math.ceil(len(X) / batch_size)
    history = []
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        tally = _Tally(y)
        model.train()
        for step, (xb, yb) in enumerate(batches(X, y, batch_size, rng=rng), 1):
            output = model(Tensor(xb, copy=False))  # a batch is a new array: no need to copy it
            loss = loss_fn(output, yb)
            value = loss.item()
            watch.before_step(output, value, epoch, step)  # stops a loss that diverged
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            watch.after_step(loss, epoch, step)  # every 100 steps: can the network still learn?
            tally.add(output, yb, value)
            if verbose:
                _show_progress(epoch, epochs, step, steps, tally)
        history.append(_epoch_record(epoch, tally, start, model, validation, loss_fn))
        if verbose:
            _show_record(history[-1])
    return history


# ==== Part 2: more layers and tools. Convolution and pooling (for images), Dropout, seeing the
# graph, a tensor as a number, finding a learning rate. The lesson above does not need them. ====

# ---- the ops of network layers ----
def conv2d(x, weight, bias=None, stride=1, padding=0):
    """Slide (out, in, kh, kw) filters over (batch, in, height, width) images, as PyTorch's conv2d:
    with each image patch copied into a row of a matrix ("im2col"), all dot products are one matrix
    product.  grad weight = g^T patches;  grad bias = the sum of g;  grad x = g filters, each row
    added back onto the pixels of its patch ("col2im").
    >>> x = np.arange(9.).reshape(1, 1, 3, 3)  # grad x: how many 2x2 patches hold each pixel
    >>> gradients(conv2d, x, np.ones((1, 1, 2, 2)), [0.])[0].tolist()
    [[[[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]]]"""
    weight = _tensor(weight, op="conv2d")
    x = _tensor(x, weight.dtype, "conv2d")
    bias = None if bias is None else _tensor(bias, weight.dtype, "conv2d")
    stride = _whole_number("conv2d", "stride", stride, 1)
    padding = _whole_number("conv2d", "padding", padding, 0)
    _check_conv2d(x, weight, bias, stride, padding)  # (n, in, h, w) images that the filters fit
    n, _, h, w = x.shape
    out_channels, channels, kh, kw = weight.shape
    out_h = (h + 2 * padding - kh) // stride + 1
    out_w = (w + 2 * padding - kw) // stride + 1
    patches = _im2col(x.data, kh, kw, stride, padding)  # (n*out_h*out_w, kh*kw*in)
    filters = weight.data.transpose(0, 2, 3, 1).copy()  # (out, kh, kw, in): in a patch's order
    data = patches @ filters.reshape(out_channels, -1).T  # (n*out_h*out_w, out)
    if bias is not None:
        data += bias.data
    data = data.reshape(n, out_h, out_w, out_channels).transpose(0, 3, 1, 2)  # (n, out, y, x) view

    def backward(g):  # no product for what needs no gradient: the input images, frozen weights
        g_rows = g.transpose(0, 2, 3, 1).reshape(-1, out_channels)  # (n*out_h*out_w, out)
        grad_x = None
        if x.requires_grad:
            grad_x = _col2im(g_rows, filters, x.shape, stride, padding, (out_h, out_w))
        grad_weight = None
        if weight.requires_grad:
            grad_weight = (g_rows.T @ patches).reshape(filters.shape).transpose(0, 3, 1, 2).copy()
        if bias is None:
            return grad_x, grad_weight
        grad_bias = np.ones(len(g_rows), g.dtype) @ g_rows  # the sum of the rows, fast with BLAS
        return grad_x, grad_weight, grad_bias
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
    first maximum only, as in PyTorch, whose pooling keeps the index of one maximum (Tensor.max
    shares it among the tied ones instead, as torch.amax does).
    >>> gradients(lambda x: max_pool2d(x, 2), [[[[1., 2.], [4., 3.]]]])[0].tolist()
    [[[[0.0, 0.0], [1.0, 0.0]]]]"""
    x = _tensor(x, op="max_pool2d")
    k = _whole_number("max_pool2d", "kernel_size", kernel_size, 1)  # square windows: one number
    stride = k if stride is None else _whole_number("max_pool2d", "stride", stride, 1)
    _check_max_pool2d(x, k)  # (n, c, h, w) images, each side at least k
    images = x.data
    out_h = (x.shape[2] - k) // stride + 1
    out_w = (x.shape[3] - k) // stride + 1
    # for each offset (i, j) in a window: the rows and columns of the pixel at (i, j) of all windows
    offsets = [(slice(i, i + stride * out_h, stride), slice(j, j + stride * out_w, stride))
               for i, j in np.ndindex(k, k)]
    planes = [images[:, :, rows, cols] for rows, cols in offsets]  # views (n, c, out_h, out_w)
    data = planes[0].copy(order="K")  # K: in the input's memory order (channels-last after conv2d)
    for plane in planes[1:]:  # k*k - 1 elementwise maxima of whole planes
        np.maximum(data, plane, out=data)

    def backward(g):
        g_out = np.empty_like(data)  # g in the output's memory order: mixing orders is 2-3x slower
        g_out[...] = g
        grad = np.zeros_like(images)
        taken = np.zeros_like(data, dtype=bool)  # the windows whose maximum got g already
        for (rows, cols), plane in zip(offsets, planes):
            is_max = plane == data
            is_max &= ~taken  # a later maximum that ties with an earlier one gets nothing
            taken |= is_max
            if stride >= k:  # windows do not overlap: a pixel gets g from one window at most
                np.multiply(g_out, is_max, out=grad[:, :, rows, cols])
            else:
                grad[:, :, rows, cols] += g_out * is_max
        return (grad,)
    return Tensor.from_op(data, (x,), backward, "max_pool2d")

class Conv2d(Module):
    """conv2d with weight (out_channels, in_channels, k, k) initialized by _uniform_parameter."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True):
        self.in_channels = _whole_number("Conv2d", "in_channels", in_channels, 1)
        self.out_channels = _whole_number("Conv2d", "out_channels", out_channels, 1)
        self.kernel_size = _whole_number("Conv2d", "kernel_size", kernel_size, 1)  # square kernels
        self.stride = _whole_number("Conv2d", "stride", stride, 1)
        self.padding = _whole_number("Conv2d", "padding", padding, 0)
        kernel_size = self.kernel_size
        self.weight = _uniform_parameter((out_channels, in_channels, kernel_size, kernel_size))
        fan_in = in_channels * kernel_size ** 2
        self.bias = _uniform_parameter((out_channels,), fan_in) if bias else None

    def forward(self, x):
        return conv2d(x, self.weight, self.bias, self.stride, self.padding)

class MaxPool2d(Module):
    def __init__(self, kernel_size, stride=None):
        self.kernel_size = _whole_number("MaxPool2d", "kernel_size", kernel_size, 1)
        self.stride = None if stride is None else _whole_number("MaxPool2d", "stride", stride, 1)

    def forward(self, x):
        return max_pool2d(x, self.kernel_size, self.stride)

class Flatten(Module):
    def forward(self, x):
        return x.reshape(x.shape[0], -1)

class Dropout(Module):
    """In training, zero each element with probability p and scale the others by 1/(1 - p)
    ("inverted" dropout): the expected value stays the same, so that in eval mode x passes as is."""

    def __init__(self, p=0.5):
        if not isinstance(p, numbers.Real) or not 0 <= p < 1:
            raise ValueError(f"Dropout: p, the probability of zeroing an element, must be in "
                             f"[0, 1); got {p}")
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        keep = _rng.random(x.shape, dtype=np.float32) >= self.p
        return x * (keep.astype(x.dtype) / (1 - self.p))

# ---- seeing the graph ----
def _closure_name(backward):
    """An op's default name: the function its closure is written in ("cube" for a lambda in def
    cube(a), whose __qualname__ is "cube.<locals>.<lambda>")."""
    name = getattr(backward, "__qualname__", "op").rsplit(".<locals>", 1)[0]
    return name.split(".")[-1]

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
    >>> print(loss.graph({"w": w, "b": b, "x": x, "y": y}))
    #1 pow(#2)      (1,)  [9.]
    #2 sub(#3, #8)  (1,)  [-3.]
    #3 add(#4, #7)  (1,)  [7.]
    #4 mul(#5, #6)  (1,)  [6.]
    #5 w            (1,)  [2.]   requires_grad
    #6 x            (1,)  [3.]
    #7 b            (1,)  [1.]   requires_grad
    #8 y            (1,)  [10.]
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
    if hasattr(params, "named_parameters"):  # graph(model) names its parameters too
        params = params.named_parameters()
    _check_graph_names(params)
    names = {tensor: name for name, tensor in dict(params or {}).items()}
    nodes = self._graph_order()
    number = {node: f"#{i}" for i, node in enumerate(nodes, 1)}
    rows = []
    for node in nodes:
        if node.op:
            what = f"{node.op}({', '.join(number[parent] for parent in node._parents)})"
        else:
            what = names.get(node, "leaf")
        if node.grad is not None:
            gradient = f"grad {_brief(node.grad)}"
        elif node.requires_grad and not node.op:
            gradient = "requires_grad"
        else:
            gradient = ""
        padded_number = number[node].ljust(len(number[nodes[-1]]))  # #9 above #10: aligned
        rows.append([f"{padded_number} {what}", str(node.shape), _brief(node.data), gradient])
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths + [0]))
             for row in rows]
    return "\n".join(line.rstrip() for line in lines)

Tensor.graph = _graph

# ---- a tensor as a number, and comparisons, as in PyTorch (added to Tensor here, out of the
# lesson's way) ----
def _float(self):  # float(loss): a one-element tensor is a number
    _check_one_number(self, "float")
    return float(self.data.item())

def _bool(self):  # `if t:` means the value, for one element; more are ambiguous
    _check_one_number(self, "bool")
    return bool(self.data.item())

def _format(self, spec):  # f"{loss:.3f}" formats the number; f"{t}" shows the tensor
    if not spec:
        return str(self)
    _check_one_number(self, "format")
    return format(self.data.item(), spec)

def _comparison(name, ufunc):
    """==, <, ... elementwise: a tensor of bools, which has no gradient."""
    def compare(self, other):
        if other is None or isinstance(other, str):  # t == None is False, as in PyTorch
            return NotImplemented
        other = _tensor(other, self.dtype, name)
        try:
            return Tensor(ufunc(self.data, other.data), dtype=bool, copy=False)
        except ValueError:
            raise _broadcast_error(name, self.shape, other.shape) from None
    return compare

Tensor.__float__ = _float
Tensor.__bool__ = _bool
Tensor.__format__ = _format
Tensor.__eq__ = _comparison("eq", np.equal)
Tensor.__ne__ = _comparison("ne", np.not_equal)
Tensor.__lt__ = _comparison("lt", np.less)
Tensor.__le__ = _comparison("le", np.less_equal)
Tensor.__gt__ = _comparison("gt", np.greater)
Tensor.__ge__ = _comparison("ge", np.greater_equal)
Tensor.__hash__ = object.__hash__  # still a dict key, by identity, as backward() needs


# ---- fit's history and what it prints ----
def _epoch_record(epoch, tally, start, model, validation, loss_fn):
    """The history's record of an epoch: losses, accuracies where they mean something, seconds."""
    train_loss, train_acc = tally.means()
    record = {"epoch": epoch, "train_loss": train_loss}
    if train_acc is not None:
        record["train_acc"] = train_acc
    if validation is not None:
        val_loss, val_acc = evaluate(model, *validation, loss_fn=loss_fn)
        record["val_loss"] = val_loss
        if val_acc is not None:
            record["val_acc"] = val_acc
    record["seconds"] = time.perf_counter() - start
    return record

def _show_progress(epoch, epochs, step, steps, tally):
    """On a terminal, rewrite the progress line in place ("\r"), 50 times an epoch; in a log file
    or a notebook without one, nothing: fit prints a line per epoch."""
    if (step % max(1, steps // 50) == 0 or step == steps) and _on_a_terminal():
        loss = tally.loss / tally.samples
        print(f"\repoch {epoch}/{epochs} batch {step}/{steps} loss {loss:.4f}", end="", flush=True)

def _show_record(record):
    shown = [f"{key} {value:.4f}" if type(value) is float else f"{key} {value}"
             for key, value in record.items()]
    print("\r" * _on_a_terminal() + "  ".join(shown))

def _on_a_terminal():  # not a log file, a pipe, or a notebook (whose stdout may have no isatty)
    return getattr(sys.stdout, "isatty", lambda: False)()

# ---- finding a learning rate ----
def _endless(X, y, batch_size, rng):
    """Mini-batches without end: pass after pass over the data, each in a new order."""
    rng = np.random.default_rng(rng)
    while True:
        yield from batches(X, y, batch_size, rng=rng)

def lr_find(model, optimizer, X, y, start=1e-7, end=10.0, steps=300, batch_size=64, loss_fn=None,
            rng=0):
    """The learning-rate range test (Smith, 2015): train for `steps` steps with the learning rate
    rising exponentially from start to end, until the loss explodes; then put the model (its
    weights, gradients and training mode), the optimizer and minigrad's random numbers back exactly
    as they were. Returns (rates, losses, suggestion): the losses smoothed over recent steps, and a
    tenth of the rate where they were lowest, a rate that still makes progress but stays clear of
    the explosion.
    >>> X, y = np.array([[-1.], [1.]] * 32), np.array([0, 1] * 32)
    >>> manual_seed(0)
    >>> model = Linear(1, 2)
    >>> before = model.weight.data.copy()
    >>> rates, losses, suggestion = lr_find(model, SGD(model, lr=0.1), X, y, steps=60)
    >>> len(rates) == len(losses), bool((model.weight.data == before).all())   # weights put back
    (True, True)"""
    loss_fn = loss_fn or cross_entropy
    X, y = _dataset(X, y, "lr_find", model)
    _check_optimizer(model, optimizer, "lr_find")
    _check_rate_range(start, end, steps)  # 0 < start < end, and 2 or more steps
    weights = model.state_dict()
    grads = [parameter.grad for parameter in model.parameters()]
    modes = [(module, module.training) for _, module in model.named_modules()]
    optimizer_state = {k: v for k, v in vars(optimizer).items() if k != "params"}
    optimizer_state = copy.deepcopy(optimizer_state, {id(p): p for p in optimizer.params})
    random_state = _rng.bit_generator.state
    rates = start * (end / start) ** np.linspace(0, 1, steps)
    losses = []
    average = 0.0
    best = math.inf
    model.train()  # as fit trains: Dropout on
    try:
        for step, (rate, (xb, yb)) in enumerate(zip(rates, _endless(X, y, batch_size, rng)), 1):
            optimizer.lr = rate
            loss = loss_fn(model(Tensor(xb, copy=False)), yb)
            optimizer.zero_grad()  # others' .grad: replaced, not changed; put back below
            loss.backward()
            optimizer.step()
            average = 0.9 * average + 0.1 * loss.item()
            losses.append(average / (1 - 0.9 ** step))  # less the average's pull towards its start
            best = min(best, losses[-1])
            rise = losses[-1] - best  # exploded: risen above the lowest by 3 times its size
            if not np.isfinite(losses[-1]) or rise > 3 * (abs(best) or 1):  # (a loss may be < 0)
                break
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
    losses = losses[finite]
    return rates, losses, rates[losses.argmin()] / 10


# ==== Part 3: the guard rails. The checks that the lesson calls in one line each, their
# messages, and fit()'s diagnoses of a run that fails. ====

# ---- the engine: what from_op() records and what backward() gets ----
def _check_from_op(parents, backward):
    if not callable(backward):
        raise TypeError(f"from_op: backward must be a function of g, not a "
                        f"{type(backward).__name__}")
    if not (isinstance(parents, tuple) and all(isinstance(p, Tensor) for p in parents)):
        raise TypeError(f"from_op: parents must be a tuple of the Tensors the op computed data "
                        f"from, such as (a,) or (a, b); got a {type(parents).__name__}")

def _check_backward_start(tensor, grad):
    if not tensor.requires_grad:
        raise RuntimeError("backward: no input of this tensor had requires_grad=True "
                           "(or it was computed inside no_grad)")
    if grad is None and tensor.data.size != 1:
        raise ShapeError(f"backward: output {tensor.shape} is not one number: pass grad= of its "
                         f"shape, or .sum() it")
    if grad is not None and np.shape(_numpy(grad)) != tensor.shape:
        raise ShapeError(f"backward: grad has shape {np.shape(_numpy(grad))}, the output "
                         f"{tensor.shape}")

def _read_only(g):
    """A read-only view of g: a closure that changed g in place (g *= 2) would change the other
    gradients that share its memory; numpy then refuses, and _closure_error says why."""
    view = np.asarray(g).view()  # (asarray: numpy makes a sum of 0-d arrays a number)
    view.flags.writeable = False
    return view

def _closure_error(node, error):
    """numpy's "output array is read-only", from a closure, named: the op, the reason, the fix."""
    if "read-only" in str(error):
        error.args = (f"backward of {node.op}: {error}: a closure must not change g in place "
                      f"(g *= 2), other gradients may share it; compute a new array (g * 2)",)
    return error

def _check_closure_result(node, grads):
    """A closure returns a tuple (or list) of one array, or None, per input of its op."""
    if type(grads) not in (tuple, list) or len(grads) != len(node._parents):
        got = type(grads).__name__
        if type(grads) in (tuple, list):
            got = f"{len(grads)} gradients"
        raise TypeError(f"backward of {node.op}: returned {got}, not a tuple of "
                        f"{len(node._parents)}, one gradient (or None) per input; for one "
                        f"input, mind the comma: lambda g: (g * 2,)")
    for grad in grads:
        if isinstance(grad, Tensor):
            raise TypeError(f"backward of {node.op}: returned a Tensor; return arrays "
                            f"(b.data, not b)")

def _check_broadcast_gradient(node, parent, grad):
    """A gradient of another shape than its input's must be of the output's shape, for an input
    broadcast to it: only then does summing it back (_unbroadcast) give the input's gradient."""
    shape = np.shape(grad)
    pairs = zip(parent.shape[::-1], shape[::-1])  # aligned from the right, as numpy broadcasts
    fits = len(parent.shape) <= len(shape) and all(size in (1, out) for size, out in pairs)
    if shape != parent.shape and (shape != node.shape or not fits):  # (a number: shape ())
        k = next(k for k, input_ in enumerate(node._parents) if input_ is parent)
        hint = ""
        if len(shape) < len(parent.shape):  # such as a sum's g, not spread back over its input
            hint = "; spread a smaller g back over the input: np.broadcast_to(g, a.shape)"
        raise ShapeError(f"backward of {node.op}: input {k} has shape {parent.shape}, but its "
                         f"gradient came back with shape {shape}; it must have the input's "
                         f"shape (or the output's, {node.shape}, if the input was broadcast "
                         f"to it){hint}")

def _check_unchanged(order):
    """No op's inputs may have been changed in place (by a step or load_state_dict) since the op
    used them: their gradients would be those at the new values, silently wrong. Checked for the
    whole graph before any closure runs, so that no .grad is left half done."""
    for node in order:
        if node._backward is None or node._versions == [p._version for p in node._parents]:
            continue
        for k, (parent, version) in enumerate(zip(node._parents, node._versions)):
            if parent._version != version:
                raise RuntimeError(f"backward of {node.op}: input {k} {parent.shape} was changed "
                                   f"in place (optimizer.step() or load_state_dict()) after the "
                                   f"op used it: compute the loss again after a step (forward, "
                                   f"loss, zero_grad(), backward(), step(), in this order)")


# ---- a tensor's data: numbers, floating where gradients flow, one number where one is asked ----
def _check_numbers(data, op):
    """Refuse what is not numbers (None, strings, objects, rows of different lengths), which numpy
    would turn into NaN, into numbers read from text, or into its own message."""
    if isinstance(data, (int, float)) or getattr(data, "dtype", np.dtype(object)).kind in "biuf":
        return
    try:
        array = np.asarray(data)
    except ValueError:  # numpy's "inhomogeneous shape"
        raise ValueError(f"{op}: the rows of {data!r:.60} have different lengths; a tensor's rows "
                         f"must all have the same length") from None
    if array.dtype.kind in "biuf":
        return
    if array.dtype.kind == "O":
        bad = [(i, item) for i, item in np.ndenumerate(array)
               if not isinstance(item, (numbers.Real, decimal.Decimal))]
        if not bad:
            return  # numbers in an object array convert as usual
        index, item = bad[0]
    else:
        index, item = (), array.flat[0] if array.size else array
    where = f" (at index {index})" if index else ""
    advice = "a tensor holds real numbers only"
    if item is None:
        advice = "is it a value never set, such as a bias left as None?"
    elif isinstance(item, (str, bytes)):
        item = str(item)
        advice = "convert text to numbers first, as float(text)"
    raise TypeError(f"{op}: {item!r:.40}{where} is not a number ({type(item).__name__}): {advice}")

def _check_can_require_grad(tensor):
    """Only floating tensors have gradients: an integer .grad would be rounded to whole numbers."""
    if tensor.requires_grad and tensor.dtype.kind != "f":
        raise TypeError(f"requires_grad: a tensor of {tensor.dtype} cannot require a gradient, as "
                        f"in PyTorch (its gradient would be rounded to whole numbers); make it "
                        f"floating: Tensor(..., dtype=np.float32)")

def _check_one_number(tensor, op):
    if tensor.data.size != 1:
        raise ValueError(f"{op}: the tensor has shape {tensor.shape}, {tensor.data.size} numbers, "
                         f"not one; take one (t[0]) or reduce them (t.sum(), t.mean(), t.max())")

def _checked_index(array, index):
    """array[index] and the index, with Tensors in it read as their numbers, as PyTorch reads them,
    and numpy's IndexError named as getitem's, with the shape."""
    parts = index if isinstance(index, tuple) else (index,)
    parts = tuple(part.data if isinstance(part, Tensor) else part for part in parts)
    index = parts if isinstance(index, tuple) else parts[0]
    try:
        return array[index], index
    except IndexError as error:
        floats = any(getattr(part, "dtype", np.dtype(int)).kind == "f" for part in parts)
        hint = ("; Tensor(indices) makes float32 numbers: index with the integer array, or "
                "Tensor(indices, dtype=np.int64)") if floats else ""
        raise IndexError(f"getitem: {error}, in a tensor of shape {array.shape}{hint}") from None


# ---- the ops: shapes that fit, and settings that are whole numbers ----
def _broadcast_error(op, shape_a, shape_b):
    """A ShapeError naming the op, both shapes, and the first sizes that cannot broadcast."""
    pairs = zip(shape_a[::-1], shape_b[::-1])
    m, n = next((m, n) for m, n in pairs if m != n and 1 not in (m, n))
    return ShapeError(f"{op}: shapes {shape_a} and {shape_b} do not broadcast: aligned from the "
                      f"right, sizes {m} and {n} differ and neither is 1")

def _check_matmul(a, b):
    if min(a.ndim, b.ndim) < 2:
        raise ShapeError(f"matmul: {a.shape} @ {b.shape}: each needs 2 or more axes; make a "
                         f"vector (1, n)")
    if a.shape[-1] != b.shape[-2]:
        raise ShapeError(f"matmul: {a.shape} @ {b.shape}: inner dimensions {a.shape[-1]} and "
                         f"{b.shape[-2]} differ")
    try:
        np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ShapeError(f"matmul: {a.shape} @ {b.shape}: batch axes {a.shape[:-2]} and "
                         f"{b.shape[:-2]} do not broadcast") from None

def _check_class_targets(logits, targets):
    if logits.ndim != 2 or targets.shape != logits.shape[:1] or len(targets) == 0:
        raise ShapeError(f"cross_entropy: logits {logits.shape} should be (batch, classes) and "
                         f"targets {targets.shape} one class index per row")
    classes = logits.shape[1]
    if targets.dtype.kind not in "iu":
        raise ValueError(f"cross_entropy: targets must be integer class indices, not "
                         f"{targets.dtype} numbers: pass the labels' integer array (Tensor(labels) "
                         f"makes float32 of it)")
    if targets.min() < 0 or targets.max() >= classes:
        row = int(((targets < 0) | (targets >= classes)).argmax())
        raise ValueError(f"cross_entropy: target {targets[row]} (row {row}) is not a class index: "
                         f"logits {logits.shape} have {classes} classes, numbered 0..{classes - 1}")

def _check_not_probabilities(logits):
    """cross_entropy applies log-softmax itself: computed logits whose every row is probabilities
    (in [0, 1], summing to 1) mean a model that ends with softmax, which trains slowly, silently."""
    data = logits.data
    if logits.op not in ("softmax", "div") or data.shape[1] < 2:  # softmax, or one by hand
        return
    if data.min() >= 0 and data.max() <= 1 and np.allclose(data.sum(axis=1), 1, atol=1e-4):
        raise ValueError(f"cross_entropy: the logits ({logits.op}) are probabilities, each row in "
                         f"[0, 1] and summing to 1: does the model end with softmax? Remove it: "
                         f"cross_entropy applies log-softmax to raw scores itself, and a softmax "
                         f"before it makes the network learn slowly")

def _check_conv2d(x, weight, bias, stride, padding):
    if weight.ndim != 4:
        raise ShapeError(f"conv2d: weight {weight.shape} should be (out, in, kh, kw)")
    out_channels, channels, kh, kw = weight.shape
    wrong_bias = bias is not None and bias.shape != (out_channels,)
    if x.ndim != 4 or x.shape[1] != channels or wrong_bias:
        raise ShapeError(f"conv2d: input {x.shape} should be (batch, {channels}, height, width) "
                         f"for weight {weight.shape} (out, in, kh, kw) and bias ({out_channels},)")
    if min(x.shape[2] + 2 * padding - kh, x.shape[3] + 2 * padding - kw) < 0:
        raise ShapeError(f"conv2d: a {kh}x{kw} kernel with stride {stride}, padding {padding} "
                         f"does not fit {x.shape}")

def _check_max_pool2d(x, k):
    if x.ndim != 4 or not k <= min(x.shape[2:]):
        raise ShapeError(f"max_pool2d: input {x.shape} should be (batch, channels, height, width) "
                         f"with each side at least kernel_size={k}")

def _whole_number(op, name, value, least):
    """value as an int if it is a whole number (a numpy one too) of at least `least`; else an error
    that names the op and what it takes."""
    whole = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if whole and value >= least:
        return int(value)
    hint = ""
    if isinstance(value, str) and value.lower() == "same":
        hint = "; for an output of the input's size (odd kernel k, stride 1), padding=(k - 1) // 2"
    elif isinstance(value, (tuple, list)):
        hint = " (square kernels and equal strides only: one number, such as 3)"
    error = ValueError if whole else TypeError
    raise error(f"{op}: {name} must be a whole number, {least} or more; got {value!r}{hint}")


# ---- modules, optimizers, data ----
def _named_by_layer(error, module):
    """A ShapeError from module's forward() names the module: the innermost layer, not the outer."""
    if not hasattr(error, "layer"):
        error.layer = module
        error.args = (f"{module}: {error}",)
    return error

def _check_forward_output(module, output):
    if output is None:
        raise TypeError(f"{type(module).__name__}.forward returned None: does it end with "
                        f"`return x`?")
    if isinstance(output, np.ndarray):
        raise TypeError(f"{type(module).__name__}.forward returned a numpy array: return a Tensor "
                        f"(don't use .data inside forward(): no gradient flows through it)")

def _check_parameter_kept(module, name, value):
    """A Parameter's place takes a Parameter (or None), as in PyTorch: not the result of an op."""
    kept = isinstance(value, (Parameter, type(None)))
    if isinstance(vars(module).get(name), Parameter) and not kept:
        raise TypeError(f"cannot assign a {type(value).__name__} as parameter {name!r} of "
                        f"{module}: it would no longer be learned; update it in place: "
                        f"with no_grad(): layer.{name} -= lr * layer.{name}.grad")

def _check_layers(layers):
    """Sequential's layers must be layers: made (ReLU(), not the class ReLU) and callable."""
    for i, layer in enumerate(layers):
        if isinstance(layer, type):
            raise TypeError(f"Sequential: layer {i} is the class {layer.__name__}, not a layer: "
                            f"write {layer.__name__}(...) to make one")
        if not callable(layer):
            raise TypeError(f"Sequential: layer {i} is a {type(layer).__name__}, not a layer; "
                            f"pass the layers themselves, as in PyTorch: Sequential(*layers)")

def _check_not_a_plain_leaf(module, name, value):
    """A plain Tensor attribute with requires_grad=True would never be learned: only Parameters
    are (PyTorch silently leaves it untrained)."""
    plain = isinstance(value, Tensor) and not isinstance(value, Parameter)
    if plain and value.requires_grad and value.op is None:
        raise TypeError(f"{type(module).__name__}.{name} is a Tensor with requires_grad=True, "
                        f"which would never be learned: only Parameters are. Write "
                        f"self.{name} = Parameter(...), or give it requires_grad=False")

def _checked_state(parameters, state):
    """state's arrays (a tensor's .data), of its parameters' dtypes, once names and shapes fit."""
    if parameters.keys() != state.keys():
        raise KeyError(f"load_state_dict: missing {sorted(parameters.keys() - state.keys())}, "
                       f"unexpected {sorted(state.keys() - parameters.keys())}")
    arrays = {name: np.asarray(value.data if isinstance(value, Tensor) else value)
              for name, value in state.items()}
    for name, parameter in parameters.items():
        if arrays[name].shape != parameter.shape:
            raise ShapeError(f"load_state_dict: {name} is {arrays[name].shape}, the model's "
                             f"{parameter.shape}")
    return {name: arrays[name].astype(parameter.dtype) for name, parameter in parameters.items()}

def _check_linear_input(layer, x):
    if x.ndim == 0 or x.shape[-1] != layer.in_features:
        raise ShapeError(f"linear: input {x.shape} should be (batch, {layer.in_features}), or "
                         f"(..., {layer.in_features}), for weight {layer.weight.shape}")

def _checked_parameters(optimizer, params, lr):
    """params as a list, once it is known to hold tensors (not the method, a model in a list, named
    pairs or PyTorch's parameter groups), at least one, and lr a number above 0."""
    name = type(optimizer).__name__
    if callable(params):
        raise TypeError(f"{name}: got the method; call it: model.parameters()")
    if isinstance(params, Tensor):  # list() would make its rows, copies no step would reach
        raise TypeError(f"{name}: params argument given to the optimizer should be an iterable of "
                        f"Tensors, not one Tensor: pass a list, {name}([weight], lr=...)")
    params = list(params)
    for item in params:
        if not isinstance(item, Tensor):
            hint = {Module: "a model: pass it alone, SGD(model, ...), or model.parameters()",
                    tuple: "a (name, tensor) pair: pass model.parameters(), not named_parameters()",
                    dict: "a parameter group, which minigrad does not have: pass one list of "
                          "parameters per optimizer"}
            kind = next((kind for kind in hint if isinstance(item, kind)), None)
            raise TypeError(f"{name}: the parameters must be tensors; one is "
                            f"{hint.get(kind, 'a ' + type(item).__name__)}")
    if not params:
        raise ValueError(f"{name}: no parameters given; pass model.parameters()")
    if not isinstance(lr, numbers.Real) or not lr > 0:
        raise ValueError(f"{name}: the learning rate must be a number above 0: lr={lr!r}")
    return params

def _check_graph_names(params):
    """graph()'s names: a dict of name -> tensor, (name, tensor) pairs, or a model."""
    if params is None or isinstance(params, dict):
        return
    if not all(isinstance(pair, tuple) and len(pair) == 2 for pair in params):
        raise TypeError(f"graph: params names the leaves: pass a dict of name -> tensor, or the "
                        f"model itself (loss.graph(model)); got a {type(params).__name__} of "
                        f"{type(next(iter(params), None)).__name__}")

def _check_samples(X, y, caller):
    """X and y: one target per sample, and at least one sample."""
    if X.ndim == 0 or y.ndim == 0:
        raise ShapeError(f"{caller}: X {X.shape} and y {y.shape} must have a sample per row; for "
                         f"one sample, keep its batch axis: X[:1], y[:1]")
    if len(X) == 0 or len(X) != len(y):
        raise ShapeError(f"{caller}: X has {len(X)} samples and y {len(y)}: one target per sample")


# ---- fit's watch: a run that fails stops, and says what it saw and the likely cause ----
class DivergenceError(RuntimeError):
    """fit() stopped: the loss became NaN or infinite, or exploded; the message says why. lr is the
    learning rate to try next, or None if the rate is not the cause."""

    def __init__(self, message, lr=None):
        super().__init__(message)
        self.lr = lr

    def __str__(self):
        return self.advice()

    def advice(self, rate="lr={:g}", finder="lr_find(model, optimizer, X, y)"):
        """The message, ending with what to try, said in Python; a command line says it with its
        options: advice("--lr {:g}", "--find-lr")."""
        if self.lr is None:
            return self.args[0]
        return f"{self.args[0]} Try {rate.format(self.lr)}, or find a rate with {finder}."

class NotLearningError(DivergenceError):
    """fit() stopped: the network cannot learn any more (a layer whose units all output 0, or
    weights that do not move). A kind of divergence (except DivergenceError catches both), often its
    aftermath: a step too large can leave units that never fire again."""

def _guessing_loss(loss_fn, y):
    """The loss of a model that ignores its inputs and predicts from the targets alone: for
    cross_entropy, their class frequencies p, whose loss is their entropy -sum p ln p (ln C for C
    equally common classes); for mse_loss, their mean, whose loss is their variance. Else None."""
    if loss_fn is cross_entropy and _is_classes(y):
        shares = np.bincount(y) / len(y)
        shares = shares[shares > 0]
        if len(shares) < 2:  # one class: nothing to learn, and no loss below 0
            return None
        return float(-(shares * np.log(shares)).sum())
    if loss_fn is mse_loss:
        return float(y.var(axis=0).mean())
    return None  # another loss (even one built on these: `is` compares the functions themselves)

def _check_optimizer(model, optimizer, where):
    """Refuse an optimizer that holds none of the model's parameters: it would train nothing."""
    if not set(map(id, optimizer.params)) & set(map(id, model.parameters())):
        raise ValueError(f"{where}: the optimizer holds none of the model's parameters, so no step "
                         f"changes the model: it was made for other parameters (running again the "
                         f"line that makes the model makes new ones; so does copying or unpickling "
                         f"the model and its optimizer one at a time). Make the optimizer after "
                         f"the model: {type(optimizer).__name__}(model.parameters(), ...), or copy "
                         f"both at once: copy.deepcopy((model, optimizer))")

def _check_data(X, y):
    """Refuse what no training can use: NaN or infinite inputs or targets, identical inputs."""
    low, high = X.min(), X.max()  # NaN if any number is NaN, infinite if any is
    for name, data, finite in (("X", X, np.isfinite(low) and np.isfinite(high)),
                               ("y", y, y.dtype.kind not in "fc" or np.isfinite(y).all())):
        if not finite:
            bad = ~np.isfinite(data.reshape(len(data), -1)).all(axis=1)
            count = f"{bad.sum()} samples of {name} hold"
            if bad.sum() == 1:
                count = f"1 sample of {name} holds"
            raise ValueError(f"fit: {count} NaN or infinite numbers (the first is {name}"
                             f"[{bad.argmax()}]): every loss would be NaN; fix or drop them")
    if len(X) > 1 and np.array_equal(X[0], X[-1]) and (X == X[0]).all():
        raise ValueError(f"fit: all {len(X)} samples of X are the same (each is X[0], which ranges "
                         f"{X[0].min():.4g}..{X[0].max():.4g}): the inputs carry no information, "
                         f"so nothing can be learned from them; check how X was made")
    return low, high

def _usual_rate(optimizer):
    """A learning rate that trains most small networks with this optimizer; None for others."""
    if isinstance(optimizer, Adam):
        return 1e-3
    if isinstance(optimizer, SGD):
        return 0.01
    return None

class _Watch:
    """fit()'s checks, so that a run that fails says what it saw and the likely cause. An alarm must
    be right: a run stops only on evidence that it is broken or cannot recover, never for being
    "not better yet" (small sigmoid networks sit at guessing's loss for 2,200 steps, then learn).
    Refused before the first step: NaN or infinite inputs or targets, inputs all the same, an
    optimizer that holds none of the model's parameters.
    Stopped before a step: a loss that is NaN, infinite or 1000 times its scale (the larger of its
    first value and the loss of guessing). Warned at the first: a loss over 3 ln C, C outputs.
    Every 100 steps, stopped when at two checks in a row the mean loss of the last 100 steps is at
    guessing's (90% of it; without a guessing loss, of the first loss) and either every unit of a
    layer output 0 for the whole batch (dead: no gradient flows through it again) or no weight moved
    by 0.01% in 100 steps while a gradient pulls (the healthy runs measured: 0.47% and more).
    Warned once, with the loss at guessing's: half of a layer's units killed (alive at the first
    step) after a spike of the loss; or 10,000 steps and 50 passes over the data at guessing's.
    Its cost, counted by callgrind: 0.5-0.7% of the instructions of a W1 step at batch 16 (a few
    comparisons a step; the graph walked and the weights copied once in 100 steps)."""

    def __init__(self, model, optimizer, X, y, loss_fn, batch_size):
        self.inputs = _check_data(X, y)
        _check_optimizer(model, optimizer, "fit")
        self.model = model
        self.optimizer = optimizer
        models = set(map(id, model.parameters()))
        self.params = [p for p in optimizer.params if id(p) in models]
        self.guessing = _guessing_loss(loss_fn, y)
        self.cross_entropy = loss_fn is cross_entropy
        self.epoch_steps = math.ceil(len(X) / batch_size)
        self.first = None
        self.huge_start = None  # the likely cause of outputs that started huge
        self.peak = (-math.inf, 0, 0)  # the largest loss so far, its epoch and its step
        self.value = None
        self.over = 0  # steps in a row with the loss over 1000 times its scale
        self.steps = 0
        self.long = max(10000, 50 * self.epoch_steps)  # steps at guessing's: see the docstring
        self.recent = collections.deque(maxlen=200)  # the losses of the last 200 steps
        self.weights = None  # copies of the parameters, made at the last check
        self.dead_at_start = {}  # layer -> how many of its units output 0 at the first step
        self.suspect = None  # what the last check found, confirmed if the next finds it again
        self.stuck_since = 0  # the step since which the loss has stayed at guessing's
        self.warned = False

    def before_step(self, output, loss, epoch, step):
        """Stop if the loss diverged; at the first step, warn if it starts huge."""
        self.value = loss
        if self.first is None:
            self._start(output, loss)
        scale = max(self.first, self.guessing or 0)  # so that a nearly perfect start is no scale
        over = math.isfinite(loss) and scale > 0 and loss > 1000 * scale
        self.over = self.over + 1 if over else 0
        # Without a loss of guessing (a loss of your own), the scale is the first loss alone, which
        # a well-trained model can make tiny: one hard batch is no explosion, three in a row are.
        if math.isfinite(loss) and (not over or (self.guessing is None and self.over < 3)):
            if loss > self.peak[0]:
                self.peak = (loss, epoch, step)
            return
        seen = f"the loss is {loss:.4g}"
        if math.isfinite(loss):
            seen += f", over 1000 times {scale:.4g}, the larger of its start and of guessing"
        lr = self.optimizer.lr
        message = f"training diverged at epoch {epoch}, step {step}: {seen}.\n  "
        if self.huge_start:
            raise DivergenceError(message + self.huge_start)
        raise DivergenceError(message + f"The learning rate lr={lr:g} is the likely cause.",
                              lr=self._smaller_rate())

    def _start(self, output, loss):
        """The first step: the first loss, and a warning if it is far above ln C."""
        self.first = loss
        classes = output.shape[1] if output.ndim == 2 else 0  # C is the width of the output
        if not self.cross_entropy or classes < 2 or loss <= 3 * math.log(classes):
            return
        low, high = self.inputs
        if max(-low, high) > 10:
            self.huge_start = (f"The likely cause: the inputs range {low:.4g}..{high:.4g}. Scale "
                               f"them to about 0..1 (images of 0..255: divide by 255).")
        else:
            self.huge_start = (f"The inputs range {low:.4g}..{high:.4g}, which is fine: the likely "
                               f"cause is the initial weights (a custom initialization?), or a "
                               f"model trained on other targets.")
        warnings.warn(f"the first loss, {loss:.4g}, is {loss / math.log(classes):.0f} times ln C = "
                      f"{math.log(classes):.4g}, that of an untrained network with C = {classes} "
                      f"outputs: the outputs start huge. {self.huge_start}", RuntimeWarning,
                      stacklevel=4)

    def _smaller_rate(self):
        lr = self.optimizer.lr
        usual = _usual_rate(self.optimizer)
        return usual if usual and usual < lr / 10 else lr / 10

    def after_step(self, loss, epoch, step):
        """Every 100 steps, judge the last 100 (see the class's docstring). loss is this step's:
        its graph holds the units."""
        self.steps += 1
        self.recent.append(self.value)
        if self.steps == 1:
            self.dead_at_start = {layer: dead for layer, dead, _ in _dead_units(loss, self.model)}
            self.weights = [p.data.copy() for p in self.params]
        if self.steps % 100 == 0:
            self._check(loss, epoch, step)

    def _check(self, loss, epoch, step):
        losses = np.array(self.recent)
        now = losses[-100:].mean()  # a mean, as guessing's is: skewed losses have a lower median
        falling = False  # the median of the last 100 steps below that of the 100 before (np.median
        if len(losses) == 200:  # would import numpy.ma, 15 ms, at its first call)
            falling = np.sort(losses[100:])[50] < 0.99 * np.sort(losses[:100])[50]
        guessing = self.guessing
        at_guessing = now >= 0.9 * (self.first if guessing is None else guessing)
        if not at_guessing or falling:
            self.stuck_since = self.steps if not at_guessing else self.stuck_since
            self.suspect = None
            self.weights = [p.data.copy() for p in self.params]
            return
        moved = max(np.linalg.norm(p.data - w) / (np.linalg.norm(w) or 1)
                    for p, w in zip(self.params, self.weights))
        self.weights = [p.data.copy() for p in self.params]
        units = _dead_units(loss, self.model)
        all_dead = [(layer, n) for layer, dead, n in units if dead == n]
        found = "dead" if all_dead else "still" if moved < 1e-4 and self._pulled() else None
        if found and found == self.suspect:
            self._stop(found, all_dead, moved, now, epoch, step)
        self.suspect = found
        if self.warned or guessing is None:
            return
        killed = [(layer, dead - self.dead_at_start.get(layer, 0), n) for layer, dead, n in units]
        killed = [(layer, k, n) for layer, k, n in killed if k >= n / 2]
        if self.peak[0] < 2 * max(self.first, guessing):  # no spike: no step that killed them
            killed = []
        stuck = self.steps - self.stuck_since
        passes = stuck / self.epoch_steps
        seen = (f"the mean loss of the last 100 steps was {now:.4g}, no better than "
                f"{guessing:.4g}, the loss of guessing from the targets alone")
        if killed:
            self.warned = True
            where = " and ".join(f"{k} of the {n} units after {layer}" for layer, k, n in killed)
            warnings.warn(f"at epoch {epoch}, step {step}, {seen}; {where} output 0 for every "
                          f"sample of the last batch, though they fired at the first step: they "
                          f"were killed, most likely by a step too large{self._rise()}. Try "
                          f"lr={self._smaller_rate():g}.", RuntimeWarning, stacklevel=4)
        elif stuck >= self.long:
            self.warned = True
            warnings.warn(f"at epoch {epoch}, step {step}, {seen}, for {stuck} steps "
                          f"({passes:.0f} passes over the data), while the weights move "
                          f"({moved:.2%} in the last 100 steps): nothing is learned. Check that X "
                          f"and y belong together (shuffled together?)",
                          RuntimeWarning, stacklevel=4)

    def _pulled(self):
        """Whether a gradient is 1% of its parameter's size or more: weights that are still, yet so
        pulled, are held back by the learning rate, not at a minimum (where gradients vanish)."""
        return any(np.linalg.norm(p.grad) >= 0.01 * (np.linalg.norm(p.data) or 1)
                   for p in self.params if p.grad is not None)

    def _rise(self):
        """Where the loss rose above its start, if it did."""
        peak, epoch, step = self.peak
        if peak <= self.first:
            return ""
        return f" (the loss rose to {peak:.4g} at epoch {epoch}, step {step})"

    def _stop(self, found, all_dead, moved, now, epoch, step):
        lr = self.optimizer.lr
        message = (f"training stopped at epoch {epoch}, step {step}: the network cannot learn.\n  "
                   f"Seen: the mean loss of the last 100 steps was {now:.4g}, ")
        message += (f"no better than {self.guessing:.4g}, the loss of guessing from the targets "
                     f"alone" + " (ln C for C equal classes)" * self.cross_entropy
                     if self.guessing is not None else
                     f"no better than its first, {self.first:.4g}")
        if found == "still":
            raise NotLearningError(
                f"{message}, and in the last 100 steps no parameter moved by more than "
                f"{moved * 100:.2g}% of its size (in the healthy runs measured, 0.4% and more).\n  "
                f"The likely cause: the learning rate lr={lr:g} is too small.",
                lr=self._larger_rate())
        where = " and ".join(f"all {n} units after {layer}" for layer, n in all_dead)
        message += (f", and at this check and the one 100 steps before, {where} output 0 for every "
                    f"sample of the batch, so no gradient reaches the layers before them: they are "
                    f"dead, and stay dead.\n  ")
        born_dead = [layer for layer, n in all_dead if self.dead_at_start.get(layer) == n]
        if born_dead:
            low, high = self.inputs
            raise NotLearningError(
                f"{message}The likely cause: they were dead from the first step, so the inputs "
                f"(ranging {low:.4g}..{high:.4g}) or the initial weights leave every unit of "
                f"{born_dead[0]} below 0: fix those, not the step size.")
        raise NotLearningError(f"{message}The likely cause: the learning rate lr={lr:g} is too "
                               f"large: they fired at the first step and were killed, most likely "
                               f"by a step too large{self._rise()}.", lr=self._smaller_rate())

    def _larger_rate(self):
        lr = self.optimizer.lr
        usual = _usual_rate(self.optimizer)
        return usual if usual and usual > lr * 10 else lr * 10

def _dead_units(loss, model):
    """(layer, dead units, units) for each ReLU in the graph of loss right after a layer of the
    model, where a unit (a feature or a channel: axis 1) is dead if it output 0 for every sample."""
    names = {parameter: name for name, parameter in model.named_parameters()}
    found = []
    for node in reversed(loss._graph_order()):  # from the input side: the first layer first
        if node.op != "relu" or node.ndim < 2:
            continue
        fires = (node.data > 0).any(axis=tuple(axis for axis in range(node.ndim) if axis != 1))
        layer_output = node._parents[0]
        weight = layer_output._parents[1] if layer_output.op in ("linear", "conv2d") else None
        if weight not in names:  # not a layer of the model's: a ReLU in a loss, say a hinge
            continue
        layer = names[weight].rsplit(".weight", 1)[0]
        found.append((layer, int((~fires).sum()), fires.size))
    return found

class _Unwatched:
    """fit(check=False): no checks."""

    def before_step(self, output, loss, epoch, step):
        pass

    def after_step(self, loss, epoch, step):
        pass

def _check_exponent(exponent):
    if np.ndim(exponent) != 0 or isinstance(exponent, Tensor) or not isinstance(
            np.asarray(exponent).item(), numbers.Real):
        raise TypeError(f"pow: the exponent must be a number, not {exponent!r:.40} (a "
                        f"{type(exponent).__name__}); for a tensor b, a ** b is "
                        f"(b * a.log()).exp()")

def _check_rate_range(start, end, steps):
    if not all(isinstance(rate, numbers.Real) for rate in (start, end)) or not 0 < start < end:
        raise ValueError(f"lr_find: the rates rise from start to end, both above 0: "
                         f"start={start!r}, end={end!r}")
    _whole_number("lr_find", "steps", steps, 2)
