"""Training runs: a run folder, checkpoints in generations, and a resume that loses nothing.

`train_run(config)` trains the model a `tfvae.config.RunConfig` describes and writes
a run folder:

    config.json          the settings, and facts of the run (data shape, XLA, versions)
    checkpoints/         ckpt-<step>/ after every epoch (and on a stop), newest `keep`
    logs/                TensorBoard: scalars, images, KL per dimension
    model.keras          the trained model (when the run finishes)
    history.json         the per-epoch metrics
    samples.png, reconstructions.png

A run stopped by SIGTERM or SIGINT finishes the running execution, writes a
checkpoint (mid-epoch too) and returns with status `"interrupted"`; a killed one
leaves its newest intact checkpoint. `train_run(config, resume=True)` continues from
that checkpoint with the settings in `config.json`: each epoch's data order and
binarisation noise depend on (seed, epoch) alone, and a mid-epoch checkpoint records
the steps done, so the resumed run sees exactly the batches the uninterrupted one
would have (bit-identical under `deterministic=True`). Under a multi-worker strategy
the workers agree on a stop, and only the chief (worker 0) writes files.

Example:

>>> from tfvae.config import RunConfig
>>> from tfvae.runs import train_run
>>> config = RunConfig(dataset="digits", epochs=20, output_dir="saved_models/digits-vae")
>>> result = train_run(config)  # stopped or killed? the same call with resume=True
>>> result = train_run(config, resume=True)
>>> result.status, result.history["val_elbo"][-1]
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from tfvae import (
    callbacks,
    checkpoints,
    dashboards,
    data,
    evaluation,
    faults,
    fused,
    loading,
    models,
    plots,
    resources,
    scaling,
    schedules,
    training,
)
from tfvae.config import RunConfig, read_config_file
from tfvae.files import atomic_output, check_writable
from tfvae.models import semi_supervised

__all__ = ["RunResult", "train_run", "FINISHED", "INTERRUPTED", "LOST_WORKER"]

#: `RunResult.status`: every epoch ran and the run folder is complete.
FINISHED = "finished"
#: Stopped by SIGTERM/SIGINT after writing a checkpoint; resume continues.
INTERRUPTED = "interrupted"
#: Under a multi-worker strategy, another worker was lost; the checkpoints are kept.
LOST_WORKER = "lost_worker"

#: The free disk space a run needs before it starts (its checkpoints, logs and pictures).
_MIN_FREE_BYTES = 20_000_000
#: `RunConfig.jit_compile` -> `compile(jit_compile=...)`.
_JIT_COMPILE = {"auto": "auto", "on": True, "off": False}
#: Validation images the HParams metrics and the projector are computed on, and the
#: importance samples of their log p(x).
_DASHBOARD_EXAMPLES, _DASHBOARD_K = 1000, 100
#: What a collective op raises when another worker died or was stopped.
_LOST_WORKER_ERRORS = (tf.errors.UnavailableError, tf.errors.CancelledError, tf.errors.AbortedError)


class RunResult(NamedTuple):
    """How a run ended.

    Attributes:
        status: `FINISHED`, `INTERRUPTED` or `LOST_WORKER`.
        run_dir: the run folder (None on a worker that writes none).
        model: the model as trained so far.
        history: the per-epoch metrics of the whole run, resumed epochs included.
        checkpoint: the newest checkpoint written, if any.
        message: what happened, in one line.
    """

    status: str
    run_dir: Path | None
    model: keras.Model
    history: dict[str, list[float]]
    checkpoint: Path | None
    message: str


def train_run(config: RunConfig, *, resume: bool = False) -> RunResult:
    """Trains the run `config` describes, writing its run folder as it goes.

    Args:
        config: the settings. With `resume=True` only its `output_dir` is used when
            that folder holds a run (its `config.json` has the settings).
        resume: continue the run in `config.output_dir` from its newest intact
            checkpoint; a missing or empty folder starts a new run there.

    Returns:
        A `RunResult`; its `status` says whether the run finished or was stopped.

    Raises:
        ValueError / TypeError: for bad settings, a non-empty `output_dir` of a new
            run, or a folder to resume that is not a run folder.
        tfvae.checkpoints.CheckpointError: when every checkpoint is damaged.
        tfvae.faults.NonFiniteLossError: when a loss term goes NaN or infinite (the
            checkpoints are kept).
    """
    saved = None
    if resume:
        config, saved = _resumed(config)
    config.validate()
    # First of all TensorFlow work: MultiWorkerMirroredStrategy must be made before it.
    strategy = scaling.make_strategy(config.strategy)
    policy = keras.mixed_precision.global_policy()
    scaling.set_precision(config.precision)
    try:
        return _Run(config, strategy, saved).train()
    finally:
        keras.mixed_precision.set_global_policy(policy)  # the process may go on


def _resumed(config: RunConfig) -> tuple[RunConfig, dict | None]:
    """The settings of the run in `config.output_dir` and its config.json, or `config`
    and None when that folder does not exist yet or is empty (a run killed before it
    wrote its config)."""
    if not config.output_dir:
        raise ValueError("`resume` needs `output_dir`, the run folder to resume.")
    folder = Path(config.output_dir)
    if not (folder / "config.json").is_file():
        if not folder.exists() or (folder.is_dir() and not any(folder.iterdir())):
            print(f"nothing to resume in {folder}; starting a new run there")
            return config, None
        raise ValueError(
            f"Cannot resume {config.output_dir!r}: it has no config.json, so it is not a "
            "run folder written by tfvae."
        )
    saved = read_config_file(folder / "config.json")
    resumed = RunConfig.from_dict(saved)
    resumed.output_dir = config.output_dir
    return resumed, saved


def _new_run_dir(config: RunConfig) -> Path:
    if config.output_dir:
        path = Path(config.output_dir)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise ValueError(
                f"The output folder {str(path)!r} already exists and is not empty; "
                "choose a new `output_dir` (nothing was overwritten)."
            )
        return path
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path("saved_models") / f"{config.dataset}-{config.network}-{stamp}"
    suffix = 1
    while path.exists():
        suffix += 1
        path = Path("saved_models") / f"{config.dataset}-{config.network}-{stamp}-{suffix}"
    return path


def _versions() -> dict[str, str]:
    import tensorflow_probability as tfp

    from tfvae import __version__

    return {
        "tfvae": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tensorflow_probability": tfp.__version__,
    }


def _finished(train: tf.data.Dataset, skip: int, done: int) -> bool:
    """Whether the epoch ran to its end (the dataset's length is known) after `done` steps."""
    remaining = int(train.cardinality())
    return remaining >= 0 and done - skip >= remaining


class _Run:
    """One call of `train_run`: the data, the model, the epoch loop and the files."""

    def __init__(self, config: RunConfig, strategy, saved: dict | None):
        self.config, self.strategy, self.saved = config, strategy, saved
        # Only the chief (worker 0) writes the run folder; other workers read it to resume.
        self.chief = scaling.is_chief(strategy)
        if self.chief and saved is None:
            self.run_dir = _new_run_dir(config)
        else:
            self.run_dir = Path(config.output_dir) if config.output_dir else None
        self.checkpoint_dir = self.run_dir / "checkpoints" if self.run_dir else None
        self.log_dir = Path(config.log_dir) if config.log_dir else None
        if self.log_dir is None and self.run_dir is not None:
            self.log_dir = self.run_dir / "logs"
        self.conditional = models.registry.spec(config.model).conditional

    def _check_paths(self) -> None:
        """Checks the folders the run will write before any is made: a path that is a
        file, a folder that cannot be written, or a full disk is one line, and no
        half-made run folder is left behind."""
        if not self.chief:
            return
        for flag, path in (("--output-dir", self.run_dir), ("--log-dir", self.log_dir)):
            if path is not None:
                check_writable(path, flag, _MIN_FREE_BYTES, folder=True)

    # ------------------------------------------------------------------ data
    def _load(self, split: str, **kwargs) -> tf.data.Dataset:
        """A split of the run's data set, as trained; `kwargs` override `tfvae.data.load`'s
        options."""
        c = self.config
        options = dict(
            batch_size=c.batch_size,
            binarize=None if c.binarize == "none" else c.binarize,
            with_labels=self.conditional,
            data_dir=c.data_dir,
            manual_dir=c.manual_dir,
            offline=c.offline,
        )
        return data.load(c.dataset, split, **{**options, **kwargs})

    def _labelled_subset(self) -> dict:
        """`load`'s options for a semi-supervised run's training labels (-1 outside the subset)."""
        c = self.config
        return {} if c.labels is None else dict(num_labelled=c.labels, label_seed=c.label_seed)

    def epoch_data(self, epoch: int, skip: int = 0) -> tf.data.Dataset:
        """Epoch `epoch`'s batches, after the first `skip`: the order and binarisation
        noise depend on (seed, epoch) alone."""
        c = self.config
        train = self._load(c.split, seed=c.seed * 1_000_003 + epoch, **self._labelled_subset())
        return train.skip(skip) if skip else train

    def _prepare_data(self) -> None:
        c = self.config
        if c.labels is not None:
            self._check_labels()
        first_epoch = self._load(c.split, **self._labelled_subset())  # checks the split
        self.validation = self._load(c.validation_split, seed=c.seed + 1)
        spec = first_epoch.element_spec[0] if self.conditional else first_epoch.element_spec
        self.data_shape = tuple(spec.shape[1:])
        self.num_classes = None
        if self.conditional:
            source = dict(data_dir=c.data_dir, manual_dir=c.manual_dir, offline=c.offline)
            self.num_classes = data.num_classes(c.dataset, **source)
            if not self.num_classes:
                raise ValueError(
                    f"`model` {c.model} needs a labelled data set; {c.dataset!r} has no labels."
                )
        display = self._load(c.validation_split, seed=c.seed + 1, cache=False)
        shown = next(display.take(1).as_numpy_iterator())
        self.x_shown, self.y_shown = shown if self.conditional else (shown, None)

    # ------------------------------------------------------------------ model
    def _model_and_state(self):
        """The model to train (in the strategy's scope) and where training stands."""
        c = self.config
        resumed = None
        if self.saved is not None:
            resumed = checkpoints.latest_checkpoint(self.checkpoint_dir)
        if resumed is not None:
            path, state = resumed
            print(f"resuming from {path} (epoch {state['epoch'] + 1}, step {state['iterations']})")
            return checkpoints.load_checkpoint(path), state
        if self.saved is not None:
            print(f"no checkpoint in {self.checkpoint_dir}; starting from the beginning")
        options = c.model_spec_options()
        if self.conditional:
            options["num_classes"] = self.num_classes
        if c.model == "semi_supervised":
            options.update(self._semi_supervised_options())
        if "dataset_size" in models.registry.spec(c.model).data_options:
            source = dict(data_dir=c.data_dir, manual_dir=c.manual_dir, offline=c.offline)
            options["dataset_size"] = data.num_examples(c.dataset, c.split, **source)
        vae = models.build(
            c.model,
            self.data_shape,
            c.network,
            c.latent_dim,
            c.likelihood,
            beta=c.beta,
            seed=c.seed,
            **options,
        )
        vae.compile(
            optimizer=keras.optimizers.Adam(c.learning_rate),
            jit_compile=_JIT_COMPILE[c.jit_compile],
            steps_per_execution=c.steps_per_execution or training.DEFAULT_STEPS_PER_EXECUTION,
        )
        return vae, {"epoch": 0, "step_in_epoch": 0, "history": {}}

    def _check_labels(self) -> None:
        c = self.config
        source = dict(data_dir=c.data_dir, manual_dir=c.manual_dir, offline=c.offline)
        classes = data.num_classes(c.dataset, **source)
        size = data.num_examples(c.dataset, c.split, **source)
        if not classes:
            raise ValueError(f"`labels` needs a labelled data set; {c.dataset!r} has no labels.")
        if not classes <= c.labels <= size:
            raise ValueError(
                f"`labels` must be at least the {classes} classes and at most the {size} "
                f"examples of {c.split!r} of {c.dataset!r}. Received: labels={c.labels}"
            )

    def _semi_supervised_options(self) -> dict:
        """The labelled fraction of the training split, and for M1+M2 the M1 model with
        the latent dimensions it uses (active units over 1,000 training images)."""
        c = self.config
        source = dict(data_dir=c.data_dir, manual_dir=c.manual_dir, offline=c.offline)
        size = data.num_examples(c.dataset, c.split, **source)
        options = {"labelled_fraction": 1.0 if c.labels is None else c.labels / size}
        if c.features is not None:
            m1 = loading.load_vae(c.features)
            if m1.data_shape != self.data_shape or m1.is_conditional:
                raise ValueError(
                    f"`features` {c.features!r} must be an unconditional VAE of data shaped "
                    f"{self.data_shape}. Received: {type(m1).__name__} of {m1.data_shape}"
                )
            x = next(self._load(c.split, batch_size=1000, cache=False).take(1).as_numpy_iterator())
            x = x[0] if isinstance(x, tuple) else x
            options["features"] = m1
            options["feature_dims"] = semi_supervised.used_dimensions(m1, x)
        return options

    def _write_config(self, vae, kl_target: float) -> None:
        """config.json: the settings and what they resolved to (written once, atomically)."""
        if not self.chief or (self.run_dir / "config.json").is_file():
            return
        facts = {
            "command": "train",
            "data_shape": list(self.data_shape),
            "log_dir": str(self.log_dir),
            "versions": _versions(),
            "xla": bool(vae.jit_compile),  # what jit_compile resolved to; the setting stays
            "steps_per_execution": vae.steps_per_execution,
            "fused_steps": fused.uses_fused_steps(vae),
            "replicas": self.strategy.num_replicas_in_sync,
            "kl_target": kl_target,
        }
        with atomic_output(self.run_dir / "config.json", overwrite=False) as partial:
            partial.write_text(json.dumps({**self.config.to_dict(), **facts}, indent=2) + "\n")

    def _callbacks(self, stop, kl_target: float) -> list:
        found = [stop]
        if self.chief:
            y = self.y_shown
            found += [
                keras.callbacks.TensorBoard(log_dir=str(self.log_dir), write_graph=False),
                callbacks.TensorBoardImages(
                    self.log_dir, self.x_shown[:16], labels=None if y is None else y[:16]
                ),
                callbacks.LatentDiagnostics(
                    self.log_dir,
                    self.x_shown[:500],
                    labels=None if y is None else y[:500],
                    run_epochs=self.config.epochs,
                ),
            ]
        if self.config.kl_schedule != "none":
            steps = self.config.kl_schedule_steps
            schedule = {
                "linear": lambda: schedules.LinearWarmup(steps, end=kl_target),
                "cyclical": lambda: schedules.Cyclical(steps, end=kl_target),
                "sigmoid": lambda: schedules.Sigmoid(steps / 2, 10.0 / steps, end=kl_target),
            }[self.config.kl_schedule]()
            found.insert(0, schedules.KLScheduleCallback(schedule))
        return found

    def _checkpoint(self, vae, history, epoch: int, step_in_epoch: int = 0) -> Path | None:
        if not self.chief:
            return None
        return checkpoints.write_checkpoint(
            vae,
            self.checkpoint_dir,
            epoch=epoch,
            step_in_epoch=step_in_epoch,
            history=history,
            keep=self.config.keep_checkpoints,
        )

    # ------------------------------------------------------------------ the run
    def train(self) -> RunResult:
        c = self.config
        if c.deterministic:
            training.make_deterministic(c.seed)
        self._prepare_data()
        # Before any weight exists: a size flag too large for the machine is one line.
        resources.check_training_memory(c, self.data_shape)
        self._check_paths()
        keras.utils.set_random_seed(c.seed)
        with self.strategy.scope():
            vae, state = self._model_and_state()
        if self.chief:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        # The beta a KL schedule warms up to: the model's own, kept across resumes.
        kl_target = (self.saved or {}).get("kl_target")
        if kl_target is None:
            kl_target = float(keras.ops.convert_to_numpy(vae.beta))
        self._write_config(vae, kl_target)
        stop = faults.StopOnSignal()
        with stop:
            ended = self._epochs(vae, state, stop, self._callbacks(stop, kl_target))
        if ended is not None:
            return ended
        history = self.history
        if not self.chief:
            print("done; worker 0 writes the run folder")
            return RunResult(FINISHED, None, vae, history, None, "done")
        self._write_outputs(vae)
        return RunResult(FINISHED, self.run_dir, vae, history, self.last_checkpoint, "finished")

    def _epochs(self, vae, state, stop, callbacks) -> RunResult | None:
        """Runs the remaining epochs; returns a result when the run stops early."""
        self.history = {key: list(values) for key, values in state["history"].items()}
        self.last_checkpoint = None
        for epoch in range(state["epoch"], self.config.epochs):
            skip = state["step_in_epoch"] if epoch == state["epoch"] else 0
            first_step = scaling.steps_taken(vae)
            train = self.epoch_data(epoch, skip)
            try:
                result = vae.fit(
                    train,
                    initial_epoch=epoch,
                    epochs=epoch + 1,
                    validation_data=self.validation,
                    callbacks=callbacks,
                    verbose=2,
                )
            except _LOST_WORKER_ERRORS as error:
                if self.config.strategy != "multi_worker":
                    raise
                reason = str(error).strip().splitlines()[0]
                message = f"lost another worker in epoch {epoch + 1} ({reason})"
                return RunResult(LOST_WORKER, self.run_dir, vae, self.history, None, message)
            done = skip + scaling.steps_taken(vae) - first_step
            stop.synchronize(vae)  # a signal that came after the last batch end, on any worker
            if stop.received is not None and not _finished(train, skip, done):
                path = self._checkpoint(vae, self.history, epoch, step_in_epoch=done)
                return self._interrupted(vae, stop, f"in epoch {epoch + 1} after step {done}", path)
            for key, values in result.history.items():
                self.history.setdefault(key, []).append(float(values[-1]))
            self.last_checkpoint = self._checkpoint(vae, self.history, epoch + 1)
            if stop.received is not None and epoch + 1 < self.config.epochs:
                return self._interrupted(
                    vae, stop, f"after epoch {epoch + 1}", self.last_checkpoint
                )
        return None

    def _interrupted(self, vae, stop, when: str, path) -> RunResult:
        written = path if path is not None else "(written by worker 0)"
        message = f"stopped by {stop.signal_name} {when}; checkpoint {written}"
        print(message)
        return RunResult(INTERRUPTED, self.run_dir, vae, self.history, path, message)

    def _write_outputs(self, vae) -> None:
        """model.keras, history.json and the two pictures of a finished run."""
        with atomic_output(self.run_dir / "model.keras", overwrite=True) as partial:
            vae.save(partial)
        history = json.dumps(self.history, indent=2) + "\n"
        with atomic_output(self.run_dir / "history.json", overwrite=True) as partial:
            partial.write_text(history)
        plots.plot_samples(vae, self.run_dir / "samples.png", n=64, seed=self.config.seed)
        x, labels = self.x_shown[:32], None if self.y_shown is None else self.y_shown[:32]
        plots.plot_reconstructions(vae, x, self.run_dir / "reconstructions.png", labels=labels)
        self._write_dashboards(vae)

    def _write_dashboards(self, vae) -> None:
        """TensorBoard's HParams session (the settings; the final validation ELBO and
        log p(x)) and the projector (latent means of up to 1,000 validation images)."""
        c = self.config
        examples = self._load(
            c.validation_split,
            batch_size=_DASHBOARD_EXAMPLES,
            shuffle=False,
            with_labels=True,
            seed=c.seed + 1,
            cache=False,
        )
        x, labels = next(examples.take(1).as_numpy_iterator())
        given = labels if self.conditional else None
        metrics = {"validation_elbo": (self.history.get("val_elbo") or [None])[-1]}
        if vae.has_density:
            estimate = evaluation.importance_sampled_log_likelihood(
                vae, x, k=_DASHBOARD_K, labels=given, seed=c.seed
            )
            metrics["validation_log_likelihood"] = estimate.nats
        settings = {k: v for k, v in c.to_dict().items() if k not in ("output_dir", "log_dir")}
        dashboards.write_hparams(self.log_dir, settings, metrics, step=c.epochs)
        latent = vae.posterior_tensors(tf.constant(x), vae._label_batch(given, x))["latent"]
        latent = np.reshape(keras.ops.convert_to_numpy(latent), (len(x), -1))
        dashboards.write_projector(
            self.log_dir, latent, labels if (labels >= 0).all() else None, images=x
        )
