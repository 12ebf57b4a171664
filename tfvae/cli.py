"""The `tfvae` command (also `python -m tfvae`): argument parsing, then one library call.

    tfvae train [--dataset digits] [--network mlp] [--epochs 30] ...   (tfvae.runs)
    tfvae export RUN_DIR --format saved_model|tflite [--quantize float16|dynamic_int8]
    tfvae sample MODEL -n 64 --out grid.png      (MODEL: .keras, SavedModel folder, .tflite)
    tfvae evaluate RUN_DIR [--dataset NAME] [--k 5000] [--disentanglement]
    tfvae plot RUN_DIR --what samples|reconstructions|interpolation|traversal|latent_map|...

`train` runs `tfvae.runs.train_run` with a `tfvae.config.RunConfig` made of its flags
(one flag per field, and one per model option of `tfvae.models.registry`); see
`tfvae.runs` for the run folder it writes, its checkpoints and `--resume`.

The flags are parsed and checked before TensorFlow is imported, so `--help` and a
mistyped flag answer at once; each command's handler imports what it needs. A
library error names an argument in backticks (`` `latent_dim` ``); the command
prints it with the flag instead (`--latent-dim`).

Exit status: 0 success; 2 bad flags or bad data (one line on stderr,
`tfvae <command>: error: ...`); 3 a loss term went NaN or infinite (the message
names it, the epoch and the steps; checkpoints are kept); 75 stopped by SIGTERM or
SIGINT after writing a checkpoint, or, under `--strategy multi_worker`, another worker
was lost (resume with `--resume`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import NamedTuple

from tfvae import choices
from tfvae.config import RunConfig, read_config_file
from tfvae.models import registry

__all__ = ["main"]

USAGE_ERROR = 2
#: Exit status of a failure at run time that no check could foresee (a true OOM, a bug).
RUNTIME_ERROR = 1
#: Set to 1 to print the traceback of an unexpected error as well.
DEBUG_ENV = "TFVAE_DEBUG"
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
        value = 0
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


#: `RunConfig` field kind (or registry option kind) -> the argparse type of its flag.
_FLAG_TYPES = {
    "text": str,
    "count": _positive_int,
    "integer": int,
    "positive": _number(0.0, False),
    "nonnegative": _number(0.0, True),
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_source_flags(parser) -> None:
    """Where data comes from, for evaluate and plot (train's come from RunConfig)."""
    for setting in RunConfig.settings():
        if setting.name in ("manual_dir", "data_dir", "offline"):
            _add_setting(parser, setting)


def _add_setting(group, setting) -> None:
    """The flag of one `RunConfig` field."""
    meta, default = setting.metadata, setting.default
    help_text = meta["help"]
    if meta["kind"] == "switch":
        group.add_argument(_flag(setting.name), action="store_true", help=help_text)
        return
    if default is not None and "default:" not in help_text:
        help_text += f" (default: {default})"
    if meta["kind"] == "choice":
        group.add_argument(
            _flag(setting.name), choices=meta["choices"], default=default, help=help_text
        )
    else:
        kind = _FLAG_TYPES[meta["kind"]]
        group.add_argument(_flag(setting.name), type=kind, default=default, help=help_text)


def _add_model_options(group) -> None:
    """One flag per model option of the registry; None marks "not given"."""
    for option, models in registry.options_by_name().values():
        where = ", ".join(models)
        if option.kind == "flag":
            group.add_argument(
                option.flag, action="store_true", default=None, help=f"{option.help} ({where})"
            )
        else:
            group.add_argument(
                option.flag,
                type=_FLAG_TYPES[option.kind],
                default=None,
                help=f"{option.help} (--model {where}; default: {option.default})",
            )


def _command(commands, name: str, handler, summary: str, description: str):
    """A sub-command's parser, which runs `handler(args)`."""
    parser = commands.add_parser(name, help=summary, description=description)
    parser.set_defaults(handler=handler, parser=parser)
    return parser


def _add_output_flags(parser, out: str, overwrite: str, required: bool = False) -> None:
    parser.add_argument("--out", required=required, help=out)
    parser.add_argument("--overwrite", action="store_true", help=overwrite)


def _train_parser(commands) -> None:
    train = _command(
        commands,
        "train",
        _train,
        "train a VAE and write a run folder",
        "Train a VAE with model.fit and write model.keras, config.json, history.json, "
        "samples.png, reconstructions.png, checkpoints and TensorBoard logs.",
    )
    groups = {}
    for setting in RunConfig.settings():
        name = setting.metadata["group"]
        if name not in groups:
            groups[name] = train.add_argument_group(name)
        _add_setting(groups[name], setting)
        if setting.name == "beta":
            _add_model_options(groups[name])
    groups["training"].add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --output-dir from its newest intact checkpoint, with "
        "the flags it was started with",
    )


