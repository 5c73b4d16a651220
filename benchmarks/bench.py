"""Training speed of minigrad beside a hand-written numpy network and PyTorch (issues 5 and 12).

    python benchmarks/bench.py --quick            # about a minute: a few dozen steps per epoch
    python benchmarks/bench.py                    # full epochs: 60,000 images, 3 epochs
    python benchmarks/bench.py --workloads W1,S   # a subset of the workloads
    python benchmarks/bench.py --profile W3       # where minigrad's time goes: per layer, then cProfile
    python benchmarks/bench.py --tuned-malloc     # for comparison only: glibc malloc told to keep freed memory

Workloads, identical in every framework: the same initial weights (drawn here with numpy, as PyTorch
draws its defaults), the same batches in the same order, float32 throughout.
    W1  MLP 784-128-10, ReLU, batch 64, SGD lr 0.1 momentum 0.9, cross-entropy
    W2  MLP 784-512-256-10, ReLU, batch 128, same optimizer
    W3  Conv2d(1,16,5) ReLU MaxPool2d(2) Conv2d(16,32,5) ReLU MaxPool2d(2) Flatten Linear(512,10),
        batch 64, SGD lr 0.05 momentum 0.9
    S   one W1 training step at batch 1, 16, 64 and 256: the per-step cost of the framework itself

Frameworks:
    numpy     the reference (numpy_reference.py, beside this file): forward and backward written out
              by hand, no graph; layer by layer the same math as the others, each layer done as well
              as numpy allows. Checked at startup against minigrad's (and PyTorch's) gradients and SGD
              steps at the same weights.
    minigrad  the library in the folder above this one.
    torch     PyTorch on the CPU, when `import torch` works; never a dependency. Its thread count is
              set to the BLAS thread count numpy uses, so both get the same cores.

Protocol: the frameworks take turns on the same blocks of steps (round-robin, starting with a
different framework each block), so a slow spell of this shared machine hits all of them. A ratio is
the median over blocks of (time of one framework / time of the other on that block), with the
interquartile range of those per-block ratios beside it. The first epoch and the later ones are
reported apart: once units stop learning, momentum buffers decay geometrically into denormal floats,
which are slow on many x86 CPUs, so later epochs can cost more than the first. (Not measurably on the
AMD EPYC this was written on, although a fifth of W1's first-layer velocities are denormal by then.)

On a machine that other people are using, multi-threaded BLAS calls can stall for a scheduler
period (seen here: a 0.7 ms matrix product taking 100 ms, for seconds on end, while another process
kept both cores busy). The interleaving spreads such spells over all frameworks, but the CPU time
other processes used during the run, printed before the table, tells whether to trust it (well under
0.1 of a core: yes); `OPENBLAS_NUM_THREADS=1` (PyTorch
then gets one thread too) gives steadier numbers on a busy machine, at the price of not measuring
the multi-threaded case.

Page faults: the table counts the minor page faults of each framework per training step (getrusage's
ru_minflt around each block). Each is a fresh page of memory that the kernel hands over and zeroes on
first touch, about 2 microseconds apiece on this machine. glibc's malloc gives large freed blocks back
to the kernel (blocks above its mmap threshold, and the top of the heap once more than twice that
threshold is free; the threshold rises to the largest block freed so far, at most 32 MB), so a step that
frees many large arrays at its end may pay for all of them again in the next step: thousands of faults,
milliseconds per step. A training loop that keeps its buffers (the numpy reference) pays almost none.
The times are measured with the allocator's default settings, as a learner's run has them;
--tuned-malloc shows the same run with the settings that keep freed memory in the process
(MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967295 MALLOC_TOP_PAD_=268435456, set with
mallopt), clearly labelled, to tell the cost of the faults apart from the cost of the arithmetic.

This file is not collected by pytest and does nothing when imported.
"""
import argparse
import contextlib
import ctypes
import datetime
import gzip
import hashlib
import json
import os
import platform
import struct
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:  # numpy_reference.py sits beside this file, however bench.py is started
    sys.path.insert(0, HERE)
from numpy_reference import NumpyNet, softmax_cross_entropy

REPO = os.path.dirname(HERE)
FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
SEED = 0

# ---- workloads ----

W1_LAYERS = (("linear", 784, 128), ("relu",), ("linear", 128, 10))
W2_LAYERS = (("linear", 784, 512), ("relu",), ("linear", 512, 256), ("relu",), ("linear", 256, 10))
W3_LAYERS = (("conv", 1, 16, 5), ("relu",), ("pool", 2), ("conv", 16, 32, 5), ("relu",), ("pool", 2),
             ("flatten",), ("linear", 512, 10))


class Workload:
    """A network, batch size and optimizer; `block` steps per turn, and the steps per epoch in --quick."""

    def __init__(self, name, layers, batch, lr, block, quick_steps, quick_block=None, momentum=0.9):
        self.name, self.layers, self.batch, self.lr, self.momentum = name, layers, batch, lr, momentum
        self.block, self.quick_steps, self.quick_block = block, quick_steps, quick_block or block
        self.convolutional = layers[0][0] == "conv"


WORKLOADS = {
    "W1": Workload("W1", W1_LAYERS, batch=64, lr=0.1, block=50, quick_steps=300, quick_block=50),
    "W2": Workload("W2", W2_LAYERS, batch=128, lr=0.1, block=20, quick_steps=60, quick_block=10),
    "W3": Workload("W3", W3_LAYERS, batch=64, lr=0.05, block=20, quick_steps=40, quick_block=8),
}
# S: (batch size, steps per block); about 20-50 ms per block, long enough for the clock, short enough to interleave
S_BATCHES = ((1, 400), (16, 200), (64, 50), (256, 15))

