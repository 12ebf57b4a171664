"""The `tfvae` command (also `python -m tfvae`).

    tfvae train [--dataset digits] [--network mlp] [--epochs 30] ...
    tfvae export RUN_DIR --format saved_model|tflite [--quantize float16|dynamic_int8]
    tfvae sample MODEL -n 64 --out grid.png      (MODEL: .keras, SavedModel folder, .tflite)
    tfvae evaluate RUN_DIR [--dataset NAME] [--k 5000]
    tfvae plot RUN_DIR --what samples|reconstructions|interpolation|traversal|latent_map|...

`train` fits a VAE and writes a run folder (default: a new folder under
`saved_models/`) holding `model.keras`, `config.json`, `history.json`,
`samples.png`, `reconstructions.png` and TensorBoard logs under `logs/`.

`train --strategy mirrored` trains on all local GPUs; `--strategy multi_worker` on
several machines (one process per worker, each with its `TF_CONFIG`; worker 0 writes
the run folder). `--precision mixed_bfloat16|mixed_float16` runs the networks in 16
bits; the distributions and the loss stay float32.

`train` writes a checkpoint after every epoch (`<run>/checkpoints/`, the newest 3
kept, each verified by checksums); `tfvae train --resume --output-dir RUN` continues
from the newest intact one.

Exit status: 0 success; 2 bad flags or bad data (one line on stderr,
`tfvae <command>: error: ...`); 3 a loss term went NaN or infinite (the message
names it, the epoch and the steps; checkpoints are kept); 75 stopped by SIGTERM or
SIGINT after writing a checkpoint, or, under `--strategy multi_worker`, another worker
was lost (resume with `--resume`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import NamedTuple

__all__ = ["main"]

USAGE_ERROR = 2
#: Exit status when a loss term went NaN or infinite (the checkpoints are kept).
NON_FINITE_LOSS = 3
#: Exit status after SIGTERM/SIGINT (a checkpoint was written) or a lost worker;
#: `--resume` continues.
EXIT_INTERRUPTED = 75


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr (no usage dump)."""

    def error(self, message):
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer, received {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text!r}")
    return value


def _number(low: float, inclusive: bool):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        ok = value >= low if inclusive else value > low
        if not (ok and value < float("inf")):
            bound = ">=" if inclusive else ">"
            raise argparse.ArgumentTypeError(
                f"expected a number {bound} {low:g}, received {text!r}"
            )
        return value

    return parse


def _add_source_flags(parser) -> None:
    """Where data comes from: the flags shared by train, evaluate and plot."""
    parser.add_argument(
        "--manual-dir",
        help="folder of the original data files, to prepare a TFDS data set with no network "
        "(default: $TFVAE_MANUAL_DIR)",
    )
    parser.add_argument(
        "--data-dir", help="where TFDS keeps prepared data (default: $TFVAE_DATA_DIR)"
    )
    parser.add_argument("--offline", action="store_true", help="never try to download data")


_OPTION_TYPES = {"count": lambda: _positive_int, "nonnegative": lambda: _number(0.0, True)}


def _add_model_options(group) -> None:
    """One flag per model option of the registry; None marks "not given"."""
    from tfvae.models import registry

    for option, models in registry.options_by_name().values():
        default = f"default: {option.default}" if option.kind != "flag" else "off by default"
        where = ", ".join(models)
        if option.kind == "flag":
            group.add_argument(
                option.flag, action="store_true", default=None, help=f"{option.help} ({where})"
            )
        else:
            group.add_argument(
                option.flag,
                type=_OPTION_TYPES[option.kind](),
                default=None,
                help=f"{option.help} (--model {where}; {default})",
            )


def _model_options(args) -> dict:
    """The chosen model's own options: given flags, else the registry's defaults.

    Raises:
        ValueError: for a flag of another model (such as --k with --model vae).
    """
    from tfvae.models import registry

    model = registry.spec(args.model)
    options = {}
    for name, (option, models) in registry.options_by_name().items():
        value = getattr(args, name, None)
        if model.option(name) is not None:
            options[name] = option.default if value is None else value
        elif value is not None and not args.resume:
            raise ValueError(
                f"{option.flag} applies to --model {' or '.join(models)}, not --model {args.model}."
            )
    return options


