"""The kernel machines are scikit-learn estimators (issue 15): estimator checks, workflows, conventions.

Every estimator runs scikit-learn's full ``parametrize_with_checks`` suite on small problems
(about 20 CPU seconds in all). ``EXPECTED_FAILED`` lists the checks expected to fail, with the
reason; it is empty: every check passes. ``SKIPPED`` lists, with the reason, the checks that
scikit-learn itself skips (a ``SkipTest`` raised inside the check); any other skip fails the test.
"""
from __future__ import annotations

import importlib.util
import pickle
import re
import warnings
from unittest import SkipTest
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.datasets import load_digits, make_classification, make_regression
from sklearn.exceptions import DataConversionWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from featlab.kernels import (RFM, ConvRFM, ConvRFMClassifier, ConvRFMRegressor, DeepConvRFM,
                             DeepConvRFMClassifier, RFMClassifier, RFMRegressor)

# Small settings keep the ~400 checks cheap. A 2-D X is read as (n, d, 1, 1) images by the conv
# machines; DeepConvRFM's stacked VALID convolutions then need 1x1 patches.
ESTIMATORS = [
    RFMRegressor(n_iter=2),
    RFMClassifier(n_iter=2),
    RFM(n_iter=2),
    ConvRFMRegressor(n_iter=1),
    ConvRFMClassifier(n_iter=1),
    ConvRFM(n_iter=1),
    DeepConvRFMClassifier(patch_size=1, depth=2, width=4, n_iter=2, agop_images=16),
    DeepConvRFM(patch_size=1, depth=2, width=4, n_iter=2, agop_images=16),
]

EXPECTED_FAILED: dict[str, dict[str, str]] = {type(e).__name__: {} for e in ESTIMATORS}

# Checks scikit-learn skips by itself, and why; a skip not listed here fails the test.
SKIPPED: dict[str, str] = {
    "check_array_api_input": "runs only with SCIPY_ARRAY_API=1 and an array-API library installed "
                             "(not in featlab's environment; the estimators take numpy, or torch "
                             "through the torch-native classes)",
    "check_classifiers_multilabel_output_format_predict_proba":
        "RFMClassifier/ConvRFMClassifier have no predict_proba (kernel outputs are not probabilities)",
}
if importlib.util.find_spec("pandas") is None:  # pandas comes with the dev extra; without it:
    SKIPPED.update(dict.fromkeys(["check_regressor_data_not_an_array", "check_classifier_data_not_an_array"],
                                 "pandas is not installed"))


def _expected_failed(est) -> dict[str, str]:
    return EXPECTED_FAILED[type(est).__name__]


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed, xfail_strict=True)
def test_sklearn_estimator_checks(estimator, check):
    try:
        check(estimator)
    except SkipTest as e:
        name = getattr(check, "func", check).__name__
        assert name in SKIPPED, f"{name} skipped but not listed in SKIPPED: {e}"
        raise


def test_estimator_types():
    assert is_regressor(RFMRegressor()) and is_regressor(ConvRFMRegressor())
    assert is_classifier(RFMClassifier()) and is_classifier(ConvRFMClassifier())
    assert is_classifier(DeepConvRFMClassifier())
    assert not is_classifier(RFM()) and not is_regressor(RFM())  # task chosen by y at fit time


# --- workflows ------------------------------------------------------------------------------------
def _digits(n=360):
    X, y = load_digits(return_X_y=True)
    return X[:n], y[:n]


def test_gridsearch_over_pipeline_gives_finite_scores_and_refits():
    X, y = _digits()
    pipe = Pipeline([("scale", StandardScaler()), ("rfm", RFMClassifier(n_iter=1, random_state=0))])
    grid = GridSearchCV(pipe, {"rfm__bandwidth": [5.0, 20.0], "rfm__reg": [1e-3, 1e-1]}, cv=3,
                        error_score="raise").fit(X, y)
    scores = grid.cv_results_["mean_test_score"]
    assert np.isfinite(scores).all() and scores.max() > 0.85
    assert grid.best_estimator_.score(X, y) > 0.9
    Xr, yr = make_regression(n_samples=150, n_features=6, n_informative=2, noise=1.0, random_state=0)
    reg = GridSearchCV(Pipeline([("scale", StandardScaler()), ("rfm", RFMRegressor(n_iter=1, random_state=0))]),
                       {"rfm__bandwidth": [3.0, 10.0]}, cv=3, error_score="raise").fit(Xr, yr)
    assert np.isfinite(reg.cv_results_["mean_test_score"]).all()


