"""Reproduce a paper's row: train under its protocol file, then estimate log p(x), k = 5000.

Each row is a protocol file in `benchmarks/reproduce/protocols/` (the paper, its
data and binarization, architecture, optimiser and schedule, batch size, epochs, the
estimator and the reference value). This script trains it with tfvae's public API
(`tfvae.networks`, `tfvae.optimizers`, `tfvae.VAE` / `IWAE` / `HierarchicalVAE`,
`fit` on NumPy arrays), writes TensorBoard logs, and estimates the test
log-likelihood with `tfvae.evaluation.importance_sampled_log_likelihood` on the whole
test split.

A run stops and resumes: after every epoch it writes a verified checkpoint
(`tfvae.checkpoints`) in `benchmarks/results/.reproduce/<row>/` (ignored by git), so
running the same command again continues where it stopped, with each epoch's data
order and binarization fixed by its number. `--epochs N` stops after N epochs of the
protocol (a CPU budget); a later run with a larger N, or none, continues it. The test
ELBO is recorded at the end of each stage and every `--curve-every` epochs.

The result goes to `benchmarks/results/reproduce/<row>.json` and into the table in
`benchmarks/README.md` (between the `reproduce` markers), with the paper's value, the
epochs run, the wall time, the device and the commit.

Usage:

    python benchmarks/reproduce/run.py burda_vae_1layer_fixed             # full protocol
    python benchmarks/reproduce/run.py burda_iwae_1layer_dynamic --epochs 13   # a budget
    python benchmarks/reproduce/run.py --table                              # table only
    python benchmarks/reproduce/run.py --list
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import tomllib

HERE = Path(__file__).resolve().parent
BENCHMARKS = HERE.parent
ROOT = BENCHMARKS.parent
PROTOCOLS = HERE / "protocols"
RESULTS = BENCHMARKS / "results" / "reproduce"
STATE = BENCHMARKS / "results" / ".reproduce"
SHARED = Path(os.environ.get("TFVAE_SHARED_DATA", ROOT.parent / "shared" / "data"))
KINDS = ("vae", "iwae", "stacked")


def protocol(row: str) -> dict:
    path = PROTOCOLS / f"{row}.toml"
    if not path.is_file():
        rows = ", ".join(sorted(p.stem for p in PROTOCOLS.glob("*.toml")))
        raise SystemExit(f"No protocol {row!r}. Expected one of: {rows}")
    spec = tomllib.loads(path.read_text())
    if spec["model"]["kind"] not in KINDS:
        raise SystemExit(f"{path.name}: model.kind must be one of {KINDS}")
    return spec


def total_epochs(spec: dict) -> int:
    """The protocol's epochs: Burda et al.'s stages, or a maximum (with early stopping)."""
    from tfvae.optimizers import BurdaSchedule

    training = spec["training"]
    if "stages" in training:
        return BurdaSchedule(1, training["stages"]).total_epochs
    return training["epochs"]


def load_data(spec: dict, data_dir: str):
    """Training images in [0, 1] and the binary test images, as float32 arrays."""
    import numpy as np

    import tfvae

    data = spec["data"]
    source = dict(manual_dir=str(SHARED), data_dir=data_dir, offline=True)
    x_train, _ = tfvae.data.load_arrays(data["name"], data["train"], **source)
    x_test, _ = tfvae.data.load_arrays(data["name"], data["test"], **source)
    if data["binarize"] == "dynamic":  # the test set is binarized once, with a fixed seed
        x_test = (np.random.default_rng(123).random(x_test.shape) < x_test).astype(np.float32)
    split = spec["training"].get("validation")
    x_valid = None if split is None else tfvae.data.load_arrays(data["name"], split, **source)[0]
    return x_train, x_test, x_valid


def epoch_data(spec: dict, x_train, epoch: int):
    """The training images of epoch `epoch`: a fresh binarization for dynamic data."""
    import numpy as np

    if spec["data"]["binarize"] != "dynamic":
        return x_train
    rng = np.random.default_rng([spec["data"].get("seed", 0), epoch])
    return (rng.random(x_train.shape, dtype=np.float32) < x_train).astype(np.float32)


def build(spec: dict, x_train, steps_per_epoch: int):
    """The protocol's model, compiled with its optimiser."""
    import tfvae

    model, shape = spec["model"], x_train.shape[1:]
    common = dict(depth=model["depth"], activation=model["activation"])
    hidden = model["hidden_units"]
    if model["kind"] == "stacked":
        encoder, top_down, decoder, bottom_up = tfvae.networks.build_stacked(
            shape, model["latent_dims"], hidden, **common
        )
    else:
        (latent,), (units,) = model["latent_dims"], hidden
        layers = (units,) * model["depth"]
        encoder = tfvae.networks.mlp_encoder(
            shape, latent, layers, model["activation"], min_scale=model.get("min_scale", 1e-5)
        )
        decoder = tfvae.networks.mlp_decoder(
            latent, shape, layers, "bernoulli", model["activation"]
        )
    if model.get("output_bias") == "train_mean":
        tfvae.networks.initialize_output_bias(decoder, x_train)
    seed = spec["data"].get("seed", 0)
    prior = None
    if model.get("prior") == "vamp":
        prior = tfvae.priors.VampPrior(model["latent_dims"][0], shape, model["num_pseudo_inputs"])
    if model["kind"] == "stacked":
        vae = tfvae.HierarchicalVAE(encoder, top_down, decoder, bottom_up, k=model["k"], seed=seed)
    elif model["kind"] == "iwae":
        vae = tfvae.IWAE(encoder, decoder, k=model["k"], prior=prior, seed=seed)
    else:
        vae = tfvae.VAE(encoder, decoder, prior=prior, seed=seed)
    training = spec["training"]
    if training["optimizer"] == "burda_adam":
        optimizer = tfvae.optimizers.burda_adam(
            steps_per_epoch, training["batch_size"], training["stages"]
        )
    elif training["optimizer"] == "normalized_adam":
        optimizer = tfvae.optimizers.NormalizedAdam(training["learning_rate"])
    else:
        raise SystemExit(f"Unknown optimizer {training['optimizer']!r} in the protocol")
    vae.compile(optimizer=optimizer)
    return vae


