"""Speed of a minigrad training step against a hand-written numpy network (issues 5, 12 and 26).

    python3 benchmarks/bench.py                  # S, W1 and W3: about a minute on 2 idle cores
    python3 benchmarks/bench.py W3 --blocks 100  # one workload, longer
    python3 benchmarks/bench.py --before DIR     # and the minigrad.py in DIR, in the same run
    python3 benchmarks/bench.py --blocks 1       # a smoke run of seconds: its ratios mean nothing

Workloads, on Debian's Fashion-MNIST (else random images), float32, the same initial weights and
batches in every network:
    W1  MLP 784-128-10, ReLU, batch 64, SGD lr 0.1 momentum 0.9, cross-entropy
    W3  Conv2d(1,16,5) ReLU MaxPool2d(2) Conv2d(16,32,5) ReLU MaxPool2d(2) Flatten Linear(512,10),
        batch 64, SGD lr 0.05 momentum 0.9
    S   W1's step at batch 1, 16, 64 and 256: the cost of the framework itself
The reference (numpy_reference.py) has no graph; bench.py first checks that it computes minigrad's
loss, gradients and three SGD steps. The networks then take turns on blocks of the same steps, the
order rotating, so that a slow spell of the machine hits all. A ratio is minigrad's time over the
reference's on a block: its median over the blocks is printed, with the 25th-75th percentiles, and
the cores other processes kept busy meanwhile (above 0.1, the ratios measure the machine too;
OPENBLAS_NUM_THREADS=1 is steadier on a busy one). No absolute time is compared with anything.
"""
import argparse
import datetime
import importlib.util
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [HERE, REPO]  # numpy_reference.py beside this file, minigrad.py above it
import minigrad  # noqa: E402
import mnist_demo  # noqa: E402  (imported after numpy, it leaves the BLAS threads as they are)
from numpy_reference import NumpyNet  # noqa: E402

FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
W1 = (("linear", 784, 128), ("relu",), ("linear", 128, 10))
W3 = (("conv", 1, 16, 5), ("relu",), ("pool", 2), ("conv", 16, 32, 5), ("relu",), ("pool", 2),
      ("flatten",), ("linear", 512, 10))
# name: (layers, batch size, learning rate, steps a block, blocks by default). A block of W1 or S
# takes 20-50 ms: long enough for the clock, short enough to interleave. By default W1 runs three
# epochs of 60,000 images, W3 one.
WORKLOADS = {
    "S b=1": (W1, 1, 0.1, 400, 12),
    "S b=16": (W1, 16, 0.1, 200, 12),
    "S b=64": (W1, 64, 0.1, 50, 12),
    "S b=256": (W1, 256, 0.1, 15, 12),
    "W1": (W1, 64, 0.1, 50, 57),
    "W3": (W3, 64, 0.05, 20, 47),
}
TARGETS = {"S b=16": 1.3, "W1": 1.10, "W3": 1.15}  # minigrad / numpy, issues 12 and 26

def initial_weights(layers, seed=0):
    """PyTorch's default initialization drawn with numpy, uniform in +-1/sqrt(fan_in), under the
    state_dict names of a Sequential: layers.<index>.weight and layers.<index>.bias."""
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

def load_data():
    """Training images (N, 1, 28, 28) in [0, 1], their int64 labels, and where they came from."""
    try:
        images, labels, _, _ = mnist_demo.load_dataset("fashion", FASHION_MNIST, mirrors=[])
        return images, labels, f"Fashion-MNIST from {FASHION_MNIST}"
    except mnist_demo.DataError:  # not there, and no mirror to download it from
        rng = np.random.default_rng(0)
        images = rng.random((60000, 1, 28, 28), np.float32)
        return images, rng.integers(0, 10, 60000), "random images (no Fashion-MNIST found)"

def shaped_for(layers, images):
    """The MLP takes rows of 784 pixels, the CNN images: a view either way."""
    return images if layers[0][0] == "conv" else images.reshape(len(images), -1)

class MinigradNet:
    """minigrad driven as a learner drives it: Sequential, cross_entropy, backward(), SGD."""

    def __init__(self, layers, weights, lr, mg=minigrad):
        self.mg = mg
        make = {"linear": mg.Linear, "conv": mg.Conv2d, "relu": mg.ReLU, "pool": mg.MaxPool2d,
                "flatten": mg.Flatten}
        self.layers = [make[kind](*sizes) for kind, *sizes in layers]
        self.model = mg.Sequential(*self.layers)
        self.model.load_state_dict({name: w.copy() for name, w in weights.items()})
        self.optimizer = mg.SGD(self.model.parameters(), lr=lr, momentum=0.9)

    def loss_and_gradients(self, x, y):
        x = self.mg.Tensor(x, copy=False)  # no copy, as torch.from_numpy
        loss = self.mg.cross_entropy(self.model(x), y)
        self.optimizer.zero_grad()
        loss.backward()
        return loss.item()

    def step(self, x, y):
        self.loss_and_gradients(x, y)
        self.optimizer.step()

    def state(self, gradients=False):
        if gradients:
            return {name: np.array(p.grad) for name, p in self.model.named_parameters()}
        return {name: np.array(w) for name, w in self.model.state_dict().items()}

