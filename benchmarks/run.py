"""tfvae against the PyTorch reference: training speed, memory and test ELBO, side by side.

Each framework trains in its own worker process (so peak memory is its own and the
two thread pools never compete); the runner alternates them, one epoch at a time,
after a warm-up epoch, and reports medians of the repeats. Both train the same model
(the PyTorch tutorial's MNIST VAE, `reference_torch.py`) with the same objective,
optimizer, batch size and in-memory data: grey-level MNIST in [0, 1] from
`../shared/data`, as in the tutorial.

Sections:
    1. MLP at batch 128: examples/s, the ratio tfvae / reference (min, median, max),
       peak memory, and the test negative ELBO both reach after the same epochs.
    2. The tuning behind tfvae's training defaults: the same model under Keras'
       default path (no XLA, one step per call), per-step XLA, and the fused default.
    3. The ratio at batch sizes 32, 128 and 1024.
    4. The convolutional model.
    5. With --time-to-target: training time (XLA compilation included) to reach a
       test negative ELBO of 100 nats, evaluated after every epoch.

Usage (after `pip install ".[test,benchmark]"`):

    python benchmarks/run.py                       # sections 1-4, about 9 minutes on 2 cores
    python benchmarks/run.py --time-to-target      # section 5 only, up to --max-epochs 60
    python benchmarks/run.py --quick               # a smoke run: small data, 1 repeat

It prints the tables, writes them to `benchmarks/results/run.md` (or
`run_time_to_target.md`), and puts them into `benchmarks/README.md` between the
markers of that file.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED_DATA = HERE.parent.parent / "shared" / "data"
TARGET_NATS = 100.0


# ---------------------------------------------------------------------- workers
class TorchWorker:
    """Trains `reference_torch.ReferenceTrainer`."""

    def __init__(self, x_train, x_test, batch_size, network, options):
        import torch

        sys.path.insert(0, str(HERE))
        from reference_torch import ReferenceTrainer

        self.version = f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
        self.trainer = ReferenceTrainer(x_train, batch_size, seed=0, network=network)
        self.x_test = x_test

    def epoch(self) -> None:
        self.trainer.train_epoch()

    def negative_elbo(self) -> float:
        return self.trainer.negative_elbo(self.x_test)


class TfvaeWorker:
    """Trains the same model with tfvae's public API and `model.fit`."""

    def __init__(self, x_train, x_test, batch_size, network, options):
        import keras

        import tfvae

        keras.utils.set_random_seed(0)
        if network == "mlp":
            shape = (x_train.shape[1],)
            encoder = tfvae.networks.mlp_encoder(shape, 20, hidden_units=(400,))
            decoder = tfvae.networks.mlp_decoder(20, shape, hidden_units=(400,))
        else:
            shape = (28, 28, 1)
            x_train, x_test = x_train.reshape((-1,) + shape), x_test.reshape((-1,) + shape)
            encoder, decoder = tfvae.networks.build("conv", shape, latent_dim=20)
        self.vae = tfvae.VAE(encoder, decoder, seed=0)
        self.vae.compile(optimizer=keras.optimizers.Adam(1e-3), **options)
        self.version = f"tfvae {tfvae.__version__}, keras {keras.__version__}"
        # One tensor for all the fit calls: a user's fit(x, epochs=N) converts NumPy
        # once, while this runner calls fit once per epoch to alternate frameworks.
        self.x_train = keras.ops.convert_to_tensor(x_train)
        self.x_test, self.batch_size = x_test, batch_size

    def epoch(self) -> None:
        self.vae.fit(self.x_train, batch_size=self.batch_size, epochs=1, verbose=0)

    def negative_elbo(self) -> float:
        result = self.vae.evaluate(self.x_test, batch_size=1000, verbose=0, return_dict=True)
        return -result["elbo"]


WORKERS = {"torch": TorchWorker, "tfvae": TfvaeWorker}