def commit() -> str:
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout

    head = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    dirty = git("status", "--porcelain", "--", "tfvae", "benchmarks/reproduce").strip()
    return head + ("+changes" if dirty else "")


def device() -> str:
    import tensorflow as tf

    sys.path.insert(0, str(BENCHMARKS))
    from run import machine

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        names = [
            tf.config.experimental.get_device_details(g).get("device_name", "GPU") for g in gpus
        ]
        return ", ".join(names)
    return machine()


def read_json(path: Path, default):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def write_json(path: Path, value) -> None:
    from tfvae.files import atomic_output

    with atomic_output(path, overwrite=True) as partial:
        partial.write_text(json.dumps(value, indent=2) + "\n")


def train(row: str, spec: dict, budget: int | None, curve_every: int, data_dir: str) -> dict:
    """Trains `row` up to `budget` epochs (all of them if None), resuming; returns progress."""
    import keras
    import numpy as np

    import tfvae

    state_dir = STATE / row
    x_train, x_test, x_valid = load_data(spec, data_dir)
    training = spec["training"]
    batch_size = training["batch_size"]
    steps_per_epoch = math.ceil(len(x_train) / batch_size)
    target = total_epochs(spec) if budget is None else min(budget, total_epochs(spec))
    found = tfvae.checkpoints.latest_checkpoint(state_dir / "checkpoints")
    if found is None:
        keras.utils.set_random_seed(spec["data"].get("seed", 0))
        vae, epoch = build(spec, x_train, steps_per_epoch), 0
        progress = {"train_seconds": 0.0, "curve": [], "best_epoch": 0, "best_validation": None}
    else:  # the progress is saved with the checkpoint, so the two always agree
        vae, epoch, progress = (
            tfvae.checkpoints.load_checkpoint(found[0]),
            found[1]["epoch"],
            found[1]["history"],
        )
    stage_ends = set()
    if "stages" in training:
        schedule = tfvae.optimizers.BurdaSchedule(steps_per_epoch, training["stages"])
        stage_ends = set(np.cumsum(schedule.epochs).tolist())
    callbacks = [keras.callbacks.TensorBoard(str(state_dir / "logs"))]
    warmup = training.get("warmup_epochs")
    if warmup:  # beta = (epoch + 1) / warmup, then 1; listed before TensorBoard
        schedule = tfvae.schedules.LinearWarmup(max(warmup - 1, 1), start=1 / warmup)
        callbacks.insert(0, tfvae.schedules.KLScheduleCallback(schedule, unit="epoch"))
    patience = training.get("early_stopping_patience")
    print(f"{row}: epoch {epoch} of {target} ({total_epochs(spec)} in the protocol)", flush=True)
    while epoch < target and not progress.get("stopped_early"):
        start = time.perf_counter()
        keras.utils.set_random_seed(1000 + epoch)  # the epoch's data order, also on resume
        history = vae.fit(
            epoch_data(spec, x_train, epoch),
            batch_size=batch_size,
            epochs=epoch + 1,
            initial_epoch=epoch,
            verbose=0,
            callbacks=callbacks,
        ).history
        epoch += 1
        progress["train_seconds"] += time.perf_counter() - start
        if patience:  # early stopping on the validation -ELBO, keeping the best model
            loss = -vae.evaluate(x_valid, batch_size=1000, verbose=0, return_dict=True)["elbo"]
            best = progress["best_validation"]
            if best is None or loss < best or epoch <= (warmup or 0):
                progress["best_epoch"], progress["best_validation"] = epoch, loss
                with tfvae.files.atomic_output(state_dir / "best.keras", overwrite=True) as path:
                    vae.save(path)
            elif epoch - progress["best_epoch"] > patience:
                progress["stopped_early"] = epoch
        if epoch in stage_ends or epoch % curve_every == 0 or epoch == target:
            test = vae.evaluate(x_test, batch_size=1000, verbose=0, return_dict=True)
            point = {"epoch": epoch, "train_loss": history["loss"][-1], "test_elbo": test["elbo"]}
            if "iwae_bound" in test:
                point["test_iwae_bound"] = test["iwae_bound"]
            progress["curve"].append(point)
            print(json.dumps(point), flush=True)
        tfvae.checkpoints.write_checkpoint(
            vae, state_dir / "checkpoints", epoch=epoch, history=progress, keep=2
        )
    if patience and progress["best_epoch"]:
        vae = tfvae.loading.load_vae(state_dir / "best.keras")
    return {"vae": vae, "x_test": x_test, "epochs": epoch, **progress}


