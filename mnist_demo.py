"""Train a neural network on MNIST's handwritten digits with minigrad: download, train, report.

    python mnist_demo.py                     # an MLP on MNIST (downloads 11 MB once, trains in a minute)
    python mnist_demo.py --model cnn         # a small convolutional network: slower, more accurate
    python mnist_demo.py --dataset fashion   # Fashion-MNIST: photos of clothes, a harder problem
    python mnist_demo.py --plot run.png      # also draw the training curves and the mistakes (needs matplotlib)
    python mnist_demo.py --graph             # first print the graph of one training step, then train
    python mnist_demo.py --find-lr           # first find a learning rate (lr_find), then train with it
    python mnist_demo.py --help              # every option

The four data files are kept in data/mnist (or data/fashion-mnist) next to this script. Point --data-dir
at another folder to keep them elsewhere or to use files you got some other way: files already there are
used without any network access (e.g. --dataset fashion --data-dir /usr/share/datasets/fashion-mnist on
Debian, from the dataset-fashion-mnist package), gzipped or not (train-images-idx3-ubyte, as gunzip leaves
it, will do). Every file, downloaded or found, must hold the published content (checked by the md5 of its
uncompressed bytes), however it was compressed.
"""
import argparse
import gzip
import hashlib
import http.client
import math
import os
import shutil
import struct
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

# How many threads numpy's BLAS runs: read once, when numpy is first imported. OpenBLAS takes the first of
# these that is set, MKL the last two, Apple's Accelerate the fifth; with none set, one thread per core.
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS")


def busy_cores(seconds=0.25):
    """How many cores other programs keep busy now: from /proc/stat over a short wait (Linux), else the
    load average of the last minute, else None (Windows)."""
    def busy_and_all():
        with open("/proc/stat") as file:
            ticks = [int(n) for n in file.readline().split()[1:9]]
        return sum(ticks) - ticks[3] - ticks[4], sum(ticks)  # all but idle and waiting for disks
    try:
        busy, everything = busy_and_all()
        time.sleep(seconds)  # this process sleeps meanwhile: whatever is busy is someone else
        busy_later, everything_later = busy_and_all()
        return (busy_later - busy) / max(1, everything_later - everything) * (os.cpu_count() or 1)
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def blas_threads(others, cores):
    """The BLAS threads to run beside programs that keep `others` of `cores` cores busy: one per free core,
    at least one; None, numpy's own choice of one per core, when others leave the cores free.

    A matrix product is split among the threads and waits for the last: a thread that shares its core
    with another program holds up all of them, and OpenBLAS's waiting threads spin, taking time from the
    one they wait for (2.5 to 12 times slower, measured: docs/performance.md).
    >>> blas_threads(0.1, 2), blas_threads(1.0, 2), blas_threads(2.6, 2), blas_threads(2.0, 8)
    (None, 1, 1, 6)"""
    if others is None or others < 0.5 or cores == 1:
        return None
    return max(1, cores - round(others))


def choose_blas_threads(environ):
    """Unless the learner chose a BLAS thread count, choose one from what else runs on the machine and set
    it in environ; return a line that says so, or None when numpy's default stays."""
    if any(environ.get(name, "").strip() for name in THREAD_VARIABLES):
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    others = busy_cores()
    threads = blas_threads(others, cores)
    if threads is None:
        return None
    for name in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
        environ[name] = str(threads)
    return (f"Other programs keep {others:.1f} of this machine's {cores} cores busy: numpy runs {threads} "
            f"BLAS thread{'s' * (threads > 1)} beside them, which is faster (set OPENBLAS_NUM_THREADS to choose)")


# Before numpy is imported, or the choice comes too late (the tests' conftest.py imports this module first)
BLAS_CHOICE = None if "numpy" in sys.modules else choose_blas_threads(os.environ)

import numpy as np

from minigrad import (Adam, Conv2d, DivergenceError, Dropout, Flatten, Linear, MaxPool2d, ReLU, Sequential,
                      Tensor, cross_entropy, fit, lr_find, manual_seed, no_grad)

FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
SHAPES = dict(zip(FILES, [(60000, 28, 28), (60000,), (10000, 28, 28), (10000,)]))
MIRRORS = {  # tried in this order; the historical host (last) often answers 403
    "mnist": ["https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/",
              "http://yann.lecun.com/exdb/mnist/"],
    "fashion": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
}
# The md5 of each published file's content once uncompressed (the IDX bytes). A download and a file found in
# --data-dir alike must match, however they were compressed (Debian's copies are recompressed .gz files).
# The two tables also tell the data sets apart. The tests put the md5s of the files they generate here.
MD5 = {
    "mnist": dict(zip(FILES, ["6bbc9ace898e44ae57da46a324031adb", "a25bea736e30d166cdddb491f175f624",
                              "2646ac647ad5339dbf082846283269ea", "27ae3e4e09519cfbb04c329615203637"])),
    "fashion": dict(zip(FILES, ["f4a8712d7a061bf5bd6d2ca38dc4d50a", "9018921c3c673c538a1fc5bad174d6f9",
                                "8181f5470baa50b63fa0f6fddb340f0a", "15d484375f8d13e6eb1aabb0c3f46965"])),
}
SWITCH = {"fashion": "add --dataset fashion", "mnist": "leave out --dataset fashion (MNIST is the default)"}
CLASSES = {
    "mnist": [str(digit) for digit in range(10)],
    "fashion": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                "Ankle boot"],
}
NAMES = {"mnist": "MNIST", "fashion": "Fashion-MNIST"}
FOLDERS = {"mnist": "mnist", "fashion": "fashion-mnist"}  # under data/ next to this script, by default
MAGIC = {"labels": 0x00000801, "images": 0x00000803}  # IDX: unsigned bytes (0x08), in 1 or 3 dimensions
TIMEOUT = 30  # seconds without an answer before a mirror counts as down
PLOT_FORMATS = ("png", "jpg", "jpeg", "pdf", "svg")  # what matplotlib's Agg canvas writes without other tools

# Measured on Fashion-MNIST with a few seeds: the test accuracy still moves by about 0.5% from one epoch to
# the next, so the MLP stops where it stays clear of its target (88%, standing in for MNIST's 98%), well
# inside two minutes on a laptop; the CNN (target 90.5%, for MNIST's 99%) where it clears its own.
DEFAULTS = {"mlp": {"epochs": 20, "batch_size": 128, "lr": 1e-3},
            "cnn": {"epochs": 8, "batch_size": 64, "lr": 1e-3}}


class DataError(Exception):
    """A data file is missing, cannot be downloaded, or is damaged; the message says which and what to do."""


class OtherDataset(DataError):
    """A data file is intact but belongs to the other data set; the message says which option to give."""


# ---- getting the data ----

def load_dataset(dataset, data_dir, mirrors):
    """(train images, train labels, test images, test labels): images float32 (N, 1, 28, 28) in [0, 1],
    labels int64 (N,). The files in data_dir are checked first, then those missing are downloaded there."""
    data_dir = Path(data_dir)
    paths = {name: local_copy(data_dir, name) for name in FILES}
    missing = [name for name, path in paths.items() if path is None]
    arrays = {name: load_file(path, name, dataset) for name, path in paths.items() if path}
    for n, name in enumerate(missing):
        download(name, data_dir, mirrors, dataset, missing[n:])
        arrays[name] = load_file(data_dir / name, name, dataset)
    arrays = {name: arrays[name] for name in FILES}
    for images, labels in [FILES[0:2], FILES[2:4]]:
        if len(arrays[images]) != len(arrays[labels]):
            raise DataError(f"{data_dir / labels}: {len(arrays[labels])} labels for {len(arrays[images])} images in "
                            f"{images}; the two files must agree")
        if arrays[labels].max(initial=0) > 9:
            raise DataError(f"{data_dir / labels}: holds label {arrays[labels].max()}; labels must be 0 to 9")

    def pixels(images):  # NCHW with one channel, what Conv2d expects; the MLP flattens it
        return (images.astype(np.float32) / 255)[:, None]
    train_images, train_labels, test_images, test_labels = arrays.values()
    return pixels(train_images), train_labels.astype(np.int64), pixels(test_images), test_labels.astype(np.int64)