def rss_mb(field: str = "VmHWM") -> float:
    """This process's resident memory in MB: peak (VmHWM; ru_maxrss would include the
    parent's) or current (`field="VmRSS"`)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _serve(kind, data_file, batch_size, network, options, n_train, connection):
    """Worker process: builds the model, then runs commands until told to stop."""
    data = np.load(data_file)
    factory = WORKERS[kind] if isinstance(kind, str) else kind  # a class, from other scripts
    worker = factory(data["x_train"][:n_train], data["x_test"], batch_size, network, options)
    connection.send(worker.version)
    while True:
        command = connection.recv()
        if command == "stop":
            break
        start = time.perf_counter()
        value = getattr(worker, command)()
        seconds = time.perf_counter() - start
        peak_mb = rss_mb()
        connection.send((value, seconds, peak_mb))


class Worker:
    """The parent's handle on one worker process."""

    def __init__(self, kind, data_file, batch_size, network, options=None, n_train=None):
        context = multiprocessing.get_context("spawn")
        self.connection, child = context.Pipe()
        args = (kind, data_file, batch_size, network, options or {}, n_train, child)
        self.process = context.Process(target=_serve, args=args, daemon=True)
        self.process.start()
        self.version = self.connection.recv()
        self.peak_mb = 0.0

    def run(self, command: str):
        self.connection.send(command)
        value, seconds, self.peak_mb = self.connection.recv()
        return value, seconds

    def close(self) -> None:
        self.connection.send("stop")
        self.process.join(timeout=30)


# ---------------------------------------------------------------------- measurements
def time_epochs(workers: dict[str, Worker], repeats: int) -> dict[str, list[float]]:
    """One warm-up epoch each, then `repeats` timed epochs, alternating the workers."""
    for worker in workers.values():
        worker.run("epoch")
    times = {name: [] for name in workers}
    for _ in range(repeats):
        for name, worker in workers.items():
            times[name].append(worker.run("epoch")[1])
    return times


def ratios(reference: list[float], candidate: list[float]) -> list[float]:
    """Speed-up of `candidate` over `reference`, one per (alternated) repeat pair."""
    return [r / c for r, c in zip(reference, candidate)]


def spread(values: list[float]) -> str:
    return (
        f"{statistics.median(values):.2f} ({min(values):.2f} to {max(values):.2f})"
        if values
        else "n/a"
    )