def _parser() -> argparse.ArgumentParser:
    from tfvae.layers import LIKELIHOODS
    from tfvae.models import MODELS
    from tfvae.networks import NETWORKS
    from tfvae.plots import PLOTS
    from tfvae.scaling import PRECISIONS, STRATEGIES
    from tfvae.schedules import SCHEDULES

    parser = _Parser(prog="tfvae", description="Variational autoencoders on Keras 3 and TFP.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = commands.add_parser(
        "train",
        help="train a VAE and write a run folder",
        description="Train a VAE with model.fit and write model.keras, config.json, "
        "history.json, samples.png, reconstructions.png and TensorBoard logs.",
    )
    data = train.add_argument_group("data")
    data.add_argument(
        "--dataset",
        default="digits",
        help="'digits' (embedded, offline) or a TFDS image data set (default: digits)",
    )
    data.add_argument("--split", default="train", help="training split (default: train)")
    data.add_argument(
        "--validation-split",
        default="test",
        help="split for validation and pictures (default: test)",
    )
    _add_source_flags(data)
    data.add_argument(
        "--binarize",
        choices=("none", "dynamic", "threshold"),
        default="none",
        help="binarise images: a fresh draw each epoch, or x >= 0.5 (default: none)",
    )
    model = train.add_argument_group("model")
    model.add_argument("--model", choices=MODELS, default="vae", help="(default: vae)")
    model.add_argument("--network", choices=NETWORKS, default="mlp", help="(default: mlp)")
    model.add_argument("--latent-dim", type=_positive_int, default=20, help="(default: 20)")
    model.add_argument(
        "--likelihood",
        choices=sorted(LIKELIHOODS),
        default="bernoulli",
        help="p(x|z) (default: bernoulli)",
    )
    model.add_argument(
        "--beta",
        type=_number(0.0, True),
        help="weight of the KL term, or vqvae's commitment cost "
        "(default: 1; 4 for beta_vae, 0.25 for vqvae)",
    )
    _add_model_options(model)
    model.add_argument(
        "--kl-schedule",
        choices=("none", *SCHEDULES),
        default="none",
        help="anneal beta from 0 to --beta (default: none)",
    )
    model.add_argument(
        "--kl-schedule-steps",
        type=_positive_int,
        default=1000,
        help="warm-up length, cycle period, or twice the sigmoid midpoint, in "
        "steps (default: 1000)",
    )
    fit = train.add_argument_group("training")
    fit.add_argument("--epochs", type=_positive_int, default=30, help="(default: 30)")
    fit.add_argument("--batch-size", type=_positive_int, default=128, help="(default: 128)")
    fit.add_argument(
        "--learning-rate",
        type=_number(0.0, False),
        default=1e-3,
        help="Adam learning rate (default: 0.001)",
    )
    fit.add_argument("--seed", type=int, default=0, help="(default: 0)")
    fit.add_argument(
        "--deterministic",
        action="store_true",
        help="bit-identical runs for the same seed, data and machine (op determinism; no XLA)",
    )
    fit.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --output-dir from its newest intact checkpoint, with "
        "the flags it was started with",
    )
    fit.add_argument(
        "--keep-checkpoints",
        type=_positive_int,
        default=3,
        help="checkpoint generations kept in <output-dir>/checkpoints (default: 3)",
    )
    fit.add_argument(
        "--jit-compile",
        choices=("auto", "on", "off"),
        default="auto",
        help="XLA: 'auto' turns it on on GPU/TPU, and on CPU for networks without "
        "convolutions, where it was measured to help (default: auto)",
    )
    fit.add_argument(
        "--steps-per-execution",
        type=_positive_int,
        default=None,
        help="train steps per call, fused into one XLA program under XLA (default: 32)",
    )
    scale = train.add_argument_group("scaling out")
    scale.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="none",
        help="tf.distribute strategy: 'mirrored' (all local GPUs) or 'multi_worker' "
        "(one process per machine, configured by TF_CONFIG); --batch-size is the "
        "global batch (default: none, one device)",
    )
    scale.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="float32",
        help="Keras dtype policy of the networks; distributions and the loss stay "
        "float32 (default: float32)",
    )
    out = train.add_argument_group("output")
    out.add_argument(
        "--output-dir",
        help="run folder, new or empty (default: saved_models/<dataset>-<network>-<time>)",
    )
    out.add_argument("--log-dir", help="TensorBoard log folder (default: <output-dir>/logs)")
    train.set_defaults(handler=_train)

    export = commands.add_parser(
        "export",
        help="export a run's model to a SavedModel or a .tflite file",
        description="Export RUN_DIR/model.keras (or a .keras file) to a SavedModel folder "
        "(signatures encode, decode, sample, reconstruct) or a .tflite file (decode, sample).",
    )
    export.add_argument("run", metavar="RUN_DIR", help="a run folder, or a .keras file")
    export.add_argument("--format", choices=("saved_model", "tflite"), required=True)
    export.add_argument(
        "--quantize",
        choices=("float16", "dynamic_int8"),
        help="TFLite weight quantisation (default: none, float32)",
    )
    export.add_argument(
        "--out",
        help="where to write (default: RUN_DIR/saved_model, "
        "RUN_DIR/model.tflite or RUN_DIR/model.<quantize>.tflite)",
    )
    export.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing output (only once the new one is complete)",
    )
    export.set_defaults(handler=_export)

    sample = commands.add_parser(
        "sample",
        help="draw samples from a model and write a PNG grid",
        description="Draw samples from a .keras file, a SavedModel folder or a .tflite file "
        "(run by LiteRT) and write them as a PNG grid.",
    )
    sample.add_argument("model", metavar="MODEL", help=".keras file, SavedModel folder or .tflite")
    sample.add_argument("-n", type=_positive_int, default=64, help="how many (default: 64)")
    sample.add_argument("--out", required=True, help="the PNG file to write")
    sample.add_argument(
        "--label",
        type=int,
        help="the class of every sample (conditional models only; they need it)",
    )
    sample.add_argument("--overwrite", action="store_true", help="replace an existing PNG")
    sample.set_defaults(handler=_sample)

    evaluate = commands.add_parser(
        "evaluate",
        help="measure a trained run: log-likelihood, ELBO, rate, distortion, active units",
        description="Evaluate RUN_DIR/model.keras on a data split; print a table and write "
        "RUN_DIR/metrics.json.",
    )
    evaluate.add_argument(
        "run",
        metavar="RUN_DIR",
        help="a run folder, one of its checkpoint folders (RUN/checkpoints/ckpt-*) "
        "or a .keras file",
    )
    evaluate.add_argument("--dataset", help="(default: the run's data set)")
    evaluate.add_argument("--split", default="test", help="(default: test)")
    evaluate.add_argument(
        "--k",
        type=_positive_int,
        default=5000,
        help="importance samples of the log-likelihood (default: 5000)",
    )
    evaluate.add_argument(
        "--examples", type=_positive_int, help="evaluate the first N examples only (default: all)"
    )
    _add_source_flags(evaluate)
    evaluate.set_defaults(handler=_evaluate)

    plot = commands.add_parser(
        "plot",
        help="draw a picture of a trained run (PNG)",
        description="Draw one picture of RUN_DIR's model: prior samples, reconstructions, an "
        "interpolation, latent traversals, the latent map (PCA of posterior means, by label), "
        "the 2-D manifold (2-D latents), or the training curves.",
    )
    plot.add_argument(
        "run",
        metavar="RUN_DIR",
        help="a run folder, one of its checkpoint folders (RUN/checkpoints/ckpt-*) "
        "or a .keras file",
    )
    plot.add_argument("--what", choices=PLOTS, required=True)
    plot.add_argument("--dataset", help="(default: the run's data set, from its config.json)")
    plot.add_argument(
        "--label",
        type=int,
        help="conditional models: the class held fixed (samples, interpolation, traversal, "
        "manifold; default: every class in turn, or the first image's class)",
    )
    plot.add_argument("--out", help="the PNG to write (default: RUN_DIR/plots/<what>.png)")
    plot.add_argument("--overwrite", action="store_true", help="replace an existing PNG")
    _add_source_flags(plot)
    plot.set_defaults(handler=_plot)
    return parser