def local_copy(data_dir, name):
    """The path of the file name in data_dir, or else of its gunzipped copy (name without .gz, as
    `gunzip *.gz` leaves it: the content is what is checked), or None if neither is there."""
    for path in [data_dir / name, data_dir / Path(name).stem]:
        if path.exists():
            return path
    return None


def missing_from(names, data_dir):
    """'a is missing from data_dir', or 'these 2 files are missing from data_dir: a, b'."""
    if len(names) == 1:
        return f"{names[0]} is missing from {data_dir}"
    return f"these {len(names)} files are missing from {data_dir}: {', '.join(names)}"


def load_file(path, name, dataset):
    """The array in the file at path, once its content is checked to be dataset's file name."""
    try:
        return checked(path.read_bytes(), dataset, name)
    except OtherDataset as error:
        raise DataError(f"{path}: {error}") from None
    except DataError as error:
        raise DataError(f"{path}: {error}.\n  What to do: delete it to download it again, or replace it with a "
                        f"good copy.") from None


def checked(raw, dataset, name):
    """The array in raw, the bytes of a file (gzipped or not), if its content is dataset's published file name.

    Otherwise a DataError that says what the bytes hold instead, without naming where they came from."""
    kind = "images" if len(SHAPES[name]) == 3 else "labels"
    data = uncompressed(raw)
    array = parse_idx(data, kind)
    found = hashlib.md5(data).hexdigest()
    if found == MD5[dataset][name]:
        return array
    for other, known in MD5.items():
        if other != dataset and found in known.values():
            raise OtherDataset(f"this is {NAMES[other]}'s file, not {NAMES[dataset]}'s. These are {NAMES[other]}'s "
                               f"files: {SWITCH[other]}")
    if array.shape != SHAPES[name]:
        raise DataError(f"holds {kind} of shape {array.shape}, expected {SHAPES[name]}")
    raise DataError(f"holds well-formed {kind} of the right shape, but not {NAMES[dataset]}'s: the md5 of its "
                    f"uncompressed content is {found}, expected {MD5[dataset][name]}, so the file is damaged (one "
                    f"changed byte is enough) or a different one")


def download(name, data_dir, mirrors, dataset, missing):
    """Save the first copy of name from the mirrors whose content is the published one as data_dir/name;
    missing, the files not there yet (name first), are named in the error if that fails.

    The bytes go to a temporary file next to it, renamed only once their content is checked, so that an
    interrupted or failed download never leaves a file under the final name; the folders made for it are
    removed again when it fails."""
    made = [folder for folder in [data_dir, *data_dir.parents] if not folder.exists()]  # deepest first
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        part = tempfile.NamedTemporaryFile(dir=data_dir, prefix=name + ".", suffix=".part", delete=False)
    except OSError as error:
        remove_empty(made)
        raise DataError(f"{missing_from(missing, data_dir)}, and cannot be downloaded there ({error}).\n"
                        f"  Choose a writable folder with --data-dir, or put the files there yourself.") from None
    failures = []
    network_failed = False
    saved = False
    try:
        with part:
            for url in [mirror.rstrip("/") + "/" + name for mirror in mirrors]:
                part.seek(0)
                part.truncate()
                try:
                    fetch(url, part)
                    part.seek(0)
                    checked(part.read(), dataset, name)
                    break
                except DataError as error:  # what the mirror sent is not the published file
                    failures.append(f"{url}: {error} (discarded)")
                    print(f"  failed: {error} (discarded)")
                except (OSError, http.client.HTTPException, ValueError) as error:
                    failures.append(f"{url}: {describe(error)}")
                    print(f"  failed: {describe(error)}")
                    network_failed = True
            else:
                tried = "".join(f"\n  {failure}" for failure in failures) or "\n  (no mirror given)"
                network = "check the network connection and run again;\n  or " if network_failed else ""
                failed = (" and could not be downloaded" if len(missing) == 1 else
                          f"; downloading the first, {name}, failed")
                raise DataError(
                    f"{missing_from(missing, data_dir)}{failed}:{tried}\n"
                    f"What to do: {network}get the missing files some other way and put them in {data_dir} "
                    f"(gzipped or not), or point --data-dir at the folder that has all four;\n"
                    f"  or name a mirror that has the original files with --mirror URL (repeatable).")
        os.chmod(part.name, 0o644)  # tempfile makes it private; a data set is for everyone on the machine
        os.replace(part.name, data_dir / name)
        saved = True
    finally:
        Path(part.name).unlink(missing_ok=True)  # gone already if the rename happened
        if not saved:
            remove_empty(made)


