"""Training for many epochs does not keep growing the process's memory."""

import keras
import psutil
from conftest import make_vae

BOUND_MB = 150  # generous: allocator noise is tens of MB; a leak of 1 MB an epoch shows


def test_fifty_epochs_keep_memory_growth_bounded(digits):
    process = psutil.Process()
    rss = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            rss.append(process.memory_info().rss / 2**20)

    vae = make_vae(seed=0)
    vae.compile()
    vae.fit(digits[0], batch_size=128, epochs=50, verbose=0, callbacks=[Record()])
    growth = max(rss[10:]) - rss[9]  # after warm-up (tracing, XLA compilation)
    assert len(rss) == 50
    assert growth < BOUND_MB, f"memory grew {growth:.0f} MB from epoch 10 to 50: {rss}"
