"""Sample quality on MNIST: FID, KID, precision and recall of prior, GMM and two-stage samples.

Trains the MLP VAE (`tfvae train`'s default: 784-512-256-20, Bernoulli, Adam 1e-3,
batch 128) and the convolutional VAE on the 60,000 MNIST training images (grey
levels, ../shared/data), then fits the two samplers of `tfvae.samplers` to the
training codes (a 10-component Gaussian mixture; a two-stage VAE, 50 epochs) and
measures 10,000 samples of each (the means of p(x|z)) against the 10,000 test images
in the features of the MNIST classifier of `tfvae.feature_network` (its test accuracy
is printed). The floor is the FID of the test images against 10,000 training images.

Usage:

    python benchmarks/sample_quality.py                      # about 15 minutes on 2 cores
    python benchmarks/sample_quality.py --mlp-epochs 3 --conv-epochs 1   # a quick look

It prints a Markdown table, writes `benchmarks/results/sample_quality.md` and puts it
into `benchmarks/README.md` between the `sample_quality` markers.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("TFVAE_SHARED_DATA") or HERE.parent.parent / "shared" / "data")
SAMPLERS = ("prior", "gmm", "two_stage")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mlp-epochs", type=int, default=30)
    parser.add_argument("--conv-epochs", type=int, default=10)
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if not (SHARED / "mnist").is_dir():
        raise SystemExit(f"MNIST's original files are not in {SHARED}.")
    sys.path.insert(0, str(HERE))
    import keras
    import numpy as np
    from run import machine, update_readme

    import tfvae
    from tfvae import feature_network, sample_quality

    started = time.perf_counter()
    source = dict(manual_dir=str(SHARED))
    x_train, _ = tfvae.data.load_arrays("mnist", "train", **source)
    x_test, _ = tfvae.data.load_arrays("mnist", "test", **source)
    network = feature_network.load_feature_network("mnist", **source)
    print(f"feature network: test accuracy {network.test_accuracy:.4f}", flush=True)
    real = network.features(x_test)
    floor = sample_quality.frechet_distance(
        real, network.features(x_train[np.random.default_rng(0).permutation(60_000)[:10_000]])
    )
    rows = []
    for name, epochs in (("mlp", args.mlp_epochs), ("conv", args.conv_epochs)):
        keras.utils.set_random_seed(0)
        vae = tfvae.models.build("vae", (28, 28, 1), name, 20, "bernoulli", seed=0)
        vae.compile()
        clock = time.perf_counter()
        history = vae.fit(x_train, epochs=epochs, batch_size=128, verbose=2)
        trained = time.perf_counter() - clock
        test_elbo = vae.evaluate(x_test, verbose=0, return_dict=True)["elbo"]
        fitted = {}
        for sampler in SAMPLERS[1:]:
            clock = time.perf_counter()
            vae.fit_sampler(sampler, x_train, seed=0)
            fitted[sampler] = time.perf_counter() - clock
        for sampler in SAMPLERS:
            samples = sample_quality.generate(vae, args.samples, seed=1, sampler=sampler)
            fake = network.features(samples)
            precision, recall = sample_quality.precision_recall(real, fake)
            kid = sample_quality.kernel_inception_distance(real, fake)
            rows.append(
                {
                    "network": name,
                    "epochs": epochs,
                    "train_s": trained,
                    "test_elbo": test_elbo,
                    "final_loss": history.history["loss"][-1],
                    "sampler": sampler,
                    "fit_s": fitted.get(sampler, 0.0),
                    "fid": sample_quality.frechet_distance(real, fake),
                    "kid": kid.value,
                    "kid_se": kid.standard_error,
                    "precision": precision,
                    "recall": recall,
                }
            )
            print(rows[-1], flush=True)
    command = "python benchmarks/sample_quality.py"
    if (args.mlp_epochs, args.conv_epochs, args.samples) != (30, 10, 10_000):
        command += (
            f" --mlp-epochs {args.mlp_epochs} --conv-epochs {args.conv_epochs} "
            f"--samples {args.samples}"
        )
    lines = [
        f"{time.strftime('%Y-%m-%d')}; {machine()}; tfvae {tfvae.__version__}; `{command}` "
        f"({(time.perf_counter() - started) / 60:.1f} min). MNIST grey levels, "
        f"{args.samples:,} samples (means of p(x|z)) against the 10,000 test images, in the "
        f"features of a classifier with test accuracy {network.test_accuracy:.4f}. Floor (test "
        f"against 10,000 training images): FID {floor:.2f}.",
        "",
        "| network, epochs | test ELBO, nats | sampler (fit time) | FID | KID (± s.e.) | "
        "precision | recall |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        fit = f" ({row['fit_s']:.0f} s)" if row["sampler"] != "prior" else ""
        lines.append(
            f"| {row['network']}, {row['epochs']} | {row['test_elbo']:.2f} | {row['sampler']}{fit} "
            f"| {row['fid']:.2f} | {row['kid']:.3f} ± {row['kid_se']:.3f} | "
            f"{row['precision']:.3f} | {row['recall']:.3f} |"
        )
    text = "\n".join(lines)
    out = args.out or HERE / "results" / "sample_quality.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"# Sample quality on MNIST\n\n{text}\n")
    print(text)
    if args.out is None:
        update_readme(HERE / "README.md", "sample_quality", text)


if __name__ == "__main__":
    main()