@pytest.mark.parametrize("est", [RFMClassifier(n_iter=1, random_state=0),
                                 ConvRFMClassifier(patch_size=3, image_shape=(1, 8, 8), n_iter=1, random_state=0),
                                 DeepConvRFMClassifier(depth=2, width=4, n_iter=2, agop_images=20,
                                                       image_shape=(1, 8, 8), padding=True, random_state=0)])
def test_cross_val_score_clone_and_pickle_round_trip(est):
    X, y = _digits(240)
    X = X / 16
    s = cross_val_score(est, X, y, cv=3, error_score="raise")
    assert np.isfinite(s).all() and s.mean() > 0.7, s
    c = clone(est)
    assert c.get_params() == est.get_params() and not hasattr(c, "alpha_")
    fitted = clone(est).fit(X, y)
    loaded = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(loaded.predict(X), fitted.predict(X))
    np.testing.assert_array_equal(loaded.decision_function(X), fitted.decision_function(X))


def test_readme_pipeline_gridsearch_example_runs():
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    blocks = re.findall(r"```python\n(# README example: scikit-learn.*?)```", text, flags=re.S)
    assert len(blocks) == 1, "the README's scikit-learn example block is missing"
    ns: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), ns)
    assert np.isfinite(ns["search"].cv_results_["mean_test_score"]).all()
    assert ns["test_accuracy"] > 0.9


# --- conventions ---------------------------------------------------------------------------------
def _clf_data(n_classes, n=150, seed=0):
    return make_classification(n_samples=n, n_features=5, n_informative=4, n_redundant=0,
                               n_classes=n_classes, random_state=seed)


def test_convention_binary_decision_is_f_minus_half_and_agrees_with_predict():
    X, y = _clf_data(2)
    labels = np.array(["no", "yes"])[y]
    clf = RFMClassifier(n_iter=1, random_state=0).fit(X, labels)
    legacy = RFM(n_iter=1, random_state=0).fit(X, labels)  # same fit, raw outputs
    dec = clf.decision_function(X)
    assert dec.shape == (150,) and list(clf.classes_) == ["no", "yes"]
    np.testing.assert_allclose(dec, legacy.decision_function(X)[:, 0] - 0.5, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(clf.predict(X), np.where(dec > 0, "yes", "no"))
    np.testing.assert_array_equal(clf.predict(X), legacy.predict(X))


def test_convention_multiclass_and_multilabel_decisions_agree_with_predict():
    X, y = _clf_data(3)
    clf = RFMClassifier(n_iter=1, random_state=0).fit(X, y)
    dec = clf.decision_function(X)
    assert dec.shape == (150, 3)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[dec.argmax(1)])
    Y = np.stack([y == 0, y == 1, X[:, 0] > 0], 1).astype(np.int64)  # multilabel indicator (n, 3)
    ml = RFMClassifier(n_iter=1, random_state=0).fit(X, Y)
    dec = ml.decision_function(X)
    assert dec.shape == (150, 3) and ml.predict(X).dtype == Y.dtype
    np.testing.assert_array_equal(ml.predict(X), (dec > 0).astype(int))
    with pytest.raises(ValueError, match="multiclass-multioutput"):
        RFMClassifier(n_iter=0).fit(X, np.stack([y, y], 1))


