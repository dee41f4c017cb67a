"""Disentanglement scores that draw data with one factor held fixed, as disentanglement_lib
(Locatello et al. 2019) computes them: the BetaVAE score and the FactorVAE score.

Both ask a ground-truth source for codes of chosen factors:
  sample_factors(n, rng) -> float [n, F]: factors drawn as the dataset draws them;
  represent(factors, rng) -> float [n, Z]: codes of observations drawn from those factors
    (the built-in faces: painted by `data.builtin.draw_faces`, then encoded; `rng` draws the
    nuisances, the faces' jitter). A test passes a function of the factors themselves.
Every score's draws come from one `numpy.random.Generator`, so a seed gives the same numbers.
Each score point's batch of draws is made in one `represent` call for all points at once.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

SCORES = ("beta_vae", "factor_vae")
SampleFactors = Callable[[int, np.random.Generator], np.ndarray]
Represent = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _num_factors(sample_factors) -> int:
    """F of a source, from one draw of a generator of its own (the score's draws untouched)."""
    return int(np.shape(sample_factors(1, np.random.default_rng(0)))[1])


def _fixed_factor_draws(sample_factors, rng, num_points, batch_size, num_factors, pairs):
    """(index [P], factors [P, (2 if pairs) * B, F]): for point p, factor index[p] is the same
    in every draw of its batch (pairs: the second half copies it from the first, draw by draw;
    otherwise every draw takes the first draw's value)."""
    index = rng.integers(num_factors, size=num_points)
    draws = 2 * batch_size if pairs else batch_size
    factors = sample_factors(num_points * draws, rng).reshape(num_points, draws, num_factors)
    points = np.arange(num_points)
    if pairs:
        factors[points, batch_size:, index] = factors[points, :batch_size, index]
    else:
        factors[points, :, index] = factors[points, :1, index]
    return index, factors


def _codes_of(represent, factors, rng) -> np.ndarray:
    """represent() over factors [P, D, F] in one call -> codes float64 [P, D, Z]."""
    num_points, draws, num_factors = factors.shape
    codes = np.asarray(represent(factors.reshape(-1, num_factors), rng), np.float64)
    return codes.reshape(num_points, draws, -1)


def beta_vae_features(sample_factors, represent, rng, num_points, batch_size, num_factors):
    """(labels int [P], features float64 [P, Z]): each point's fixed factor, and the mean over a
    batch of B pairs sharing that factor of |z1 - z2| (Higgins et al. 2017)."""
    index, factors = _fixed_factor_draws(
        sample_factors, rng, num_points, batch_size, num_factors, pairs=True
    )
    codes = _codes_of(represent, factors, rng)  # [P, 2B, Z]
    return index, np.abs(codes[:, :batch_size] - codes[:, batch_size:]).mean(1)


def beta_vae_score(
    sample_factors: SampleFactors,
    represent: Represent,
    seed: int = 0,
    num_train: int = 500,
    num_eval: int = 250,
    batch_size: int = 64,
    max_iter: int = 10_000,
) -> dict:
    """BetaVAE score (Higgins et al. 2017, as disentanglement_lib): the accuracy of a logistic
    regression (sklearn's defaults: L2, C = 1, unscaled features) that tells from
    `beta_vae_features` which factor was fixed, on `num_train` points it was fitted to and
    `num_eval` fresh ones. 1 / F (chance) to 1.

    The classifier is the fit's optimum. disentanglement_lib kept sklearn's default cap of 100
    iterations, meant for the liblinear solver of its day; today's lbfgs needs several hundred
    on these unscaled features (587 on the quick start model, whose test accuracy moves from
    0.77 at 100 to 0.82), so the cap is `max_iter`. A fit stopped there still warns
    (`disentanglement.unconverged_fits` turns that into a count).
    """
    from sklearn.linear_model import LogisticRegression

    rng, num_factors = np.random.default_rng(seed), _num_factors(sample_factors)
    args = (sample_factors, represent, rng)
    train_y, train_x = beta_vae_features(*args, num_train, batch_size, num_factors)
    if len(np.unique(train_y)) > 1:
        model = LogisticRegression(random_state=seed, max_iter=max_iter)
        predict = model.fit(train_x, train_y).predict
    else:  # one factor fixed in every training point: the classifier can only say that one
        predict = lambda x: np.full(len(x), train_y[0])  # noqa: E731
    eval_y, eval_x = beta_vae_features(*args, num_eval, batch_size, num_factors)
    return {
        "beta_vae_train": float(np.mean(predict(train_x) == train_y)),
        "beta_vae_eval": float(np.mean(predict(eval_x) == eval_y)),
    }


def factor_vae_votes(sample_factors, represent, rng, num_points, batch_size, variances, active):
    """int64 [F, Z]: for each point, a vote (its fixed factor, the active latent whose variance
    over the batch divided by its variance over the data, `variances` [Z], is smallest; `active`
    bool [Z] the latents that may win)."""
    num_factors = _num_factors(sample_factors)
    index, factors = _fixed_factor_draws(
        sample_factors, rng, num_points, batch_size, num_factors, pairs=False
    )
    local = _codes_of(represent, factors, rng).var(1, ddof=1)  # [P, Z]
    ratio = np.where(active, local / np.where(active, variances, 1.0), np.inf)
    votes = np.zeros((num_factors, len(variances)), np.int64)
    np.add.at(votes, (index, ratio.argmin(1)), 1)
    return votes


def factor_vae_score(
    sample_factors: SampleFactors,
    represent: Represent,
    seed: int = 0,
    num_train: int = 500,
    num_eval: int = 250,
    batch_size: int = 64,
    num_variance_estimate: int = 10_000,
    prune_threshold: float = 0.05,
) -> dict:
    """FactorVAE score (Kim and Mnih 2018, as disentanglement_lib): latents whose std over the
    data is below `prune_threshold` are left out (collapsed to the prior); each latent is given
    the factor it votes for most in `factor_vae_votes` (a majority-vote classifier), and the
    score is the share of votes that classifier gets right, on its `num_train` points and on
    `num_eval` fresh ones. About 1 / F (chance) to 1."""
    rng = np.random.default_rng(seed)
    factors = sample_factors(num_variance_estimate, rng)
    codes = np.asarray(represent(factors, rng), np.float64)
    variances = codes.var(0, ddof=1)  # [Z]
    active = np.sqrt(variances) >= prune_threshold
    if not active.any():
        return {"factor_vae_train": 0.0, "factor_vae_eval": 0.0, "factor_vae_active_latents": 0}
    args = (sample_factors, represent, rng)
    train = factor_vae_votes(*args, num_train, batch_size, variances, active)
    classifier = train.argmax(0)  # [Z]: each latent's factor
    latents = np.arange(train.shape[1])
    evaluation = factor_vae_votes(*args, num_eval, batch_size, variances, active)
    return {
        "factor_vae_train": float(train[classifier, latents].sum() / train.sum()),
        "factor_vae_eval": float(evaluation[classifier, latents].sum() / evaluation.sum()),
        "factor_vae_active_latents": int(active.sum()),
    }
