"""The disentanglement scores of disentanglement_lib on representations whose answer is known:
the factors themselves (permuted, rescaled) at the top of each scale, a rotation low, noise at
chance, and a partial entanglement whose value is derived by hand or computed independently."""

import json
import warnings

import numpy as np
import pytest
import scipy.stats
from sklearn.metrics import mutual_info_score

from tfvae.evaluation import disentanglement as dis
from tfvae.evaluation import interventions

NUM_FACTORS = 4  # three continuous on [0, 1], one binary (like the faces' glasses)
FAST = dict(bins=10, seed=0, n_estimators=20)


def _sample_factors(n, rng):
    factors = rng.uniform(size=(n, NUM_FACTORS))
    factors[:, 3] = factors[:, 3] < 0.3
    return factors


_PERMUTATION, _SCALE = np.array([2, 0, 3, 1]), np.array([3.0, -0.5, 10.0, 2.0])
_ROTATION = np.linalg.qr(np.random.default_rng(7).normal(size=(NUM_FACTORS, NUM_FACTORS)))[0]
REPRESENTATIONS = {
    "factors": lambda f: f,
    "permuted_rescaled": lambda f: f[:, _PERMUTATION] * _SCALE + 1.0,
    "rotated": lambda f: ((f - [0.5, 0.5, 0.5, 0.3]) / [0.29, 0.29, 0.29, 0.46]) @ _ROTATION,
    "noise": lambda f: np.random.default_rng(len(f)).normal(size=f.shape),
}


@pytest.fixture(scope="module")
def scored():
    factors = _sample_factors(800, np.random.default_rng(0))
    return {
        name: dis.scores(represent(factors), factors, **FAST)
        for name, represent in REPRESENTATIONS.items()
    }


@pytest.mark.parametrize("name", ["factors", "permuted_rescaled"])
def test_the_factors_themselves_score_at_the_top(scored, name):
    s = scored[name]
    assert s["mig"] > 0.95 and s["modularity"] > 0.99
    assert s["dci_disentanglement"] > 0.99 and s["dci_completeness"] > 0.99
    assert s["dci_informativeness_test"] > 0.95 and s["explicitness_test"] > 0.95
    # SAP: 1 on each continuous factor; the binary factor's gap is 1 - (an unrelated latent's
    # balanced-SVM accuracy, about 0.5), as disentanglement_lib's discrete SAP gives
    assert 0.8 < s["sap"] < 0.95
    np.testing.assert_allclose(s["mig"], scored["factors"]["mig"], rtol=1e-12)  # bins move along


def test_a_random_rotation_scores_low_but_stays_explicit(scored):
    s = scored["rotated"]
    assert s["mig"] < 0.4 and s["sap"] < 0.5
    assert s["dci_disentanglement"] < 0.4 and s["dci_completeness"] < 0.4
    assert s["modularity"] < scored["factors"]["modularity"] - 0.15
    assert s["explicitness_test"] > 0.95  # a linear read-out does not care about a rotation


def test_pure_noise_scores_at_chance(scored):
    s = scored["noise"]
    assert s["mig"] < 0.02 and s["sap"] < 0.05
    assert s["dci_disentanglement"] < 0.1 and s["dci_completeness"] < 0.1
    assert abs(s["explicitness_test"] - 0.5) < 0.05  # the AUC of a guess
    # the trees' accuracy: about 1/10 on each continuous factor, 0.7 on the binary one
    assert s["dci_informativeness_test"] < (3 * 0.1 + 0.7) / 4 + 0.08


def _grid_entanglement():
    """v1, v2 on {0, 1, 2, 3}, every pair 25 times; z1 = v1, z2 = 2.5 v2, z3 = v1 + v2."""
    v1, v2 = np.meshgrid(np.arange(4.0), np.arange(4.0))
    factors = np.tile(np.stack([v1.ravel(), v2.ravel()], 1), (25, 1))  # [400, 2]
    codes = np.stack([factors[:, 0], 2.5 * factors[:, 1], factors.sum(1)], 1)  # [400, 3]
    return codes, factors


