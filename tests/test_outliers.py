"""Outlier detectors of the mining stage (conceptminer3d/mining/outliers/), checked
against scikit-learn: its estimator checks for the API, its exact LOF and nearest
neighbours for the scores."""

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor, NearestNeighbors
from sklearn.utils.estimator_checks import parametrize_with_checks

from conceptminer3d.mining.outliers import (
    IsolationForestOutliers,
    KnnDistanceOutliers,
    LocalOutlierFactorOutliers,
)
from conceptminer3d.mining.outliers.scoring import combine_outlier_flags, score_outliers
from conceptminer3d.registry import OUTLIER_DETECTORS
from conceptminer3d_benchmarks.outlier_speed import run_outlier_benchmark
from conceptminer3d_benchmarks.synthetic import make_synthetic_embeddings

DETECTORS = [IsolationForestOutliers, LocalOutlierFactorOutliers, KnnDistanceOutliers]


@pytest.fixture(scope='module')
def planted():
    """Clustered unit embeddings with 5% planted outliers."""
    return make_synthetic_embeddings(3000, dim=128, outlier_fraction=0.05, seed=1)


def unit_rows(n, dim, seed=0):
    X = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def recall(flagged, is_outlier):
    return (flagged & is_outlier).sum() / is_outlier.sum()


def expected_failed_checks(estimator):
    if isinstance(estimator, IsolationForestOutliers):
        return {}
    # Not an error in the scores: a 1-row query goes through BLAS matrix-vector code, a
    # batch through matrix-matrix code, and float32 rounding differs by an ulp (~1e-7
    # relative, ~1e-6 after the sqrt and mean); the check allows 1e-7. Whether it trips
    # depends on the CPU's BLAS kernels, so the mark is not strict.
    return {'check_methods_subset_invariance': 'float32 distances round differently for 1-row and batched queries'}


@parametrize_with_checks([cls() for cls in DETECTORS], expected_failed_checks=expected_failed_checks)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def exact_flags(detector_cls, X, contamination):
    """Flags of the exact method, computed by scikit-learn on all of ``X``."""
    if detector_cls is IsolationForestOutliers:
        return IsolationForest(contamination=contamination, random_state=0).fit_predict(X) == -1
    if detector_cls is LocalOutlierFactorOutliers:
        return LocalOutlierFactor(n_neighbors=20, contamination=contamination).fit_predict(X) == -1
    distances, _ = NearestNeighbors(n_neighbors=10).fit(X).kneighbors()  # leave-one-out
    mean_distance = distances.mean(axis=1)
    return mean_distance >= np.sort(mean_distance)[-round(contamination * len(X))]


@pytest.mark.parametrize('detector_cls', DETECTORS)
@pytest.mark.parametrize('n_reference', [8192, 1000])
def test_planted_outliers_found_as_well_as_exact_method(detector_cls, n_reference, planted):
    # PCA and (with 1000 < 3000 crops) the reference subsample are approximations: they may
    # cost a little recall of planted outliers against scikit-learn's exact method.
    X, is_outlier = planted
    kwargs = {} if detector_cls is IsolationForestOutliers else dict(n_reference=n_reference)
    flagged = detector_cls(contamination=0.1, **kwargs).fit_predict(X) == -1
    assert recall(flagged, is_outlier) >= recall(exact_flags(detector_cls, X, 0.1), is_outlier) - 0.05


@pytest.mark.parametrize('detector_cls', DETECTORS)
@pytest.mark.parametrize('n_samples,contamination', [(1000, 0.1), (1234, 0.07), (25, 0.1)])
def test_flagged_fraction_matches_contamination(detector_cls, n_samples, contamination, planted):
    X = planted[0][:n_samples]
    # Half-up rounding: 0.07 * 1234 = 86.38 -> 86, 0.1 * 25 = 2.5 -> 3.
    expected = int(np.floor(contamination * n_samples + 0.5))
    detector = detector_cls(contamination=contamination)
    labels = detector.fit_predict(X)
    assert (labels == -1).sum() == expected
    # predict() on the fit data recomputes the scores and must agree exactly.
    np.testing.assert_array_equal(detector.predict(X), labels)
    np.testing.assert_array_equal(detector.score_samples(X), detector.fit_scores_)
    np.testing.assert_array_equal(detector.decision_function(X) < 0, labels == -1)


@pytest.mark.parametrize('detector_cls', DETECTORS)
def test_score_outliers_is_one_pass_of_fit_score_predict(detector_cls, planted, monkeypatch):
    X = planted[0][:1500]
    kwargs = {} if detector_cls is IsolationForestOutliers else dict(n_reference=400)
    # The pipeline's former three passes, on a separate detector.
    separate = detector_cls(**kwargs).fit(X)
    expected_scores, expected_flags = -separate.score_samples(X), separate.predict(X) == -1

    detector = detector_cls(**kwargs)
    passes = []
    score = detector._score
    monkeypatch.setattr(detector, '_score', lambda rows: passes.append(len(rows)) or score(rows))
    scores, flags = score_outliers({'name': detector}, X)
    assert passes == [len(X)]
    np.testing.assert_array_equal(scores['name'], expected_scores)
    np.testing.assert_array_equal(flags['name'], expected_flags)