# The issues' targets: (minigrad / numpy, minigrad / torch), compared with the median per-block ratios;
# issue 12 tightened W1's and W3's against numpy (with the default allocator).
TARGETS = {"W1": (1.10, 1.0), "W2": (1.10, 1.2), "W3": (1.15, 2.0), "S b=16": (1.3, 1.0)}


def initial_weights(layers, seed=SEED):
    """PyTorch's default initialization drawn with numpy: weight and bias uniform in +-1/sqrt(fan_in).
    Keys are the state_dict names of a Sequential: layers.<index>.weight and layers.<index>.bias."""
    rng = np.random.default_rng(seed)
    weights = {}
    for index, (kind, *sizes) in enumerate(layers):
        if kind == "linear":
            fan_in, shape = sizes[0], (sizes[1], sizes[0])
        elif kind == "conv":
            fan_in, shape = sizes[0] * sizes[2] ** 2, (sizes[1], sizes[0], sizes[2], sizes[2])
        else:
            continue
        bound = 1 / np.sqrt(fan_in)
        weights[f"layers.{index}.weight"] = rng.uniform(-bound, bound, shape).astype(np.float32)
        weights[f"layers.{index}.bias"] = rng.uniform(-bound, bound, shape[0]).astype(np.float32)
    return weights


# ---- data ----

def _read_idx(path):
    """An IDX file (the MNIST format), gzipped or not, as a uint8 array."""
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        raw = f.read()
    if raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


PARTS = ("train-images", "train-labels", "t10k-images", "t10k-labels")


def _idx_set(folder):
    """The four MNIST files in folder under any of their usual names, or None."""
    found = {}
    for part in PARTS:
        kind = "idx3" if part.endswith("images") else "idx1"
        for name in (f"{part}-{kind}-ubyte", f"{part}.{kind}-ubyte"):
            for candidate in (name + ".gz", name):
                if os.path.isfile(os.path.join(folder, candidate)):
                    found[part] = os.path.join(folder, candidate)
                    break
            if part in found:
                break
    return found if len(found) == 4 else None


def _as_float_images(images):
    x = images.reshape(len(images), -1).astype(np.float32)
    x /= 255  # a Python number: the array stays float32
    return x


def _from_idx(files, description):
    x_train, y_train, x_test, y_test = (_read_idx(files[part]) for part in PARTS)
    return (_as_float_images(x_train), y_train.astype(np.int64), _as_float_images(x_test), y_test.astype(np.int64),
            description)


def load_data():
    """(x_train (60000, 784), y_train, x_test (10000, 784), y_test, description): float32 pixels in
    [0, 1] and int64 labels. From the demo's cache under data/ when present (IDX files, or a .npz
    with x_train, y_train, x_test, y_test), else Fashion-MNIST from /usr/share/datasets, else random
    arrays of the same shapes."""
    cache = os.path.join(REPO, "data")
    for folder, _, files in sorted(os.walk(cache)):  # nothing when there is no data/
        found = _idx_set(folder)
        if found:
            return _from_idx(found, f"IDX files in {os.path.relpath(folder, REPO)}/")
        for name in sorted(f for f in files if f.endswith(".npz")):
            with np.load(os.path.join(folder, name)) as z:
                if {"x_train", "y_train", "x_test", "y_test"} <= set(z.files):
                    return (_as_float_images(z["x_train"]), z["y_train"].astype(np.int64),
                            _as_float_images(z["x_test"]), z["y_test"].astype(np.int64),
                            os.path.relpath(os.path.join(folder, name), REPO))
    found = _idx_set(FASHION_MNIST)
    if found:
        return _from_idx(found, f"Fashion-MNIST from {FASHION_MNIST}")
    rng = np.random.default_rng(SEED)
    return (rng.random((60000, 784), np.float32), rng.integers(0, 10, 60000), rng.random((10000, 784), np.float32),
            rng.integers(0, 10, 10000), "random arrays of MNIST's shapes (no data set found; accuracy means nothing)")


def images_for(workload, x):
    """The MLPs take rows of 784 pixels, the CNN (N, 1, 28, 28) images: a view, not a copy."""
    return x.reshape(-1, 1, 28, 28) if workload.convolutional else x


def epoch_order(epoch, n):
    """The shuffled order of the training set in this epoch: the same for every framework."""
    return np.random.default_rng([SEED, epoch]).permutation(n)


# ---- minigrad and PyTorch, driven the way their users would ----

def import_minigrad():
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    import minigrad
    return minigrad


