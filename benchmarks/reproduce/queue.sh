#!/usr/bin/env bash
# The reproduction runs of benchmarks/README.md ("Reproducing the literature"), in order:
# every row to its CPU budget with the k = 5000 estimate, then the one-layer VAE rows on to
# their full protocol (3,280 epochs, about 4 h each on 2 CPU cores). Each command resumes
# where a stopped run left off, so the script can be started again after a stop:
#
#     nohup benchmarks/reproduce/queue.sh > benchmarks/results/.reproduce/queue.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/../.."
run() { python benchmarks/reproduce/run.py "$@"; }

# CPU budget: stages 0-1 (4 epochs) for k = 1, stage 0 (1 epoch) for k = 50.
run burda_vae_1layer_fixed --epochs 13
run burda_vae_1layer_dynamic --epochs 4
run burda_vae_2layer_dynamic --epochs 4
run burda_iwae_1layer_fixed --epochs 1
run burda_iwae_1layer_dynamic --epochs 1
run burda_iwae_2layer_dynamic --epochs 1
# Full protocol.
run burda_vae_1layer_fixed
run burda_vae_1layer_dynamic
