"""bench.py's numpy reference: a network with no graph, each layer's forward and backward written
out as well as numpy allows, SGD with momentum in place in buffers allocated once. Activations are
channels-last (N, H, W, C) inside, so that a convolution's matrix product gives its output in that
layout; torch_layout turns weights back into PyTorch's layouts, to compare them with minigrad's.
"""
import functools

import numpy as np

class RefLinear:
    def __init__(self, weight, bias, columns_from=None):
        # columns_from: the (C, H, W) of the channels-last image flattened into this layer's input
        self.columns_from = columns_from
        if columns_from:  # PyTorch flattens over (c, h, w), we over (h, w, c): permute the columns
            c, h, w = columns_from
            weight = weight.reshape(-1, c, h, w).transpose(0, 2, 3, 1).reshape(len(weight), -1)
        self.weight, self.bias = np.ascontiguousarray(weight), bias.copy()

    def torch_layout(self, array):
        if not self.columns_from:
            return array
        c, h, w = self.columns_from
        return array.reshape(-1, h, w, c).transpose(0, 3, 1, 2).reshape(len(array), -1)

    def forward(self, x):
        self.x = x
        z = x @ self.weight.T  # BLAS reads the transposed weight in place: no copy
        z += self.bias
        return z

    def backward(self, g):
        np.matmul(g.T, self.x, out=self.grad_weight)
        np.sum(g, axis=0, out=self.grad_bias)
        return g @ self.weight if self.needs_input_grad else None

@functools.lru_cache(maxsize=8)
def ones(n):
    return np.ones(n, np.float32)

class RefConv:
    """Stride 1, no padding, as the workloads need: im2col by a strided view, col2im by offsets."""

    def __init__(self, weight, bias):
        out_channels, channels, self.k, _ = weight.shape
        # one row per filter, its columns in the (ki, kj, c) order of a channels-last patch
        self.weight = np.ascontiguousarray(weight.transpose(0, 2, 3, 1).reshape(out_channels, -1))
        self.bias, self.channels = bias.copy(), channels

    def torch_layout(self, array):
        return array.reshape(len(array), self.k, self.k, self.channels).transpose(0, 3, 1, 2)

    def forward(self, x):
        n, h, w, c = x.shape
        k = self.k
        oh, ow = h - k + 1, w - k + 1
        sn, sh, sw, sc = x.strides
        as_strided = np.lib.stride_tricks.as_strided
        if c == 1:
            # One channel: a patch row is only k numbers long, and numpy copies such short runs
            # slowly. Copy along image rows instead, into the transposed matrix; use it transposed.
            columns = as_strided(x, (k, k, n, oh, ow), (sh, sw, sn, sh, sw), writeable=False)
            self.patches = columns.reshape(k * k, n * oh * ow).T
        else:
            # patches[n, y, x, i, j, c] = x[n, y + i, x + j, c]: a view; the reshape is the one copy
            patches = as_strided(x, (n, oh, ow, k, k, c), (sn, sh, sw, sh, sw, sc), writeable=False)
            self.patches = patches.reshape(n * oh * ow, k * k * c)
        out = self.patches @ self.weight.T
        out += self.bias
        return out.reshape(n, oh, ow, -1)

    def backward(self, g):
        n, oh, ow, out_channels = g.shape
        g_rows = g.reshape(-1, out_channels)
        np.matmul(g_rows.T, self.patches, out=self.grad_weight)
        # the column sums as a product with ones: BLAS does it several times faster than np.sum
        # does for a long matrix of few columns
        np.matmul(ones(len(g_rows)), g_rows, out=self.grad_bias)
        if not self.needs_input_grad:
            return None
        k, c = self.k, self.channels
        filters = self.weight.reshape(out_channels, k, k, c)
        grad_x = np.zeros((n, oh + k - 1, ow + k - 1, c), np.float32)
        for i in range(k):  # col2im: each kernel offset adds its share onto the pixels it covered
            for j in range(k):
                # that share as its own product: contiguous to add, where slices of the whole
                # g @ weight matrix would be strided (about 1.7 times slower)
                grad_x[:, i:i + oh, j:j + ow] += (g_rows @ filters[:, i, j]).reshape(n, oh, ow, c)
        return grad_x

class RefReLU:
    def forward(self, x):
        self.out = np.maximum(x, 0, out=x)  # in place: x is the fresh output of the layer before
        return self.out

    def backward(self, g):
        g *= self.out > 0  # in place: g is the fresh output of the backward after
        return g

