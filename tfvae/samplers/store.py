"""Samplers fitted on a trained run's latent codes, saved under MODEL_DIR/samplers/NAME/.

The codes are one draw z ~ q(z|x) per training image (seeded): draws of the aggregate posterior
q(z) = mean_n q(z|x_n), which is what the decoder saw in training. Posterior means would be a
narrower cloud than that (they drop each q(z|x)'s own spread), so a density fitted to them
draws codes the decoder met less often. The `gaussian` sampler is fitted to q(z)'s exact
moments instead (means and scales of every q(z|x), `gaussian.aggregate_posterior`).

A sampler's directory holds `sampler.json` (what, fitted on what and when, the run's checkpoint
and step, held-out log-density) and `parameters.npz`; it is written into a hidden folder and
renamed into place, so it is whole or absent. A sampler fitted on another checkpoint than the
run's newest is refused when loaded.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

import numpy as np
import tensorflow as tf

from tfvae import data
from tfvae.runtime import files
from tfvae.samplers import KINDS, kinds
from tfvae.samplers.gaussian import check_shrinkage

SAMPLERS_DIR = "samplers"
INFO_FILE = "sampler.json"
PARAMETERS_FILE = "parameters.npz"
_BATCH = 256


def sampler_dir(model_dir: str, name: str) -> str:
    """MODEL_DIR/samplers/NAME."""
    return os.path.join(model_dir, SAMPLERS_DIR, name)


def code_width(vae, groups: int) -> int:
    """The latents of the top `groups` latent groups of the model's code, top down (0 = every
    group); ValueError (one line) for more groups than the model has."""
    slices = vae.group_slices()
    if not 0 <= groups <= len(slices):
        raise ValueError(
            f"Flag `--groups` is {groups}; accepted: 0 (every group) or 1 to {len(slices)} "
            "(this run's latent groups, counted from the top)."
        )
    return slices[groups - 1][1] if groups else vae.latent_dim


def latent_codes(config, vae, split: str, num_images: int, seed: int, groups: int = 1) -> dict:
    """Posterior statistics of the first `num_images` of a split (0 = the run's own: its
    train_size or val_size; capped at the split's size), for the top `groups` latent groups
    (0 = all; `code_width`).

    Returns float32 arrays [N, Z]: "means" and "scales" of q(z|x) and "draws", one
    z ~ q(z|x) per image from noise eps of (seed, image index) (Philox; z = mean + scale * eps
    for a diagonal q). An IAF posterior has no closed-form moments: its draw stands for the
    mean, with scale 0, so `aggregate_posterior` gives the moments of the draws. For a
    hierarchy Z covers its top groups in code units: the top group alone has exact moments
    (`Posterior.top_group`); below it each group's posterior depends on the draws above, so
    one draw's code (`Posterior.draw`) stands for the mean, with scale 0. A sampler draws
    those groups and the prior the groups below them (`LatentVariableModel.with_lower_groups`).
    """
    own = config.train_size if split == "train" else config.val_size
    images = data.load_config_split(config, split, num_images or own, at_most=True)
    count = int(images.cardinality())
    if count < 0:  # unknown: count them
        count = int(images.reduce(0, lambda n, _: n + 1))
    width = code_width(vae, groups)
    exact = width == vae.top_dim  # one Gaussian's moments, or one draw through the groups
    eps = tf.random.stateless_normal(
        [count, width if exact else vae.latent_dim], [seed, 7], alg="philox"
    )
    means, scales, draws, start = [], [], [], 0
    for batch in images.batch(_BATCH):
        q = vae.encode(data.to_unit_interval(batch["image"]))
        count = int(batch["image"].shape[0])
        noise = eps[start : start + count]
        if exact:
            mean, scale, z = (t.numpy() for t in q.top_group(noise))
        else:
            z = q.draw(noise[None])[0][0][:, :width].numpy()
            mean, scale = z, np.zeros_like(z)
        means.append(mean), scales.append(scale), draws.append(z)
        start += count
    means, scales, draws = (np.concatenate(a) for a in (means, scales, draws))
    return {"means": means, "scales": scales, "draws": draws}


def fit(
    kind: str,
    train_codes: dict,
    held_out: dict,
    seed: int = 0,
    components: int = 20,
    sampler_flow_layers: int = 4,
    sampler_flow_width: int = 128,
    sampler_flow_epochs: int = 50,
    log=None,
    shrinkage=0.0,
    principal_dims: int = 0,
):
    """A sampler of `kind` fitted to train codes (from `latent_codes`); `shrinkage` (a float in
    [0, 1] or "auto", gaussian only) shrinks its covariance (`shrunk_aggregate_posterior`);
    `principal_dims` P (gmm only; 0 = every direction) fits the mixture along the codes' top P
    principal directions and a Gaussian along the rest (`densities.GaussianMixture`).

    Returns (sampler, settings): settings are the JSON-ready hyper-parameters it was fitted with.
    """  # fmt: skip
    shrinkage = check_shrinkage(shrinkage, kind)
    if kind not in kinds.TABLE:
        raise ValueError(f"Flag `--sampler` is {kind!r}; it must be one of {', '.join(KINDS)}.")
    options = kinds.Options(
        seed,
        components,
        principal_dims,
        shrinkage,
        sampler_flow_layers,
        sampler_flow_width,
        sampler_flow_epochs,
        log,
    )
    return kinds.TABLE[kind].fit(train_codes, held_out, options)


def sampler_codes(vae, sampler, count: int, seed, temperature=1.0):
    """float32 [count, latent_dim]: `sampler`'s draws of the latents it was fitted to (a
    hierarchy's top group, or its top groups together), then the groups below from the prior
    (`LatentVariableModel.with_lower_groups`). temperature: a number, every latent at it, or
    one T per latent group top down, each of the sampler's groups at its own (its noise scaled
    per latent: the Gaussian's m + T L eps, the flow's inverse of T u). seed: int [2]."""
    scale = temperature
    if isinstance(temperature, (tuple, list)):
        scale = vae.latent_temperatures(temperature)[: sampler.dims]
    top = sampler.sample(count, seed, scale)
    return vae.with_lower_groups(top, seed, temperature)


def code_draws(model_dir: str, name: str, vae, checkpoint: str):
    """Where a tool's codes come from: `draw(n, seed, temperature)` -> float32 [n, latent_dim].

    name: 'prior' (the model's own prior's `sample`) or a sampler fitted on the run
    (`load`: refused with one line if missing or fitted on another checkpoint), drawn by
    `sampler_codes` (a temperature may give one T per group, `latent_temperatures`).
    """
    if name == "prior":
        return lambda n, seed, temperature=1.0: vae.prior.sample(
            n, seed, vae.latent_temperatures(temperature)
        )
    sampler = load(model_dir, name, checkpoint)[0]
    return lambda n, seed, temperature=1.0: sampler_codes(vae, sampler, n, seed, temperature)


def mean_log_density(sampler, codes) -> float:
    """The mean log-density of codes float [N, Z] under a sampler, in nats per code."""
    values = [sampler.log_prob(codes[i : i + 1024]).numpy() for i in range(0, len(codes), 1024)]
    return float(np.concatenate(values).mean())


def save(model_dir: str, name: str, sampler, info: dict) -> str:
    """Writes MODEL_DIR/samplers/NAME/ (sampler.json, parameters.npz) whole; returns it."""
    target = sampler_dir(model_dir, name)
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=parent)
    try:
        arrays = sampler.arrays()
        files.write_atomically(
            os.path.join(staging, PARAMETERS_FILE), lambda f: np.savez(f, **arrays)
        )
        files.write_json(os.path.join(staging, INFO_FILE), info)
        return files.replace_directory(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def describe(
    kind: str,
    name: str,
    checkpoint: str,
    split: str,
    count: int,
    seed: int,
    settings: dict,
    scores: dict,
    groups: int = 1,
    latent_dim: int = 0,
) -> dict:
    """The sampler.json of a fitted sampler (of the top `groups` latent groups, 0 = all, whose
    codes have `latent_dim` latents)."""  # fmt: skip
    step = int(tf.train.load_variable(checkpoint, "step/.ATTRIBUTES/VARIABLE_VALUE"))
    codes = "moments of q(z|x)" if kind == "gaussian" else "one draw z ~ q(z|x) per image"
    fitted_on = {"split": split, "num_images": count, "codes": codes, "seed": seed,
                 "groups": groups, "latent_dim": latent_dim}  # fmt: skip
    return {
        "name": name,
        "sampler": kind,
        "fitted_on": fitted_on,
        "checkpoint": os.path.basename(checkpoint),
        "step": step,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "settings": settings,
        "mean_log_density_nats": scores,
    }


def load(model_dir: str, name: str, checkpoint: str):
    """(sampler, info) of MODEL_DIR/samplers/NAME, refused (ValueError, one line) if it is
    missing or was fitted on another checkpoint than `checkpoint` (the run's newest)."""
    directory = sampler_dir(model_dir, name)
    info_path = os.path.join(directory, INFO_FILE)
    if not os.path.exists(info_path):
        parent = os.path.dirname(directory)
        fitted = sorted(n for n in os.listdir(parent) if not n.startswith(".")) if os.path.isdir(
            parent) else []  # fmt: skip
        raise ValueError(
            f"--model_dir={model_dir} has no sampler {name!r} (fitted: "
            f"{', '.join(fitted) or 'none'}); fit it with "
            f"tfvae-fit-sampler --model_dir={model_dir} --sampler={name}."
        )
    info = files.read_json(info_path)
    if info["checkpoint"] != os.path.basename(checkpoint):
        raise ValueError(
            f"Sampler {name!r} was fitted on {info['checkpoint']}, but the run's newest checkpoint "
            f"is {os.path.basename(checkpoint)}; fit it again with tfvae-fit-sampler "
            f"--model_dir={model_dir} --sampler={info['sampler']} --name={name}."
        )
    with np.load(os.path.join(directory, PARAMETERS_FILE)) as stored:
        arrays = dict(stored)
    if info["sampler"] not in kinds.TABLE:
        raise ValueError(
            f"Sampler {name!r} is of kind {info['sampler']!r}; this version loads "
            f"{', '.join(KINDS)}."
        )
    sampler = kinds.TABLE[info["sampler"]].rebuild(arrays, info["settings"])
    return sampler, info
