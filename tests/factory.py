"""What tests build runs and call commands with: the one factory of tiny configs, and a command
run in this process (no interpreter and TensorFlow start-up per call)."""

import contextlib
import glob
import importlib
import io
import os
import subprocess

from tfvae import config as config_lib

TINY = dict(  # a 16x16 run of two steps per epoch on the built-in faces: seconds on a CPU
    dataset="builtin", image_size=16, width=4, latent_dim=3, k=2, batch_size=16,
    train_size=32, val_size=16, epochs=1, learning_rate=1e-3,
)  # fmt: skip


def tiny_config_for(data_dir, **changes) -> config_lib.Config:
    """The one factory of test configs: TINY with `changes`, its data cached in `data_dir`."""
    return config_lib.Config(**{**TINY, "data_dir": str(data_dir), **changes})


def main_of(argv: list[str]) -> int:
    """The exit code of `tfvae-NAME ARGS` (argv as a shell would pass it) run through
    `tfvae.cli.NAME.main` in this process."""
    name = argv[0].removeprefix("tfvae-").replace("-", "_")
    return importlib.import_module(f"tfvae.cli.{name}").main(list(argv))


def run_command(name: str, *args: str) -> subprocess.CompletedProcess:
    """`tfvae-NAME ARGS` through its `main(argv)` here: the exit code and what it printed, as
    subprocess.run(..., capture_output=True, text=True) would return them."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main_of([f"tfvae-{name}", *args])
    return subprocess.CompletedProcess(
        [f"tfvae-{name}", *args], code, out.getvalue(), err.getvalue()
    )


def scalar_events(model_dir, split: str) -> dict[str, list[tuple[int, float]]]:
    """Every scalar summary in the events files of `model_dir/split`: tag -> [(step, value)]
    in step order (values float32, as written)."""
    import tensorflow as tf

    found = {}
    for path in sorted(glob.glob(os.path.join(str(model_dir), split, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                array = tf.make_ndarray(value.tensor)
                if array.ndim == 0 and array.dtype.kind == "f":
                    found.setdefault(value.tag, []).append((event.step, float(array)))
    return {tag: sorted(values) for tag, values in found.items()}


def latent_groups(*sizes: int):
    """A model with only latent groups of these sizes, top down (no networks): what the shared
    model methods read of groups (`with_lower_groups`, `latent_temperatures`)."""
    from tfvae.models import base, priors

    class Groups(base.LatentVariableModel):
        def __init__(self):
            super().__init__()
            self.prior = priors.standard_normal(sum(sizes))

        def group_sizes(self):
            return list(sizes)

    return Groups()
