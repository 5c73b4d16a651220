"""How the number of BLAS threads changes the demo's speed, on an idle and on a busy machine (issue 14).

    python benchmarks/threads.py                  # about 3 minutes on 2 cores
    python benchmarks/threads.py --repeat 3       # each case 3 times, the median in the summary
    python benchmarks/threads.py --burners 0,1,2  # also with one busy core
    python benchmarks/threads.py --threads 1,2,4 --cnn-images 6400

Each measurement runs in a fresh Python process, because OpenBLAS reads OPENBLAS_NUM_THREADS only when
numpy is imported. That process trains the demo's own network (mnist_demo.make_model) with the demo's
defaults (Adam, batch size, learning rate, seed 0) on Debian's Fashion-MNIST, without validation:
one full epoch of the MLP (60,000 images), and the CNN on its first --cnn-images images, scaled to an
epoch of 60,000. Only training is timed, not loading the data.

"busy N": this script starts N processes that each keep a core busy (python -c "while True: pass"),
as a browser or a compiler would, waits --settle seconds, measures, then stops them.
Before each measurement it prints the load averages (os.getloadavg(): 1, 5 and 15 minutes); during
it, the training process counts how many cores all other processes kept busy (from /proc/stat, less its
own CPU time): the load averages lag by a minute, this count does not. On a machine others share,
"idle" is only as idle as that count says.

This file is not collected by pytest and does nothing when imported.
"""
import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
EPOCH = 60_000  # images in a training epoch

# Run in the measuring process: train, then print the seconds and the cores other processes used meanwhile.
CHILD = r"""
import os, sys, time
repo, data_dir, model_name, images = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
sys.path.insert(0, repo)
import minigrad, mnist_demo

def readings():
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    busy = (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
    own = os.times()
    return busy, own.user + own.system, time.perf_counter()

x, y, _, _ = mnist_demo.load_dataset("fashion", data_dir, [])
defaults = mnist_demo.DEFAULTS[model_name]
minigrad.manual_seed(0)
model = mnist_demo.make_model(model_name)
optimizer = minigrad.Adam(model.parameters(), lr=defaults["lr"])
busy0, own0, t0 = readings()
minigrad.fit(model, optimizer, x[:images], y[:images], epochs=1, batch_size=defaults["batch_size"], rng=0,
             verbose=False)
busy1, own1, t1 = readings()
print(t1 - t0, max(0.0, (busy1 - busy0) - (own1 - own0)) / (t1 - t0))
"""


def measure(model, threads, images, data_dir):
    """(seconds to train on images, cores other processes kept busy meanwhile), in a fresh process."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads))
    env.pop("OMP_NUM_THREADS", None)  # OpenBLAS reads it when OPENBLAS_NUM_THREADS is unset; keep it out
    result = subprocess.run([sys.executable, "-c", CHILD, REPO, data_dir, model, str(images)], env=env,
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"the measuring process failed:\n{result.stderr}")
    seconds, others = map(float, result.stdout.split())
    return seconds, others


def load_average():
    return "%.2f %.2f %.2f" % os.getloadavg()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--burners", default="0,2", help="busy states to measure: how many processes keep a "
                                                          "core busy meanwhile, comma-separated (default: 0,2)")
    parser.add_argument("--threads", default="1,2", help="OPENBLAS_NUM_THREADS values (default: 1,2)")
    parser.add_argument("--cnn-images", type=int, default=3200, help="CNN training images (default: 3200, "
                                                                      "50 steps of 64)")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds between starting the busy "
                                                                  "processes and measuring (default: 3)")
    parser.add_argument("--repeat", type=int, default=1, help="measurements of each case, taking turns "
                                                              "(default: 1)")
    parser.add_argument("--data-dir", default=FASHION_MNIST, help=f"Fashion-MNIST's four files (default: "
                                                                  f"{FASHION_MNIST})")
    args = parser.parse_args()
    burner_counts = [int(n) for n in args.burners.split(",")]
    thread_counts = [int(n) for n in args.threads.split(",")]

    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    print(f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; {cpu}, {os.cpu_count()} cores; "
          f"Python {platform.python_version()}; data {args.data_dir}")
    print("model  busy  threads  load avg before (1 5 15 min)  others' cores during  seconds  s/epoch")
    rows = {}  # (model, burners, threads) -> seconds per epoch, one per repetition
    for burners in burner_counts:
        spinning = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(burners)]
        try:
            if spinning:
                time.sleep(args.settle)
            for _ in range(args.repeat):
                for model, images in [("mlp", EPOCH), ("cnn", args.cnn_images)]:
                    for threads in thread_counts:
                        before = load_average()
                        seconds, others = measure(model, threads, images, args.data_dir)
                        per_epoch = seconds * EPOCH / images
                        rows.setdefault((model, burners, threads), []).append(per_epoch)
                        print(f"{model:5}  {burners:4}  {threads:7}  {before:>28}  {others:20.2f}  {seconds:7.2f}  "
                              f"{per_epoch:7.1f}", flush=True)
        finally:
            for process in spinning:
                process.kill()
                process.wait()
    most = max(thread_counts)
    print(f"\nmedian s/epoch with {most} threads / with 1 thread:")
    for model in ("mlp", "cnn"):
        for burners in burner_counts:
            if (model, burners, 1) in rows:
                one, many = statistics.median(rows[model, burners, 1]), statistics.median(rows[model, burners, most])
                print(f"  {model}, busy {burners}: {many / one:.2f} ({most} threads: {many:.1f} s, 1 thread: "
                      f"{one:.1f} s)")


if __name__ == "__main__":
    main()