def _run_dir(args) -> Path:
    if args.output_dir:
        path = Path(args.output_dir)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise ValueError(
                f"The output folder {str(path)!r} already exists and is not empty; "
                "choose a new --output-dir (nothing was overwritten)."
            )
        return path
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path("saved_models") / f"{args.dataset}-{args.network}-{stamp}"
    suffix = 1
    while path.exists():
        suffix += 1
        path = Path("saved_models") / f"{args.dataset}-{args.network}-{stamp}-{suffix}"
    return path


def _resumed_args(args) -> argparse.Namespace:
    """The flags of the run being resumed, from its config.json.

    A folder that does not exist yet or is empty (a run killed before it wrote its
    config) starts a new run there with the flags given.
    """
    if not args.output_dir:
        raise ValueError("--resume needs --output-dir, the run folder to resume.")
    folder = Path(args.output_dir)
    config_path = folder / "config.json"
    if not config_path.is_file():
        if not folder.exists() or (folder.is_dir() and not any(folder.iterdir())):
            print(f"nothing to resume in {folder}; starting a new run there")
            return argparse.Namespace(**{**vars(args), "resume": False})
        raise ValueError(
            f"Cannot resume {args.output_dir!r}: it has no config.json, so it is not a "
            "run folder written by `tfvae train`."
        )
    saved = _read_config(config_path)
    if isinstance(saved.get("jit_compile"), bool):  # runs written before the flag was kept
        saved["jit_compile"] = "on" if saved["jit_compile"] else "off"
    defaults = vars(_parser().parse_args(["train"]))  # flags newer than the run
    return argparse.Namespace(
        **{
            **defaults,
            **saved,
            "handler": args.handler,
            "command": args.command,
            "resume": True,
            "output_dir": args.output_dir,
        }
    )


