"""The README's first command, timed: `tfvae train` on the embedded digits, whole processes.

Each run is a fresh `tfvae train --output-dir DIR` process (30 epochs of the MLP VAE
on scikit-learn's 1,437 training digits, with every checkpoint, TensorBoard summary
and picture a user gets). The clock starts before the process is spawned and stops
when it exits. Two settings:

- **cold**: XLA's persistent compilation cache in a new, empty folder, as on the
  first run after `pip install`;
- **warm**: the same folder again, as for any later run of the same model.

It also times the imports alone (a process that imports what `tfvae train` imports
and exits), so the table shows how much of a run is TensorFlow, Keras and TFP.

Usage:

    python benchmarks/cli_train.py                      # 3 repeats; about 3 minutes
    # the same for an older tfvae, alternated with this one, run by run:
    git worktree add /tmp/old b2246e7
    python benchmarks/cli_train.py --other /tmp/old --label b2246e7

It prints a Markdown table, writes `benchmarks/results/cli_train.md` and puts it into
`benchmarks/README.md` between the `cli_train` markers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

TRAIN = "import sys; from tfvae.cli import main; sys.exit(main(sys.argv[1:]))"
IMPORTS = "from tfvae import _startup, cli, runs; _startup.import_tensorflow()"


def _timed(code: str, args: list[str], source: Path, cache: Path) -> float:
    env = dict(os.environ, PYTHONPATH=str(source), TFVAE_XLA_CACHE=str(cache))
    env.pop("TF_XLA_FLAGS", None)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=source
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{source}: exit {done.returncode}\n{done.stderr[-3000:]}")
    return seconds


def one_round(source: Path, work: Path) -> dict[str, float]:
    """Imports, a cold run and a warm run of `tfvae train` from `source`."""
    cache = work / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    times = {"imports": _timed(IMPORTS, [], source, cache)}
    for setting in ("cold", "warm"):
        run_dir = work / f"run-{setting}"
        shutil.rmtree(run_dir, ignore_errors=True)
        times[setting] = _timed(TRAIN, ["train", "--output-dir", str(run_dir)], source, cache)
    return times


def _cell(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.median(values):.1f} ({min(values):.1f} to {max(values):.1f})"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--other", type=Path, help="a checkout of another tfvae to compare")
    parser.add_argument("--label", default=None, help="what to call --other in the table")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    from run import machine, update_readme

    import tfvae

    started = time.perf_counter()
    sources = {"this commit": ROOT}
    if args.other:
        sources[args.label or str(args.other)] = args.other.resolve()
    results: dict[str, list[dict]] = {name: [] for name in sources}
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(args.repeats):
            names = list(sources) if repeat % 2 == 0 else list(reversed(sources))
            for name in names:
                times = one_round(sources[name], Path(folder) / name.replace(" ", "_"))
                results[name].append(times)
                print(f"{name}: " + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()))
    command = "python benchmarks/cli_train.py"
    if args.repeats != 3:
        command += f" --repeats {args.repeats}"
    if args.other:
        command += f" --other {args.other} --label {args.label or args.other}"
    lines = [
        f"{time.strftime('%Y-%m-%d')}; {machine()}; tfvae {tfvae.__version__}; `{command}` "
        f"({(time.perf_counter() - started) / 60:.1f} min). Each cell: median (min to max) "
        f"over {args.repeats} fresh processes, alternated between the versions.",
        "",
        "| tfvae | imports only, s | `tfvae train`, cache cold, s | cache warm, s |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, runs in results.items():
        cells = [_cell([r[key] for r in runs]) for key in ("imports", "cold", "warm")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    out = args.out or HERE / "results" / "cli_train.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"# `tfvae train` on the digits\n\n{text}\n")
    print(text)
    if args.out is None:
        update_readme(HERE / "README.md", "cli_train", text)


if __name__ == "__main__":
    main()
