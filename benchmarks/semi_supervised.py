"""Semi-supervised MNIST: test error of M2 and M1+M2 with 100 labels (Kingma et al. 2014).

The paper's Table 1 protocol: the 60,000 MNIST training images (grey levels,
../shared/data), of which a class-balanced subset of 100 keeps its labels
(`tfvae.data.labelled_subset`, label seeds 0, 1, 2), and the error of the classifier
q(y|x) on the 10,000 test images. Models as `tfvae train` builds them:

- M2: `tfvae.models.build("semi_supervised", (28, 28, 1), "mlp", 50)`, alpha = 0.1 N
  (each labelled example's cross-entropy weighs 0.1 * 60000 / 100 = 60);
- M1: `tfvae.models.build("vae", (28, 28, 1), "mlp", 50)`, trained once on all images;
- M1+M2: M2 on M1's latents (the dimensions it uses, `used_dimensions`), drawn from
  q(z1|x) in training, their means for the test error.

All: Adam 1e-3, batch 100. The test error is measured after every epoch, so each run
gives its error curve.

Usage:

    python benchmarks/semi_supervised.py            # M1 30 epochs, M2 10, M1+M2 30
    python benchmarks/semi_supervised.py --quick    # 1 epoch each, one seed
    python benchmarks/semi_supervised.py --epochs-m2 300 --epochs-m12 1000   # on a GPU
    python benchmarks/semi_supervised.py --kl-warmup 10 --seeds 0 --epochs-m12 15  # warm-up

A run that stops resumes: after each epoch every run keeps its model in
`benchmarks/results/.semi_supervised/` (ignored by git) and its curve in
`benchmarks/results/semi_supervised/<run>.json`. At the end it prints a Markdown
table, writes `benchmarks/results/semi_supervised.md` and puts it into
`benchmarks/README.md` between the `semi_supervised` markers (not for `--quick`).
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
LABELS, SEEDS, LATENT, BATCH = 100, (0, 1, 2), 50, 100
#: Kingma et al. (2014), Table 1, MNIST test error (%), mean and standard deviation.
PAPER = {
    100: {"M2": (11.97, 1.71), "M1+M2": (3.33, 0.14)},
    1000: {"M2": (3.60, 0.56), "M1+M2": (2.40, 0.02)},
}


class Runs:
    """Where each run keeps its state, and the data every run shares."""

    def __init__(self, quick: bool):
        import tfvae

        suffix = "_quick" if quick else ""
        self.curves = HERE / "results" / f"semi_supervised{suffix}"
        self.models = HERE / "results" / f".semi_supervised{suffix}"
        for folder in (self.curves, self.models):
            folder.mkdir(parents=True, exist_ok=True)
        source = dict(manual_dir=str(SHARED))
        self.x_train, self.y_train = tfvae.data.load_arrays("mnist", "train", **source)
        self.x_test, self.y_test = tfvae.data.load_arrays("mnist", "test", **source)

    def curve(self, name: str) -> dict:
        path = self.curves / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else {"epochs": 0, "rows": []}

    def train(self, name: str, epochs: int, build, x, y=None, callbacks=()):
        """Trains (or resumes) run `name` to `epochs` epochs; returns (model, curve)."""
        import keras

        import tfvae
        from tfvae.files import atomic_output

        curve, path = self.curve(name), self.models / f"{name}.keras"
        if curve["epochs"] and path.exists():
            model = tfvae.loading.load_vae(path)
        else:
            keras.utils.set_random_seed(0)
            model, curve = build(), {"epochs": 0, "rows": [], "seconds": 0.0}
            model.compile(optimizer=keras.optimizers.Adam(1e-3))
        if curve["epochs"] >= epochs:
            return model, curve
        runs = self

        class Keep(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.clock = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                row = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}}
                curve["seconds"] += time.perf_counter() - self.clock
                if model.classifies:
                    row["test_error"] = float((model.classify(runs.x_test) != runs.y_test).mean())
                curve["rows"].append(row)
                curve["epochs"] = epoch + 1
                with atomic_output(path, overwrite=True) as partial:
                    model.save(partial)
                (runs.curves / f"{name}.json").write_text(json.dumps(curve, indent=1))
                print(name, row, flush=True)

        labels = () if y is None else (y,)
        model.fit(
            x,
            *labels,
            epochs=epochs,
            initial_epoch=curve["epochs"],
            batch_size=BATCH,
            verbose=0,
            callbacks=[Keep(), *callbacks],
        )
        return model, curve


def run_all(runs: Runs, budget: dict, seeds, kl_warmup: int | None = None) -> dict:
    import tfvae
    from tfvae import schedules
    from tfvae.models import semi_supervised

    x, n = runs.x_train, len(runs.x_train)
    m1, _ = runs.train(
        "m1",
        budget["m1"],
        lambda: tfvae.models.build("vae", (28, 28, 1), "mlp", LATENT, "bernoulli", seed=0),
        x,
    )
    dims = semi_supervised.used_dimensions(m1, x[:1000])
    print(f"M1 uses {len(dims)} of {LATENT} dimensions", flush=True)
    curves = {"m1_dims": len(dims)}
    for seed in seeds:
        y = tfvae.data.labelled_subset(runs.y_train, LABELS, seed=seed)

        def m2(seed=seed, **features):
            return tfvae.models.build(
                "semi_supervised",
                (28, 28, 1),
                "mlp",
                LATENT,
                "bernoulli",
                labelled_fraction=LABELS / n,
                seed=seed,
                **features,
            )

        if kl_warmup is not None:  # M1+M2 alone, beta rising from 0 to 1 over kl_warmup epochs
            warmup = schedules.KLScheduleCallback(schedules.LinearWarmup(kl_warmup), unit="epoch")
            name = f"m12_warmup{kl_warmup}_seed{seed}"
            curves[name] = runs.train(
                name, budget["m12"], lambda: m2(features=m1, feature_dims=dims), x, y, [warmup]
            )[1]
            continue
        curves[f"m2_seed{seed}"] = runs.train(f"m2_seed{seed}", budget["m2"], m2, x, y)[1]
        stacked = runs.train(
            f"m12_seed{seed}",
            budget["m12"],
            lambda: m2(features=m1, feature_dims=dims),
            x,
            y,
        )
        curves[f"m12_seed{seed}"] = stacked[1]
    return curves


def table(curves: dict, seeds, budget: dict, header: str) -> str:
    import numpy as np

    lines = [
        header,
        "",
        "| model | epochs | test error, % (mean ± s.d. over label seeds) | per seed | "
        "best epoch's error, % | s per epoch | paper (Table 1) |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for model, key in (("M2", "m2"), ("M1+M2", "m12")):
        runs = [curves[f"{key}_seed{s}"] for s in seeds]
        final = np.array([100 * r["rows"][-1]["test_error"] for r in runs])
        best = np.array([100 * min(row["test_error"] for row in r["rows"]) for r in runs])
        seconds = np.mean([r["seconds"] / r["epochs"] for r in runs])
        mean, sd = PAPER[LABELS][model]
        spread = final.std(ddof=1) if len(final) > 1 else 0.0
        lines.append(
            f"| {model} | {budget[key]} | **{final.mean():.2f} ± {spread:.2f}** | "
            f"{' / '.join(f'{v:.2f}' for v in final)} | {best.mean():.2f} | {seconds:.1f} | "
            f"{mean:.2f} ± {sd:.2f} |"
        )
    lines += ["", "Test error (%) against epochs, mean over the label seeds:", ""]
    for model, key in (("M2", "m2"), ("M1+M2", "m12")):
        runs = [curves[f"{key}_seed{s}"] for s in seeds]
        epochs = min(r["epochs"] for r in runs)
        marks = sorted({e for e in (1, 2, 5, 10, 20, 30, 50, 100, 200, 300, 500) if e <= epochs})
        marks = marks + ([epochs] if epochs not in marks else [])
        points = [
            f"{e}: {np.mean([100 * r['rows'][e - 1]['test_error'] for r in runs]):.2f}"
            for e in marks
        ]
        lines.append(f"- {model}: " + ", ".join(points))
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 epoch each, label seed 0")
    parser.add_argument("--epochs-m1", type=int, default=30)
    parser.add_argument("--epochs-m2", type=int, default=10)
    parser.add_argument("--epochs-m12", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument(
        "--kl-warmup",
        type=int,
        help="M1+M2 only, with beta warmed up from 0 over this many epochs; prints its curve",
    )
    args = parser.parse_args(argv)
    if not (SHARED / "mnist").is_dir():
        raise SystemExit(f"MNIST's original files are not in {SHARED}.")
    sys.path.insert(0, str(HERE))
    from run import machine, update_readme

    import tfvae

    started = time.perf_counter()
    budget = {"m1": args.epochs_m1, "m2": args.epochs_m2, "m12": args.epochs_m12}
    if args.quick:
        budget = {"m1": 1, "m2": 1, "m12": 1}
    seeds = SEEDS[:1] if args.quick else tuple(args.seeds)
    runs = Runs(args.quick)
    curves = run_all(runs, budget, seeds, args.kl_warmup)
    if args.kl_warmup is not None:
        for name, curve in curves.items():
            if name != "m1_dims":
                errors = ", ".join(f"{100 * r['test_error']:.1f}" for r in curve["rows"])
                print(f"{name}: test error (%) by epoch: {errors}")
        return
    command = "python benchmarks/semi_supervised.py" + (" --quick" if args.quick else "")
    if not args.quick and (args.epochs_m1, args.epochs_m2, args.epochs_m12) != (30, 10, 30):
        command += f" --epochs-m1 {args.epochs_m1} --epochs-m2 {args.epochs_m2} "
        command += f"--epochs-m12 {args.epochs_m12}"
    header = (
        f"{time.strftime('%Y-%m-%d')}; {machine()}; tfvae {tfvae.__version__}; `{command}` "
        f"({(time.perf_counter() - started) / 60:.0f} min in this run). MNIST, {LABELS} labels "
        f"(10 per class), label seeds {', '.join(map(str, seeds))}; test error of q(y|x) on "
        f"the 10,000 test images after the last epoch. M1 ({budget['m1']} epochs) uses "
        f"{curves['m1_dims']} of its {LATENT} latent dimensions."
    )
    text = table(curves, seeds, budget, header)
    print(text)
    if not args.quick:
        (HERE / "results" / "semi_supervised.md").write_text(f"# Semi-supervised MNIST\n\n{text}\n")
        update_readme(HERE / "README.md", "semi_supervised", text)


if __name__ == "__main__":
    main()