class RefMaxPool:
    """Non-overlapping k x k windows, so the windows are a reshape: (N, H/k, k, W/k, k, C)."""

    def __init__(self, k):
        self.k = k

    def forward(self, x):
        n, h, w, c = x.shape
        k = self.k
        self.windows = x.reshape(n, h // k, k, w // k, k, c)
        # k*k elementwise maxima of strided views: several times faster than .max(axis=(2, 4))
        out = self.windows[:, :, 0, :, 0].copy()
        for i in range(k):
            for j in range(k):
                if i or j:
                    np.maximum(out, self.windows[:, :, i, :, j], out=out)
        self.out = out
        return out

    def backward(self, g):
        grad = np.empty(self.windows.shape, np.float32)  # every element is written below
        taken = np.zeros(g.shape, bool)
        for i in range(self.k):
            for j in range(self.k):
                # on a tie only the first maximum in row-major order gets g, as in PyTorch: ties
                # are common (a flat background) and the gradients must match the others'
                hit = self.windows[:, :, i, :, j] == self.out
                hit &= ~taken
                taken |= hit
                np.multiply(g, hit, out=grad[:, :, i, :, j])
        n, oh, k, ow, _, c = grad.shape
        return grad.reshape(n, oh * k, ow * k, c)

class RefFlatten:
    def forward(self, x):
        self.shape = x.shape
        return x.reshape(len(x), -1)

    def backward(self, g):
        return g.reshape(self.shape)

def softmax_cross_entropy(logits, targets):
    """Mean cross-entropy, and its gradient (softmax - onehot) / N computed in place in logits."""
    n = len(targets)
    rows = np.arange(n)
    logits -= logits.max(axis=1, keepdims=True)  # no overflow in exp; softmax is unchanged
    target_logits = logits[rows, targets]
    np.exp(logits, out=logits)
    totals = logits.sum(axis=1, keepdims=True)
    loss = float(np.mean(np.log(totals[:, 0]) - target_logits))
    logits /= totals
    logits[rows, targets] -= 1
    logits /= n
    return loss, logits

class NumpyNet:
    """layers: bench.py's layer specs, ("linear", 784, 128), ("relu",) ...; weights: {state_dict
    name: array} in PyTorch's layouts; SGD with momentum 0.9 at the learning rate lr."""

    def __init__(self, layers, weights, lr, momentum=0.9):
        self.lr, self.momentum = lr, momentum
        self.convolutional = layers[0][0] == "conv"
        self.layers, self.param_layers = [], {}
        shape = (1, 28, 28) if self.convolutional else (784,)  # (C, H, W) or (features,)
        for index, (kind, *sizes) in enumerate(layers):
            w, b = weights.get(f"layers.{index}.weight"), weights.get(f"layers.{index}.bias")
            if kind == "linear":
                layer = RefLinear(w, b, columns_from=shape if len(shape) == 3 else None)
                shape = (sizes[1],)
            elif kind == "conv":
                layer = RefConv(w, b)
                shape = (sizes[1], shape[1] - sizes[2] + 1, shape[2] - sizes[2] + 1)
            elif kind == "pool":
                layer = RefMaxPool(sizes[0])
                shape = (shape[0], shape[1] // sizes[0], shape[2] // sizes[0])
            else:  # Flatten's (C, H, W) went to the Linear after it
                layer = {"relu": RefReLU, "flatten": RefFlatten}[kind]()
            self.layers.append(layer)
            if kind in ("linear", "conv"):
                self.param_layers[index] = layer
                layer.needs_input_grad = index > 0  # nobody needs the gradient of the images
                layer.grad_weight, layer.grad_bias = np.empty_like(layer.weight), np.empty_like(b)
                layer.velocity_weight = np.zeros_like(layer.weight)
                layer.velocity_bias = np.zeros_like(layer.bias)

    def forward(self, x):
        if self.convolutional:
            x = x.transpose(0, 2, 3, 1)  # NCHW -> NHWC, a view; the first im2col copies it anyway
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def loss_and_gradients(self, x, y):
        loss, g = softmax_cross_entropy(self.forward(x), y)
        for layer in reversed(self.layers):
            g = layer.backward(g)
        return loss

    def step(self, x, y):
        self.loss_and_gradients(x, y)
        self.update()

    def update(self):
        m, lr = self.momentum, self.lr
        for layer in self.param_layers.values():
            for p, v, g in ((layer.weight, layer.velocity_weight, layer.grad_weight),
                            (layer.bias, layer.velocity_bias, layer.grad_bias)):
                v *= m  # PyTorch's momentum: v = m v + g; p -= lr v
                v += g
                np.multiply(v, lr, out=g)  # g is spent: reuse it for lr v rather than allocate
                p -= g

    def state(self, gradients=False):
        """{state_dict name: the weights, or their gradients} in PyTorch's layouts."""
        state = {}
        for index, layer in self.param_layers.items():
            weight, bias = layer.weight, layer.bias
            if gradients:
                weight, bias = layer.grad_weight, layer.grad_bias
            state[f"layers.{index}.weight"] = layer.torch_layout(weight).copy()
            state[f"layers.{index}.bias"] = bias.copy()
        return state
