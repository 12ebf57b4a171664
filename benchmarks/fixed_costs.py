"""Where the first epoch's extra seconds go: tracing, XLA compilations, and the cache.

Trains the README's MLP VAE (784-400-20, the PyTorch tutorial's sizes) on MNIST with
`fit(x_numpy, epochs=3, batch_size=128)` in fresh processes, and times every call of
the train function that `fit` makes (one call = one execution of 32 steps). A call
far slower than the median is one that traced or compiled. It reports, per setting:
the first call (trace + compile), the other slow calls (recompilations), epoch 1,
the later epochs, and the first epoch's extra cost over a later one.

Settings: XLA's persistent cache cold (a new, empty folder), warm (the same folder
again, as for a second run of the same model), and off (`TFVAE_XLA_CACHE=off`);
and no XLA at all (`compile(jit_compile=False)`: Keras' loop, 32 steps per call),
the choice `jit_compile="auto"` would make if XLA did not pay for short runs.

Usage:

    python benchmarks/fixed_costs.py               # about 1 minute
    # the same for an older tfvae, e.g. the commit before the fixes:
    git worktree add /tmp/old 9705281
    PYTHONPATH=/tmp/old python benchmarks/fixed_costs.py --label 9705281

It prints a Markdown table and appends it to `benchmarks/results/fixed_costs.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child(data_file: str) -> None:
    import keras
    import numpy as np

    import tfvae

    x = np.load(data_file)["x_train"]
    keras.utils.set_random_seed(0)
    encoder = tfvae.networks.mlp_encoder((784,), 20, hidden_units=(400,))
    decoder = tfvae.networks.mlp_decoder(20, (784,), hidden_units=(400,))
    vae = tfvae.VAE(encoder, decoder, seed=0)
    vae.compile(**({"jit_compile": False} if os.environ.get("BENCH_NO_XLA") else {}))
    calls: list[tuple[int, float]] = []
    make = vae.make_train_function

    def timed_make(force=False):
        function = make(force)
        function = vae.train_function if function is None else function

        def timed(iterator):
            start = time.perf_counter()
            logs = function(iterator)
            float(next(iter(logs.values())))  # wait for the result
            calls.append((len(epochs), time.perf_counter() - start))
            return logs

        vae.train_function = timed
        return timed

    vae.make_train_function = timed_make
    epochs: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            epochs.append(time.perf_counter() - self.start)

    vae.fit(x, epochs=3, batch_size=128, verbose=0, callbacks=[Clock()])
    print("RESULT " + json.dumps({"calls": calls, "epochs": epochs}), flush=True)


def measure(data_file: Path, cache: str, xla: bool = True) -> dict:
    env = dict(os.environ, TFVAE_XLA_CACHE=cache, TF_CPP_MIN_LOG_LEVEL="3")
    if not xla:
        env["BENCH_NO_XLA"] = "1"
    env.pop("TF_XLA_FLAGS", None)
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(data_file)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(lines[-1][len("RESULT ") :])


def row(label: str, result: dict) -> str:
    seconds = [s for _, s in result["calls"]]
    typical = statistics.median(seconds)
    slow = [s for s in seconds[1:] if s > 5 * typical]
    epochs = result["epochs"]
    later = statistics.median(epochs[1:])
    return (
        f"| {label} | {seconds[0]:.2f} | {len(slow)} ({sum(slow):.2f} s) | {typical:.3f} | "
        f"{epochs[0]:.2f} | {later:.2f} | {epochs[0] - later:.2f} |"
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", metavar="DATA")
    parser.add_argument("--label", default=None, help="names the tfvae under test")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return
    sys.path.insert(0, str(HERE))
    from run import machine, prepare_data

    import tfvae

    label = args.label or f"tfvae {tfvae.__version__} ({Path(tfvae.__file__).parent})"
    out = HERE / "results" / "fixed_costs.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    data_file = out.parent / ".fixed_costs_data.npz"
    n_train, _, source = prepare_data(data_file, quick=False)
    rows = [
        f"{time.strftime('%Y-%m-%d')}; {machine()}; {source}; {label}; "
        f"`python benchmarks/fixed_costs.py` ({args.repeats} repeats of each setting).",
        "",
        "| setting | first call, s (trace + compile) | other slow calls (compilations) | "
        "a call of 32 steps, s | epoch 1, s | later epoch, s | epoch 1 extra, s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    try:
        for repeat in range(args.repeats):
            with tempfile.TemporaryDirectory() as cache:
                rows.append(row(f"cache cold ({repeat + 1})", measure(data_file, cache)))
                rows.append(row(f"cache warm ({repeat + 1})", measure(data_file, cache)))
            rows.append(row(f"cache off ({repeat + 1})", measure(data_file, "off")))
            no_xla = measure(data_file, "off", xla=False)
            rows.append(row(f"no XLA, `jit_compile=False` ({repeat + 1})", no_xla))
            print("\n".join(rows[-4:]), flush=True)
    finally:
        data_file.unlink(missing_ok=True)
    text = "\n".join(rows)
    print(text)
    with out.open("a") as file:
        file.write(text + "\n\n")


if __name__ == "__main__":
    main()