def evaluate(row: str, spec: dict, trained: dict, k: int, examples: int | None) -> dict:
    import tfvae

    x_test = trained["x_test"][:examples]
    start = time.perf_counter()
    estimate = tfvae.evaluation.importance_sampled_log_likelihood(
        trained["vae"], x_test, k=k, batch_size=50, samples_per_pass=2500
    )
    full = trained["epochs"] == total_epochs(spec) or bool(trained.get("stopped_early"))
    result = {
        "row": row,
        "paper": spec["paper"]["cite"],
        "table": spec["paper"]["table"],
        "reference_nll": spec["paper"]["reference_nll"],
        "nll": -estimate.nats,
        "standard_error": estimate.standard_error,
        "k": k,
        "test_examples": len(x_test),
        "epochs": trained["epochs"],
        "best_epoch": trained.get("best_epoch") or None,
        "protocol_epochs": total_epochs(spec),
        "full_protocol": full and k == spec["evaluation"]["k"] and examples is None,
        "train_seconds": trained["train_seconds"],
        "eval_seconds": time.perf_counter() - start,
        "device": device(),
        "commit": commit(),
        "curve": trained["curve"],
        "command": " ".join(["python benchmarks/reproduce/run.py", *sys.argv[1:]]),
    }
    tfvae.dashboards.write_metrics(
        STATE / row / "logs", {"test_nll": result["nll"]}, step=trained["epochs"]
    )
    return result


