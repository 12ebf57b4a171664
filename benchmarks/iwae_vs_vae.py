"""VAE against IWAE (k = 5 and 50) on the fixed binarized MNIST: test log-likelihood.

All three use the same MLP (784 -> 512 -> 256 -> 20 and back, Bernoulli), the same
optimiser (Adam 1e-3, batch 128) and the same number of epochs on the 50,000 training
images of the fixed binarisation (Larochelle & Murray 2011, from ../shared/data). For
each, on the test split, the script reports the ELBO, the bounds L_5 and L_50, and the
importance-sampled log-likelihood L_k (`tfvae.evaluation`) with its standard error.

Burda et al. (2016) report, on this split, -88.71 nats (one-stochastic-layer VAE) and
-87.10 nats (IWAE, k = 50). Those numbers come after 3,280 passes over the data and
use k = 5000 at test time. The default budget here is a few epochs on 2 CPU cores, so
only the ordering is comparable.

    python benchmarks/iwae_vs_vae.py [--epochs 5] [--eval-k 1000] [--eval-examples 2000]
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import tfvae

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--eval-k", type=int, default=1000)
    parser.add_argument("--eval-examples", type=int, default=2000)
    parser.add_argument("--out", default=str(HERE / "results" / "iwae_vs_vae.md"))
    args = parser.parse_args(argv)

    import keras

    if not (SHARED / "binarized_mnist").is_dir():
        print("../shared/data/binarized_mnist is missing; nothing to measure.", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as data_dir:
        source = dict(manual_dir=str(SHARED), data_dir=data_dir, offline=True)
        train = tfvae.data.load("binarized_mnist", "train", batch_size=128, seed=0, **source)
        x_test, _ = tfvae.data.load_arrays("binarized_mnist", "test", **source)
        x_eval = x_test[: args.eval_examples]
        rows = []
        for name, k in (("VAE", None), ("IWAE k=5", 5), ("IWAE k=50", 50)):
            keras.utils.set_random_seed(0)
            if k is None:
                model = tfvae.models.build("vae", (28, 28, 1), latent_dim=20, seed=0)
            else:
                model = tfvae.models.build("iwae", (28, 28, 1), latent_dim=20, seed=0, k=k)
            model.compile(optimizer=keras.optimizers.Adam(1e-3))
            start = time.perf_counter()
            model.fit(train, epochs=args.epochs, verbose=0)
            seconds = time.perf_counter() - start
            elbo = model.evaluate(x_test, batch_size=500, verbose=0, return_dict=True)["elbo"]
            bounds = {}
            for bound_k in (5, 50):
                bounds[bound_k] = tfvae.evaluation.importance_sampled_log_likelihood(
                    model, x_eval, k=bound_k, seed=1
                ).nats
            estimate = tfvae.evaluation.importance_sampled_log_likelihood(
                model, x_eval, k=args.eval_k, seed=2
            )
            rows.append((name, seconds, elbo, bounds[5], bounds[50], estimate))
            print(
                f"{name}: {seconds:.0f} s, ELBO {elbo:.2f}, L_5 {bounds[5]:.2f}, "
                f"L_50 {bounds[50]:.2f}, L_{args.eval_k} {estimate.nats:.2f} "
                f"+- {estimate.standard_error:.2f}",
                flush=True,
            )

    lines = [
        "# VAE against IWAE on the fixed binarized MNIST",
        "",
        f"Date: {time.strftime('%Y-%m-%d')}. Machine: {platform.machine()}, Python "
        f"{platform.python_version()}. Command: `python benchmarks/iwae_vs_vae.py --epochs "
        f"{args.epochs} --eval-k {args.eval_k} --eval-examples {args.eval_examples}`.",
        "",
        f"Same MLP (784-512-256-20, Bernoulli), Adam 1e-3, batch 128, {args.epochs} epochs on "
        "the 50,000 training images. ELBO over the 10,000 test images. L_5, L_50 and "
        f"L_{args.eval_k} (the importance-sampled log-likelihood) over the first "
        f"{len(x_eval)} test images, in nats (higher is better).",
        "",
        f"| model | training s | test ELBO | L_5 | L_50 | log p(x) ~ L_{args.eval_k} (+- s.e.) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, seconds, elbo, l5, l50, estimate in rows:
        lines.append(
            f"| {name} | {seconds:.0f} | {elbo:.2f} | {l5:.2f} | {l50:.2f} | "
            f"{estimate.nats:.2f} +- {estimate.standard_error:.2f} |"
        )
    lines += [
        "",
        "Published (Burda et al. 2016, this split, 3,280 epochs, k = 5000 at test): VAE "
        "-88.71, IWAE k=50 -87.10 nats.",
    ]
    text = "\n".join(lines) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