def _export_parser(commands) -> None:
    export = _command(
        commands,
        "export",
        _export,
        "export a run's model to a SavedModel or a .tflite file",
        "Export RUN_DIR/model.keras (or a .keras file) to a SavedModel folder (signatures "
        "encode, decode, sample, reconstruct; classify for semi_supervised) or a .tflite "
        "file (decode, sample; classify).",
    )
    export.add_argument("run", metavar="RUN_DIR", help="a run folder, or a .keras file")
    export.add_argument("--format", choices=choices.EXPORT_FORMATS, required=True)
    export.add_argument(
        "--quantize",
        choices=choices.QUANTIZATIONS,
        help="TFLite weight quantisation (default: none, float32)",
    )
    _add_output_flags(
        export,
        "where to write (default: RUN_DIR/saved_model, RUN_DIR/model.tflite or "
        "RUN_DIR/model.<quantize>.tflite)",
        "replace an existing output (only once the new one is complete)",
    )


def _sample_parser(commands) -> None:
    sample = _command(
        commands,
        "sample",
        _sample,
        "draw samples from a model and write a PNG grid",
        "Draw samples from a .keras file, a SavedModel folder or a .tflite file (run by "
        "LiteRT) and write them as a PNG grid.",
    )
    sample.add_argument("model", metavar="MODEL", help=".keras file, SavedModel folder or .tflite")
    sample.add_argument("-n", type=_positive_int, default=64, help="how many (default: 64)")
    sample.add_argument(
        "--label",
        type=int,
        help="the class of every sample (conditional models only; they need it)",
    )
    _add_sampler_flag(sample, "where the latents come from")
    _add_output_flags(sample, "the PNG file to write", "replace an existing PNG", required=True)


def _add_sampler_flag(parser, what: str) -> None:
    parser.add_argument(
        "--sampler",
        choices=choices.SAMPLERS,
        help=f"{what}: the prior, or a sampler fitted by `tfvae fit-sampler` (default: the "
        "model's own: a VQ-VAE's fitted PixelCNN, else the prior)",
    )


def _fit_sampler_parser(commands) -> None:
    fit = _command(
        commands,
        "fit-sampler",
        _fit_sampler,
        "fit a latent sampler to a trained run (GMM, two-stage VAE, PixelCNN prior)",
        "Fit a sampler to the codes of the run's training split and save it in "
        "RUN_DIR/model.keras: 'gmm' (a Gaussian mixture over the posterior means, Ghosh "
        "et al. 2020) or 'two_stage' (a second VAE, Dai & Wipf 2019) for the Gaussian-latent "
        "models; 'pixelcnn' (a gated PixelCNN prior over the codes) for a VQ-VAE, whose "
        "samples then come from it. Exports then carry a sample_<sampler> signature.",
    )
    fit.add_argument("run", metavar="RUN_DIR", help="a run folder")
    fit.add_argument("--sampler", choices=choices.FITTED_SAMPLERS, required=True)
    fit.add_argument(
        "--epochs",
        type=_positive_int,
        default=None,
        help="epochs of a trained sampler (default: 50 for two_stage, 15 for pixelcnn)",
    )
    fit.add_argument(
        "--num-components",
        type=_positive_int,
        default=10,
        help="components of the gmm (default: 10)",
    )
    fit.add_argument("--seed", type=int, default=0, help="seed of the fit (default: 0)")
    fit.add_argument("--dataset", help="(default: the run's data set)")
    _add_source_flags(fit)


