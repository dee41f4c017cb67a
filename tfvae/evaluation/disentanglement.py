"""Disentanglement scores of codes against ground-truth factors, as disentanglement_lib
(Locatello et al. 2019) computes them: MIG, DCI, SAP, modularity and explicitness.

Every score is a function of numpy arrays: codes float [N, Z] (posterior means, say) and factors
float [N, F] (the labels). Continuous columns are discretised into `bins` equal-width bins of
their range (disentanglement_lib's histogram discretiser); a column with at most `bins` distinct
values (a binary attribute, a factor on a grid) keeps its values as classes. Scores that train a
classifier split the N examples into train and test sets drawn from `seed`. The BetaVAE and
FactorVAE scores, which need images drawn with a factor held fixed, are in `interventions`.
"""

from __future__ import annotations

import contextlib
import os
import warnings

import numpy as np

SCORES = ("mig", "dci", "sap", "modularity", "explicitness")


def discretize(values: np.ndarray, bins: int = 20, method: str = "histogram") -> np.ndarray:
    """Each column of float [N, D] -> int64 classes [N, D].

    method "histogram": bin k of `bins` equal-width bins over the column's range, as
    np.digitize(column, np.histogram(column, bins)[1][:-1]) - 1 (disentanglement_lib);
    "quantile": `bins` bins of equal mass. A column with at most `bins` distinct values keeps
    them as classes 0, 1, ... in increasing order, under either method.
    """
    values = np.asarray(values, np.float64)
    if method not in ("histogram", "quantile"):
        raise ValueError(f"Argument `method` is {method!r}; accepted: histogram, quantile.")
    if method == "histogram":
        low, high = values.min(0), values.max(0)
        flat = low == high  # np.histogram's range for a constant column
        low, high = np.where(flat, low - 0.5, low), np.where(flat, high + 0.5, high)
        edges = np.linspace(low, high, bins + 1, axis=-1)  # [D, bins + 1], as np.histogram
        out = (values[:, :, None] >= edges[None, :, 1:-1]).sum(-1)  # [N, D]
    else:
        edges = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1], axis=0)  # [bins-1, D]
        out = (values[:, :, None] >= edges.T[None]).sum(-1)
    for d in np.flatnonzero(distinct_counts(values) <= bins):
        out[:, d] = np.unique(values[:, d], return_inverse=True)[1]
    return out.astype(np.int64)


def distinct_counts(values: np.ndarray) -> np.ndarray:
    """Number of distinct values in each column of [N, D], int [D]."""
    ordered = np.sort(values, axis=0)
    return 1 + (np.diff(ordered, axis=0) != 0).sum(0)


def _one_hot(classes: np.ndarray) -> np.ndarray:
    """int [N, D] -> float64 [N, D, L], L = the largest class + 1."""
    return (classes[:, :, None] == np.arange(classes.max() + 1)).astype(np.float64)