def test_convention_deep_binary_decision_is_f1_minus_f0():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(60, 1, 6, 6, generator=g, dtype=torch.float64).numpy()
    y = (X[:, 0, 2].sum(1) > 0).astype(int)
    kw = dict(depth=2, width=4, n_iter=2, agop_images=20, random_state=0)
    clf = DeepConvRFMClassifier(**kw).fit(X, y)
    F = DeepConvRFM(**kw).fit(X, y).decision_function(X)  # raw (n, 2), same seed and fit
    dec = clf.decision_function(X)
    np.testing.assert_allclose(dec, F[:, 1] - F[:, 0], rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(clf.predict(X), (dec > 0).astype(int))


def test_convention_regression_targets_shapes_and_integer_y():
    X, y = make_regression(n_samples=80, n_features=4, n_targets=2, random_state=0)
    kw = dict(n_iter=0, validation_fraction=0.0, random_state=0)
    both = RFMRegressor(**kw).fit(X, y)
    assert both.predict(X[:5]).shape == (5, 2)
    for k in range(2):  # M = I: a 2-output kernel ridge is two separate ones
        np.testing.assert_allclose(both.predict(X)[:, k], RFMRegressor(**kw).fit(X, y[:, k]).predict(X),
                                   rtol=1e-9, atol=1e-9)
    assert RFMRegressor(**kw).fit(X, y[:, :1]).predict(X).shape == (80, 1)
    yi = np.round(y[:, 0]).astype(np.int64)  # integer targets are numbers here, not classes
    np.testing.assert_allclose(RFMRegressor(**kw).fit(X, yi).predict(X),
                               RFMRegressor(**kw).fit(X, yi.astype(float)).predict(X), rtol=1e-12)


def test_convention_column_vector_labels_warn_and_equal_1d():
    X, y = _clf_data(3)
    a = RFMClassifier(n_iter=1, random_state=0).fit(X, y)
    with pytest.warns(DataConversionWarning):
        b = RFMClassifier(n_iter=1, random_state=0).fit(X, y[:, None])
    np.testing.assert_array_equal(a.predict(X), b.predict(X))


def test_convention_float32_preserved_when_asked():
    X, y = make_regression(n_samples=80, n_features=4, random_state=0)
    X32 = X.astype(np.float32)
    a = RFMRegressor(n_iter=2, random_state=0, dtype="float32").fit(X32, y)
    assert a.predict(X32).dtype == np.float32 and a.M_.dtype == np.float32 and a.alpha_.dtype == np.float32
    b = RFMRegressor(n_iter=2, random_state=0).fit(X32, y)  # default: float64 arithmetic
    assert b.predict(X32).dtype == np.float64
    np.testing.assert_allclose(a.predict(X32), b.predict(X32), rtol=1e-3, atol=1e-3 * np.abs(y).max())
    c = ConvRFMClassifier(n_iter=1, dtype="float32", random_state=0).fit(X32, (y > 0).astype(int))
    assert c.decision_function(X32).dtype == np.float32


def test_convention_sklearn_and_torch_native_estimators_fit_the_same():
    X, y = make_regression(n_samples=90, n_features=5, random_state=1)
    kw = dict(n_iter=2, reg=[1e-3, 1e-1], random_state=3)
    new, old = RFMRegressor(**kw).fit(X, y), RFM(**kw).fit(X, y)
    assert isinstance(new.M_, np.ndarray) and isinstance(old.M_, torch.Tensor)
    np.testing.assert_array_equal(new.M_, old.M_.numpy())
    np.testing.assert_array_equal(new.predict(X), old.predict(X))
    assert isinstance(old.predict(torch.as_tensor(X)), torch.Tensor)  # the torch-native path


def test_convention_images_flat_with_image_shape_equal_4d():
    X, y = _digits(120)
    X = X / 16
    kw = dict(patch_size=3, n_iter=1, random_state=0)
    flat = ConvRFMClassifier(image_shape=(1, 8, 8), **kw).fit(X, y)
    img = ConvRFMClassifier(**kw).fit(X.reshape(-1, 1, 8, 8), y)
    assert flat.n_features_in_ == img.n_features_in_ == 64 and img.image_shape_ == (1, 8, 8)
    np.testing.assert_array_equal(flat.M_, img.M_)
    np.testing.assert_array_equal(flat.decision_function(X), img.decision_function(X.reshape(-1, 1, 8, 8)))
    with pytest.raises(ValueError, match="images of shape"):
        img.predict(X.reshape(-1, 1, 4, 16))
    with pytest.raises(ValueError, match="image_shape"):
        ConvRFMClassifier(image_shape=(1, 8, 7)).fit(X, y)
    # tabular X without image_shape is (n, d, 1, 1); with 1x1 patches ConvRFM is RFM
    Xr, yr = make_regression(n_samples=60, n_features=4, random_state=0)
    conv = ConvRFMRegressor(patch_size=1, n_iter=2, random_state=0).fit(Xr, yr)
    flatr = RFMRegressor(n_iter=2, random_state=0).fit(Xr, yr)
    np.testing.assert_allclose(conv.M_, flatr.M_, rtol=1e-8, atol=1e-10)  # plain vs packed path: rounding
    np.testing.assert_allclose(conv.predict(Xr), flatr.predict(Xr), rtol=1e-7, atol=1e-7)


# --- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: RFMRegressor(n_iter=1), lambda: RFMClassifier(n_iter=1),
                                  lambda: ConvRFMClassifier(n_iter=1), lambda: RFM(n_iter=1),
                                  lambda: DeepConvRFMClassifier(patch_size=1, depth=1, n_iter=1)])