_MODEL_SOURCE_HELP = (
    "a run folder, one of its checkpoint folders (RUN/checkpoints/ckpt-*) or a .keras file"
)


def _evaluate_parser(commands) -> None:
    evaluate = _command(
        commands,
        "evaluate",
        _evaluate,
        "measure a trained run: log-likelihood, ELBO, rate, distortion, active units",
        "Evaluate RUN_DIR/model.keras on a data split; print a table and write "
        "RUN_DIR/metrics.json.",
    )
    evaluate.add_argument("run", metavar="RUN_DIR", help=_MODEL_SOURCE_HELP)
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
    evaluate.add_argument(
        "--sample-quality",
        action="store_true",
        help="also measure prior samples: FID, KID, precision and recall against the split, "
        "in the features of a classifier trained on the training split (trained once and "
        "cached), with the train-vs-test FID as the floor",
    )
    evaluate.add_argument(
        "--num-samples",
        type=_positive_int,
        help="samples for --sample-quality (default: as many as the evaluated examples)",
    )
    evaluate.add_argument(
        "--disentanglement",
        action="store_true",
        help="also measure disentanglement on dSprites' ground-truth factors (a run trained "
        "on --dataset dsprites): BetaVAE and FactorVAE scores, MIG, DCI and SAP",
    )
    evaluate.add_argument(
        "--disentanglement-points",
        type=_positive_int,
        default=10_000,
        help="points of --disentanglement: N training points of every metric and N / 2 test "
        "or evaluation points (default: 10000, disentanglement_lib's; its BetaVAE score then "
        "encodes 1.9 million images)",
    )
    _add_sampler_flag(evaluate, "--sample-quality: where the latents of the samples come from")
    _add_source_flags(evaluate)


def _plot_parser(commands) -> None:
    plot = _command(
        commands,
        "plot",
        _plot,
        "draw a picture of a trained run (PNG)",
        "Draw one picture of RUN_DIR's model: prior samples, reconstructions, an "
        "interpolation, latent traversals, the latent map (PCA of posterior means, by label), "
        "the 2-D manifold (2-D latents), or the training curves.",
    )
    plot.add_argument("run", metavar="RUN_DIR", help=_MODEL_SOURCE_HELP)
    plot.add_argument("--what", choices=choices.PLOTS, required=True)
    plot.add_argument("--dataset", help="(default: the run's data set, from its config.json)")
    plot.add_argument(
        "--label",
        type=int,
        help="conditional models: the class held fixed (samples, interpolation, traversal, "
        "manifold; default: every class in turn, or the first image's class)",
    )
    _add_output_flags(
        plot, "the PNG to write (default: RUN_DIR/plots/<what>.png)", "replace an existing PNG"
    )
    _add_source_flags(plot)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tfvae", description="Variational autoencoders on Keras 3 and TFP.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    parsers = (
        _train_parser,
        _fit_sampler_parser,
        _export_parser,
        _sample_parser,
        _evaluate_parser,
        _plot_parser,
    )
    for add in parsers:
        add(commands)
    return parser


# ---------------------------------------------------------------------- train
def _run_config(args) -> RunConfig:
    """The `RunConfig` of train's flags; model options only where a flag was given."""
    settings = {s.name: getattr(args, s.name) for s in RunConfig.settings()}
    given = {name: getattr(args, name) for name in registry.options_by_name()}
    options = {name: value for name, value in given.items() if value is not None}
    return RunConfig(**settings, model_options=options)