def main_table(data_file, n_train, n_test, repeats) -> tuple[list[str], dict]:
    workers = {kind: Worker(kind, data_file, 128, "mlp", n_train=n_train) for kind in WORKERS}
    times = time_epochs(workers, repeats)
    elbo = {name: worker.run("negative_elbo")[0] for name, worker in workers.items()}
    rows = [
        "| framework | examples/s (median) | epoch s (min to max) | peak RSS, MB | "
        f"test -ELBO after {repeats + 1} epochs, nats |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, worker in workers.items():
        t = times[name]
        rows.append(
            f"| {worker.version} | {n_train / statistics.median(t):,.0f} | "
            f"{min(t):.2f} to {max(t):.2f} | {worker.peak_mb:,.0f} | {elbo[name]:.2f} |"
        )
        worker.close()
    speedups = ratios(times["torch"], times["tfvae"])
    rows += [
        "",
        f"Speed-up tfvae / reference, median (min to max) over {repeats} alternated "
        f"epochs: **{spread(speedups)}**. Test -ELBO difference: "
        f"{abs(elbo['tfvae'] - elbo['torch']):.2f} nats (on {n_test:,} test images).",
    ]
    return rows, {"speedups": speedups, "elbo": elbo}


TUNING = {
    "Keras default path (no XLA, 1 step per call)": dict(jit_compile=False, steps_per_execution=1),
    "no XLA, 32 steps per call": dict(jit_compile=False, steps_per_execution=32),
    "per-step XLA (Keras' loop, 1 step per call)": dict(jit_compile=True, steps_per_execution=1),
    "tfvae default (auto: XLA here, 32 steps fused)": {},
    "XLA, 128 steps fused": dict(steps_per_execution=128),
}


def tuning_table(data_file, n_train, repeats) -> list[str]:
    rows = [
        "| training path (same model, batch 128) | epoch s, median | speed-up over reference |",
        "| --- | ---: | ---: |",
    ]
    reference = Worker("torch", data_file, 128, "mlp", n_train=n_train)
    for label, options in TUNING.items():
        candidate = Worker("tfvae", data_file, 128, "mlp", options, n_train=n_train)
        times = time_epochs({"torch": reference, "tfvae": candidate}, repeats)
        candidate.close()
        rows.append(
            f"| {label} | {statistics.median(times['tfvae']):.2f} | "
            f"{spread(ratios(times['torch'], times['tfvae']))} |"
        )
    reference.close()
    return rows


def batch_size_table(data_file, n_train, repeats, batch_sizes, network="mlp") -> list[str]:
    rows = [
        "| network | batch | reference epoch s | tfvae epoch s | speed-up (min to max) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for batch_size in batch_sizes:
        workers = {k: Worker(k, data_file, batch_size, network, n_train=n_train) for k in WORKERS}
        times = time_epochs(workers, repeats)
        for worker in workers.values():
            worker.close()
        rows.append(
            f"| {network} | {batch_size} | {statistics.median(times['torch']):.2f} | "
            f"{statistics.median(times['tfvae']):.2f} | "
            f"{spread(ratios(times['torch'], times['tfvae']))} |"
        )
    return rows


def time_to_target(data_file, n_train, max_epochs) -> list[str]:
    """Trains each framework for up to `max_epochs`, evaluating after every epoch.

    Reports the training time (XLA compilation included) to reach 100 nats and, as
    100 may be out of reach, to reach the worse of the two final values (a test ELBO
    both reached).
    """
    curves = {}
    for kind in WORKERS:
        worker = Worker(kind, data_file, 128, "mlp", n_train=n_train)
        elapsed, curve = 0.0, []
        for _ in range(max_epochs):
            elapsed += worker.run("epoch")[1]
            curve.append((elapsed, worker.run("negative_elbo")[0]))
            if curve[-1][1] <= TARGET_NATS:
                break
        worker.close()
        curves[kind] = curve
    common = max(curve[-1][1] for curve in curves.values())
    rows = [
        f"| framework | test -ELBO after {max_epochs} epochs (or at {TARGET_NATS:.0f}) | "
        f"time to {TARGET_NATS:.0f} nats | time to {common:.2f} nats (reached by both) |",
        "| --- | ---: | ---: | ---: |",
    ]

    def reach(curve, target):
        for epoch, (seconds, value) in enumerate(curve, 1):
            if value <= target:
                return f"{seconds:.1f} s ({epoch} epochs)"
        return f"not within {len(curve)} epochs (> {curve[-1][0]:.1f} s)"

    for kind, curve in curves.items():
        rows.append(
            f"| {kind} | {curve[-1][1]:.2f} | {reach(curve, TARGET_NATS)} | "
            f"{reach(curve, common)} |"
        )
    return rows


# ---------------------------------------------------------------------- data and main
def prepare_data(path: Path, quick: bool) -> tuple[int, int, str]:
    """Writes flat grey-level MNIST (or random images, said so) to `path`."""
    manual_dir = Path(os.environ.get("TFVAE_MANUAL_DIR", SHARED_DATA))
    if (manual_dir / "mnist").is_dir() or (manual_dir / "train-images-idx3-ubyte.gz").exists():
        import tfvae

        x_train, _ = tfvae.data.load_arrays("mnist", "train", manual_dir=str(manual_dir))
        x_test, _ = tfvae.data.load_arrays("mnist", "test", manual_dir=str(manual_dir))
        source = f"real MNIST (grey levels in [0, 1]) from {manual_dir.name}/"
    else:
        print(f"No MNIST under {manual_dir}: using random images (timings only).")
        rng = np.random.default_rng(0)
        x_train = rng.random((60_000, 784), dtype=np.float32)
        x_test = rng.random((10_000, 784), dtype=np.float32)
        source = "random images (no MNIST found)"
    x_train = x_train.reshape(len(x_train), -1).astype(np.float32)
    x_test = x_test.reshape(len(x_test), -1).astype(np.float32)
    if quick:
        x_train, x_test = x_train[:6_000], x_test[:1_000]
    np.savez(path, x_train=x_train, x_test=x_test)
    return len(x_train), len(x_test), source


def update_readme(readme: Path, name: str, text: str) -> None:
    """Replaces the block between `<!-- name:begin -->` and `<!-- name:end -->` in `readme`."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    content = readme.read_text()
    if begin not in content or end not in content:
        print(f"{readme} has no {begin} ... {end} block; left as it is.")
        return
    head, rest = content.split(begin, 1)
    readme.write_text(f"{head}{begin}\n{text}\n{end}{rest.split(end, 1)[1]}")


def machine() -> str:
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = f"{line.split(':', 1)[1].strip()} ({platform.machine()})"
                break
    return f"{os.cpu_count()} CPU cores, {model}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="small data, 1 repeat")
    parser.add_argument(
        "--time-to-target", action="store_true", help="only section 5 (time to 100 nats)"
    )
    parser.add_argument("--max-epochs", type=int, default=60, help="for --time-to-target")
    parser.add_argument("--conv-examples", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=None, help="default: results/run*.md")
    args = parser.parse_args(argv)
    name = "run_time_to_target" if args.time_to_target else "run"
    out = args.out or HERE / "results" / f"{name}.md"
    repeats = 1 if args.quick else args.repeats
    short = 1 if args.quick else 3
    started = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    data_file = out.parent / f".{name}_data.npz"
    n_train, n_test, source = prepare_data(data_file, args.quick)
    main_result = None
    try:
        if args.time_to_target:
            max_epochs = 2 if args.quick else args.max_epochs
            sections = [
                f"## 5. Time to a test negative ELBO of {TARGET_NATS:.0f} nats",
                "",
                *time_to_target(data_file, n_train, max_epochs),
                "",
            ]
        else:
            rows, main_result = main_table(data_file, n_train, n_test, repeats)
            sections = ["## 1. MLP, batch 128", "", *rows, ""]
            print("\n".join(sections), flush=True)
            tuning = tuning_table(data_file, n_train, short)
            sections += ["## 2. Tuning the training path", "", *tuning, ""]
            print("\n".join(tuning), flush=True)
            sections += [
                "## 3. Batch size",
                "",
                *batch_size_table(data_file, n_train, short, (32, 128, 1024)),
                "",
                "## 4. Convolutional model",
                "",
                *batch_size_table(
                    data_file, min(args.conv_examples, n_train), short, (128,), "conv"
                ),
                "",
            ]
    finally:
        data_file.unlink(missing_ok=True)
    command = "python benchmarks/run.py" + " ".join(
        [""]
        + [
            flag
            for flag, on in (("--quick", args.quick), ("--time-to-target", args.time_to_target))
            if on
        ]
    )
    header = [
        f"{date.today().isoformat()}; {machine()}; {source} ({n_train:,} training and "
        f"{n_test:,} test images); `{command}` ({(time.perf_counter() - started) / 60:.1f} min).",
        "",
    ]
    text = "\n".join(header + sections)
    out.write_text(f"# tfvae against the PyTorch reference\n\n{text}")
    print(text)
    if not args.quick and args.out is None:
        update_readme(HERE / "README.md", name, text.strip())
    if main_result:
        median = statistics.median(main_result["speedups"])
        print(f"\nwrote {out}; median speed-up at batch 128: {median:.2f}")


if __name__ == "__main__":
    main()