class MinigradNet:
    name = "minigrad"

    def __init__(self, workload, weights):
        mg = self.mg = import_minigrad()
        layers = []
        for kind, *sizes in workload.layers:
            layers.append({"linear": lambda: mg.Linear(*sizes), "conv": lambda: mg.Conv2d(*sizes),
                           "relu": mg.ReLU, "pool": lambda: mg.MaxPool2d(*sizes), "flatten": mg.Flatten}[kind]())
        self.layers = layers
        self.model = mg.Sequential(*layers)
        self.model.load_state_dict({name: w.copy() for name, w in weights.items()})
        self.optimizer = mg.SGD(self.model.parameters(), lr=workload.lr, momentum=workload.momentum)

    def prepare(self, x, y):
        return x, y

    def step(self, x, y):
        mg = self.mg
        loss = mg.cross_entropy(self.model(mg.Tensor(x, copy=False)), y)  # as torch.from_numpy
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()

    def predict(self, x):
        with self.mg.no_grad():
            return self.model(self.mg.Tensor(x, copy=False)).data

    def gradients(self, x, y):
        mg = self.mg
        loss = mg.cross_entropy(self.model(mg.Tensor(x, copy=False)), y)  # as torch.from_numpy
        self.optimizer.zero_grad()
        loss.backward()
        grads = {}
        for index, layer in enumerate(self.layers):
            for part in ("weight", "bias"):
                if hasattr(layer, part):
                    grad = getattr(layer, part).grad
                    grads[f"layers.{index}.{part}"] = np.array(getattr(grad, "data", grad))
        return loss.item(), grads

    def parameters(self):
        return {name: np.array(w) for name, w in self.model.state_dict().items()}


class TorchNet:
    name = "torch"

    def __init__(self, workload, weights, torch):
        self.torch, nn = torch, torch.nn
        layers = []
        for kind, *sizes in workload.layers:
            layers.append({"linear": lambda: nn.Linear(*sizes), "conv": lambda: nn.Conv2d(*sizes),
                           "relu": nn.ReLU, "pool": lambda: nn.MaxPool2d(*sizes), "flatten": nn.Flatten}[kind]())
        self.model = nn.Sequential(*layers)
        # PyTorch's Sequential names its layers 0, 1, ...; minigrad's layers.0, layers.1, ...
        self.model.load_state_dict({name[len("layers."):]: torch.from_numpy(w.copy()) for name, w in weights.items()})
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=workload.lr, momentum=workload.momentum)

    def prepare(self, x, y):
        return self.torch.from_numpy(x), self.torch.from_numpy(y)  # no copies

    def step(self, x, y):
        loss = self.torch.nn.functional.cross_entropy(self.model(x), y)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()

    def predict(self, x):
        with self.torch.no_grad():
            return self.model(self.torch.from_numpy(x)).numpy()

    def gradients(self, x, y):
        loss = self.torch.nn.functional.cross_entropy(self.model(self.torch.from_numpy(x)), self.torch.from_numpy(y))
        self.optimizer.zero_grad()
        loss.backward()
        return loss.item(), {"layers." + name: p.grad.numpy().copy() for name, p in self.model.named_parameters()}

    def parameters(self):
        return {"layers." + name: w.numpy().copy() for name, w in self.model.state_dict().items()}


def build(framework, workload, weights, torch=None):
    if framework == "numpy":
        return NumpyNet(workload, weights)
    if framework == "minigrad":
        return MinigradNet(workload, weights)
    return TorchNet(workload, weights, torch)


# ---- the reference check ----

def _relative_error(a, b):
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))


def check_reference(workload, frameworks, x_train, y_train, torch, tolerance=1e-4):
    """The reference must compute what the others compute: the same loss and gradients at the
    initial weights on one batch of real data, then the same weights after three SGD steps (which
    checks the momentum update too). Raises AssertionError naming the parameter and the error."""
    weights = initial_weights(workload.layers)
    x, b = images_for(workload, x_train), workload.batch
    batches = [(x[i * b:(i + 1) * b], y_train[i * b:(i + 1) * b]) for i in range(4)]
    lines = []
    for other in frameworks:
        if other == "numpy":
            continue
        ref, net = NumpyNet(workload, weights), build(other, workload, weights, torch)
        ref_loss, ref_grads = ref.gradients(*batches[0])
        loss, grads = net.gradients(*batches[0])
        errors = {"loss": abs(loss - ref_loss) / abs(ref_loss)}
        errors.update({f"grad {name}": _relative_error(ref_grads[name], grads[name]) for name in ref_grads})
        for xb, yb in batches[1:]:
            ref.step(xb, yb)
            net.step(*net.prepare(xb, yb))
        ref_params, params = ref.parameters(), net.parameters()
        errors.update({f"after 3 steps {name}": _relative_error(ref_params[name], params[name]) for name in ref_params})
        worst = max(errors, key=errors.get)
        if not errors[worst] < tolerance:  # not `assert`: python -O must not skip it
            raise AssertionError(
                f"{workload.name}: the numpy reference and {other} disagree: {worst} differs by {errors[worst]:.2e} "
                f"of its largest element (tolerance {tolerance:g}); all errors: "
                + ", ".join(f"{k} {v:.1e}" for k, v in errors.items()))
        lines.append(f"{other}: worst {worst}, {errors[worst]:.1e}")
    print(f"  check passed for {workload.name}: the numpy reference matches loss, gradients and 3 SGD steps "
          f"(largest difference / largest element, < {tolerance:g}): " + "; ".join(lines))


# ---- the interleaved timing ----

class Timings:
    """Per framework, the time of each block, tagged with the epoch it belongs to."""

    def __init__(self, names):
        self.blocks = {name: [] for name in names}  # name -> [(epoch, seconds, steps, page faults or None)]

    def add(self, name, epoch, seconds, steps, faults=None):
        self.blocks[name].append((epoch, seconds, steps, faults))

    def seconds(self, name, epochs):
        return sum(b[1] for b in self.blocks[name] if b[0] in epochs)

    def steps(self, name, epochs):
        return sum(b[2] for b in self.blocks[name] if b[0] in epochs)

    def faults_per_step(self, name, epochs):
        """Minor page faults per step in these epochs, or None if they were not counted."""
        blocks = [b for b in self.blocks[name] if b[0] in epochs]
        if not blocks or any(b[3] is None for b in blocks):
            return None
        return sum(b[3] for b in blocks) / sum(b[2] for b in blocks)

    def ratios(self, name, reference, epochs):
        """(median, 25th, 75th percentile) of the per-block time ratios name / reference."""
        r = [a[1] / b[1] for a, b in zip(self.blocks[name], self.blocks[reference]) if a[0] in epochs]
        return tuple(np.percentile(r, (50, 25, 75))) if r else None