def _read_config(path: Path) -> dict:
    """A run's config.json, or a one-line error saying what is wrong with it."""
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{str(path)!r} is not a readable run config: {error}") from None
    if not isinstance(config, dict) or not isinstance(config.get("model", "vae"), str):
        raise ValueError(f"{str(path)!r} is not a run config written by `tfvae train`.")
    return config


def _finished(train, skip: int, done: int) -> bool:
    """Whether the epoch ran to its end (the dataset's length is known) after `done` steps."""
    remaining = int(train.cardinality())
    return remaining >= 0 and done - skip >= remaining


def _train(args) -> int:
    if args.resume:
        args = _resumed_args(args)
    if args.manual_dir and not Path(args.manual_dir).is_dir():
        raise ValueError(f"--manual-dir {args.manual_dir!r} does not exist or is not a folder.")

    import keras

    from tfvae import scaling

    # First of all TensorFlow work: MultiWorkerMirroredStrategy must be made before it.
    strategy = scaling.make_strategy(args.strategy)
    policy = keras.mixed_precision.global_policy()
    scaling.set_precision(args.precision)
    try:
        return _train_with(args, strategy)
    finally:
        keras.mixed_precision.set_global_policy(policy)  # the process may go on (tests)


#: `--jit-compile` flag -> `compile(jit_compile=...)`.
_JIT_COMPILE = {"auto": "auto", "on": True, "off": False}


def _model_and_state(args, resumed, data_shape, num_classes, checkpoint_dir):
    """The model to train (in the current strategy's scope) and where training stands."""
    import keras

    from tfvae import checkpoints, models, training

    if resumed:
        state = resumed[1]
        print(
            f"resuming from {resumed[0]} (epoch {state['epoch'] + 1}, step {state['iterations']})"
        )
        return checkpoints.load_checkpoint(resumed[0]), state
    if args.resume:
        print(f"no checkpoint in {checkpoint_dir}; starting from the beginning")
    options = _model_options(args)
    if models.registry.spec(args.model).conditional:
        options["num_classes"] = num_classes
    vae = models.build(
        args.model,
        data_shape,
        args.network,
        args.latent_dim,
        args.likelihood,
        beta=args.beta,
        seed=args.seed,
        **options,
    )
    vae.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate),
        jit_compile=_JIT_COMPILE[args.jit_compile],
        steps_per_execution=args.steps_per_execution or training.DEFAULT_STEPS_PER_EXECUTION,
    )
    return vae, {"epoch": 0, "step_in_epoch": 0, "history": {}}