def remove_empty(folders):
    """Remove these folders, deepest first, while they are empty: those made for a download that failed."""
    for folder in folders:
        try:
            folder.rmdir()
        except FileNotFoundError:  # never made: mkdir failed below it
            continue
        except OSError:  # not empty: a file was downloaded into it after all
            break


def fetch(url, out):
    """Copy url into the open file out, showing bytes/total on one updating line."""
    done = 0
    print(f"downloading {url}", end="", flush=True)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            total = response.headers.get("Content-Length")
            of_total = f" / {int(total):,}" if total else ""
            for chunk in iter(lambda: response.read(1 << 16), b""):
                out.write(chunk)
                done += len(chunk)
                print(f"\rdownloading {url}  {done:,}{of_total} bytes", end="", flush=True)
    finally:
        print()  # end the progress line, whatever happened


def describe(error):
    """A network error in a few words, e.g. 'HTTP 404 Not Found' or '[Errno 111] Connection refused'."""
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return str(error) or type(error).__name__


# ---- reading the data ----

def uncompressed(raw):
    """The bytes of a file, gunzipped if they are gzipped."""
    if raw[:2] != b"\x1f\x8b":  # gzip's own magic number
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"damaged gzip data ({error})") from None


def parse_idx(data, kind):
    """The array of unsigned bytes in data, the content of an IDX file, after checking its header.

    IDX: a big-endian 32-bit magic number (0x801 for labels, 0x803 for images: 1 or 3 dimensions), one
    32-bit size per dimension, then the bytes themselves, row by row."""
    magic = MAGIC[kind]
    header = 4 + 4 * (magic & 0xFF)
    if len(data) < header:
        raise DataError(f"{len(data)} bytes, too short for the header of an IDX {kind} file")
    (found,) = struct.unpack(">I", data[:4])
    if found != magic:
        raise DataError(f"magic number 0x{found:08X}, expected 0x{magic:08X} for IDX {kind}: this is not an MNIST "
                        f"{kind} file")
    dims = struct.unpack(f">{magic & 0xFF}I", data[4:header])
    if len(data) - header != math.prod(dims):
        raise DataError(f"the header announces {' x '.join(map(str, dims))} = {math.prod(dims):,} bytes of {kind}, "
                        f"but {len(data) - header:,} follow it: the file is truncated or damaged")
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


# ---- the models ----

def make_model(name):
    """A network for 28x28 one-channel images and 10 classes; its input is (N, 1, 28, 28)."""
    if name == "mlp":
        return Sequential(Flatten(), Linear(784, 512), ReLU(), Dropout(0.2),
                          Linear(512, 256), ReLU(), Dropout(0.2), Linear(256, 10))
    return Sequential(Conv2d(1, 32, 3, padding=1), ReLU(), MaxPool2d(2),   # -> 32 x 14 x 14
                      Conv2d(32, 64, 3, padding=1), ReLU(), MaxPool2d(2),  # -> 64 x 7 x 7
                      Flatten(), Linear(64 * 7 * 7, 128), ReLU(), Dropout(0.25), Linear(128, 10))


