"""Sample quality on MNIST: FID, KID, precision/recall of every sampler, and the VQ-VAE's prior.

Three parts, each trained on the 60,000 MNIST training images (grey levels,
../shared/data) with `tfvae.models.build`'s defaults (Bernoulli likelihood, Adam 1e-3,
batch 128), and measured with 10,000 samples (the means of p(x|z)) against the 10,000
test images in the features of the MNIST classifier of `tfvae.feature_network` (its
test accuracy is printed). The floor is the FID of the test images against 10,000
training images.

- `gaussian`: the MLP VAE (784-512-256-20) and the convolutional VAE, then the
  samplers of `tfvae.samplers` fitted to the training codes (a 10-component Gaussian
  mixture; a two-stage VAE, 50 epochs): prior, GMM and two-stage samples.
- `vqvae`: the convolutional VQ-VAE (7 x 7 codes of 16, K = 128), then its gated
  PixelCNN prior (`fit_sampler("pixelcnn")`, 15 epochs, as `tfvae fit-sampler`):
  uniform codes against PixelCNN codes; the code NLL and bits/dim of the test images
  through the codes (`tfvae.evaluation.code_prior_elbo`); 64 samples written to
  `benchmarks/results/vqvae_pixelcnn_samples.png`.
- `conditional`: the MLP conditional VAE; the classifier's accuracy on samples of each
  class (goal: >= 95 % on average).

Usage:

    python benchmarks/sample_quality.py                 # about 40 minutes on 2 cores
    python benchmarks/sample_quality.py --quick         # 1 epoch each, 2,000 samples
    python benchmarks/sample_quality.py --parts vqvae   # one part

Each part's rows are kept in `benchmarks/results/sample_quality/<part>.json` as soon
as it ends, so a run that stops resumes with the parts left (`--fresh` measures all
again). At the end it prints Markdown tables, writes
`benchmarks/results/sample_quality.md` and puts them into `benchmarks/README.md`
between the `sample_quality` markers (not for `--quick`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("TFVAE_SHARED_DATA") or HERE.parent.parent / "shared" / "data")
PARTS = ("gaussian", "vqvae", "conditional")
FULL = {"mlp": 30, "conv": 10, "vqvae": 10, "pixelcnn": 15, "conditional": 30, "samples": 10_000}
QUICK = {"mlp": 1, "conv": 1, "vqvae": 1, "pixelcnn": 1, "conditional": 1, "samples": 2000}


class Bench:
    """The data, the feature network and the measures every part shares."""

    def __init__(self, budget: dict):
        import numpy as np

        import tfvae
        from tfvae import feature_network, sample_quality

        self.budget, self.sq, self.np = budget, sample_quality, np
        source = dict(manual_dir=str(SHARED))
        self.x_train, self.y_train = tfvae.data.load_arrays("mnist", "train", **source)
        self.x_test, self.y_test = tfvae.data.load_arrays("mnist", "test", **source)
        self.network = feature_network.load_feature_network("mnist", **source)
        print(f"feature network: test accuracy {self.network.test_accuracy:.4f}", flush=True)
        self.real = self.network.features(self.x_test)
        subset = np.random.default_rng(0).permutation(60_000)[:10_000]
        self.floor = sample_quality.frechet_distance(
            self.real, self.network.features(self.x_train[subset])
        )

    def train(self, model: str, network: str, latent_dim: int, epochs: int, **kwargs):
        import keras

        import tfvae

        keras.utils.set_random_seed(0)
        vae = tfvae.models.build(model, (28, 28, 1), network, latent_dim, "bernoulli", **kwargs)
        vae.compile()
        labels = (self.y_train,) if vae.is_conditional else ()
        clock = time.perf_counter()
        vae.fit(self.x_train, *labels, epochs=epochs, batch_size=128, verbose=2)
        trained = time.perf_counter() - clock
        labels = (self.y_test,) if vae.is_conditional else ()
        terms = vae.evaluate(self.x_test, *labels, verbose=0, return_dict=True)
        return vae, trained, terms

    def measure(self, vae, sampler: str) -> dict:
        samples = self.sq.generate(vae, self.budget["samples"], seed=1, sampler=sampler)
        fake = self.network.features(samples)
        precision, recall = self.sq.precision_recall(self.real, fake)
        kid = self.sq.kernel_inception_distance(self.real, fake)
        return {
            "sampler": sampler,
            "fid": self.sq.frechet_distance(self.real, fake),
            "kid": kid.value,
            "kid_se": kid.standard_error,
            "precision": precision,
            "recall": recall,
        }


def gaussian(bench: Bench) -> list[dict]:
    rows = []
    for network in ("mlp", "conv"):
        epochs = bench.budget[network]
        vae, trained, terms = bench.train("vae", network, 20, epochs, seed=0)
        fit_s = {"prior": 0.0}
        for sampler in ("gmm", "two_stage"):
            clock = time.perf_counter()
            vae.fit_sampler(sampler, bench.x_train, seed=0)
            fit_s[sampler] = time.perf_counter() - clock
        for sampler in ("prior", "gmm", "two_stage"):
            row = {"model": f"{network} VAE, {epochs} epochs", "test_elbo": terms["elbo"]}
            row.update(bench.measure(vae, sampler), train_s=trained, fit_s=fit_s[sampler])
            rows.append(row)
            print(row, flush=True)
    return rows


def vqvae(bench: Bench) -> list[dict]:
    from tfvae import evaluation, plots

    epochs = bench.budget["vqvae"]
    vq, trained, terms = bench.train("vqvae", "conv", 16, epochs, seed=0)
    model = f"conv VQ-VAE, {epochs} epochs"
    rows = [{"model": model, "test_elbo": terms["elbo"], **bench.measure(vq, "prior")}]
    rows[0].update(train_s=trained, fit_s=0.0, code_nll=vq.positions * bench.np.log(128))
    clock = time.perf_counter()
    vq.fit_sampler("pixelcnn", bench.x_train, epochs=bench.budget["pixelcnn"], verbose=2)
    fit_s = time.perf_counter() - clock
    bound = evaluation.code_prior_elbo(vq, bench.x_test, distortion=terms["distortion"])
    row = {"model": model, "test_elbo": bound.elbo, **bench.measure(vq, "pixelcnn")}
    row.update(train_s=trained, fit_s=fit_s, code_nll=bound.code_nll)
    row.update(bits_per_dim=bound.bits_per_dim, pixelcnn_epochs=bench.budget["pixelcnn"])
    rows.append(row)
    rows[0]["bits_per_dim"] = -terms["elbo"] / (784 * bench.np.log(2))
    picture = HERE / "results" / "vqvae_pixelcnn_samples.png"
    plots.plot_samples(vq, picture, n=64, seed=0)
    print(rows, f"wrote {picture}", flush=True)
    return rows


def conditional(bench: Bench) -> list[dict]:
    epochs = bench.budget["conditional"]
    vae, trained, terms = bench.train("conditional", "mlp", 20, epochs, seed=0, num_classes=10)
    quality = bench.sq.sample_quality(
        vae, bench.network, bench.x_test, num_samples=bench.budget["samples"], seed=1
    )
    row = {"model": f"mlp conditional VAE, {epochs} epochs", "test_elbo": terms["elbo"]}
    row.update(bench.measure(vae, "prior"), train_s=trained, fit_s=0.0)
    row.update(class_accuracy=quality["class_accuracy"], mean=quality["mean_class_accuracy"])
    print(row, flush=True)
    return [row]


def tables(rows: dict, floor: float, accuracy: float, header: str) -> str:
    lines = [
        f"{header} Features: a classifier with test accuracy {accuracy:.4f}. Floor (the test "
        f"images against 10,000 training images): FID {floor:.2f}.",
        "",
        "| model | test ELBO, nats | sampler (fit time) | FID | KID (± s.e.) | precision "
        "| recall |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for part in PARTS:
        for row in rows.get(part, []):
            fit = f" ({row['fit_s']:.0f} s)" if row["fit_s"] else ""
            lines.append(
                f"| {row['model']} | {row['test_elbo']:.2f} | {row['sampler']}{fit} | "
                f"{row['fid']:.2f} | {row['kid']:.4f} ± {row['kid_se']:.4f} | "
                f"{row['precision']:.3f} | {row['recall']:.3f} |"
            )
    if "vqvae" in rows:
        lines += [
            "",
            "VQ-VAE through its codes: the ELBO is log p(x | z_q(c)) + log p(c) (the posterior "
            "is a point mass on the codes c of x); `prior` is the uniform prior it trains with.",
            "",
            "| codes from | code NLL, nats per image | test ELBO, nats | bits/dim |",
            "| --- | ---: | ---: | ---: |",
        ]
        for row in rows["vqvae"]:
            which = (
                "uniform"
                if row["sampler"] == "prior"
                else f"PixelCNN, {row['pixelcnn_epochs']} epochs"
            )
            lines.append(
                f"| {which} | {row['code_nll']:.2f} | {row['test_elbo']:.2f} | "
                f"{row['bits_per_dim']:.4f} |"
            )
    if "conditional" in rows:
        row = rows["conditional"][0]
        accuracy = row["class_accuracy"]  # {class: accuracy}, keys as strings from JSON
        per_class = " / ".join(f"{accuracy[c]:.3f}" for c in sorted(accuracy, key=int))
        lines += [
            "",
            f"Conditional VAE: the classifier's accuracy on samples of each class 0 to 9: "
            f"{per_class}; mean **{row['mean']:.3f}** (goal: >= 0.95).",
        ]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--quick", action="store_true", help="1 epoch each, 2,000 samples")
    parser.add_argument("--fresh", action="store_true", help="measure kept parts again")
    args = parser.parse_args(argv)
    if not (SHARED / "mnist").is_dir():
        raise SystemExit(f"MNIST's original files are not in {SHARED}.")
    sys.path.insert(0, str(HERE))
    from run import machine, update_readme

    import tfvae

    started = time.perf_counter()
    kept = HERE / "results" / ("sample_quality_quick" if args.quick else "sample_quality")
    kept.mkdir(parents=True, exist_ok=True)
    bench = Bench(QUICK if args.quick else FULL)
    rows = {}
    for part in PARTS:
        path = kept / f"{part}.json"
        if part in args.parts and (args.fresh or not path.exists()):
            clock = time.perf_counter()
            result = {"rows": globals()[part](bench), "minutes": (time.perf_counter() - clock) / 60}
            path.write_text(json.dumps(result, indent=1, default=float))
        if path.exists():
            rows[part] = json.loads(path.read_text())["rows"]
    command = "python benchmarks/sample_quality.py" + (" --quick" if args.quick else "")
    header = (
        f"{time.strftime('%Y-%m-%d')}; {machine()}; tfvae {tfvae.__version__}; `{command}` "
        f"({(time.perf_counter() - started) / 60:.0f} min for the parts measured in this run). "
        f"MNIST grey levels, {bench.budget['samples']:,} samples (means of p(x|z)) against "
        "the 10,000 test images."
    )
    text = tables(rows, bench.floor, bench.network.test_accuracy, header)
    print(text)
    if not args.quick:
        (HERE / "results" / "sample_quality.md").write_text(
            f"# Sample quality on MNIST\n\n{text}\n"
        )
        update_readme(HERE / "README.md", "sample_quality", text)


if __name__ == "__main__":
    main()