def _train_with(args, strategy) -> int:
    import keras
    import tensorflow as tf

    from tfvae import callbacks as tfvae_callbacks
    from tfvae import checkpoints, data, plots, scaling, schedules, training
    from tfvae.files import atomic_output

    # Only the chief (worker 0) writes the run folder; other workers read it to resume.
    chief = scaling.is_chief(strategy)
    if chief and not args.resume:
        run_dir = _run_dir(args)
    else:
        run_dir = Path(args.output_dir) if args.output_dir else None
    if args.deterministic:
        training.make_deterministic(args.seed)
    binarize = None if args.binarize == "none" else args.binarize
    from tfvae.models import registry

    conditional = registry.spec(args.model).conditional
    source = dict(data_dir=args.data_dir, manual_dir=args.manual_dir, offline=args.offline)
    options = dict(batch_size=args.batch_size, binarize=binarize, with_labels=conditional)

    def epoch_data(epoch: int, skip: int = 0):
        # Each epoch's order and binarisation noise depend on (seed, epoch) alone, so a
        # resumed run sees exactly the batches the uninterrupted one would have.
        train = data.load(
            args.dataset, args.split, seed=args.seed * 1_000_003 + epoch, **options, **source
        )
        return train.skip(skip) if skip else train

    first_epoch = data.load(args.dataset, args.split, **options, **source)  # checks the split
    validation = data.load(
        args.dataset, args.validation_split, seed=args.seed + 1, **options, **source
    )
    x_spec = first_epoch.element_spec[0] if conditional else first_epoch.element_spec
    data_shape = tuple(x_spec.shape[1:])
    num_classes = data.num_classes(args.dataset, **source) if conditional else 10
    if conditional and not num_classes:
        raise ValueError(
            f"--model {args.model} needs a labelled data set; {args.dataset!r} has no labels."
        )

    checkpoint_dir = run_dir / "checkpoints" if run_dir else None
    resumed = checkpoints.latest_checkpoint(checkpoint_dir) if args.resume else None
    keras.utils.set_random_seed(args.seed)
    with strategy.scope():
        vae, state = _model_and_state(args, resumed, data_shape, num_classes, checkpoint_dir)
    if chief:
        run_dir.mkdir(parents=True, exist_ok=True)
    log_dir = Path(args.log_dir) if args.log_dir else run_dir / "logs" if run_dir else None
    # The beta a KL schedule warms up to: the model's own, kept across resumes.
    kl_target = args.kl_target if resumed else float(keras.ops.convert_to_numpy(vae.beta))
    config = {key: value for key, value in vars(args).items() if key not in ("handler", "resume")}
    config.update(
        data_shape=list(data_shape),
        log_dir=str(log_dir),
        versions=_versions(),
        xla=bool(vae.jit_compile),  # what --jit-compile resolved to; the flag stays
        steps_per_execution=vae.steps_per_execution,
        fused_steps=training.uses_fused_steps(vae),
        replicas=strategy.num_replicas_in_sync,
        kl_target=kl_target,
    )
    if chief and not (run_dir / "config.json").is_file():
        with atomic_output(run_dir / "config.json", overwrite=False) as partial:
            partial.write_text(json.dumps(config, indent=2) + "\n")
    display = data.load(
        args.dataset, args.validation_split, seed=args.seed + 1, cache=False, **options, **source
    )
    shown = next(display.take(1).as_numpy_iterator())
    x_shown, y_shown = shown if conditional else (shown, None)
    stop = tfvae_callbacks.StopOnSignal()
    callbacks = [stop]
    if chief:
        callbacks += [
            keras.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=False),
            tfvae_callbacks.TensorBoardImages(
                log_dir, x_shown[:16], labels=None if y_shown is None else y_shown[:16]
            ),
            tfvae_callbacks.LatentDiagnostics(
                log_dir, x_shown[:500], labels=None if y_shown is None else y_shown[:500]
            ),
        ]
    if args.kl_schedule != "none":
        steps = args.kl_schedule_steps
        schedule = {
            "linear": lambda: schedules.LinearWarmup(steps, end=kl_target),
            "cyclical": lambda: schedules.Cyclical(steps, end=kl_target),
            "sigmoid": lambda: schedules.Sigmoid(steps / 2, 10.0 / steps, end=kl_target),
        }[args.kl_schedule]()
        callbacks.insert(0, schedules.KLScheduleCallback(schedule))

    def checkpoint(epoch: int, step_in_epoch: int = 0) -> str:
        if not chief:
            return "(written by worker 0)"
        path = checkpoints.write_checkpoint(
            vae,
            checkpoint_dir,
            epoch=epoch,
            step_in_epoch=step_in_epoch,
            history=history,
            keep=args.keep_checkpoints,
        )
        return str(path)

    def interrupted(when: str, path: str) -> int:
        print(
            f"stopped by {stop.signal_name} {when}; checkpoint {path}. "
            f"Resume with: tfvae train --resume --output-dir {run_dir}"
        )
        return EXIT_INTERRUPTED

    history = {key: list(values) for key, values in state["history"].items()}
    # What a collective op raises when another worker died or was stopped.
    lost_worker = (tf.errors.UnavailableError, tf.errors.CancelledError, tf.errors.AbortedError)
    with stop:
        for epoch in range(state["epoch"], args.epochs):
            skip = state["step_in_epoch"] if epoch == state["epoch"] else 0
            first_step = training.steps_taken(vae)
            train = epoch_data(epoch, skip)
            try:
                result = vae.fit(
                    train,
                    initial_epoch=epoch,
                    epochs=epoch + 1,
                    validation_data=validation,
                    callbacks=callbacks,
                    verbose=2,
                )
            except lost_worker as error:
                if args.strategy != "multi_worker":
                    raise
                reason = str(error).strip().splitlines()[0]
                print(
                    f"tfvae train: error: lost another worker in epoch {epoch + 1} ({reason}); "
                    "the checkpoints are kept. Restart all workers with: tfvae train "
                    f"--resume --output-dir {run_dir}",
                    file=sys.stderr,
                )
                return EXIT_INTERRUPTED
            done = skip + training.steps_taken(vae) - first_step
            stop.synchronize(vae)  # a signal that came after the last batch end, on any worker
            if stop.received is not None and not _finished(train, skip, done):
                path = checkpoint(epoch, step_in_epoch=done)
                return interrupted(f"in epoch {epoch + 1} after step {done}", path)
            for key, values in result.history.items():
                history.setdefault(key, []).append(float(values[-1]))
            path = checkpoint(epoch + 1)
            if stop.received is not None and epoch + 1 < args.epochs:
                return interrupted(f"after epoch {epoch + 1}", path)

    if not chief:
        print("done; worker 0 writes the run folder")
        return 0
    with atomic_output(run_dir / "model.keras", overwrite=True) as partial:
        vae.save(partial)
    (run_dir / "history.json").write_text(json.dumps(history, indent=2) + "\n")
    plots.plot_samples(vae, run_dir / "samples.png", n=64, seed=args.seed)
    x_show, labels = (shown[0][:32], shown[1][:32]) if conditional else (shown[:32], None)
    plots.plot_reconstructions(vae, x_show, run_dir / "reconstructions.png", labels=labels)

    elbo = history.get("val_elbo", history["elbo"])[-1]
    print(
        f"validation ELBO {elbo:.2f} nats; wrote {run_dir}/ (model.keras, config.json, "
        f"history.json, samples.png, reconstructions.png, checkpoints/) and TensorBoard "
        f"logs in {log_dir}/"
    )
    return 0