def import_minigrad(folder):
    """The minigrad.py in folder, as a module of its own beside the one above benchmarks/."""
    spec = importlib.util.spec_from_file_location("minigrad_before", f"{folder}/minigrad.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module

def check_reference(name, nets, x, y, tolerance=1e-4):
    """Each network must compute what the reference computes: the loss and gradients on one batch,
    then the weights after three SGD steps (with momentum). Largest error / largest element."""
    layers, batch, lr = WORKLOADS[name][:3]
    x = shaped_for(layers, x)
    for label, make in nets.items():
        ref, net = (make(layers, initial_weights(layers), lr) for make in (NumpyNet, make))
        errors = {"loss": relative_error(net.loss_and_gradients(x[:batch], y[:batch]),
                                         ref.loss_and_gradients(x[:batch], y[:batch]))}
        theirs, ours = ref.state(gradients=True), net.state(gradients=True)
        errors.update({f"{key}'s gradient": relative_error(ours[key], theirs[key]) for key in ours})
        for i in range(1, 4):
            ref.step(x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch])
            net.step(x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch])
        theirs, ours = ref.state(), net.state()
        errors.update({f"{key} after 3 steps": relative_error(ours[key], theirs[key])
                       for key in ours})
        worst = max(errors, key=errors.get)
        if not errors[worst] < tolerance:  # not `assert`: python -O must not skip it
            raise AssertionError(f"{name}: {label} and the numpy reference disagree: {worst}, "
                                 f"{errors[worst]:.1e}")
        print(f"  {name}: {label} agrees with the reference (worst: {worst}, {errors[worst]:.1e})")

def relative_error(a, b):
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))

def time_workload(name, nets, x, y, blocks=None):
    """{network: [(seconds, minor page faults) a step, per block]}, the networks taking turns. A
    page fault is a fresh page of memory, zeroed by the kernel on first touch (about 2 us here): a
    step that frees large arrays may fault them in again in the next step."""
    layers, batch, lr, steps, default_blocks = WORKLOADS[name]
    x = shaped_for(layers, x)
    running = {label: make(layers, initial_weights(layers), lr) for label, make in nets.items()}
    for net in running.values():  # first calls (allocator, caches) are not charged to a block
        for i in range(3):
            net.step(x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch])
    order = np.random.default_rng(0).permutation(len(x))
    results = {label: [] for label in running}
    for block in range(blocks or default_blocks):
        rows = order.take(range(block * steps * batch, (block + 1) * steps * batch), mode="wrap")
        batches = [(x[r], y[r]) for r in rows.reshape(steps, batch)]
        labels = list(running)[block % len(running):] + list(running)[:block % len(running)]
        for label in labels:
            faults, start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
            for xb, yb in batches:
                running[label].step(xb, yb)
            seconds = time.perf_counter() - start
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
            results[label].append((seconds / steps, faults / steps))
    return results

def others_busy():
    """(CPU seconds all processes but this one used since boot, now), or None without /proc."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(n) for n in f.readline().split()[1:9]]
    except OSError:
        return None
    own = os.times()
    busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle, iowait
    return busy - own.user - own.system, time.perf_counter()

def report(results):
    """A line per workload and network: ms a step, the ratio to the reference, page faults."""
    print(f"\n{'':8} {'network':16} {'ms/step':>8} {'/ numpy (25th-75th)':>20} {'faults/step':>12}")
    for name, per_network in results.items():
        reference = np.array(per_network["numpy"])
        for label, blocks in per_network.items():
            blocks = np.array(blocks)
            ratio, low, high = np.percentile(blocks[:, 0] / reference[:, 0], (50, 25, 75))
            line = (f"{name:8} {label:16} {np.median(blocks[:, 0]) * 1e3:8.3f} "
                    f"{ratio:8.2f} ({low:.2f}-{high:.2f}) {np.median(blocks[:, 1]):12.0f}")
            if label != "numpy" and name in TARGETS:
                verdict = "met" if ratio <= TARGETS[name] else "MISSED"
                line += f"   target <= {TARGETS[name]}: {verdict}"
            print(line)

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("workloads", nargs="*", default=["S", "W1", "W3"],
                        help="W1, W3, S (its four batch sizes) or one of these, e.g. 'S b=16'")
    parser.add_argument("--blocks", type=int, help="blocks of steps per workload (default: "
                        "3 epochs of W1, 1 of W3, 12 blocks of each S)")
    parser.add_argument("--before", metavar="DIR", help="also time the minigrad.py in DIR, e.g. "
                        "a git worktree of an older commit")
    args = parser.parse_args()
    names = [n for w in args.workloads for n in WORKLOADS if n == w or n.startswith(w + " ")]
    if not names:
        parser.error(f"no workload {args.workloads}: choose from W1, W3, S, {', '.join(WORKLOADS)}")
    commit = subprocess.run(["git", "-C", REPO, "log", "-1", "--format=%h"], capture_output=True,
                            text=True).stdout.strip()
    print(f"{datetime.datetime.now():%Y-%m-%d %H:%M}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, numpy {np.__version__}, OPENBLAS_NUM_THREADS="
          f"{os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}, minigrad of commit {commit or '?'}")
    x, y, source = load_data()
    print(f"data: {source}")
    nets = {"numpy": NumpyNet, "minigrad": MinigradNet}
    if args.before:
        before = import_minigrad(args.before)
        nets["minigrad before"] = lambda *a: MinigradNet(*a, mg=before)
        print(f"minigrad before: {before.__file__}")
    print("checking the numpy reference ...")
    for name in sorted({"W1" if WORKLOADS[n][0] is W1 else "W3" for n in names}):
        check_reference(name, {k: v for k, v in nets.items() if k != "numpy"}, x, y)
    start, results = others_busy(), {}
    for name in names:
        print(f"timing {name} ...", flush=True)
        results[name] = time_workload(name, nets, x, y, args.blocks)
    end = others_busy()
    report(results)
    if start and end:
        print(f"\nOther processes kept {(end[0] - start[0]) / (end[1] - start[1]):.2f} cores busy "
              "meanwhile: above 0.1, the ratios measure the machine as much as minigrad.")

if __name__ == "__main__":
    main()