def in_progress(row: str) -> int | None:
    """The epoch of the newest checkpoint of `row`, read from its state.json alone."""
    states = sorted((STATE / row / "checkpoints").glob("ckpt-*/state.json"))
    return read_json(states[-1], {}).get("epoch") if states else None


def table() -> str:
    rows = [
        "| row | paper | reference −log p(x) | tfvae −log p(x) ± s.e. | epochs run | "
        "train time | device | commit |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    notes = []
    for path in sorted(PROTOCOLS.glob("*.toml")):
        spec = tomllib.loads(path.read_text())
        result = read_json(RESULTS / f"{path.stem}.json", None)
        reference = f"{spec['paper']['reference_nll']:.2f}"
        if result is None:
            rows.append(
                f"| `{path.stem}` | {spec['paper']['table']} | {reference} | not run | | | | |"
            )
            continue
        budget = "full protocol" if result["full_protocol"] else "**CPU budget**"
        rows.append(
            f"| `{path.stem}` | {spec['paper']['table']} | {reference} | "
            f"{result['nll']:.2f} ± {result['standard_error']:.2f} (k = {result['k']}, "
            f"{result['test_examples']} images) | {result['epochs']} of "
            f"{result['protocol_epochs']}, {budget} | {result['train_seconds'] / 60:.0f} min | "
            f"{result['device']} | {result['commit']} |"
        )
        curve = ", ".join(f"{p['epoch']}: {-p['test_elbo']:.2f}" for p in result["curve"][-8:])
        notes.append(f"- `{path.stem}`: test −ELBO by epoch: {curve}. `{result['command']}`")
    return "\n".join(rows + [""] + notes)


def main(argv=None) -> int:
    global PROTOCOLS, RESULTS, STATE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("row", nargs="?", help="a protocol's name (see --list)")
    parser.add_argument("--epochs", type=int, help="stop after this many epochs (a budget)")
    parser.add_argument("--k", type=int, help="importance samples (default: the protocol's)")
    parser.add_argument("--examples", type=int, help="test images to estimate on (default all)")
    parser.add_argument("--curve-every", type=int, default=25)
    parser.add_argument("--no-estimate", action="store_true", help="train only")
    parser.add_argument("--table", action="store_true", help="rewrite the README table only")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--protocols", type=Path, default=PROTOCOLS, help="protocol folder")
    parser.add_argument("--out", type=Path, help="results folder (default: benchmarks/results)")
    args = parser.parse_args(argv)
    PROTOCOLS = args.protocols
    if args.out is not None:
        RESULTS, STATE = args.out / "reproduce", args.out / ".reproduce"
    if args.list:
        for path in sorted(PROTOCOLS.glob("*.toml")):
            print(path.stem, "-", path.read_text().splitlines()[0].lstrip("# "))
        return 0
    if not args.table:
        if args.row is None:
            parser.error("give a protocol's name, --table or --list")
        if args.epochs is not None and args.epochs < 1:
            parser.error(f"--epochs must be >= 1. Received: {args.epochs}")
        spec = protocol(args.row)
        if spec["data"]["name"] != "digits" and not (SHARED / spec["data"]["name"]).is_dir():
            print(f"{SHARED / spec['data']['name']} is missing; nothing to run.", file=sys.stderr)
            return 1
        data_dir = str(STATE / "tfds")  # TFDS prepares each data set there once
        trained = train(args.row, spec, args.epochs, args.curve_every, data_dir)
        if args.no_estimate:
            return 0
        k = args.k or spec["evaluation"]["k"]
        result = evaluate(args.row, spec, trained, k, args.examples)
        write_json(RESULTS / f"{args.row}.json", result)
        print(
            f"{args.row}: -log p(x) = {result['nll']:.2f} ± {result['standard_error']:.2f} "
            f"after {result['epochs']} epochs (paper: {result['reference_nll']:.2f})"
        )
    if args.out is None:
        sys.path.insert(0, str(BENCHMARKS))
        from run import update_readme

        update_readme(BENCHMARKS / "README.md", "reproduce", table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