def _export(args) -> int:
    from tfvae import export

    if args.quantize and args.format != "tflite":
        raise ValueError("--quantize applies to --format tflite only.")
    vae = export.load_vae(args.run)
    folder = Path(args.run) if Path(args.run).is_dir() else Path(args.run).parent
    if args.format == "saved_model":
        out = Path(args.out) if args.out else folder / "saved_model"
        export.export_saved_model(vae, out, overwrite=args.overwrite)
    else:
        name = f"model.{args.quantize}.tflite" if args.quantize else "model.tflite"
        out = Path(args.out) if args.out else folder / name
        export.to_tflite(vae, out, quantization=args.quantize, overwrite=args.overwrite)
    print(f"wrote {out}")
    return 0


def _sample(args) -> int:
    import numpy as np

    from tfvae import export, plots
    from tfvae.files import atomic_output

    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise ValueError(f"--out must name a .png file. Received: {args.out!r}")
    sampler = export.load_sampler(args.model)
    images = np.asarray(sampler(args.n, label=args.label))
    with atomic_output(out, overwrite=args.overwrite) as partial:
        plots.save_image_grid(images, partial)
    print(f"wrote {args.n} samples to {out}")
    return 0


class _Source(NamedTuple):
    """A model to evaluate or plot, and the run it belongs to."""

    model_path: Path  # the .keras file
    run_dir: Path | None  # the folder holding the run's config.json, if found
    config: dict  # that config, or {}
    tag: str  # "" for a run's own model, "ckpt-...-" for one of its checkpoints