class Interleaver:
    """Runs blocks of steps with every framework in turn, the order rotating from block to block.

    Idle BLAS threads spin for a while before they sleep (OpenBLAS's for about 0.1 s): when the turn
    passes from numpy's thread pool to PyTorch's or back, a pause lets the spinners sleep, so that one
    framework's threads do not take the cores from the next one's. Measured here: 50 W1 steps of
    PyTorch took 37 ms right after numpy's, 17 ms after a pause of 0.1 s or more; numpy's 19 ms right
    after PyTorch's, 12 ms after a pause of 0.05 s or more."""

    def __init__(self, nets, pause):
        self.nets, self.pause = nets, pause
        self.timings = Timings(list(nets))
        self.blocks_run, self.previous_pool = 0, None

    def run_block(self, epoch, batches):
        names = list(self.nets)
        first = self.blocks_run % len(names)
        for name in names[first:] + names[:first]:
            net = self.nets[name]
            prepared = [net.prepare(x, y) for x, y in batches]
            pool = "torch" if name == "torch" else "openblas"
            if self.previous_pool not in (None, pool):
                time.sleep(self.pause)
            self.previous_pool = pool
            faults, t0 = minor_faults(), time.perf_counter()
            for x, y in prepared:
                net.step(x, y)
            seconds = time.perf_counter() - t0
            self.timings.add(name, epoch, seconds, len(prepared), None if faults is None else minor_faults() - faults)
        self.blocks_run += 1


def warm_up(frameworks, workload, x, y, torch):
    """A few steps of throwaway networks: first calls (allocator pools, library initialisation,
    PyTorch's kernel selection) are not charged to the first block."""
    weights = initial_weights(workload.layers)
    for name in frameworks:
        net = build(name, workload, weights, torch)
        for i in range(3):
            net.step(*net.prepare(x[i * workload.batch:(i + 1) * workload.batch], y[i * workload.batch:(i + 1) * workload.batch]))


def accuracy(net, x, y, chunk):
    """Test accuracy, a chunk at a time, so that no pass holds every activation of 10,000 images."""
    correct = 0
    for start in range(0, len(x), chunk):
        logits = net.predict(x[start:start + chunk])
        correct += int((np.asarray(logits).argmax(axis=1) == y[start:start + chunk]).sum())
    return correct / len(x)