def test_a_partial_entanglement_gives_the_values_derived_by_hand():
    codes, factors = _grid_entanglement()
    # I(z1; v1) = H(v1) = log 4; I(z3; v1) = H(v1 + v2) - H(v2), v1 + v2 triangular on 0..6
    counts = np.array([1, 2, 3, 4, 3, 2, 1]) / 16
    h_sum = -(counts * np.log(counts)).sum()
    gap = (np.log(4) - (h_sum - np.log(4))) / np.log(4)  # the same for both factors
    np.testing.assert_allclose(dis.mutual_information_gap(codes, factors), gap, rtol=1e-12)
    # z1, z2 inform on one factor (modularity 1), z3 equally on both (0): 2/3
    np.testing.assert_allclose(dis.modularity(codes, factors), 2 / 3, rtol=1e-12)
    # DCI from importances [[1, 0], [0, 1], [1, 1]]: latents 1, 2 disentangled, z3 not, weights
    # 1/4, 1/4, 1/2; each factor spread over two of three latents: 1 - log 2 / log 3
    d, c = dis.dci_from_importance(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    np.testing.assert_allclose([d, c], [0.5, 1 - np.log(2) / np.log(3)], atol=1e-8)


def _histogram_bins(column, bins):  # disentanglement_lib's _histogram_discretize, one column
    return np.digitize(column, np.histogram(column, bins)[1][:-1])


def test_continuous_scores_agree_with_an_independent_computation():
    rng = np.random.default_rng(3)
    factors = rng.uniform(size=(2000, 2))
    codes = np.stack(
        [factors[:, 0], factors[:, 1], factors.sum(1) + 0.1 * rng.normal(size=2000)], 1
    )
    z = [_histogram_bins(codes[:, i], 20) for i in range(3)]
    v = [_histogram_bins(factors[:, j], 20) for j in range(2)]
    info = np.array([[mutual_info_score(v[j], z[i]) for j in range(2)] for i in range(3)])
    entropy = np.array([mutual_info_score(v[j], v[j]) for j in range(2)])
    ordered = np.sort(info, axis=0)[::-1]
    mig = np.mean((ordered[0] - ordered[1]) / entropy)
    np.testing.assert_allclose(dis.mutual_information_gap(codes, factors), mig, rtol=1e-10)
    squared = info**2
    delta = (squared.sum(1) - squared.max(1)) / squared.max(1)  # / (F - 1) = 1
    np.testing.assert_allclose(dis.modularity(codes, factors), np.mean(1 - delta), rtol=1e-10)
    # SAP on continuous factors: squared correlation on the train split; z3 = v1 + v2 + noise
    # has r^2 = (1/12) / (2/12 + 0.01) with each, so each factor's gap is about 1 - 0.47
    train, _ = dis.train_test_split(2000, seed=0)
    r2 = np.array([[np.corrcoef(codes[train, i], factors[train, j])[0, 1] ** 2 for j in range(2)]
                   for i in range(3)])  # fmt: skip
    ordered = np.sort(r2, axis=0)[::-1]
    np.testing.assert_allclose(dis.sap(codes, factors), np.mean(ordered[0] - ordered[1]), 1e-10)
    assert abs(dis.sap(codes, factors) - (1 - (1 / 12) / (2 / 12 + 0.01))) < 0.05
    # DCI's formulas on the trees' own importances (scipy's entropy, as disentanglement_lib)
    importance, _ = dis.importance_matrix(codes, factors, bins=5, n_estimators=10)
    one_thread = dis.importance_matrix(codes, factors, bins=5, n_estimators=10, n_jobs=1)
    np.testing.assert_array_equal(importance, one_thread[0])  # threads change nothing
    per_code = 1 - scipy.stats.entropy(importance.T + 1e-11, base=2)
    per_factor = 1 - scipy.stats.entropy(importance + 1e-11, base=3)
    share = importance / importance.sum()
    np.testing.assert_allclose(
        dis.dci_from_importance(importance),
        [per_code @ share.sum(1), per_factor @ share.sum(0)],
        rtol=1e-10,
    )


def test_histogram_bins_are_disentanglement_libs():
    values = np.random.default_rng(1).normal(size=(500, 3))
    expected = np.stack([_histogram_bins(values[:, i], 20) - 1 for i in range(3)], 1)
    np.testing.assert_array_equal(dis.discretize(values, 20), expected)
    few = np.array([[0.0], [1.0], [1.0], [0.0], [0.5]])  # few distinct values stay classes
    np.testing.assert_array_equal(dis.discretize(few, 20)[:, 0], [0, 2, 2, 0, 1])


def _intervention_scores(name):
    represent = REPRESENTATIONS[name]
    kwargs = dict(seed=0, num_train=100, num_eval=100, batch_size=32)
    beta = interventions.beta_vae_score(_sample_factors, lambda f, rng: represent(f), **kwargs)
    factor = interventions.factor_vae_score(
        _sample_factors, lambda f, rng: represent(f), num_variance_estimate=2000, **kwargs
    )
    return beta["beta_vae_eval"], factor["factor_vae_eval"]


def test_beta_vae_and_factor_vae_scores_on_known_representations():
    for name in ("factors", "permuted_rescaled"):
        assert _intervention_scores(name) == (1.0, 1.0), name
    beta, factor = _intervention_scores("rotated")
    assert beta < 0.9 and factor < 0.9
    beta, factor = _intervention_scores("noise")  # chance: 1 / F
    assert abs(beta - 0.25) < 0.12 and abs(factor - 0.25) < 0.12


def test_beta_vae_classifier_is_fitted_to_its_optimum_and_a_capped_fit_is_counted():
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    def represent(factors, rng):  # unscaled features: lbfgs needs ~440 iterations, not 100
        return factors * [300.0, 1.0, 0.01, 1.0] + 0.05 * rng.normal(size=factors.shape)

    kwargs = dict(seed=0, num_train=100, num_eval=10, batch_size=32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        score = interventions.beta_vae_score(_sample_factors, represent, **kwargs)
        labels, features = interventions.beta_vae_features(  # the same draws, independently
            _sample_factors, represent, np.random.default_rng(0), 100, 32, NUM_FACTORS
        )
        optimum = LogisticRegression(random_state=0, max_iter=100_000).fit(features, labels)
    assert score["beta_vae_train"] == np.mean(optimum.predict(features) == labels)
    with pytest.warns(UserWarning, match="passes"), dis.unconverged_fits() as unconverged:
        interventions.beta_vae_score(_sample_factors, represent, max_iter=100, **kwargs)
        warnings.warn("another warning passes", UserWarning, stacklevel=1)
    assert len(unconverged) == 1 and "failed to converge" in unconverged[0]
    assert "\n" not in unconverged[0]


def test_factor_vae_fixes_the_factor_and_leaves_collapsed_latents_out():
    rng = np.random.default_rng(0)
    index, factors = interventions._fixed_factor_draws(_sample_factors, rng, 5, 8, 4, pairs=False)
    for p in range(5):
        assert np.ptp(factors[p, :, index[p]]) == 0 and np.ptp(factors[p, :, index[p] - 1]) > 0
    collapsed = interventions.factor_vae_score(
        _sample_factors, lambda f, rng: np.zeros((len(f), 3)), num_train=5, num_eval=5
    )
    assert collapsed["factor_vae_active_latents"] == 0 and collapsed["factor_vae_eval"] == 0.0


def test_bad_arrays_are_refused_in_one_line():
    with pytest.raises(ValueError, match=r"must be \[N, Z\] and \[N, F\] with the same N"):
        dis.scores(np.zeros((10, 2)), np.zeros((9, 2)))
    with pytest.raises(ValueError, match="Scores \\['bogus'\\] are unknown"):
        dis.scores(np.zeros((10, 2)), np.zeros((10, 2)), which=["bogus"])


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, data_dir):
    from tests.factory import tiny_config_for
    from tfvae.training import train

    base = tmp_path_factory.mktemp("run")
    train.train_and_evaluate(tiny_config_for(data_dir), str(base))
    return base


def test_latents_scores_all_prints_a_table_and_merges_metrics(trained_run):
    from tests.factory import run_command

    (trained_run / "metrics.json").write_text(json.dumps({"other_tool": 7}))
    args = ["--num_images=16", "--bins=4", "--score_points=2"]
    run = run_command("latents", f"--model_dir={trained_run}", "--scores=all", *args)
    assert run.returncode == 0, run.stderr
    assert "MIG:" in run.stdout and "disentanglement scores (16 validation images" in run.stdout
    metrics = json.loads((trained_run / "metrics.json").read_text())
    scores = metrics["disentanglement"]
    assert metrics["other_tool"] == 7 and scores["settings"]["num_images"] == 16
    keys = ["mig", "dci_disentanglement", "dci_completeness", "dci_informativeness_test", "sap"]
    keys += ["modularity", "explicitness_test", "beta_vae_eval", "factor_vae_eval"]
    for key in keys:
        assert 0 <= scores[key] <= 1 and f"  {key} " in run.stdout, key
    run = run_command("latents", f"--model_dir={trained_run}", "--scores=mig,sap", *args)
    assert run.returncode == 0 and "dci" not in run.stdout
    assert set(json.loads((trained_run / "metrics.json").read_text())["disentanglement"]) == {
        "mig", "sap", "settings"
    }  # fmt: skip
    run = run_command("latents", f"--model_dir={trained_run}", "--scores=mig,bogus")
    assert run.returncode == 1 and run.stderr.count("\n") == 1
    assert "`--scores` has bogus; accepted: all or some of mig, dci" in run.stderr
