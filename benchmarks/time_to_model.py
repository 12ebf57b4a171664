"""Time to a trained model: whole processes, imports and compilation included, as users run them.

Each run is a fresh Python process that imports its framework, loads the same NumPy
arrays (flat grey-level MNIST from `../shared/data`, saved once to an .npz file),
builds the PyTorch tutorial's 784-400-20 VAE (`reference_torch.py`) or the same model
from tfvae's public API (the README's `mlp_encoder`/`mlp_decoder`, `VAE`, `compile()`
with its defaults, `fit(x_numpy, epochs=E, batch_size=128)`), and trains it for E
epochs. The runner alternates the two frameworks, E by E, and reports per E:

- the wall time from starting the process to the end of training (medians and
  ranges over the repeats, and the ratio per alternated pair);
- the seconds spent importing, and in the first and later epochs;
- working memory: peak RSS minus the RSS after the imports (the data, the model and
  everything training needs);
- the test negative ELBO each run reaches (evaluated after timing stops), and, for
  the longest runs, the time to a target test negative ELBO: the test set is
  evaluated after every epoch, and the evaluation time is left out of the clock.

Usage (after `pip install ".[test,benchmark]"`):

    python benchmarks/time_to_model.py                 # E = 1, 3, 10, 30; 3 repeats; ~15 min
    python benchmarks/time_to_model.py --epochs 1 3 --repeats 1   # a quicker look

It prints the tables, writes `benchmarks/results/time_to_model.md` and puts them into
`benchmarks/README.md` between the `time_to_model` markers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


# ---------------------------------------------------------------------- one run (child)
def _torch_run(x_train, x_test, epochs, curve):
    sys.path.insert(0, str(HERE))
    from reference_torch import ReferenceTrainer

    trainer = ReferenceTrainer(x_train, 128, seed=0)
    epoch_seconds, values, evaluating = [], [], 0.0
    for _ in range(epochs):
        start = time.perf_counter()
        trainer.train_epoch()
        epoch_seconds.append(time.perf_counter() - start)
        if curve:
            values.append(trainer.negative_elbo(x_test))
            evaluating += time.perf_counter() - start - epoch_seconds[-1]
    return epoch_seconds, values, evaluating, lambda: trainer.negative_elbo(x_test)


def _tfvae_run(x_train, x_test, epochs, curve):
    import keras

    import tfvae

    class Clock(keras.callbacks.Callback):
        """Epoch times; with `curve`, the test -ELBO after each epoch (off the clock)."""

        def __init__(self):
            super().__init__()
            self.seconds, self.values, self.evaluating = [], [], 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.start)
            if curve:
                start = time.perf_counter()
                self.values.append(negative_elbo())
                self.evaluating += time.perf_counter() - start

    def negative_elbo():
        result = vae.evaluate(x_test, batch_size=1000, verbose=0, return_dict=True)
        return -result["elbo"]

    keras.utils.set_random_seed(0)
    encoder = tfvae.networks.mlp_encoder((784,), 20, hidden_units=(400,))
    decoder = tfvae.networks.mlp_decoder(20, (784,), hidden_units=(400,))
    vae = tfvae.VAE(encoder, decoder, seed=0)
    vae.compile()
    clock = Clock()
    vae.fit(x_train, epochs=epochs, batch_size=128, verbose=0, callbacks=[clock])
    return clock.seconds, clock.values, clock.evaluating, negative_elbo


def child(framework: str, data_file: str, epochs: int, curve: bool) -> None:
    """One run: imports, data, training; prints one JSON line."""
    started = time.time()
    import numpy as np

    if framework == "torch":
        import torch  # noqa: F401
    else:
        import keras  # noqa: F401

        import tfvae

        tfvae.VAE  # noqa: B018  (imports the models, TensorFlow and TFP)
    imported = time.time()
    from run import rss_mb  # this script's folder is first on sys.path

    rss_imports = rss_mb("VmRSS")
    data = np.load(data_file)
    x_train, x_test = data["x_train"], data["x_test"]
    run = _torch_run if framework == "torch" else _tfvae_run
    epoch_seconds, curve_values, evaluating, negative_elbo = run(x_train, x_test, epochs, curve)
    trained = time.time()
    peak = rss_mb("VmHWM")
    result = {
        "started": started,
        "imported": imported,
        "trained": trained,
        "epoch_seconds": epoch_seconds,
        "curve": curve_values,
        "evaluation_s": evaluating,
        "rss_imports_mb": rss_imports,
        "peak_rss_mb": peak,
        "negative_elbo": negative_elbo(),
    }
    print("RESULT " + json.dumps(result), flush=True)


# ---------------------------------------------------------------------- the runner
def one_run(framework: str, data_file: Path, epochs: int, curve: bool) -> dict:
    """Starts a fresh process; the clock starts before it is spawned."""
    command = [sys.executable, __file__, "--child", framework, str(data_file), str(epochs)]
    if curve:
        command.append("--curve")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    spawned = time.time()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise RuntimeError(f"{framework} run failed:\n{done.stderr[-3000:]}")
    result = json.loads(lines[-1][len("RESULT ") :])
    result["spawned"] = spawned
    # The evaluations between epochs (the curve) are off the clock.
    result["total_s"] = result["trained"] - spawned - result["evaluation_s"]
    result["import_s"] = result["imported"] - spawned
    result["working_mb"] = result["peak_rss_mb"] - result["rss_imports_mb"]
    return result


def _span(values, digits=1) -> str:
    return (
        f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f} to "
        f"{max(values):.{digits}f})"
    )


def time_to_target(result: dict, target: float) -> float | None:
    """Seconds from spawning to the end of the first epoch at or below `target`,
    counting imports, set-up and training, not the evaluations."""
    if not result["curve"]:
        return None
    set_up = result["total_s"] - sum(result["epoch_seconds"])
    for epoch, value in enumerate(result["curve"]):
        if value <= target:
            return set_up + sum(result["epoch_seconds"][: epoch + 1])
    return None


def tables(results: dict, target: float) -> list[str]:
    rows = [
        "| epochs E | PyTorch tutorial, s | tfvae, s | speed-up (per pair) | "
        "test -ELBO, torch / tfvae |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for epochs, runs in results.items():
        torch_total = [r["total_s"] for r in runs["torch"]]
        tfvae_total = [r["total_s"] for r in runs["tfvae"]]
        pairs = [t / f for t, f in zip(torch_total, tfvae_total)]
        elbo = [statistics.median(r["negative_elbo"] for r in runs[k]) for k in runs]
        rows.append(
            f"| {epochs} | {_span(torch_total)} | {_span(tfvae_total)} | "
            f"{_span(pairs, 2)} ({', '.join(f'{p:.2f}' for p in pairs)}) | "
            f"{elbo[0]:.2f} / {elbo[1]:.2f} |"
        )
    rows += [
        "",
        "Where the time goes (medians over every run of each framework):",
        "",
        "| | imports (process start to imported) | epoch 1 | later epochs, each | "
        "RSS after imports, MB | peak RSS, MB | working memory, MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    every = {k: [r for runs in results.values() for r in runs[k]] for k in ("torch", "tfvae")}
    for name, runs in every.items():
        later = [s for r in runs for s in r["epoch_seconds"][1:]]
        later_text = f"{statistics.median(later):.2f} s" if later else "n/a"
        rows.append(
            f"| {name} | {statistics.median(r['import_s'] for r in runs):.2f} s | "
            f"{statistics.median(r['epoch_seconds'][0] for r in runs):.2f} s | "
            f"{later_text} | "
            f"{statistics.median(r['rss_imports_mb'] for r in runs):,.0f} | "
            f"{statistics.median(r['peak_rss_mb'] for r in runs):,.0f} | "
            f"{statistics.median(r['working_mb'] for r in runs):,.0f} |"
        )
    longest = max(results)
    reach = {
        k: [time_to_target(r, target) for r in results[longest][k]] for k in ("torch", "tfvae")
    }
    if any(v is not None for values in reach.values() for v in values):
        rows += [
            "",
            f"Time to a test negative ELBO of {target:g} nats (the E = {longest} runs, "
            "the test set evaluated after every epoch, off the clock):",
            "",
            "| | seconds from process start, median (range) | runs that reached it |",
            "| --- | ---: | ---: |",
        ]
        for name, values in reach.items():
            reached = [v for v in values if v is not None]
            span = _span(reached) if reached else f"not within {longest} epochs"
            rows.append(f"| {name} | {span} | {len(reached)} of {len(values)} |")
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, nargs="+", default=[1, 3, 10, 30])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--target", type=float, default=104.0, help="test -ELBO, nats")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child", nargs=3, metavar=("FRAMEWORK", "DATA", "EPOCHS"))
    parser.add_argument("--curve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        framework, data_file, epochs = args.child
        child(framework, data_file, int(epochs), args.curve)
        return

    sys.path.insert(0, str(HERE))
    from run import machine, prepare_data, update_readme

    started = time.perf_counter()
    out = args.out or HERE / "results" / "time_to_model.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    data_file = out.parent / ".time_to_model_data.npz"
    n_train, n_test, source = prepare_data(data_file, quick=False)
    longest = max(args.epochs)
    results: dict = {}
    try:
        for epochs in args.epochs:
            results[epochs] = {"torch": [], "tfvae": []}
            for repeat in range(args.repeats):
                # Alternate which framework goes first, pair by pair.
                order = ("torch", "tfvae") if repeat % 2 == 0 else ("tfvae", "torch")
                for framework in order:
                    result = one_run(framework, data_file, epochs, curve=epochs == longest)
                    results[epochs][framework].append(result)
                    print(
                        f"E={epochs} {framework}: {result['total_s']:.1f} s, "
                        f"-ELBO {result['negative_elbo']:.2f}, working "
                        f"{result['working_mb']:.0f} MB",
                        flush=True,
                    )
    finally:
        data_file.unlink(missing_ok=True)
    command = "python benchmarks/time_to_model.py"
    if args.epochs != [1, 3, 10, 30] or args.repeats != 3:
        command += f" --epochs {' '.join(map(str, args.epochs))} --repeats {args.repeats}"
    import torch

    import tfvae

    header = [
        f"{time.strftime('%Y-%m-%d')}; {machine()}; {source} ({n_train:,} training and "
        f"{n_test:,} test images); torch {torch.__version__}, tfvae {tfvae.__version__}; "
        f"`{command}` ({(time.perf_counter() - started) / 60:.1f} min). Each cell: median "
        f"(min to max) over {args.repeats} fresh processes per framework, alternated.",
        "",
    ]
    text = "\n".join(header + tables(results, args.target))
    out.write_text(f"# Time to a trained model\n\n{text}\n")
    (out.parent / "time_to_model.json").write_text(json.dumps(results, indent=1))
    print(text)
    if args.out is None:
        update_readme(HERE / "README.md", "time_to_model", text.strip())


if __name__ == "__main__":
    main()