def _model_source(path) -> _Source:
    """Finds the .keras file of a run folder, a checkpoint folder or a .keras path, and the
    run's config.json in its folder or one or two folders up (a checkpoint's run)."""
    path = Path(path)
    model_path = path / "model.keras" if path.is_dir() else path
    if not model_path.is_file():
        raise ValueError(
            f"No model at {str(model_path)!r}: expected a run folder, a checkpoint folder "
            "(RUN/checkpoints/ckpt-*) or a .keras file."
        )
    folder = model_path.parent
    for candidate in (folder, *list(folder.parents)[:2]):
        if (candidate / "config.json").is_file():
            tag = "" if candidate == folder else f"{folder.name}-"
            return _Source(model_path, candidate, _read_config(candidate / "config.json"), tag)
    return _Source(model_path, None, {}, "")


def _dataset_of(source: _Source, args) -> str:
    dataset = args.dataset or source.config.get("dataset")
    if not dataset:
        raise ValueError(
            f"No run config.json was found beside {str(source.model_path)!r} or in the two "
            "folders above it, so its data set is unknown; pass --dataset."
        )
    return dataset


def _run_data(config: dict, args, dataset: str, split: str, batch_size: int):
    """A split, in order, with labels, binarised as the run was trained."""
    from tfvae import data

    binarize = config.get("binarize", "none")
    return data.load(
        dataset,
        split,
        batch_size=batch_size,
        shuffle=False,
        with_labels=True,
        seed=0,
        binarize=None if binarize == "none" else binarize,
        cache=False,
        manual_dir=args.manual_dir,
        data_dir=args.data_dir,
        offline=args.offline,
    )


def _evaluate(args) -> int:
    import numpy as np

    from tfvae import evaluation, export
    from tfvae.files import atomic_output

    source = _model_source(args.run)
    vae = export.load_vae(source.model_path)
    dataset = _dataset_of(source, args)
    batches = _run_data(source.config, args, dataset, args.split, batch_size=1000)
    pairs = list(batches.as_numpy_iterator())
    x = np.concatenate([p[0] for p in pairs])[: args.examples]
    y = np.concatenate([p[1] for p in pairs])[: args.examples]
    labels = y if vae.is_conditional else None
    terms = vae.evaluate(
        x, *((y,) if vae.is_conditional else ()), batch_size=500, verbose=0, return_dict=True
    )
    metrics = {
        "dataset": dataset,
        "split": args.split,
        "examples": int(len(x)),
        "model": str(source.model_path),
        "elbo": terms["elbo"],
        "rate": terms["rate"],
        "distortion": terms["distortion"],
        "log_likelihood": None,
        "log_likelihood_of": "log p(x | y)" if vae.is_conditional else "log p(x)",
        "log_likelihood_standard_error": None,
        "bits_per_dim": None,
        "k": None,
        "active_units": None,
        "latent_dim": int(vae.latent_dim),
        "kl_per_dimension": None,
    }
    metrics["not_measured"] = {}
    try:
        estimate = evaluation.importance_sampled_log_likelihood(vae, x, k=args.k, labels=labels)
        metrics.update(
            log_likelihood=estimate.nats,
            log_likelihood_standard_error=estimate.standard_error,
            bits_per_dim=estimate.bits_per_dim,
            k=args.k,
        )
    except ValueError as error:
        metrics["not_measured"]["log_likelihood"] = str(error)
    try:
        metrics["active_units"] = evaluation.active_units(vae, x, labels=labels)[0]
        metrics["kl_per_dimension"] = evaluation.kl_per_dimension(vae, x, labels=labels).tolist()
    except ValueError as error:
        metrics["not_measured"]["active_units"] = str(error)
    folder = source.run_dir or source.model_path.parent
    out = folder / f"{source.tag}metrics.json"
    with atomic_output(out, overwrite=True) as partial:
        partial.write_text(json.dumps(metrics, indent=2) + "\n")
    name = metrics["log_likelihood_of"] + ", nats"
    rows = [
        (name, metrics["log_likelihood"], metrics["log_likelihood_standard_error"]),
        ("bits per dim", metrics["bits_per_dim"], None),
        ("ELBO, nats", metrics["elbo"], None),
        ("rate, nats", metrics["rate"], None),
        ("distortion, nats", metrics["distortion"], None),
    ]
    print(
        f"{dataset} {args.split}, {len(x)} examples" + (f", k = {args.k}" if metrics["k"] else "")
    )
    for row, value, error in rows:
        shown = "n/a" if value is None else f"{value:.3f}"
        print(f"  {row:<18} {shown}" + (f" +- {error:.3f}" if error is not None else ""))
    units = metrics["active_units"]
    print(f"  {'active units':<18} " + ("n/a" if units is None else f"{units} of {vae.latent_dim}"))
    for measure, reason in metrics["not_measured"].items():
        print(f"  ({measure}: {reason})")
    print(f"wrote {out}")
    return 0


