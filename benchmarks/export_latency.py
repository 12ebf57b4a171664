"""Export benchmark: .tflite sizes and the latency of one `sample` call, side by side.

For the reference MNIST MLP VAE (784 -> 512 -> 256 -> 20 and back, Bernoulli), trained
for one epoch on real MNIST (../shared/data) so the weights are realistic, this reports:

* the size of the float32, float16 and dynamic-int8 .tflite files;
* the median latency (and 10th-90th percentiles) of one `sample` call for n = 1 and
  n = 64 on LiteRT, against the same work in the same run through the Keras model
  (eager `vae.sample`, and the same computation under `tf.function`) and the
  SavedModel's `sample` signature.

Calls are interleaved round by round, so every path sees the same machine state.

    python benchmarks/export_latency.py [--repeats 200] [--out benchmarks/results/export_latency.md]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import tfvae
from tfvae import export, serving

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"


def trained_mnist_vae() -> tuple[tfvae.VAE, str]:
    import keras

    keras.utils.set_random_seed(0)
    vae = tfvae.VAE(*tfvae.networks.build("mlp", (28, 28, 1), latent_dim=20), seed=0)
    vae.compile()
    if (SHARED / "mnist").is_dir():
        with tempfile.TemporaryDirectory() as data_dir:
            train = tfvae.data.load(
                "mnist",
                "train",
                binarize="dynamic",
                seed=0,
                manual_dir=str(SHARED),
                data_dir=data_dir,
                offline=True,
            )
            vae.fit(train, epochs=1, verbose=0)
        return vae, "1 epoch on MNIST (../shared/data)"
    images = np.random.default_rng(0).random((1024, 28, 28, 1), dtype=np.float32)
    vae.fit(images, epochs=1, verbose=0)
    return vae, "1 epoch on random images (../shared/data not found)"


def percentiles(times: list[float]) -> tuple[float, float, float]:
    ordered = sorted(times)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return statistics.median(ordered), pick(0.1), pick(0.9)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--out", default=str(HERE / "results" / "export_latency.md"))
    args = parser.parse_args(argv)

    import tensorflow as tf

    vae, training = trained_mnist_vae()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        saved = export.export_saved_model(vae, folder / "saved_model")
        files = {
            q: export.to_tflite(saved, folder / f"{q}.tflite", quantization=q)
            for q in export.QUANTIZATIONS
        }
        sizes = {q: path.stat().st_size for q, path in files.items()}
        served = tf.saved_model.load(str(saved)).signatures["sample"]
        graph_sample = tf.function(
            lambda n: vae.decoder(vae.prior.stateful_sample(n)).mean(),
            input_signature=[tf.TensorSpec((), tf.int32)],
        )
        lite = {q: serving.LiteRTModel(path) for q, path in files.items()}
        z = np.random.default_rng(1).normal(size=(256, 20)).astype(np.float32)
        expected = vae.decode(z).mean().numpy()
        errors = {q: float(np.abs(m.decode(z)["mean"] - expected).max()) for q, m in lite.items()}
        paths = {
            "Keras, eager vae.sample": lambda n: np.asarray(vae.sample(n)),
            "Keras, tf.function": lambda n: graph_sample(tf.constant(n)).numpy(),
            "SavedModel signature": lambda n: served(n=tf.constant(n))["x"].numpy(),
            **{f"LiteRT {q or 'float32'}": lite[q].sample for q in export.QUANTIZATIONS},
        }
        rows = []
        for n in (1, 64):
            times = {name: [] for name in paths}
            for fn in paths.values():  # warm-up: tracing, allocation, delegates
                for _ in range(5):
                    fn(n)
            for _ in range(args.repeats):
                for name, fn in paths.items():
                    start = time.perf_counter()
                    out = fn(n)
                    times[name].append(time.perf_counter() - start)
                    assert out.shape == (n, 28, 28, 1)
            reference = statistics.median(times["Keras, eager vae.sample"])
            for name, values in times.items():
                median, low, high = percentiles(values)
                rows.append((n, name, median * 1e3, low * 1e3, high * 1e3, reference / median))

    lines = [
        "# Export benchmark: .tflite size and `sample` latency",
        "",
        f"Date: {time.strftime('%Y-%m-%d')}. Machine: {platform.machine()}, "
        f"{platform.processor() or 'CPU'}, Python {platform.python_version()}, "
        f"TensorFlow {tf.__version__}. Model: the MNIST MLP VAE (784-512-256-20), "
        f"trained {training}. Command: `python benchmarks/export_latency.py "
        f"--repeats {args.repeats}`.",
        "",
        "Size, and the largest difference of `decode` means from the Keras model's over 256",
        "draws of z:",
        "",
        "| file | bytes | vs float32 | max abs error of decode mean |",
        "| --- | ---: | ---: | ---: |",
    ]
    for q, size in sizes.items():
        lines.append(
            f"| model{'.' + q if q else ''}.tflite | {size:,} | "
            f"{size / sizes[None]:.2f} | {errors[q]:.1e} |"
        )
    lines += [
        "",
        f"Latency of one `sample(n)` call, {args.repeats} calls each, interleaved "
        "(median, 10th-90th percentile); speed-up is against eager Keras in the same run.",
        "",
        "| n | path | median ms | p10-p90 ms | speed-up vs eager Keras |",
        "| ---: | --- | ---: | ---: | ---: |",
    ]
    for n, name, median, low, high, speedup in rows:
        lines.append(f"| {n} | {name} | {median:.3f} | {low:.3f}-{high:.3f} | {speedup:.1f}x |")
    text = "\n".join(lines) + "\n"
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