def _train(args) -> int:
    from tfvae import runs

    result = runs.train_run(_run_config(args), resume=args.resume)
    again = f"tfvae train --resume --output-dir {result.run_dir or args.output_dir}"
    if result.status == runs.INTERRUPTED:
        print(f"Resume with: {again}")
        return EXIT_INTERRUPTED
    if result.status == runs.LOST_WORKER:
        print(
            f"tfvae train: error: {result.message}; the checkpoints are kept. "
            f"Restart all workers with: {again}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    if result.run_dir is None:
        return 0
    history, run_dir = result.history, result.run_dir
    elbo = history.get("val_elbo", history["elbo"])[-1]
    log_dir = Path(args.log_dir) if args.log_dir else run_dir / "logs"
    print(
        f"validation ELBO {elbo:.2f} nats; wrote {run_dir}/ (model.keras, config.json, "
        f"history.json, samples.png, reconstructions.png, checkpoints/) and TensorBoard "
        f"logs in {log_dir}/"
    )
    return 0


# ---------------------------------------------------------------------- export, sample
def _export(args) -> int:
    from tfvae import export, loading

    if args.quantize and args.format != "tflite":
        raise ValueError("--quantize applies to --format tflite only.")
    folder = Path(args.run) if Path(args.run).is_dir() else Path(args.run).parent
    if args.format == "saved_model":
        out = _writable(Path(args.out) if args.out else folder / "saved_model")
        vae = loading.load_vae(args.run)
        export.export_saved_model(vae, out, overwrite=args.overwrite)
    else:
        name = f"model.{args.quantize}.tflite" if args.quantize else "model.tflite"
        out = _writable(Path(args.out) if args.out else folder / name)
        vae = loading.load_vae(args.run)
        export.to_tflite(vae, out, quantization=args.quantize, overwrite=args.overwrite)
    print(f"wrote {out}")
    return 0


def _png(path) -> Path:
    if Path(path).suffix.lower() != ".png":
        raise ValueError(f"--out must name a .png file. Received: {str(path)!r}")
    return _writable(Path(path))


#: The free space an output needs before the work that makes it starts.
_MIN_FREE_BYTES = 5_000_000


def _writable(path: Path) -> Path:
    """`--out` checked before the work (`tfvae.files.check_writable`)."""
    from tfvae.files import check_writable

    return check_writable(path, "--out", _MIN_FREE_BYTES)


def _sample(args) -> int:
    import numpy as np

    from tfvae import plots, serving
    from tfvae.files import atomic_output

    out = _png(args.out)
    sampler = serving.load_sampler(args.model, sampler=args.sampler)
    images = np.asarray(sampler(args.n, label=args.label))
    with atomic_output(out, overwrite=args.overwrite) as partial:
        plots.save_image_grid(images, partial)
    print(f"wrote {args.n} samples to {out}")
    return 0


# ---------------------------------------------------------------------- fit-sampler
#: `--epochs` of `tfvae fit-sampler` when none is given.
_SAMPLER_EPOCHS = {"gmm": 1, "two_stage": 50, "pixelcnn": 15}


def _fit_sampler(args) -> int:
    import numpy as np

    from tfvae import loading
    from tfvae.files import atomic_output

    source = _model_source(args.run)
    if source.tag:
        raise ValueError(
            f"fit-sampler fits a run's own model; {str(args.run)!r} is a checkpoint. "
            "Pass the run folder."
        )
    vae = loading.load_vae(source.model_path)
    if args.sampler not in vae.fittable_samplers:
        raise ValueError(
            f"{type(vae).__name__} cannot fit the sampler {args.sampler!r}; it fits: "
            f"{', '.join(vae.fittable_samplers)}."
        )
    _, batches = _run_data(source, args, "train", batch_size=1000)
    pairs = list(batches.as_numpy_iterator())
    x = np.concatenate([p[0] for p in pairs])
    labels = np.concatenate([p[1] for p in pairs]) if vae.is_conditional else None
    epochs = args.epochs or _SAMPLER_EPOCHS[args.sampler]
    vae.fit_sampler(
        args.sampler,
        x,
        labels,
        num_components=args.num_components,
        epochs=epochs,
        seed=args.seed,
    )
    with atomic_output(source.model_path, overwrite=True) as partial:
        vae.save(partial)
    print(
        f"fitted the {args.sampler} sampler to {len(x)} training examples; wrote "
        f"{source.model_path} (sample with: tfvae sample {source.model_path} "
        f"--sampler {args.sampler} --out samples.png)"
    )
    return 0


# ---------------------------------------------------------------------- evaluate, plot
class _Source(NamedTuple):
    """A model to evaluate or plot, and the run it belongs to."""

    model_path: Path  # the .keras file
    run_dir: Path | None  # the folder holding the run's config.json, if found
    config: dict  # that config, or {}
    tag: str  # "" for a run's own model, "ckpt-...-" for one of its checkpoints

    @property
    def folder(self) -> Path:
        """Where its metrics and plots go: the run folder, else the model's folder."""
        return self.run_dir or self.model_path.parent


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
            config = read_config_file(candidate / "config.json")
            return _Source(model_path, candidate, config, tag)
    return _Source(model_path, None, {}, "")


def _run_data(source: _Source, args, split: str, batch_size: int):
    """A split of the run's data set (or --dataset), in order, with labels, binarised as
    the run was trained."""
    from tfvae import data

    dataset = args.dataset or source.config.get("dataset")
    if not dataset:
        raise ValueError(
            f"No run config.json was found beside {str(source.model_path)!r} or in the two "
            "folders above it, so its data set is unknown; pass --dataset."
        )
    binarize = source.config.get("binarize", "none")
    return dataset, data.load(
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


def _print_report(metrics: dict, out: Path) -> None:
    k = f", k = {metrics['k']}" if metrics["k"] else ""
    print(f"{metrics['dataset']} {metrics['split']}, {metrics['examples']} examples{k}")
    rows = [
        (metrics["log_likelihood_of"] + ", nats", "log_likelihood"),
        ("bits per dim", "bits_per_dim"),
        ("ELBO, nats", "elbo"),
        ("rate, nats", "rate"),
        ("distortion, nats", "distortion"),
    ]
    for row, key in rows:
        value = metrics[key]
        error = metrics["log_likelihood_standard_error"] if key == "log_likelihood" else None
        shown = "n/a" if value is None else f"{value:.3f}"
        print(f"  {row:<18} {shown}" + (f" +- {error:.3f}" if error is not None else ""))
    if "classification_error" in metrics:
        print(f"  {'test error':<18} {metrics['classification_error']:.4f} (classifier q(y|x))")
        print(f"  {'ELBO, no labels':<18} {metrics['elbo_without_labels']:.3f} (log p(x))")
    if "code_nll" in metrics:
        print(f"  {'code NLL, nats':<18} {metrics['code_nll']:.3f} (PixelCNN prior)")
        print(f"  {'ELBO with prior':<18} {metrics['code_prior_elbo']:.3f}")
        print(f"  {'  bits per dim':<18} {metrics['code_prior_bits_per_dim']:.4f}")
    units = metrics["active_units"]
    shown = "n/a" if units is None else f"{units} of {metrics['latent_dim']}"
    print(f"  {'active units':<18} {shown}")
    for measure, reason in metrics["not_measured"].items():
        print(f"  ({measure}: {reason})")
    scores = metrics.get("disentanglement")
    if scores:
        print(
            f"disentanglement on dSprites ({scores['data']}), {scores['sizes']['num_train']} points"
        )
        from tfvae.disentanglement import METRICS

        for name in METRICS:
            print(f"  {name:<18} {scores[name]:.3f}")
    quality = metrics.get("sample_quality")
    if quality:
        print(
            f"{quality['sampler']} samples: {quality['samples']}, features of a classifier "
            "with test "
            f"accuracy {quality['feature_test_accuracy']:.4f}"
        )
        print(f"  {'FID':<18} {quality['fid']:.3f} (train vs test: {quality['fid_floor']:.3f})")
        kid, error = quality["kid"], quality["kid_standard_error"]
        print(f"  {'KID':<18} {kid:.5f} +- {error:.5f}")
        print(f"  {'precision':<18} {quality['precision']:.3f}")
        print(f"  {'recall':<18} {quality['recall']:.3f}")
        if "mean_class_accuracy" in quality:
            per_class = " ".join(f"{v:.2f}" for v in quality["class_accuracy"].values())
            print(f"  {'class accuracy':<18} {quality['mean_class_accuracy']:.3f} ({per_class})")
    print(f"wrote {out}")


def _evaluate(args) -> int:
    import numpy as np

    from tfvae import evaluation, loading
    from tfvae.files import atomic_output

    source = _model_source(args.run)
    vae = loading.load_vae(source.model_path)
    if args.sampler is not None:
        vae.check_sampler(args.sampler)  # before the long measures, not after
        if not args.sample_quality:
            raise ValueError("--sampler applies to --sample-quality only.")
    dataset, batches = _run_data(source, args, args.split, batch_size=1000)
    sprites = _ground_truth(vae, dataset, args) if args.disentanglement else None
    pairs = list(batches.as_numpy_iterator())
    x = np.concatenate([p[0] for p in pairs])[: args.examples]
    y = np.concatenate([p[1] for p in pairs])[: args.examples]
    metrics = {"dataset": dataset, "split": args.split, "model": str(source.model_path)}
    metrics.update(evaluation.report(vae, x, labels=y, k=args.k))
    if args.sample_quality:
        metrics["sample_quality"] = _sample_quality(vae, dataset, args, len(x))
        _add_to_hparams_session(source, args.split, metrics["sample_quality"])
    if sprites is not None:
        n, half = args.disentanglement_points, max(2, args.disentanglement_points // 2)
        sizes = dict(num_train=n, num_test=half, num_points=n, num_eval_points=half)
        metrics["disentanglement"] = evaluation.disentanglement_scores(vae, sprites, **sizes)
    out = source.folder / f"{source.tag}metrics.json"
    with atomic_output(out, overwrite=True) as partial:
        partial.write_text(json.dumps(metrics, indent=2) + "\n")
    _print_report(metrics, out)
    return 0


def _ground_truth(vae, dataset: str, args):
    """The factors `--disentanglement` needs, and the model checked against them, before
    the long measures (`tfvae.data.ground_truth` refuses data sets without factors)."""
    from tfvae import data, evaluation

    sprites = data.ground_truth(dataset, data_dir=args.data_dir, manual_dir=args.manual_dir)
    evaluation.check_disentanglement_model(vae, sprites)
    return sprites


def _add_to_hparams_session(source: _Source, split: str, quality: dict) -> None:
    """Adds the sample measures of a run's own model to its HParams session."""
    log_dir = source.config.get("log_dir")
    if source.tag or not log_dir or not Path(log_dir).is_dir():
        return  # a checkpoint, or a model with no run logs
    from tfvae import dashboards

    names = ("fid", "kid", "precision", "recall")
    suffix = "" if quality["sampler"] == "prior" else f"_{quality['sampler']}"
    measures = {f"{split}_{name}{suffix}": quality[name] for name in names}
    dashboards.write_metrics(log_dir, measures, step=int(source.config.get("epochs", 0)))


def _sample_quality(vae, dataset: str, args, examples: int) -> dict:
    from tfvae import data, feature_network, sample_quality

    source = dict(data_dir=args.data_dir, manual_dir=args.manual_dir, offline=args.offline)
    network = feature_network.load_feature_network(dataset, **source)
    x_real, _ = data.load_arrays(dataset, args.split, **source)
    x_train, _ = data.load_arrays(dataset, "train", **source)
    return sample_quality.sample_quality(
        vae,
        network,
        x_real[:examples],
        x_train,
        num_samples=args.num_samples,
        sampler=args.sampler or vae.default_sampler,
    )


def _plot(args) -> int:
    from tfvae import loading, plots
    from tfvae.files import atomic_output

    run = Path(args.run)
    if args.what == "curves":
        if not run.is_dir() or not (run / "history.json").is_file():
            raise ValueError(f"No history.json in {str(run)!r} to draw curves from.")
        out = _png(args.out or run / "plots" / "curves.png")
        try:
            history = json.loads((run / "history.json").read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(
                f"{str(run / 'history.json')!r} is not a readable history: {error}"
            ) from None
        with atomic_output(out, overwrite=args.overwrite) as partial:
            plots.plot_curves(history, partial)
        print(f"wrote {out}")
        return 0
    source = _model_source(run)
    out = _png(args.out or source.folder / "plots" / f"{source.tag}{args.what}.png")
    vae = loading.load_vae(source.model_path)
    x = labels = None
    if args.what not in ("samples", "manifold", "factor_information"):
        split = source.config.get("validation_split", "test")
        _, batches = _run_data(source, args, split, 500)
        x, labels = next(batches.as_numpy_iterator())
    with atomic_output(out, overwrite=args.overwrite) as partial:
        plots.plot(args.what, vae, partial, x=x, labels=labels, label=args.label)
    print(f"wrote {out}")
    return 0


# ---------------------------------------------------------------------- main
#: Library argument names that a command's flag stands for under another name.
_ALIASES = {"labels": "label"}


def _in_flags(message: str, parser: argparse.ArgumentParser | None) -> str:
    """`message` with each backticked argument name that is a flag of `parser` written
    as the flag (`` `latent_dim` `` -> `--latent-dim`, `` `overwrite=True` `` ->
    `--overwrite`)."""
    if parser is None:
        return message
    flags = {
        action.dest: action.option_strings[-1]
        for action in parser._actions
        if action.option_strings and action.dest != "help"
    }

    def flag(match: re.Match) -> str:
        name = _ALIASES.get(match.group(1), match.group(1))
        return flags.get(name, match.group(0))

    return re.sub(r"`(\w+)(?:=True)?`", flag, message)


def main(argv: list[str] | None = None) -> int:
    """Runs the `tfvae` command with `argv` (default: `sys.argv[1:]`); returns the exit status."""
    args = _parser().parse_args(argv)
    from tfvae import _startup

    _startup.import_tensorflow()  # its start-up notices kept off stderr
    import absl.logging

    # TFDS reports through absl at WARNING level; the command prints its own summary.
    absl.logging.set_verbosity(absl.logging.ERROR)
    import tensorflow as tf

    from tfvae.faults import NonFiniteLossError

    try:
        return args.handler(args)
    except tf.errors.ResourceExhaustedError as error:
        log = _write_traceback(args)
        message = " ".join(error.message.split())[:300]
        print(
            f"tfvae {args.command}: error: out of memory ({message}); lower --batch-size, "
            f"--latent-dim, --k or --num-codes (traceback in {log})",
            file=sys.stderr,
        )
        return RUNTIME_ERROR
    except NonFiniteLossError as error:
        message = _in_flags(" ".join(str(error).split()), args.parser)
        print(f"tfvae {args.command}: error: {message}", file=sys.stderr)
        return NON_FINITE_LOSS
    except (ValueError, TypeError, OSError) as error:
        message = _in_flags(" ".join(str(error).split()), args.parser)
        print(f"tfvae {args.command}: error: {message}", file=sys.stderr)
        return USAGE_ERROR
    except Exception as error:  # noqa: BLE001 - the last line of defence: one line, not 40
        log = _write_traceback(args)
        if os.environ.get(DEBUG_ENV) == "1":
            traceback.print_exc()
        message = " ".join(str(error).split())[:300]
        print(
            f"tfvae {args.command}: unexpected {type(error).__name__}: {message} (traceback in "
            f"{log}; {DEBUG_ENV}=1 prints it)",
            file=sys.stderr,
        )
        return RUNTIME_ERROR


def _write_traceback(args) -> Path:
    """Writes the exception being handled to `tfvae-error.log` in the run folder the
    command works on (or the temporary folder); returns where."""
    folder = Path(getattr(args, "output_dir", None) or getattr(args, "run", None) or ".")
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        folder = Path(tempfile.gettempdir())
    path = folder / "tfvae-error.log"
    try:
        with open(path, "a", encoding="utf-8") as log:
            log.write(f"--- tfvae {args.command}, {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
            log.write(traceback.format_exc())
    except OSError:
        return Path("(not written: the folder cannot be written)")
    return path