def _one_class(x, labels, label, count: int):
    """`count` examples of class `label` (default: the first example's class)."""
    label = int(labels[0]) if label is None else label
    chosen = x[labels == label][:count]
    if len(chosen) < count:
        raise ValueError(
            f"Needs {count} examples of class {label} in the first {len(x)} of the split; "
            f"found {len(chosen)}."
        )
    return chosen, label


def _plot(args) -> int:
    import numpy as np

    from tfvae import export, plots
    from tfvae.files import atomic_output

    run = Path(args.run)
    if args.what == "curves":
        if not run.is_dir() or not (run / "history.json").is_file():
            raise ValueError(f"No history.json in {str(run)!r} to draw curves from.")
        folder, tag = run, ""
    else:
        source = _model_source(run)
        folder, tag = source.run_dir or source.model_path.parent, source.tag
    out = Path(args.out) if args.out else folder / "plots" / f"{tag}{args.what}.png"
    if out.suffix.lower() != ".png":
        raise ValueError(f"--out must name a .png file. Received: {str(out)!r}")
    if args.what == "curves":
        with atomic_output(out, overwrite=args.overwrite) as partial:
            plots.plot_curves(json.loads((run / "history.json").read_text()), partial)
        print(f"wrote {out}")
        return 0
    vae = export.load_vae(source.model_path)
    if args.label is not None and not vae.is_conditional:
        raise ValueError(f"--label applies to conditional models; {type(vae).__name__} is not one.")
    if args.label is not None and not 0 <= args.label < vae.num_classes:
        raise ValueError(f"--label must lie in [0, {vae.num_classes}). Received: {args.label}")
    if args.what in ("samples", "manifold"):
        if args.what == "manifold" and vae.is_conditional and args.label is None:
            raise ValueError("--what manifold of a conditional model needs --label.")
        with atomic_output(out, overwrite=args.overwrite) as partial:
            if args.what == "samples":
                plots.plot_samples(vae, partial, n=64, seed=0, labels=args.label)
            else:
                plots.plot_manifold(vae, partial, label=args.label)
        print(f"wrote {out}")
        return 0
    config = source.config
    dataset = _dataset_of(source, args)
    split = config.get("validation_split", "test")
    x, labels = next(_run_data(config, args, dataset, split, 500).as_numpy_iterator())
    with atomic_output(out, overwrite=args.overwrite) as partial:
        if args.what == "reconstructions":
            plots.plot_reconstructions(vae, x, partial, labels=labels)
        elif args.what == "latent_map":
            plots.plot_latent_map(vae, x, labels, partial)
        elif vae.is_conditional:  # one class throughout, the label held fixed
            ends, label = _one_class(x, labels, args.label, 2)
            if args.what == "interpolation":
                plots.plot_interpolation(vae, ends[0], ends[1], partial, label=label)
            else:
                dims = range(min(vae.latent_dim, 10))
                plots.plot_traversal(vae, ends[0], partial, dims=dims, label=label)
        elif args.what == "interpolation":
            different = int(np.argmax(labels != labels[0])) if len(x) > 1 else 0
            plots.plot_interpolation(vae, x[0], x[different], partial)
        else:
            plots.plot_traversal(vae, x[0], partial, dims=range(min(vae.latent_dim, 10)))
    print(f"wrote {out}")
    return 0


def _versions() -> dict[str, str]:
    import keras
    import tensorflow as tf
    import tensorflow_probability as tfp

    from tfvae import __version__

    return {
        "tfvae": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tensorflow_probability": tfp.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    """Runs the `tfvae` command with `argv` (default: `sys.argv[1:]`); returns the exit status."""
    args = _parser().parse_args(argv)
    import absl.logging

    # TFDS reports through absl at WARNING level; the command prints its own summary.
    absl.logging.set_verbosity(absl.logging.ERROR)
    from tfvae.callbacks import NonFiniteLossError

    try:
        return args.handler(args)
    except NonFiniteLossError as error:
        print(f"tfvae {args.command}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return NON_FINITE_LOSS
    except (ValueError, TypeError, OSError) as error:
        message = " ".join(str(error).split())
        print(f"tfvae {args.command}: error: {message}", file=sys.stderr)
        return USAGE_ERROR