def test_bad_input_is_refused_with_clear_errors(make):
    from scipy import sparse

    X, y = _clf_data(2, n=40)
    est = make()
    with pytest.raises(NotFittedError):
        est.predict(X)
    Xnan = X.copy()
    Xnan[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        make().fit(Xnan, y)
    with pytest.raises(ValueError, match="NaN"):
        make().fit(torch.as_tensor(Xnan), y)  # the torch path checks too
    Xinf = X.copy()
    Xinf[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        make().fit(Xinf, y)
    with pytest.raises(TypeError, match="[Ss]parse"):
        make().fit(sparse.csr_matrix(X), y)
    if not is_regressor(est):  # labels (RFM: integer y is labels)
        with pytest.raises(ValueError, match="1 class"):
            make().fit(X, np.zeros(40, dtype=int))
    est.fit(X, y)
    with pytest.raises(ValueError, match="X has 4 features, but .* is expecting 5 features"):
        est.predict(X[:, :4])
    with pytest.raises(ValueError, match="X has 4 features"):
        est.predict(torch.as_tensor(X[:, :4]))
    with pytest.raises(ValueError, match="NaN"):
        est.predict(Xnan)


def test_fit_requires_y_and_refuses_mismatched_lengths():
    X, y = _clf_data(2, n=40)
    with pytest.raises(ValueError, match="requires y"):
        RFMRegressor().fit(X, None)
    with pytest.raises(ValueError, match="inconsistent"):
        RFMRegressor(n_iter=0).fit(X, y[:30].astype(float))


@pytest.mark.cuda
def test_cuda_device_matches_cpu():
    X, y = make_regression(n_samples=90, n_features=5, random_state=2)
    a = RFMRegressor(n_iter=2, random_state=0).fit(X, y)
    b = RFMRegressor(n_iter=2, random_state=0, device="cuda").fit(X, y)
    assert isinstance(b.M_, np.ndarray)  # numpy out, computed on the GPU
    np.testing.assert_allclose(b.M_, a.M_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(b.predict(X), a.predict(X), rtol=1e-7, atol=1e-7)


def test_read_only_inputs_are_copied_not_wrapped():
    # pandas >= 3 (copy-on-write) and memmaps hand out read-only arrays; torch warns (and would
    # risk undefined behaviour) when it wraps one, so X, y and stored arrays are copied instead.
    X, y = make_regression(n_samples=60, n_features=4, n_targets=2, random_state=0)
    X.setflags(write=False)
    y.setflags(write=False)
    warn_always = torch.is_warn_always_enabled()
    torch.set_warn_always(True)  # torch's "not writable" warning is otherwise shown once per process
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            est = RFMRegressor(n_iter=1, random_state=0).fit(X, y, eval_set=(X[:10], y[:10]))
            est.M_.setflags(write=False)
            est.predict(X)
    finally:
        torch.set_warn_always(warn_always)