def discrete_mutual_information(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Plug-in mutual information in nats between each column of int [N, A] and of int [N, B],
    float64 [A, B] (sklearn.metrics.mutual_info_score of every pair)."""
    one_a, one_b = _one_hot(a), _one_hot(b)
    (n, num_a, levels_a), (_, num_b, levels_b) = one_a.shape, one_b.shape
    joint = one_a.reshape(n, -1).T @ one_b.reshape(n, -1) / n  # [A * La, B * Lb]
    joint = joint.reshape(num_a, levels_a, num_b, levels_b).transpose(0, 2, 1, 3)  # [A,B,La,Lb]
    p_a, p_b = one_a.mean(0), one_b.mean(0)  # [A, La], [B, Lb]
    independent = p_a[:, None, :, None] * p_b[None, :, None, :]
    ratio = np.where(joint > 0, joint / np.where(joint > 0, independent, 1.0), 1.0)
    return np.maximum((joint * np.log(ratio)).sum((2, 3)), 0.0)


def discrete_entropy(classes: np.ndarray) -> np.ndarray:
    """Entropy in nats of each column of int [N, D], float64 [D]."""
    p = _one_hot(classes).mean(0)  # [D, L]
    return -(p * np.log(np.where(p > 0, p, 1.0))).sum(1)


def gap(info: np.ndarray, entropies: np.ndarray) -> float:
    """Mean over factors of (largest - second largest mutual information of a latent) / the
    factor's entropy: info float [Z, F] nats, entropies float [F] nats; factors of entropy 0
    (constant) are left out."""
    top_two = -np.sort(-info, axis=0)[:2]  # [2, F]
    keep = entropies > 0
    return float(np.mean((top_two[0] - top_two[1])[keep] / entropies[keep]))


@contextlib.contextmanager
def unconverged_fits():
    """Catches scikit-learn's ConvergenceWarning inside the block instead of printing it; yields
    a list that holds afterwards the first line of each (a fit stopped at its iteration cap).
    Other warnings are shown as usual."""
    from sklearn.exceptions import ConvergenceWarning

    messages = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        yield messages
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            messages.append(str(w.message).splitlines()[0])
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _check(codes, factors) -> tuple[np.ndarray, np.ndarray]:
    codes, factors = np.asarray(codes, np.float64), np.asarray(factors, np.float64)
    if codes.ndim != 2 or factors.ndim != 2 or len(codes) != len(factors):
        raise ValueError(
            f"Arguments `codes` {codes.shape} and `factors` {factors.shape} must be [N, Z] and "
            "[N, F] with the same N."
        )
    if len(codes) < 4:
        raise ValueError(f"Argument `codes` has {len(codes)} examples; at least 4 are needed.")
    return codes, factors


def train_test_split(n: int, seed: int, test_fraction: float = 0.25):
    """(train indices, test indices) of n examples, a permutation drawn from `seed`."""
    order = np.random.default_rng(seed).permutation(n)
    num_test = min(max(1, int(round(n * test_fraction))), n - 1)
    return order[num_test:], order[:num_test]


def mutual_information_gap(codes, factors, bins: int = 20) -> float:
    """MIG (Chen et al. 2018; disentanglement_lib's `discrete_mig`): codes [N, Z] and factors
    [N, F] histogram-discretised, then `gap` of their mutual information. 0 to 1."""
    codes, factors = _check(codes, factors)
    v = discretize(factors, bins)
    info = discrete_mutual_information(discretize(codes, bins), v)
    return gap(info, discrete_entropy(v))


def importance_matrix(codes, factors, bins=20, seed=0, n_estimators=100, n_jobs=None):
    """Gradient-boosted trees' importances (sklearn GradientBoostingClassifier, one per factor
    discretised) of each latent for each factor, float64 [Z, F], and the trees' mean accuracy
    on the train and test splits (DCI's informativeness). The factors' trees are fitted on
    `n_jobs` threads (None: one per CPU); each is seeded alike, so the result is the same."""
    from joblib import Parallel, delayed

    codes, factors = _check(codes, factors)
    y = discretize(factors, bins)
    train, test = train_test_split(len(codes), seed)
    threads = n_jobs or min(factors.shape[1], os.cpu_count() or 1)
    fitted = Parallel(n_jobs=threads, backend="threading")(
        delayed(_factor_trees)(codes, y[:, j], train, test, seed, n_estimators)
        for j in range(factors.shape[1])
    )
    importance = np.stack([f[0] for f in fitted], 1)  # [Z, F]
    accuracy = np.stack([f[1] for f in fitted], 1)  # [2, F]
    return importance, accuracy.mean(1)


def _factor_trees(codes, y, train, test, seed, n_estimators):
    """(|importance| [Z], accuracy on train and test [2]) of one factor's boosted trees."""
    from sklearn.ensemble import GradientBoostingClassifier

    if len(np.unique(y[train])) < 2:  # one class to learn: no importance, its accuracy
        return np.zeros(codes.shape[1]), np.array([1.0, np.mean(y[test] == y[train[0]])])
    model = GradientBoostingClassifier(n_estimators=n_estimators, random_state=seed)
    model.fit(codes[train], y[train])
    accuracy = [np.mean(model.predict(codes[split]) == y[split]) for split in (train, test)]
    return np.abs(model.feature_importances_), np.array(accuracy)


def _one_minus_entropy(p: np.ndarray, axis: int) -> np.ndarray:
    """1 - entropy of p normalised along `axis`, in base p.shape[axis] (scipy.stats.entropy of
    p + 1e-11, as disentanglement_lib)."""
    p = p + 1e-11
    p = p / p.sum(axis, keepdims=True)
    return 1.0 - (-(p * np.log(p)).sum(axis) / np.log(p.shape[axis]))


def dci_from_importance(importance: np.ndarray) -> tuple[float, float]:
    """(disentanglement, completeness) of Eastwood and Williams (2018) from an importance matrix
    float [Z, F]: each latent's 1 - entropy over factors (base F) weighted by its share of the
    importance; each factor's 1 - entropy over latents (base Z) weighted likewise."""
    weights = importance if importance.sum() > 0 else np.ones_like(importance)
    weights = weights / weights.sum()
    per_code = _one_minus_entropy(importance, axis=1)  # [Z]
    per_factor = _one_minus_entropy(importance, axis=0)  # [F]
    return float(per_code @ weights.sum(1)), float(per_factor @ weights.sum(0))


def dci(codes, factors, bins=20, seed=0, n_estimators=100) -> dict:
    """DCI (Eastwood and Williams 2018, as disentanglement_lib): disentanglement and completeness
    (0 to 1) from `importance_matrix`, informativeness as the trees' accuracy on the train and
    test splits (chance 1 / classes)."""
    importance, (train, test) = importance_matrix(codes, factors, bins, seed, n_estimators)
    disentanglement, completeness = dci_from_importance(importance)
    return {
        "dci_disentanglement": disentanglement,
        "dci_completeness": completeness,
        "dci_informativeness_train": float(train),
        "dci_informativeness_test": float(test),
    }


def sap_matrix(codes, factors, bins=20, seed=0) -> np.ndarray:
    """SAP's score of each latent for each factor, float64 [Z, F] (Kumar et al. 2018, as
    disentanglement_lib). A continuous factor (more than `bins` distinct values): the squared
    correlation of latent and factor on the train split (`continuous_factors=True`). A discrete
    one: the test accuracy of a linear SVM (LinearSVC(C=0.01, class_weight="balanced")) fitted on
    that latent alone (`continuous_factors=False`)."""
    from sklearn.svm import LinearSVC

    codes, factors = _check(codes, factors)
    train, test = train_test_split(len(codes), seed)
    x, v = codes[train] - codes[train].mean(0), factors[train] - factors[train].mean(0)
    covariance = x.T @ v  # [Z, F], each an unnormalised covariance
    variance_x, variance_v = (x * x).sum(0), (v * v).sum(0)
    denominator = np.outer(variance_x, variance_v)
    scores = np.where(variance_x[:, None] > 1e-12 * len(x), covariance**2, 0.0) / np.where(
        denominator > 0, denominator, 1.0
    )
    y = discretize(factors, bins)
    for j in np.flatnonzero(distinct_counts(factors) <= bins):
        scores[:, j] = 0.0
        if len(np.unique(y[train, j])) < 2:
            continue  # one class to learn: no latent tells it apart
        for i in range(codes.shape[1]):
            model = LinearSVC(C=0.01, class_weight="balanced", random_state=seed)
            model.fit(codes[train, i : i + 1], y[train, j])
            scores[i, j] = np.mean(model.predict(codes[test, i : i + 1]) == y[test, j])
    return scores


def sap(codes, factors, bins=20, seed=0) -> float:
    """SAP score: mean over factors of the gap between the two best latents of `sap_matrix`.
    0 (a factor spread evenly) to 1."""
    top_two = -np.sort(-sap_matrix(codes, factors, bins, seed), axis=0)[:2]
    return float(np.mean(top_two[0] - top_two[1]))


def modularity(codes, factors, bins=20) -> float:
    """Modularity (Ridgeway and Mozer 2018, as disentanglement_lib): for each latent, 1 - (its
    squared mutual information with the factors other than its best) / (F - 1) x (the best's);
    the mean over latents, a latent with no information counting 0. 0 to 1."""
    codes, factors = _check(codes, factors)
    info = discrete_mutual_information(discretize(codes, bins), discretize(factors, bins))
    squared = info**2  # [Z, F]
    best = squared.max(1)
    deviation = (squared.sum(1) - best) / np.where(best > 0, best * (squared.shape[1] - 1), 1.0)
    return float(np.mean(np.where(best > 0, 1.0 - deviation, 0.0)))


def explicitness(codes, factors, bins=20, seed=0) -> dict:
    """Explicitness (Ridgeway and Mozer 2018, as disentanglement_lib): for each discretised
    factor a logistic regression on all the codes (standardised by the train split's mean and
    std), scored by the ROC AUC of each class against the rest, averaged over classes; the mean
    over factors on the train and test splits (factors of one class there left out). 0.5
    (chance) to 1."""
    from sklearn.linear_model import LogisticRegression

    codes, factors = _check(codes, factors)
    train, test = train_test_split(len(codes), seed)
    mean, std = codes[train].mean(0), codes[train].std(0)
    x = (codes - mean) / np.where(std > 0, std, 1.0)
    y = discretize(factors, bins)
    auc = np.full((2, factors.shape[1]), np.nan)
    for j in range(factors.shape[1]):
        if len(np.unique(y[train, j])) < 2:
            continue
        model = LogisticRegression(max_iter=1000, random_state=seed).fit(x[train], y[train, j])
        for row, split in enumerate((train, test)):
            auc[row, j] = _mean_auc(y[split, j], model.predict_proba(x[split]), model.classes_)
    mean = [
        float(np.mean(row[~np.isnan(row)])) if (~np.isnan(row)).any() else np.nan for row in auc
    ]
    return {"explicitness_train": mean[0], "explicitness_test": mean[1]}


def _mean_auc(labels: np.ndarray, probabilities: np.ndarray, classes: np.ndarray) -> float:
    """Mean over classes present and absent in `labels` of the ROC AUC of that class's column."""
    from sklearn.metrics import roc_auc_score

    truth = labels[:, None] == classes[None, :]  # [N, C]
    keep = truth.any(0) & ~truth.all(0)
    if not keep.any():  # a split of one class: no AUC
        return np.nan
    return float(roc_auc_score(truth[:, keep], probabilities[:, keep], average="macro"))


def scores(codes, factors, which=SCORES, bins=20, seed=0, n_estimators=100) -> dict:
    """The scores named in `which` (of SCORES) as one flat dict of floats."""
    unknown = sorted(set(which) - set(SCORES))
    if unknown:
        raise ValueError(f"Scores {unknown} are unknown; accepted: {', '.join(SCORES)}.")
    out = {}
    if "mig" in which:
        out["mig"] = mutual_information_gap(codes, factors, bins)
    if "dci" in which:
        out.update(dci(codes, factors, bins, seed, n_estimators))
    if "sap" in which:
        out["sap"] = sap(codes, factors, bins, seed)
    if "modularity" in which:
        out["modularity"] = modularity(codes, factors, bins)
    if "explicitness" in which:
        out.update(explicitness(codes, factors, bins, seed))
    return out