def time_workload(workload, frameworks, data, epochs, quick, pause, torch):
    x_train, y_train, x_test, y_test = data
    x, xt = images_for(workload, x_train), images_for(workload, x_test)
    weights = initial_weights(workload.layers)
    warm_up(frameworks, workload, x, y_train, torch)
    run = Interleaver({name: build(name, workload, weights, torch) for name in frameworks}, pause)
    full_steps = -(-len(x) // workload.batch)  # the last batch of an epoch may be smaller
    steps = min(full_steps, workload.quick_steps) if quick else full_steps
    block = workload.quick_block if quick else workload.block
    for epoch in range(epochs):
        order = epoch_order(epoch, len(x))
        for first in range(0, steps, block):
            rows = [order[i * workload.batch:(i + 1) * workload.batch] for i in range(first, min(first + block, steps))]
            run.run_block(epoch, [(x[r], y_train[r]) for r in rows])
        print(f"  {workload.name} epoch {epoch + 1}: " + ", ".join(
            f"{name} {run.timings.seconds(name, {epoch}):.2f} s" for name in frameworks) + f" ({steps} steps)", flush=True)
    chunk = 500 if workload.convolutional else 2000
    accuracies = {name: accuracy(net, xt, y_test, chunk) for name, net in run.nets.items()}
    return run.timings, accuracies, full_steps


def time_overhead(frameworks, data, quick, pause, torch):
    """S: W1 training steps at several batch sizes; per-step times and per-block ratios."""
    x_train, y_train = data[0], data[1]
    results = {}
    for batch, block in S_BATCHES:
        workload = Workload(f"S b={batch}", W1_LAYERS, batch=batch, lr=0.1, block=block, quick_steps=None)
        warm_up(frameworks, workload, x_train, y_train, torch)
        run = Interleaver({name: build(name, workload, initial_weights(W1_LAYERS), torch) for name in frameworks}, pause)
        order = epoch_order(0, len(x_train))
        for counter in range(4 if quick else 12):
            start = counter * block * batch
            rows = [order.take(range(start + i * batch, start + (i + 1) * batch), mode="wrap") for i in range(block)]
            run.run_block(0, [(x_train[r], y_train[r]) for r in rows])
        results[batch] = run.timings
    return results


# ---- peak memory of a W1 run, one framework per child process ----

def _rss_kb(field):
    """VmRSS (resident now) or VmHWM (its high-water mark) in kB, from Linux's /proc; else None."""
    with contextlib.suppress(OSError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def memory_child(framework, quick):
    """Runs in a child process: W1 training (one epoch, or --quick's steps) then the test pass.
    Prints the peak resident memory above the resident memory at the start of training, in MB."""
    torch = import_torch() if framework == "torch" else None
    x_train, y_train, x_test, y_test, _ = load_data()
    workload = WORKLOADS["W1"]
    net = build(framework, workload, initial_weights(workload.layers), torch)
    try:  # reset the kernel's high-water mark (VmHWM) to the present size (Linux 4.0+)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        method = "VmHWM"
    except OSError:
        method = "ru_maxrss"  # the peak since the process started, loading the data included
    base = _rss_kb("VmRSS") or 0
    steps = workload.quick_steps if quick else -(-len(x_train) // workload.batch)
    order = epoch_order(0, len(x_train))
    for i in range(steps):
        rows = order[i * workload.batch:(i + 1) * workload.batch]
        net.step(*net.prepare(x_train[rows], y_train[rows]))
    accuracy(net, x_test, y_test, 2000)
    if method == "VmHWM":
        peak = _rss_kb("VmHWM")
    else:
        import resource  # Unix only
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if method == "ru_maxrss" and sys.platform == "darwin":
        peak //= 1024  # macOS counts bytes, Linux kB
    print(json.dumps({"extra_mb": (peak - base) / 1024, "base_mb": base / 1024, "peak_mb": peak / 1024,
                      "method": method, "steps": steps}))


def measure_memory(frameworks, quick):
    results = {}
    for name in frameworks:
        command = [sys.executable, os.path.abspath(__file__), "--memory-child", name] + (["--quick"] if quick else [])
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            print(f"  memory of {name}: the child failed:\n{done.stderr[-2000:]}")
            continue
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
        r = results[name]
        print(f"  W1 peak memory of {name}: +{r['extra_mb']:.1f} MB over {r['base_mb']:.0f} MB at the start of "
              f"training (peak {r['peak_mb']:.0f} MB, {r['method']}, {r['steps']} steps and the test pass)")
    return results


# ---- the machine ----

def minor_faults():
    """The minor page faults of this process so far (all its threads), or None where getrusage is missing."""
    try:
        import resource  # Unix only
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


MALLOC_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_ARENA_MAX",
                    "GLIBC_TUNABLES", "LD_PRELOAD")
TUNED_MALLOC = (("M_MMAP_THRESHOLD", -3, 32 << 20), ("M_TRIM_THRESHOLD", -1, 2 ** 31 - 1), ("M_TOP_PAD", -2, 256 << 20))


def tune_malloc():
    """--tuned-malloc: glibc's malloc keeps freed memory in the process, for comparison with the default. The
    mallopt calls below do what MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967295
    MALLOC_TOP_PAD_=268435456 do (the trim threshold is capped at 2 GB, mallopt's largest value).
    Returns a description, or raises OSError where there is no glibc."""
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        raise OSError("--tuned-malloc needs glibc's malloc (Linux)")
    for name, parameter, value in TUNED_MALLOC:
        if libc.mallopt(parameter, value) != 1:
            raise OSError(f"mallopt({name}, {value}) failed")
    return ", ".join(f"{name}={value}" for name, _, value in TUNED_MALLOC)


def allocator_facts(tuned):
    """Which malloc settings the run has: the default ones unless --tuned-malloc or variables changed them."""
    version = "glibc malloc"
    with contextlib.suppress(OSError, AttributeError):
        function = ctypes.CDLL(None).gnu_get_libc_version
        function.restype = ctypes.c_char_p
        version = f"glibc {function().decode()} malloc"
    changed = [f"{v}={os.environ[v]}" for v in MALLOC_VARIABLES if v in os.environ]
    if tuned:
        return f"{version} TUNED by --tuned-malloc ({tuned}): for comparison only, not a learner's setting"
    if changed:
        return f"{version} with {' '.join(changed)} from the environment: NOT the default allocator"
    return f"{version}, default settings (no MALLOC_* variables)"

def import_torch():
    try:
        import torch
    except (ImportError, OSError):  # not installed, or installed without its libraries
        return None
    torch.set_num_threads(blas_threads()[0])
    return torch


def blas_threads():
    """(threads numpy's BLAS uses, how that was found)."""
    try:
        import threadpoolctl
        pools = [p for p in threadpoolctl.threadpool_info() if p.get("user_api") == "blas"]
        if pools:
            return pools[0]["num_threads"], f"threadpoolctl ({pools[0].get('internal_api')})"
    except ImportError:
        pass
    # Ask the OpenBLAS that numpy loaded (the scipy-openblas wheels prefix its symbols)
    try:
        with open("/proc/self/maps") as f:
            libraries = {line.split()[-1] for line in f if "openblas" in line.split()[-1].lower()}
        for path in sorted(libraries):
            library = ctypes.CDLL(path)
            for symbol in ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
                           "openblas_get_num_threads64_", "openblas_get_num_threads"):
                if hasattr(library, symbol):
                    return int(getattr(library, symbol)()), f"{symbol}() of {os.path.basename(path)}"
    except OSError:
        pass
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if os.environ.get(variable, "").isdigit():
            return int(os.environ[variable]), f"${variable}"
    return os.cpu_count(), "os.cpu_count() (no BLAS query worked)"


class OtherLoad:
    """How busy other processes kept the CPUs while this one ran: all CPU time the kernel counts as
    busy (/proc/stat), less this process's own and its children's, over the cores' wall time."""

    def __init__(self):
        self.start = self._readings()

    @staticmethod
    def _readings():
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        busy = (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
        t = os.times()
        return busy, t.user + t.system + t.children_user + t.children_system, time.perf_counter()

    def cores(self):
        """The average number of cores other processes kept busy since the start, or None if unknown."""
        end = self._readings()
        if not (self.start and end):
            return None
        (busy0, own0, t0), (busy1, own1, t1) = self.start, end
        return max(0.0, (busy1 - busy0) - (own1 - own0)) / (t1 - t0)


def minigrad_version():
    """Which minigrad.py was measured: its commit, whether it has changes on top, a hash of the file."""
    path = os.path.join(REPO, "minigrad.py")
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:12]
    try:
        commit = subprocess.run(["git", "-C", REPO, "log", "-1", "--format=%h", "--", "minigrad.py"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
        changed = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", "minigrad.py"],
                                 capture_output=True, text=True, timeout=10).stdout.strip()
        git = f"last commit {commit}" + (" plus uncommitted changes" if changed else "") if commit else "not in git"
    except (OSError, subprocess.SubprocessError):
        git = "git unavailable"
    return f"{path} ({git}; sha256 {digest})"


def load_average():
    return "%.2f %.2f %.2f" % os.getloadavg() if hasattr(os, "getloadavg") else "unknown"


def machine_facts(torch, tuned=None):
    facts = {"date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")}
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    facts["cpu"] = f"{cpu}, {os.cpu_count()} cores ({usable} usable by this process)"
    facts["os"] = f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    blas = "unknown"
    with contextlib.suppress(Exception):
        config = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{config['name']} {config['version']}"
        if config.get("openblas configuration"):
            blas += f" ({' '.join(config['openblas configuration'].split())})"
    threads, how = blas_threads()
    facts["numpy"] = f"numpy {np.__version__}, BLAS {blas}, {threads} threads (from {how})"
    if torch is None:
        facts["torch"] = "not importable: the PyTorch columns are left out"
    else:
        config = torch.__config__.show()
        mkl = next((line.strip(" -") for line in config.splitlines() if "Math Kernel Library" in line), None)
        blas_info = next((part.split("=")[1] for part in config.replace(",", " ").split() if part.startswith("BLAS_INFO=")), "?")
        facts["torch"] = (f"torch {torch.__version__}, BLAS {blas_info}" + (f" ({mkl})" if mkl else "")
                          + f", torch.set_num_threads({torch.get_num_threads()}), interop threads "
                          f"{torch.get_num_interop_threads()}")
    facts["minigrad"] = minigrad_version()
    facts["thread variables"] = ", ".join(f"{v}={os.environ.get(v, 'unset')}" for v in
                                          ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"))
    facts["allocator"] = allocator_facts(tuned)
    facts["load average"] = f"{load_average()} (1, 5, 15 min) at the start"
    return facts


# ---- the table ----

def _ratio_cell(r):
    return "1" if r is None else f"{r[0]:.2f} ({r[1]:.2f}-{r[2]:.2f})"


def report(rows, frameworks, quick, memory, epochs, tuned=None):
    """rows: (label, unit, timings, phases {column: epochs}, scale to the unit, accuracies)."""
    has_torch = "torch" in frameworks
    later = f"epochs 2-{epochs}" if epochs > 2 else "epoch 2" if epochs == 2 else "later epochs"
    header = ["workload", "framework", "time, epoch 1", f"time, {later}", "/ numpy, epoch 1", f"/ numpy, {later}"]
    if has_torch:
        header += ["/ torch, epoch 1", f"/ torch, {later}"]
    header += [f"page faults/step, epoch 1; {later}", "test acc", "W1 peak memory"]
    lines = [header]
    target_lines = []
    for label, unit, timings, phases, scale, accuracies in rows:
        for name in frameworks:
            cells = [f"{label} [{unit}]", name]
            for epochs in phases:
                if epochs is None:
                    cells.append("-")
                else:
                    steps = timings.steps(name, epochs)
                    cells.append(f"{timings.seconds(name, epochs) / steps * scale:.3g}" if steps else "-")
            for reference in ("numpy", "torch") if has_torch else ("numpy",):
                for epochs in phases:
                    if epochs is None or name == reference:
                        cells.append("-" if epochs is None else "1")
                    else:
                        cells.append(_ratio_cell(timings.ratios(name, reference, epochs)))
            faults = [timings.faults_per_step(name, epochs) for epochs in phases if epochs is not None]
            cells.append("; ".join("?" if f is None else f"{f:.0f}" for f in faults))
            cells.append(f"{accuracies[name]:.4f}" if accuracies else "-")
            m = memory.get(name) if label == "W1" else None
            cells.append(f"+{m['extra_mb']:.0f} MB ({m['peak_mb']:.0f})" if m else "-")
            lines.append(cells)
        if label in TARGETS and "minigrad" in frameworks:
            for reference, target in zip(("numpy", "torch"), TARGETS[label]):
                if reference not in frameworks:
                    continue
                columns = ("all blocks",) if unit == "ms/step" else ("epoch 1", later)
                measured = [(column, timings.ratios("minigrad", reference, epochs))
                            for column, epochs in zip(columns, phases) if epochs is not None]
                verdict = "met" if all(r[0] <= target for _, r in measured) else "MISSED"
                verdict += " (with a TUNED allocator: the targets are for the default one)" if tuned else ""
                target_lines.append(f"{label} minigrad / {reference}: " + ", ".join(
                    f"{column} {r[0]:.2f}" for column, r in measured) + f"  (target <= {target}): {verdict}")
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for k, line in enumerate(lines):
        out.append("| " + " | ".join(cell.ljust(w) for cell, w in zip(line, widths)) + " |")
        if k == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print("\n".join(out))
    print(f"\nTimes: s/epoch are the summed block times of an epoch ({later}: their mean); ms/step the mean over"
          " all blocks." + (" --quick: each epoch is cut to its first steps and the time scaled up to a full epoch"
                            " (too few steps for denormals to appear)." if quick else ""))
    print("Ratios: median over blocks of the per-block time ratio, (25th-75th percentile) of those ratios.")
    print("Page faults: minor page faults per training step (getrusage around each block): fresh memory pages, about"
          " 2 us each here; see the docstring for why a step that frees large arrays pays them again.")
    print("Allocator: " + ("TUNED by --tuned-malloc, for comparison only: a learner's run has the default settings."
                           if tuned else "glibc's default settings, as in a learner's run (unless the environment"
                           " changed them: see 'allocator' above)."))
    if "numpy" in memory:
        print("W1 peak memory: the peak resident memory of a child process running W1 training and the test pass, above"
              " its resident memory at the start of training (in brackets: the whole process's peak, in MB).")
    if target_lines:
        print("\nTargets of issues 5 and 12:\n  " + "\n  ".join(target_lines))


# ---- main ----

def _best_ms(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) * 1e3


def layer_breakdown(workload, x, y, repeats):
    """Per layer, the best-of-repeats time of minigrad's op forward and of its backward closure (with
    the real upstream gradient), beside the reference's layer; the rest of a step is the graph's own
    cost. Uses minigrad's internals (Tensor._backward), so it may need updating when they change."""
    mg = import_minigrad()
    weights = initial_weights(workload.layers)
    net, ref = MinigradNet(workload, weights), NumpyNet(workload, weights)
    for _ in range(3):
        net.step(x, y)
        ref.step(x, y)
    step_mg, step_ref = _best_ms(lambda: net.step(x, y), repeats), _best_ms(lambda: ref.step(x, y), repeats)

    outputs = [mg.Tensor(x)]  # outputs[i] is the input of layer i
    for layer in net.layers:
        outputs.append(layer(outputs[-1]))
    loss = mg.cross_entropy(outputs[-1], y)
    upstream, g = [None] * len(net.layers), loss._backward(np.ones_like(loss.data))[0]
    for i in reversed(range(len(net.layers))):
        upstream[i] = g
        if g is None or outputs[i + 1]._backward is None:
            break
        g = outputs[i + 1]._backward(g)[0]  # the gradient of the layer's input
    mg_times = []
    for i, layer in enumerate(net.layers):
        out = layer(outputs[i])
        backward = (lambda: out._backward(upstream[i])) if out._backward and upstream[i] is not None else None
        mg_times.append((_best_ms(lambda: layer(outputs[i]), repeats), _best_ms(backward, repeats) if backward else 0.0))
    mg_loss = (_best_ms(lambda: mg.cross_entropy(outputs[-1], y), repeats),
               _best_ms(lambda: loss._backward(np.ones_like(loss.data)), repeats))
    mg_update = _best_ms(net.optimizer.step, repeats)

    # The reference's ReLU works in place, which is idempotent, so repeating a layer on the same arrays is fair.
    activations = [x.transpose(0, 2, 3, 1) if workload.convolutional else x]
    for layer in ref.layers:
        activations.append(layer.forward(activations[-1]))
    logits = activations[-1].copy()
    upstream, g = [None] * len(ref.layers), softmax_cross_entropy(logits.copy(), y)[1]
    for i in reversed(range(len(ref.layers))):
        upstream[i] = g.copy()
        g = ref.layers[i].backward(g)
        if g is None:
            break
    ref_times = []
    for i, layer in enumerate(ref.layers):
        layer.forward(activations[i])  # restores what this layer saved for its backward
        ref_times.append((_best_ms(lambda: layer.forward(activations[i]), repeats),
                          _best_ms(lambda: layer.backward(upstream[i].copy()), repeats)))
    ref_loss = (_best_ms(lambda: softmax_cross_entropy(logits.copy(), y), repeats), 0.0)
    ref_update = _best_ms(ref.update, repeats)

    print(f"{workload.name}, batch {workload.batch}, best of {repeats}: a training step takes {step_mg:.3f} ms in "
          f"minigrad, {step_ref:.3f} ms in the numpy reference ({step_mg / step_ref:.2f}x)\n")
    print(f"{'ms':24s} {'minigrad fwd':>12s} {'bwd':>8s} {'numpy fwd':>10s} {'bwd':>8s}")
    for i, layer in enumerate(net.layers):
        print(f"{i} {type(layer).__name__:22s} {mg_times[i][0]:12.3f} {mg_times[i][1]:8.3f} "
              f"{ref_times[i][0]:10.3f} {ref_times[i][1]:8.3f}")
    print(f"{'cross_entropy':24s} {mg_loss[0]:12.3f} {mg_loss[1]:8.3f} {ref_loss[0]:10.3f} {'(fused)':>8s}")
    print(f"{'optimizer step':24s} {mg_update:12.3f} {'':8s} {ref_update:10.3f}")
    accounted_mg = sum(map(sum, mg_times)) + sum(mg_loss) + mg_update
    accounted_ref = sum(map(sum, ref_times)) + sum(ref_loss) + ref_update
    print(f"{'the rest of the step':24s} {step_mg - accounted_mg:12.3f} {'':8s} {step_ref - accounted_ref:10.3f}"
          f"   (graph bookkeeping, Tensor wrappers, leaf gradients, zero_grad, and the caches of a real step)")


def profile(workload_name, steps):
    """Where minigrad's time goes: a per-layer breakdown beside the reference, then cProfile of
    training steps (it sees Python functions, not the numpy calls inside an op's closure)."""
    import cProfile
    import pstats
    x_train, y_train, *_ = load_data()
    workload = WORKLOADS[workload_name] if workload_name in WORKLOADS else Workload(
        workload_name, W1_LAYERS, batch=int(workload_name.split("=")[-1]), lr=0.1, block=0, quick_steps=0)
    x = images_for(workload, x_train)
    order = epoch_order(0, len(x))
    batches = [(x[rows], y_train[rows]) for rows in
               (order[i * workload.batch:(i + 1) * workload.batch] for i in range(steps))]
    layer_breakdown(workload, *batches[0], repeats=max(10, min(200, steps)))
    net = MinigradNet(workload, initial_weights(workload.layers))
    net.step(*batches[0])
    profiler = cProfile.Profile()
    profiler.enable()
    for xb, yb in batches:
        net.step(xb, yb)
    profiler.disable()
    print(f"\ncProfile of {steps} minigrad steps:")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few dozen steps per epoch: about a minute")
    parser.add_argument("--workloads", default="W1,W2,W3,S", help="comma-separated, from W1,W2,W3,S")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--pause", type=float, default=0.15,
                        help="seconds of idling when the turn passes between thread pools (default 0.15)")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out even if it is importable")
    parser.add_argument("--no-memory", action="store_true", help="skip the W1 peak-memory child processes")
    parser.add_argument("--tuned-malloc", action="store_true",
                        help="for comparison only: tell glibc's malloc to keep freed memory (as the MALLOC_* settings "
                             "in the docstring do), so that page faults drop out of the times")
    parser.add_argument("--profile", metavar="WORKLOAD",
                        help="where minigrad's time goes on W1, W2, W3 or b=N (an S batch size), then stop")
    parser.add_argument("--profile-steps", type=int, default=100)
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.memory_child:
        return memory_child(args.memory_child, args.quick)
    if args.profile:
        return profile(args.profile, args.profile_steps)

    tuned = None
    if args.tuned_malloc:
        try:
            tuned = tune_malloc()
        except OSError as error:
            parser.error(str(error))
    started, other_load = time.perf_counter(), OtherLoad()
    torch = None if args.no_torch else import_torch()
    import_minigrad()
    frameworks = ["numpy", "minigrad"] + (["torch"] if torch else [])
    chosen = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = set(chosen) - set(WORKLOADS) - {"S"}
    if unknown:
        parser.error(f"unknown workloads {sorted(unknown)}; choose from W1, W2, W3, S")

    print(f"command: {' '.join([os.path.basename(sys.executable)] + sys.argv)}")
    for key, value in machine_facts(torch, tuned).items():
        print(f"{key}: {value}")
    sample = OtherLoad()
    time.sleep(1)
    busy = sample.cores()
    if busy is not None:
        print(f"other processes right now: {busy:.2f} cores busy (a 1 s sample)"
              + ("; expect noisy or meaningless times (see the note printed before the table)" if busy > 0.25 else ""))
    x_train, y_train, x_test, y_test, source = load_data()
    data = (x_train, y_train, x_test, y_test)
    print(f"data: {source}: {len(x_train)} training and {len(x_test)} test images")

    print("\nchecking the numpy reference against " + " and ".join(frameworks[1:]) + " ...")
    for name in sorted({"W1" if c == "S" else c for c in chosen}, key=list(WORKLOADS).index):
        check_reference(WORKLOADS[name], frameworks, x_train, y_train, torch)

    rows = []
    for name in chosen:
        if name == "S":
            print("\nS: W1 steps at batch " + ", ".join(str(b) for b, _ in S_BATCHES) + " ...", flush=True)
            for batch, timings in time_overhead(frameworks, data, args.quick, args.pause, torch).items():
                rows.append((f"S b={batch}", "ms/step", timings, [{0}, None], 1e3, None))
            continue
        workload = WORKLOADS[name]
        print(f"\n{name}: {args.epochs} epoch{'s' if args.epochs > 1 else ''} ...", flush=True)
        timings, accuracies, full_steps = time_workload(
            workload, frameworks, data, args.epochs, args.quick, args.pause, torch)
        later = set(range(1, args.epochs)) or None
        rows.append((name, "s/epoch", timings, [{0}, later], full_steps, accuracies))

    memory = {}
    if "W1" in chosen and not args.no_memory:
        print("\nW1 peak memory, one child process per framework ...", flush=True)
        memory = measure_memory(frameworks, args.quick)

    others = other_load.cores()
    print(f"\nthe whole run took {time.perf_counter() - started:.0f} s; other processes used "
          + ("an unknown share" if others is None else f"{others:.2f} cores on average")
          + f" of the {os.cpu_count()} meanwhile; load average at the end: {load_average()}\n")
    if others is not None and others > 0.25:
        # Seen here with about one core taken by others: every multi-threaded BLAS call waited ~47 ms for a
        # core, whatever its size, so every framework took the same 47 ms a step and every ratio read 1.00.
        print(f"WARNING: other processes kept {others:.2f} cores busy during this run. Multi-threaded BLAS stalls "
              "under such load, and then the times and even the ratios below measure the stalls, not the "
              "frameworks. Rerun on a quiet machine (or with OPENBLAS_NUM_THREADS=1).\n")
    report(rows, frameworks, args.quick, memory, args.epochs, tuned)


if __name__ == "__main__":
    main()