def show_graph(model, images, labels):
    """Print the graph that one training step records: the model's output for these images, the loss,
    and the gradient that backward() sends to each parameter (a model of its own, thrown away after)."""
    loss = cross_entropy(model(Tensor(images)), labels)
    loss.backward()
    print(f"The graph of one training step on {len(images)} images, in the order backward() walks it: from "
          f"the loss back to the weights.\nEach line is a tensor: #n its number, the op that made it and the "
          f"numbers of the op's inputs, or a leaf (the images, a Dropout mask) or a parameter.")
    print(loss.graph(model))
    print()


def text_plot(rates, losses, suggestion, width=64, height=10):
    """The learning-rate range test as lines of text: the smoothed loss (rows) against the learning
    rate on a log scale (columns), the suggested rate marked with a | in the bottom line."""
    span = np.log10(rates[-1] / rates[0]) or 1  # (1 for a curve of one point)

    def column(rate):  # log scale, from the first rate to the last
        return np.round((np.log10(rate) - np.log10(rates[0])) / span * (width - 1))

    top, bottom = losses.max(), losses.min()
    row = np.round((top - losses) / (top - bottom or 1) * (height - 1)).astype(int)
    grid = [[" "] * width for _ in range(height)]
    for r, c in zip(row, column(rates).astype(int)):
        grid[r][c] = "*"
    lines = [f"{top:7.3f} |" + "".join(grid[0])] + ["        |" + "".join(line) for line in grid[1:-1]]
    lines.append(f"{bottom:7.3f} |" + "".join(grid[-1]))
    axis = [" "] * width
    axis[int(np.clip(column(suggestion), 0, width - 1))] = "|"
    lines.append("        +" + "".join(axis))
    ticks = f"{rates[0]:<{width // 2}.0e}{rates[-1]:>{width - width // 2}.0e}"
    lines.append("         " + ticks)
    lines.append("         " + "learning rate (log scale)".center(width))
    return [line.rstrip() for line in lines]


def find_lr(model, optimizer, images, labels, batch_size):
    """Run lr_find, print its curve and suggestion, and return (rates, losses, suggestion), the
    suggestion rounded to 2 digits."""
    print(f"Finding a learning rate: {optimizer.__class__.__name__}'s rate rising from 1e-07 to 10 over "
          f"up to 300 steps, until the loss explodes (the model is put back as it was afterwards)")
    rates, losses, suggestion = lr_find(model, optimizer, images, labels, batch_size=batch_size)
    suggestion = float(f"{suggestion:.2g}")
    print("\n".join(text_plot(rates, losses, suggestion)))
    best = rates[np.argmin(losses)]
    print(f"The loss (smoothed) was lowest at lr {best:.3g}; suggested: a tenth of it, lr {suggestion:g} "
          f"(marked |)\n")
    return rates, losses, suggestion


def predict(model, images, batch_size=1000):
    """The class with the largest score for each image, computed a chunk at a time to bound memory."""
    model.eval()
    with no_grad():
        return np.concatenate([model(Tensor(images[i:i + batch_size])).data.argmax(axis=1)
                               for i in range(0, len(images), batch_size)])


# ---- the report ----

SHADES = np.array(list(" .:-=+*#%@"))