@pytest.mark.parametrize('n_reference, n_components', [(400, 32), (5000, None)])
def test_lof_and_knn_share_one_neighbour_search_and_flag_as_apart(planted, n_reference, n_components, monkeypatch):
    from conceptminer3d.mining.outliers.neighbours import ReferenceNeighbours

    X = planted[0][:1500]
    options = dict(n_reference=n_reference, n_components=n_components)
    apart = {
        'lof': LocalOutlierFactorOutliers(**options).fit(X),
        'knn': KnnDistanceOutliers(n_neighbors=7, **options).fit(X),
        'kth': KnnDistanceOutliers(n_neighbors=3, aggregation='kth', **options).fit(X),
    }
    searched = []
    kneighbors = ReferenceNeighbours.kneighbors
    monkeypatch.setattr(
        ReferenceNeighbours, 'kneighbors', lambda self, q, k: searched.append((len(q), k)) or kneighbors(self, q, k)
    )
    shared = {
        'lof': LocalOutlierFactorOutliers(**options),
        'knn': KnnDistanceOutliers(n_neighbors=7, **options),
        'kth': KnnDistanceOutliers(n_neighbors=3, aggregation='kth', **options),
    }
    scores, flags = score_outliers(shared, X)
    # one search of every row for the widest k, and one of the reference for LOF's densities
    reference = min(n_reference, len(X))
    assert sum(n for n, _ in searched) == len(X) + reference and {k for _, k in searched} == {20}
    for name, detector in apart.items():
        np.testing.assert_allclose(scores[name], -detector.fit_scores_, rtol=1e-12)
        np.testing.assert_array_equal(flags[name], detector.fit_scores_ < detector.offset_)
        np.testing.assert_array_equal(flags[name], shared[name].predict(X) == -1)


@pytest.mark.parametrize('detector_cls', DETECTORS)
@pytest.mark.parametrize('contamination', [0, 0.0, 0.6, -0.1, 'auto', None, True])
def test_invalid_contamination_raises_in_fit(detector_cls, contamination):
    detector = detector_cls(contamination=contamination)  # stored as given, like scikit-learn
    assert detector.get_params()['contamination'] is contamination
    with pytest.raises(ValueError, match='contamination'):
        detector.check_params()
    with pytest.raises(ValueError, match='contamination'):
        detector.fit(unit_rows(50, 8))


@pytest.mark.parametrize(
    'detector_cls,params',
    [
        (IsolationForestOutliers, dict(n_estimators=0)),
        (IsolationForestOutliers, dict(n_fit_samples=1)),
        (IsolationForestOutliers, dict(n_components=2.5)),
        (LocalOutlierFactorOutliers, dict(n_neighbors=0)),
        (LocalOutlierFactorOutliers, dict(n_reference=1)),
        (KnnDistanceOutliers, dict(chunk_size=True)),
        (KnnDistanceOutliers, dict(aggregation='median')),
    ],
)
def test_invalid_parameters_raise_in_fit(detector_cls, params):
    name = next(iter(params))
    with pytest.raises(ValueError, match=name):
        detector_cls(**params).fit(unit_rows(50, 8))


@pytest.mark.parametrize('detector_cls', DETECTORS)
def test_same_seed_gives_same_flags(detector_cls, planted):
    X = planted[0][:1500]
    # A reference smaller than the data, so that the random subsample matters.
    kwargs = {} if detector_cls is IsolationForestOutliers else dict(n_reference=400)
    first = detector_cls(random_state=3, **kwargs).fit(X)
    second = detector_cls(random_state=3, **kwargs).fit(X)
    np.testing.assert_array_equal(first.fit_scores_, second.fit_scores_)
    np.testing.assert_array_equal(first.predict(X), second.predict(X))
    other_seed = detector_cls(random_state=4, **kwargs).fit(X)
    assert not np.array_equal(first.fit_scores_, other_seed.fit_scores_)


@pytest.mark.parametrize('n_components', [None, 32])
def test_small_data_lof_equals_sklearn(n_components):
    # 500 points <= n_reference: every point is a reference point, scored leave-one-out;
    # 16-d data is not reduced by a 32-component PCA, so this is the exact method.
    X = unit_rows(497, 16, seed=5)
    X[:25] *= 0.5  # a few points off the sphere, to have real outliers
    X = np.concatenate([X, X[100:103]])  # duplicates are left out one copy at a time
    ours = LocalOutlierFactorOutliers(n_neighbors=20, n_components=n_components).fit(X)
    reference = LocalOutlierFactor(n_neighbors=20, contamination=0.1).fit(X)
    np.testing.assert_allclose(ours.fit_scores_, reference.negative_outlier_factor_, rtol=1e-5)
    np.testing.assert_array_equal(ours.fit_predict(X), reference.fit_predict(X))


