"""Disentanglement on dSprites: six objectives x 3 seeds, every metric, at one CPU budget.

The models, as `tfvae.models.build(NAME, (64, 64, 1), "mlp", 10, "bernoulli")` builds
them (MLP 512-256, 10 latents), each with its registered defaults but where stated:

    vae             beta = 1
    beta_vae        beta = 4
    beta_tcvae      beta = 6 on the total correlation, dataset_size = 737,280
    factor_vae      gamma = 40, discriminator 6 x 1000 leaky ReLU
    dip_vae_i       lambda_od = 10, lambda_d = 100
    capacity_vae    gamma = 1000, C_max = 25 nats, reached after a third of the steps
                    (disentanglement_lib: after 100,000 of 300,000)

Data: dSprites through `tfvae.data.load("dsprites")`: the original file when TFDS has
it, else rendered (`tfvae.dsprites`; the rendered set is not the original file).
Training: Adam 1e-3, batch 64, `--steps` steps (default 3,000: 192,000 images, a
quarter of an epoch; disentanglement_lib trains 300,000 steps with Adam 1e-4).
Metrics (`tfvae.evaluation.disentanglement_scores`), with sizes below
disentanglement_lib's to fit the budget: MIG, DCI and SAP on 5,000 training and
2,500 test points (DCI with 20 boosting stages instead of 100); BetaVAE and
FactorVAE scores on 500 training and 250 evaluation points of batches of 64.

Usage:

    python benchmarks/disentanglement.py              # the table of benchmarks/README.md
    python benchmarks/disentanglement.py --quick      # 200 steps, one seed, small metrics
    python benchmarks/disentanglement.py --steps 300000 --full-metrics   # the papers' budget

Each finished (model, seed) is kept in `benchmarks/results/disentanglement/` and skipped
when the command runs again, so a stopped run resumes. At the end the table goes into
`benchmarks/README.md` between the `disentanglement` markers (not for `--quick`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEEDS = (0, 1, 2)
#: name, the registry's model, its settings.
MODELS = (
    ("VAE", "vae", {}),
    ("beta-VAE (beta = 4)", "beta_vae", {}),
    ("beta-TCVAE (beta = 6)", "beta_tcvae", {}),
    ("FactorVAE (gamma = 40)", "factor_vae", {}),
    ("DIP-VAE-I (lambda_od = 10)", "dip_vae_i", {}),
    ("capacity-annealed beta-VAE (C = 25)", "capacity_vae", {}),
)
SIZES = dict(num_train=5000, num_test=2500, num_points=500, num_eval_points=250, num_trees=20)
QUICK_SIZES = dict(num_train=1000, num_test=500, num_points=50, num_eval_points=25, num_trees=5)
COLUMNS = (
    ("beta_vae_score", "BetaVAE"),
    ("factor_vae_score", "FactorVAE"),
    ("mig", "MIG"),
    ("dci_disentanglement", "DCI D"),
    ("dci_completeness", "DCI C"),
    ("dci_informativeness", "DCI I"),
    ("sap", "SAP"),
)


def train_and_score(model: str, seed: int, steps: int, sizes: dict) -> dict:
    import keras

    import tfvae

    keras.utils.set_random_seed(seed)
    options = {}
    if model == "capacity_vae":
        options["capacity_steps"] = max(1, steps // 3)
    if model == "beta_tcvae":
        options["dataset_size"] = tfvae.data.num_examples("dsprites")
    vae = tfvae.models.build(model, (64, 64, 1), "mlp", 10, "bernoulli", seed=seed, **options)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    train = tfvae.data.load("dsprites", "train", batch_size=64, seed=seed)
    start = time.perf_counter()
    history = vae.fit(train.take(steps), epochs=1, verbose=0).history
    seconds = time.perf_counter() - start
    x_test, _ = tfvae.data.load_arrays("dsprites", "test")
    kl = tfvae.evaluation.kl_per_dimension(vae, x_test[:2000])
    start = time.perf_counter()
    scores = tfvae.evaluation.disentanglement_scores(vae, seed=seed, **sizes)
    return {
        "model": model,
        "seed": seed,
        "steps": steps,
        "train_seconds": round(seconds, 1),
        "metric_seconds": round(time.perf_counter() - start, 1),
        "final": {name: round(float(v[-1]), 3) for name, v in history.items()},
        "kl_per_dimension": kl.round(3).tolist(),
        **scores,
    }


def table(results: dict, steps: int, data: str) -> str:
    import numpy as np

    lines = [
        f"dSprites ({data}), MLP 512-256, 10 latents, Adam 1e-3, batch 64, {steps} steps; "
        "mean ± s.d. over seeds 0, 1, 2. Metric sizes: MIG, DCI and SAP on 5,000 training "
        "and 2,500 test points (DCI: 20 boosting stages); BetaVAE and FactorVAE scores on "
        "500 / 250 points of 64 images.",
        "",
        "| model | " + " | ".join(title for _, title in COLUMNS) + " | ELBO, nats | train s |",
        "| --- |" + " ---: |" * (len(COLUMNS) + 2),
    ]
    for title, model, _ in MODELS:
        runs = [results[(model, s)] for s in SEEDS if (model, s) in results]
        if not runs:
            continue
        cells = []
        for key, _ in COLUMNS:
            values = np.array([r[key] for r in runs])
            spread = values.std(ddof=1) if len(runs) > 1 else 0.0
            cells.append(f"{values.mean():.3f} ± {spread:.3f}")
        elbo = np.mean([r["final"]["elbo"] for r in runs])
        seconds = np.mean([r["train_seconds"] for r in runs])
        lines.append(f"| {title} | " + " | ".join(cells) + f" | {elbo:.1f} | {seconds:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--full-metrics", action="store_true", help="disentanglement_lib's sizes")
    args = parser.parse_args(argv)
    steps = 200 if args.quick else args.steps
    sizes = QUICK_SIZES if args.quick else ({} if args.full_metrics else SIZES)
    seeds = SEEDS[:1] if args.quick else SEEDS
    out = HERE / "results" / ("disentanglement_quick" if args.quick else "disentanglement")
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for seed in seeds:
        for _, model, _ in MODELS:
            path = out / f"{model}_seed{seed}_steps{steps}.json"
            if not path.is_file():
                print(f"{model} seed {seed}: training {steps} steps", flush=True)
                result = train_and_score(model, seed, steps, sizes)
                path.write_text(json.dumps(result, indent=2) + "\n")
            results[(model, seed)] = json.loads(path.read_text())
            r = results[(model, seed)]
            print(f"  {model} seed {seed}: MIG {r['mig']:.3f}, DCI {r['dci_disentanglement']:.3f}")
    data = next(iter(results.values()))["data"]
    text = table(results, steps, data)
    print(text)
    if not args.quick:
        sys.path.insert(0, str(HERE))
        from run import update_readme

        (HERE / "results" / "disentanglement.md").write_text(text + "\n")
        update_readme(HERE / "README.md", "disentanglement", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