def draw(image):
    """An image with values in [0, 1] as lines of text, one character per column and per two rows (a
    character is about twice as tall as it is wide, so the picture keeps its proportions).
    >>> draw(np.array([[0, 0.5], [0, 1], [1, 1], [1, 1]]))
    [' #', '@@']"""
    height, width = image.shape
    rows = image[:height // 2 * 2].reshape(height // 2, 2, width).mean(axis=1)
    shade = np.minimum((rows * len(SHADES)).astype(int), len(SHADES) - 1)
    return ["".join(row) for row in SHADES[shade]]


def show_examples(images, labels, predictions, classes, count=4, mistakes=2):
    """Draw the first count test images and the first few mistakes side by side, with their labels."""
    wrong = np.flatnonzero(predictions != labels)
    chosen = list(dict.fromkeys([*range(min(count, len(labels))), *wrong[:mistakes].tolist()]))
    print(f"\nSome test images ({len(wrong):,} of the {len(labels):,} are misclassified):")
    panels = []
    for i in chosen:
        caption = [f"#{i} " + ("right" if predictions[i] == labels[i] else "WRONG"),
                   f"predicted {classes[predictions[i]]}", f"true      {classes[labels[i]]}"]
        panels.append(caption + draw(images[i, 0]))
    width = max(len(line) for panel in panels for line in panel)
    per_row = max(1, (shutil.get_terminal_size().columns + 3) // (width + 3))
    for start in range(0, len(panels), per_row):
        for lines in zip(*panels[start:start + per_row]):
            print("   ".join(line.ljust(width) for line in lines).rstrip())
        print()


def plot(path, history, images, labels, predictions, classes, title, count=16, lr_curve=None):
    """Save one figure at path, in the format its suffix names (PLOT_FORMATS): loss and accuracy per epoch
    (train and test), and the learning-rate range test's curve if given, above the first count
    misclassified test images, each with its predicted and true class."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # rather than pyplot: no window, no display, no global state
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    figure = Figure(figsize=(10, 8), layout="constrained")
    FigureCanvasAgg(figure)
    figure.suptitle(title, fontsize="x-large")
    curves, grid = figure.subfigures(2, 1, height_ratios=[1.1, 1])
    epochs = [record["epoch"] for record in history]
    loss, accuracy, *lr_axes = curves.subplots(1, 2 if lr_curve is None else 3)
    for axes, key, name in [(loss, "loss", "Loss (cross-entropy)"), (accuracy, "acc", "Accuracy")]:
        # fit measures the training set while it learns, with dropout on: early on, train trails test
        axes.plot(epochs, [record["train_" + key] for record in history], "o-", label="train (during the epoch)")
        axes.plot(epochs, [record["val_" + key] for record in history], "o-", label="test")
        axes.set(title=name + " per epoch", xlabel="epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        axes.set_xlim(0.5, len(history) + 0.5)  # else one epoch's single point gets an axis from 0.945 to 1.055
        axes.grid(alpha=0.3)
        axes.legend()
    accuracy.yaxis.set_major_formatter(PercentFormatter(1))
    if lr_curve is not None:
        rates, losses, suggestion = lr_curve
        lr_axes[0].semilogx(rates, losses)
        lr_axes[0].axvline(suggestion, color="tab:orange", linestyle="--", label=f"suggested: {suggestion:.2g}")
        lr_axes[0].set(title="Learning-rate range test", xlabel="learning rate", ylabel="loss (smoothed)")
        lr_axes[0].grid(alpha=0.3)
        lr_axes[0].legend()
    wrong = np.flatnonzero(predictions != labels)
    grid.suptitle(f"The first {min(count, len(wrong))} of the {len(wrong):,} misclassified test images: "
                  f"predicted (true)", fontsize="large")
    for n, axes in enumerate(grid.subplots(2, count // 2).flat):
        axes.set_axis_off()
        if n < len(wrong):
            i = wrong[n]
            axes.imshow(images[i, 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            axes.set_title(f"{classes[predictions[i]]}\n({classes[labels[i]]})", fontsize="medium")
    # Drawn under another name, then renamed: never a half-written picture under the final name. Not with
    # tempfile, whose files only their owner may read.
    part = path.with_name(f"{path.name}.{os.getpid()}.part")
    try:
        figure.savefig(part, format=path.suffix[1:].lower(), dpi=100)
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)


# ---- the command line ----

def positive(kind):
    """An argparse type: a finite number of this kind, greater than 0."""
    def parse(text):
        value = kind(text)
        if not math.isfinite(value):  # float() reads "nan" and "inf", which no training can use
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value
    parse.__name__ = kind.__name__  # argparse names it in its message: "invalid int value: 'x'"
    return parse


def seed(text):
    """An argparse type: an integer, 0 or more (numpy's random generators refuse negative seeds)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


seed.__name__ = "int"  # argparse names it in its message: "invalid int value: 'x'"


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Train a small network on MNIST (or Fashion-MNIST) with minigrad "
                                                 "and report its test accuracy.")
    parser.add_argument("--dataset", choices=["mnist", "fashion"], default="mnist",
                        help="handwritten digits, or Fashion-MNIST's photos of clothes (default: mnist)")
    parser.add_argument("--data-dir", type=Path, metavar="DIR",
                        help="folder of the four .gz files (or their gunzipped copies): used when there, "
                             "downloaded into it when not "
                             "(default: data/mnist or data/fashion-mnist next to this script)")
    parser.add_argument("--mirror", action="append", metavar="URL",
                        help="download from URL (a folder holding the four files) instead of the built-in mirrors; "
                             "give it several times to try several in order")
    parser.add_argument("--model", choices=["mlp", "cnn"], default="mlp",
                        help="mlp: 784-512-256-10 with ReLU and dropout; cnn: two 3x3 convolutions with max "
                             "pooling, then 128 units (default: mlp)")
    parser.add_argument("--epochs", type=positive(int),
                        help=f"passes over the training images (default: {DEFAULTS['mlp']['epochs']} for mlp, "
                             f"{DEFAULTS['cnn']['epochs']} for cnn)")
    parser.add_argument("--batch-size", type=positive(int),
                        help=f"images per optimizer step (default: {DEFAULTS['mlp']['batch_size']} for mlp, "
                             f"{DEFAULTS['cnn']['batch_size']} for cnn)")
    parser.add_argument("--lr", type=positive(float),
                        help=f"Adam's learning rate (default: {DEFAULTS['mlp']['lr']:g}); too large a one makes "
                             f"training diverge")
    parser.add_argument("--seed", type=seed, default=0,
                        help="seed of the initial weights, dropout and batch order, 0 or more: the same seed gives "
                             "the same run on the same machine with the same number of BLAS threads "
                             "(another number adds up matrix products in another order; on a busy machine the demo "
                             "runs fewer and says so: set OPENBLAS_NUM_THREADS to fix the number) "
                             "(default: 0)")
    parser.add_argument("--limit", type=positive(int), metavar="N",
                        help="train on the first N training images only, for a quick look (default: all)")
    parser.add_argument("--save", type=Path, metavar="FILE.npz",
                        help="save the trained weights (the model's state_dict) with numpy.savez; load them with "
                             "model.load_state_dict(dict(numpy.load(FILE)))")
    parser.add_argument("--find-lr", action="store_true",
                        help="before training, run the learning-rate range test (lr_find) and print its "
                             "curve; then train with its suggestion, or with --lr if given")
    parser.add_argument("--graph", action="store_true",
                        help="before training, print the graph of one training step: every op from the "
                             "loss back to the weights, with the parameters' names, shapes and gradients")
    parser.add_argument("--plot", type=Path, metavar="FILE.png",
                        help="save a figure: loss and accuracy per epoch (train and test), and misclassified test "
                             f"images with their predicted and true classes; the suffix names the format "
                             f"({', '.join('.' + name for name in PLOT_FORMATS)}); needs matplotlib "
                             "(pip install -e \".[plot]\")")
    args = parser.parse_args(argv)
    # Checked now rather than after minutes of download and training:
    for option, file in [("--save", args.save), ("--plot", args.plot)]:
        if file and not file.resolve().parent.is_dir():
            parser.error(f"{option} {file}: the folder {file.resolve().parent} does not exist")
    if args.plot and args.plot.suffix[1:].lower() not in PLOT_FORMATS:
        suffix = args.plot.suffix
        problem = f"cannot save a figure as {suffix}" if suffix else "no suffix to say which format to save in"
        parser.error(f"--plot {args.plot}: {problem}; end the name in "
                     f"{', '.join('.' + name for name in PLOT_FORMATS)}")
    if args.plot:
        try:
            import matplotlib  # noqa: F401 (plot imports what it draws with)
        except ImportError:
            parser.exit(1, 'error: --plot needs matplotlib, which is not installed: pip install -e ".[plot]" in '
                           'minigrad\'s folder, or pip install matplotlib\n')
    args.lr_given = args.lr is not None
    for option, value in DEFAULTS[args.model].items():
        if getattr(args, option) is None:
            setattr(args, option, value)
    args.data_dir = args.data_dir or Path(__file__).resolve().parent / "data" / FOLDERS[args.dataset]
    args.mirror = args.mirror or MIRRORS[args.dataset]
    return args


def run(args):
    start = time.perf_counter()
    train_images, train_labels, test_images, test_labels = load_dataset(args.dataset, args.data_dir, args.mirror)
    available = len(train_images)
    train_images, train_labels = train_images[:args.limit], train_labels[:args.limit]
    if args.graph:  # on a model of its own, so that training below starts exactly as without --graph
        manual_seed(args.seed)
        show_graph(make_model(args.model), train_images[:args.batch_size], train_labels[:args.batch_size])
    manual_seed(args.seed)
    model = make_model(args.model)
    optimizer = Adam(model.parameters(), lr=args.lr)
    lr_curve = None
    if args.find_lr:  # lr_find puts the model and the random numbers back: training starts as without it
        lr_curve = find_lr(model, optimizer, train_images, train_labels, args.batch_size)
        if not args.lr_given:
            args.lr = lr_curve[2]
            optimizer.lr = args.lr
    epochs = f"{args.epochs} epoch" + "s" * (args.epochs > 1)
    print(f"Training the {args.model.upper()} on {len(train_images):,} {args.dataset} images for {epochs} (Adam, "
          f"lr {args.lr:g}, batches of {args.batch_size}); validation: the {len(test_images):,} test images")
    history = fit(model, optimizer, train_images, train_labels, epochs=args.epochs,
                  batch_size=args.batch_size, validation=(test_images, test_labels), rng=args.seed)
    predictions = predict(model, test_images)
    correct, seconds = int((predictions == test_labels).sum()), time.perf_counter() - start
    print(f"\nTest accuracy: {correct / len(test_labels):.2%} ({correct:,} of {len(test_labels):,} test images); "
          f"total time {seconds:.0f} s")
    show_examples(test_images, test_labels, predictions, CLASSES[args.dataset])
    if args.save:
        with open(args.save, "wb") as file:  # a file, not a name: savez would append .npz to other names
            np.savez(file, **model.state_dict())
        print(f"Saved the weights to {args.save}")
    if args.plot:
        plot(args.plot, history, test_images, test_labels, predictions, CLASSES[args.dataset],
             f"{args.model.upper()} on {NAMES[args.dataset]}: {correct / len(test_labels):.2%} test accuracy "
             f"after {epochs} ({seconds:.0f} s)" + (f"\ntrained on {len(train_images):,} of the {available:,} "
                                                    f"training images" if len(train_images) < available else ""),
             lr_curve=lr_curve)
        print(f"Saved the figure to {args.plot}")
    return 0


def main(argv=None):
    """Run the demo with these command-line arguments; return the exit status."""
    args = parse_args(argv)
    try:
        return run(args)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
    except DivergenceError as error:
        # on a line of its own, after fit's progress line; the advice names the demo's options
        print(f"\nerror: {error.advice('--lr {:g}', '--find-lr')}", file=sys.stderr)
    except OSError as error:  # e.g. --save into a folder that does not exist
        print(f"error: {error}", file=sys.stderr)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    return 1


if __name__ == "__main__":
    if BLAS_CHOICE:
        print(BLAS_CHOICE)
    sys.exit(main())
