"""The kinds of sampler, one table: each kind's fit to latent codes and its rebuild from the
parameters it saved (`store.fit` and `store.load` both look a kind up here).

A fit takes the training and held-out codes (`store.latent_codes`: float32 [N, Z] "means",
"scales", "draws") and the `Options`; it returns (sampler, settings), settings being the
JSON-ready hyper-parameters that sampler.json records and the rebuild reads back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from tfvae.samplers import densities
from tfvae.samplers.gaussian import shrunk_aggregate_posterior


@dataclasses.dataclass(frozen=True)
class Options:
    """What a fit may use; each kind reads its own (the flags of tfvae-fit-sampler)."""

    seed: int = 0  # EM's start and the flow's initialisation
    components: int = 20  # gmm
    principal_dims: int = 0  # gmm; 0 = the mixture in every direction
    shrinkage: float | str = 0.0  # gaussian: a share in [0, 1] or "auto" (checked before)
    sampler_flow_layers: int = 4  # flow: MADE layers
    sampler_flow_width: int = 128  # flow: hidden units per MADE layer
    sampler_flow_epochs: int = 50  # flow: passes over the codes
    log: Callable | None = None  # flow: log(epoch, held-out nats per code) after each epoch


@dataclasses.dataclass(frozen=True)
class Kind:
    """fit(train_codes, held_out, options) -> (sampler, settings); rebuild(arrays, settings)
    -> sampler, from parameters.npz's arrays and sampler.json's settings."""

    fit: Callable
    rebuild: Callable


def fit_gaussian(train_codes: dict, held_out: dict, options: Options):
    """The aggregate posterior's moment-matched N(m, S), S shrunk by options.shrinkage."""
    shrinkage = options.shrinkage
    mean, covariance, used = shrunk_aggregate_posterior(
        train_codes["means"], train_codes["scales"], shrinkage
    )
    settings = {}  # exact moments: no settings, as before shrinkage existed
    if shrinkage == "auto":
        settings = {"shrinkage": used, "shrinkage_from": "ledoit_wolf"}
    elif used:
        settings = {"shrinkage": used}
    try:
        return densities.gaussian(mean, covariance), settings
    except np.linalg.LinAlgError:  # draws (scale 0) span fewer dimensions than they have
        count, dims = train_codes["draws"].shape
        shrink = "--shrinkage=auto" if shrinkage == 0 else f"a --shrinkage above {used:.3g}"
        raise ValueError(
            f"The {count} training codes of {dims} latents have a singular covariance; "
            "--sampler=gaussian needs more codes than latents (--num_images) or fewer "
            f"--groups, or {shrink}; gmm and flow regularise."
        ) from None


def gaussian_from_arrays(arrays: dict, settings: dict) -> densities.GaussianMixture:
    return densities.gaussian(arrays["means"][0], arrays["covariances"][0])


def fit_gmm(train_codes: dict, held_out: dict, options: Options):
    """A full-covariance mixture of options.components Gaussians by EM on the draws, along
    their top options.principal_dims principal directions with a Gaussian beyond (0 = all)."""
    from sklearn.mixture import GaussianMixture

    draws = train_codes["draws"].astype(np.float64)
    components, principal_dims = options.components, options.principal_dims
    if components > len(draws):
        raise ValueError(
            f"Flag `--components` is {components}; it must be at most the "
            f"{len(draws)} training codes."
        )
    dims = draws.shape[1]
    if not 0 <= principal_dims <= dims:
        raise ValueError(
            f"Flag `--principal_dims` is {principal_dims}; accepted: 0 (the mixture in every "
            f"direction) to {dims} (the latents of these codes)."
        )
    subspace, settings = {}, {"components": components}
    if 0 < principal_dims < dims:  # the mixture along the top directions, a Gaussian beyond
        draws, subspace, explained = _principal_subspace(draws, principal_dims)
        settings.update(principal_dims=principal_dims, variance_explained=explained)
    mixture = GaussianMixture(
        components, covariance_type="full", reg_covar=1e-6, max_iter=500, random_state=options.seed
    ).fit(draws)
    sampler = densities.GaussianMixture(
        mixture.weights_, mixture.means_, mixture.covariances_, **subspace
    )
    return sampler, {**settings, "converged": bool(mixture.converged_)}


def _principal_subspace(draws: np.ndarray, principal_dims: int):
    """(projected draws float64 [N, P], the subspace's arrays for `densities.GaussianMixture`,
    the share of the variance along its P directions) of draws float64 [N, Z]."""
    center = draws.mean(0)
    variances, basis = np.linalg.eigh(np.cov(draws, rowvar=False, bias=True))
    order = np.argsort(variances)[::-1]
    variances, basis = variances[order], basis[:, order]
    projected = (draws - center) @ basis[:, :principal_dims]
    explained = float(variances[:principal_dims].sum() / variances.sum())
    residual = np.maximum(variances[principal_dims:], 1e-6)  # as EM's reg_covar
    subspace = {"basis": basis, "center": center, "residual_variances": residual}
    return projected, subspace, explained


def mixture_from_arrays(arrays: dict, settings: dict) -> densities.GaussianMixture:
    subspace = {k: arrays[k] for k in ("basis", "center", "residual_variances") if k in arrays}
    return densities.GaussianMixture(
        arrays["weights"], arrays["means"], arrays["covariances"], **subspace
    )


def fit_flow(train_codes: dict, held_out: dict, options: Options):
    """A masked autoregressive flow on the draws, the epoch best on the held-out draws kept."""
    from tfvae.samplers import flow as flow_lib

    network, history = flow_lib.fit_flow(
        train_codes["draws"], held_out["draws"], options.sampler_flow_layers,
        options.sampler_flow_width, options.sampler_flow_epochs, options.seed, options.log,
    )  # fmt: skip
    settings = {
        "latent_dim": int(train_codes["draws"].shape[1]),
        "flow_layers": options.sampler_flow_layers,  # sampler.json's keys, as before the rename
        "flow_width": options.sampler_flow_width,
        "flow_epochs": options.sampler_flow_epochs,
        "best_epoch": int(np.argmax(history)) + 1,
    }
    return densities.Flow(network), settings


def flow_from_arrays(arrays: dict, settings: dict) -> densities.Flow:
    return densities.flow_from_arrays(
        arrays, settings["latent_dim"], settings["flow_layers"], settings["flow_width"]
    )


TABLE = {  # --sampler -> its kind; the names are samplers.KINDS, in that order
    "gaussian": Kind(fit_gaussian, gaussian_from_arrays),
    "gmm": Kind(fit_gmm, mixture_from_arrays),
    "flow": Kind(fit_flow, flow_from_arrays),
}