def test_small_data_knn_distance_equals_exact():
    X = unit_rows(400, 12, seed=6)
    distances, _ = NearestNeighbors(n_neighbors=7).fit(X).kneighbors()  # leave-one-out
    mean_knn = KnnDistanceOutliers(n_neighbors=7).fit(X)
    np.testing.assert_allclose(-mean_knn.fit_scores_, distances.mean(axis=1), rtol=1e-5)
    kth_knn = KnnDistanceOutliers(n_neighbors=7, aggregation='kth').fit(X)
    np.testing.assert_allclose(-kth_knn.fit_scores_, distances[:, -1], rtol=1e-5)


def test_reference_subsample_scores_new_points_against_reference(planted):
    X = planted[0]
    detector = KnnDistanceOutliers(n_neighbors=5, n_reference=500, n_components=None).fit(X)
    assert detector.reference_indices_.shape == (500,)
    reference = X[detector.reference_indices_]
    new_points = unit_rows(20, X.shape[1], seed=7)
    distances, _ = NearestNeighbors(n_neighbors=5).fit(reference).kneighbors(new_points)
    np.testing.assert_allclose(-detector.score_samples(new_points), distances.mean(axis=1), rtol=1e-4)


def test_pca_reduction_keeps_planted_structure(planted):
    X, _ = planted
    exact = KnnDistanceOutliers(n_components=None).fit(X).fit_scores_
    reduced = KnnDistanceOutliers(n_components=32).fit(X).fit_scores_
    # The 16-d cluster structure survives a 32-axis PCA: scores rank alike.
    assert np.corrcoef(np.argsort(np.argsort(exact)), np.argsort(np.argsort(reduced)))[0, 1] > 0.9


def test_combine_union_and_vote():
    flags = {
        'isolation_forest': np.array([True, False, False, True, False]),
        'lof': np.array([True, True, False, False, False]),
        'knn': np.array([1, 1, 1, -1, 1]),  # predict() labels: -1 = outlier
    }
    np.testing.assert_array_equal(combine_outlier_flags(flags), [True, True, False, True, False])
    np.testing.assert_array_equal(combine_outlier_flags(flags, rule='vote'), [True, False, False, True, False])
    np.testing.assert_array_equal(
        combine_outlier_flags(flags, rule='vote', min_votes=3), [False, False, False, False, False]
    )
    np.testing.assert_array_equal(
        combine_outlier_flags(flags, rule='vote', min_votes=1), combine_outlier_flags(flags, rule='union')
    )
    # Two detectors: the majority is both.
    two = {'a': np.array([True, True, False]), 'b': np.array([True, False, False])}
    np.testing.assert_array_equal(combine_outlier_flags(two, rule='vote'), [True, False, False])


def test_combine_rejects_bad_input():
    flags = {'a': np.array([True, False]), 'b': np.array([False, False])}
    with pytest.raises(ValueError, match='rule'):
        combine_outlier_flags(flags, rule='intersection')
    with pytest.raises(ValueError, match='same samples'):
        combine_outlier_flags({'a': np.array([True]), 'b': np.array([True, False])})
    with pytest.raises(ValueError, match='min_votes'):
        combine_outlier_flags(flags, rule='vote', min_votes=3)
    with pytest.raises(ValueError, match='min_votes'):
        combine_outlier_flags(flags, rule='union', min_votes=1)
    with pytest.raises(ValueError, match='boolean mask'):
        combine_outlier_flags({'a': np.array([0, 1])})
    with pytest.raises(ValueError, match='no detector'):
        combine_outlier_flags({})


@pytest.mark.parametrize('detector_cls', DETECTORS)
def test_registry_build(detector_cls):
    detector = OUTLIER_DETECTORS.build(dict(type=detector_cls.__name__, contamination=0.05))
    assert isinstance(detector, detector_cls)
    assert detector.get_params() == detector_cls(contamination=0.05).get_params()


def test_benchmark_runs_what_the_pipeline_runs():
    rows = run_outlier_benchmark(sizes=(1500,), dim=64, contamination=0.1)
    assert [row['detector'] for row in rows] == [cls.__name__ for cls in DETECTORS] + ['all, one call (union)']
    X, is_outlier = make_synthetic_embeddings(1500, dim=64, outlier_fraction=0.05, seed=0)
    each = [score_outliers({'d': detector_cls(contamination=0.1)}, X)[1]['d'] for detector_cls in DETECTORS]
    for row, flagged in zip(rows, [*each, np.any(each, axis=0)]):
        assert (row['n'], row['dim'], row['n_flagged']) == (1500, 64, flagged.sum())
        assert row['recall'] == round(recall(flagged, is_outlier), 4)
        assert row['precision'] == round((flagged & is_outlier).sum() / flagged.sum(), 4)
