"""Scaling out: throughput under tf.distribute and mixed precision, against one device.

The same MLP VAE as `run.py` (784-400-20, Bernoulli, Adam 1e-3) trains on MNIST in
one worker process per configuration; the runner alternates them one epoch at a time
after a warm-up epoch, and reports examples/s and the speed-up over the reference
(one device, float32, tfvae's default path), median (min to max) over the
alternated epochs, with the test negative ELBO each reaches.

Configurations: on a CPU, `MirroredStrategy` over the cores split into two logical
devices, and the mixed bfloat16 and float16 policies. With GPUs, the same on them:
one GPU in three precisions, and `MirroredStrategy` over all of them when there are
two or more.

Usage (after `pip install ".[test]"`):

    python benchmarks/scaling.py              # about 2.5 minutes on 2 CPU cores
    python benchmarks/scaling.py --quick      # a smoke run

It writes `benchmarks/results/scaling.md` and puts the table into
`benchmarks/README.md` between the `scaling` markers.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import (  # noqa: E402
    TfvaeWorker,
    Worker,
    machine,
    prepare_data,
    ratios,
    spread,
    update_readme,
)


class ScalingWorker(TfvaeWorker):
    """`run.py`'s tfvae worker, made under one strategy and precision (`options`)."""

    def __init__(self, x_train, x_test, batch_size, network, options):
        import tensorflow as tf

        devices = options.get("logical_cpus")
        if devices:  # only possible before TensorFlow starts: hence a process each
            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * devices
            )
        import keras

        import tfvae

        tfvae.scaling.set_precision(options.get("precision", "float32"))
        if options.get("strategy") == "mirrored":
            names = [d.name for d in tf.config.list_logical_devices(options["device_type"])]
            strategy = tf.distribute.MirroredStrategy(names)
        else:
            strategy = tf.distribute.get_strategy()
        keras.utils.set_random_seed(0)
        with strategy.scope():
            shape = (x_train.shape[1],)
            encoder = tfvae.networks.mlp_encoder(shape, 20, hidden_units=(400,))
            decoder = tfvae.networks.mlp_decoder(20, shape, hidden_units=(400,))
            self.vae = tfvae.VAE(encoder, decoder, seed=0)
            self.vae.compile(
                optimizer=keras.optimizers.Adam(1e-3), jit_compile=options.get("jit", "auto")
            )
        self.version = (
            f"{strategy.num_replicas_in_sync} replica(s), jit={self.vae.jit_compile}, "
            f"{keras.mixed_precision.global_policy().name}"
        )
        self.x_train = tf.convert_to_tensor(x_train)
        self.x_test, self.batch_size = x_test, batch_size


def configurations(gpus: int) -> dict[str, dict]:
    """What to compare, by label; the first is the reference."""
    if gpus:
        found = {
            "1 GPU, float32 (reference)": {},
            "1 GPU, mixed_bfloat16": dict(precision="mixed_bfloat16"),
            "1 GPU, mixed_float16": dict(precision="mixed_float16"),
        }
        if gpus > 1:
            found[f"MirroredStrategy, {gpus} GPUs, float32"] = dict(
                strategy="mirrored", device_type="GPU"
            )
            found[f"MirroredStrategy, {gpus} GPUs, mixed_bfloat16"] = dict(
                strategy="mirrored", device_type="GPU", precision="mixed_bfloat16"
            )
        return found
    return {
        "1 device, float32, tfvae default (XLA, 32 fused steps) (reference)": {},
        "1 device, float32, no XLA (the path under a strategy)": dict(jit=False),
        "MirroredStrategy, 2 logical CPUs, float32": dict(
            strategy="mirrored", device_type="CPU", logical_cpus=2
        ),
        "1 device, mixed_bfloat16": dict(precision="mixed_bfloat16"),
        "1 device, mixed_float16": dict(precision="mixed_float16"),
    }


def count_gpus() -> int:
    """GPUs, counted in a child process so this one never starts TensorFlow."""
    import subprocess

    code = "import tensorflow as tf; print(len(tf.config.list_physical_devices('GPU')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return int(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else 0


def table(data_file, n_train, batch_size, repeats, gpus) -> list[str]:
    workers = {
        label: Worker(ScalingWorker, data_file, batch_size, "mlp", options, n_train=n_train)
        for label, options in configurations(gpus).items()
    }
    for worker in workers.values():
        worker.run("epoch")  # warm-up: tracing and XLA compilation
    times = {label: [] for label in workers}
    for _ in range(repeats):
        for label, worker in workers.items():
            times[label].append(worker.run("epoch")[1])
    reference = next(iter(times.values()))
    rows = [
        f"| configuration (batch {batch_size}) | what ran | examples/s (median) | "
        f"speed-up over reference | test -ELBO after {repeats + 1} epochs |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for label, worker in workers.items():
        elbo = worker.run("negative_elbo")[0]
        rows.append(
            f"| {label} | {worker.version} | {n_train / statistics.median(times[label]):,.0f} | "
            f"{spread(ratios(reference, times[label]))} | {elbo:.2f} |"
        )
        worker.close()
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--examples", type=int, default=30_000, help="training images")
    parser.add_argument("--quick", action="store_true", help="small data, 1 repeat")
    parser.add_argument("--out", type=Path, default=None, help="default: results/scaling.md")
    args = parser.parse_args(argv)
    out = args.out or HERE / "results" / "scaling.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    data_file = out.parent / ".scaling_data.npz"
    n_train, n_test, source = prepare_data(data_file, args.quick)
    n_train = min(n_train, args.examples)
    gpus = count_gpus()
    try:
        rows = table(data_file, n_train, args.batch_size, 1 if args.quick else args.repeats, gpus)
    finally:
        data_file.unlink(missing_ok=True)
    where = f"{gpus} GPU(s)" if gpus else machine()
    command = "python benchmarks/scaling.py" + (" --quick" if args.quick else "")
    text = "\n".join(
        [
            f"{date.today().isoformat()}; {where}; {source} ({n_train:,} training and "
            f"{n_test:,} test images); `{command}` "
            f"({(time.perf_counter() - started) / 60:.1f} min).",
            "",
            *rows,
        ]
    )
    out.write_text(f"# Scaling out: strategies and precisions\n\n{text}\n")
    print(text)
    if not args.quick and args.out is None:
        update_readme(HERE / "README.md", "scaling", text)


if __name__ == "__main__":
    main()
