"""The long-range-dependency task generators: shapes, determinism, the dependency at the stated
distance, the baselines (checked against data the generators produce), and bad input."""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rnnbench.harness.tasks import METRICS, SPLITS, TASKS, describe, generate
from rnnbench.harness.tasks import charlm, digits, negation, temporal_order, vocabulary

#: a small configuration of every registered task: (seq_len, params)
CONFIGS = {
    "adding": (20, {}),
    "copy": (15, {}),
    "temporal_order": (30, {}),
    "negation": (16, {"gap": 4}),
    "parity": (10, {}),
    "listops": (40, {}),
    "digits": (64, {}),
    "charlm": (50, {}),
}


def test_every_registered_task_has_a_test_configuration():
    assert set(CONFIGS) == set(TASKS)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_arrays_match_the_spec(name):
    seq_len, params = CONFIGS[name]
    spec = describe(name, seq_len, **params)
    for split in SPLITS:
        inputs, targets = generate(name, seq_len, 12, seed=3, split=split, **params)
        assert inputs.shape[0] == targets.shape[0] == 12
        if spec.inputs.kind == "tokens":
            assert inputs.dtype == np.int64 and inputs.ndim == 2
            assert 0 <= inputs.min() and inputs.max() < spec.inputs.size
            assert len(spec.inputs.vocabulary) == spec.inputs.size
        else:
            assert inputs.dtype == np.float32 and inputs.shape[2] == spec.inputs.size
        if spec.stateful:
            assert inputs.shape[1] % seq_len == 0
        else:
            assert inputs.shape[1] <= spec.max_steps
        if spec.target.kind == "regression":
            assert targets.dtype == np.float32 and targets.shape == (12,)
        else:
            assert targets.dtype == np.int64 and 0 <= targets.min() and targets.max() < spec.target.num_classes
            assert targets.shape == ((12, inputs.shape[1]) if spec.target.kind == "step_class" else (12,))
        lengths = spec.lengths(inputs)
        assert lengths.shape == (12,) and lengths.max() == inputs.shape[1]
        if spec.variable_length:  # padding only after each sequence's end
            inside = np.arange(inputs.shape[1])[None, :] < lengths[:, None]
            assert np.all((inputs == spec.inputs.pad_id) == ~inside)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_spec_params_are_complete_canonical_json_scalars(name):
    seq_len, params = CONFIGS[name]
    spec = describe(name, seq_len, **params)
    assert set(spec.params) == {param.name for param in TASKS[name].params}
    assert json.loads(spec.params_json) == dict(spec.params)
    assert all(type(value) in (int, float, str, bool) for value in spec.params.values())
    assert describe(name, seq_len, **spec.params).params_json == spec.params_json  # explicit defaults: same config
    assert all(metric in METRICS for metric in spec.metrics)
    assert {baseline.metric for baseline in spec.baselines} <= set(spec.metrics)
    assert all(type(value) in (int, float, str, bool) for value in spec.data.values())


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_same_seed_same_arrays_other_seed_or_split_other_arrays(name):
    seq_len, params = CONFIGS[name]
    first = generate(name, seq_len, 16, seed=5, **params)
    again = generate(name, seq_len, 16, seed=5, **params)
    other_seed = generate(name, seq_len, 16, seed=6, **params)
    test = generate(name, seq_len, 16, seed=5, split="test", **params)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not all(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(first, other_seed))
    assert not all(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(first, test))


# --- bad input -----------------------------------------------------------------------------------

BAD_CALLS = [
    (("nosuchtask", 10, 4, 0), {}, "'nosuchtask'"),
    (("adding", 10, 0, 0), {}, "got 0"),
    (("adding", 10, 4, -1), {}, "got -1"),
    (("adding", 10, 4, 0), {"split": "valid"}, "'valid'"),
    (("adding", 10, 4, 0), {"delay": 3}, "'delay'"),
    (("adding", 1, 4, 0), {}, "got 1"),
    (("adding", 0, 4, 0), {}, "got 0"),
    (("adding", 10.5, 4, 0), {}, "got 10.5"),
    (("copy", 10, 4, 0), {"n_symbols": 1}, "got 1"),
    (("copy", 10, 4, 0), {"n_symbols": "8"}, "got '8'"),
    (("copy", 10, 4, 0), {"n_recall": True}, "got True"),
    (("temporal_order", 9, 4, 0), {}, "got 9"),
    (("temporal_order", 50, 4, 0), {"n_relevant": 4}, "got 4"),
    (("negation", 5, 4, 0), {"gap": 3}, "got 5"),
    (("negation", 20, 4, 0), {"negated_fraction": 1.5}, "got 1.5"),
    (("negation", 20, 4, 0), {"negated_fraction": float("nan")}, "got nan"),
    (("parity", 3, 4, 0), {"min_len": 5}, "got 3"),
    (("listops", 3, 4, 0), {}, "got 3"),
    (("listops", 20, 4, 0), {"min_len": 30}, "got 30"),
    (("listops", 8, 2, 0), {"min_len": 8, "max_args": 2, "op_p": 0.0}, "accepted 0 of"),
    (("digits", 63, 4, 0), {}, "seq_len=63"),
    (("digits", 64, 5000, 0), {}, "n=5000"),
    (("digits", 64, 4, 0), {"shuffled": 1}, "got 1"),
    (("charlm", 100, 10**6, 0), {}, "n=1000000"),
]


@pytest.mark.parametrize("args, params, named", BAD_CALLS, ids=[f"{a[0]}-{n}" for a, _, n in BAD_CALLS])
def test_bad_input_raises_value_error_naming_the_value(args, params, named):
    with pytest.raises(ValueError, match=re.escape(named)):
        generate(*args, **params)


def test_unknown_task_error_lists_the_tasks():
    with pytest.raises(ValueError, match="expected one of .*'adding'"):
        describe("adder", 10)


# --- adding --------------------------------------------------------------------------------------


def test_adding_markers_one_in_each_half_and_target_their_sum():
    T = 21
    x, y = generate("adding", T, 2000, seed=0)
    markers = x[:, :, 1]
    assert set(np.unique(markers)) == {0.0, 1.0} and np.all(markers.sum(axis=1) == 2)
    assert np.all(markers[:, :T // 2].sum(axis=1) == 1) and np.all(markers[:, T // 2:].sum(axis=1) == 1)
    assert 0 <= x[:, :, 0].min() and x[:, :, 0].max() < 1
    np.testing.assert_allclose(y, (x[:, :, 0] * markers).sum(axis=1), rtol=1e-6)
    first = markers.argmax(axis=1)
    assert (T - 1 - first).min() == describe("adding", T).distance == T - T // 2
    assert (T - 1 - first).max() == T - 1


def test_adding_constant_baselines_match_the_target_distribution():
    spec = describe("adding", 50)
    _, y = generate("adding", 50, 40_000, seed=1)
    constant = np.ones_like(y)
    measured = spec.evaluate(constant, y)
    assert measured["mse"] == pytest.approx(spec.baseline("constant", "mse").value, abs=0.004)
    assert spec.baseline("constant", "mse").value == pytest.approx(1 / 6)
    assert measured["solved_fraction"] == pytest.approx(spec.baseline("constant", "solved_fraction").value, abs=0.006)
    assert spec.evaluate(y, y) == {"mse": 0.0, "solved_fraction": 1.0}


# --- copy ----------------------------------------------------------------------------------------


def test_copy_recalls_the_data_symbols_after_the_delay():
    T, K, M = 13, 10, 8
    spec = describe("copy", T)
    x, y = generate("copy", T, 500, seed=0)
    assert x.shape == y.shape == (500, T + 2 * K)
    blank, delimiter = 0, M + 1
    assert np.all((1 <= x[:, :K]) & (x[:, :K] <= M))
    assert np.all(x[:, K:T + K - 1] == blank) and np.all(x[:, T + K - 1] == delimiter) and np.all(x[:, T + K:] == blank)
    assert np.all(y[:, :T + K] == blank)
    # symbol i, shown at step i, is the target at step i + distance
    np.testing.assert_array_equal(y[:, spec.distance:spec.distance + K], x[:, :K])
    assert spec.distance == T + K and spec.target.accuracy_steps == (T + K, T + 2 * K)


def test_copy_memoryless_baseline_is_exact_and_chance_is_one_in_eight():
    T = 30
    spec = describe("copy", T)
    x, y = generate("copy", T, 4000, seed=2)
    memoryless = np.full(y.shape + (spec.target.num_classes,), -np.inf)
    memoryless[:, :T + 10, 0] = 0.0  # certain blank
    memoryless[:, T + 10:, 1:] = 0.0  # uniform over the 8 symbols
    measured = spec.evaluate(np.maximum(memoryless, -1e9), y)
    assert measured["cross_entropy"] == pytest.approx(10 * math.log(8) / (T + 20), rel=1e-9)
    assert spec.baseline("memoryless", "cross_entropy").value == pytest.approx(10 * math.log(8) / (T + 20))
    guesses = np.random.default_rng(0).normal(size=memoryless.shape)
    assert spec.evaluate(guesses, y)["accuracy"] == pytest.approx(spec.baseline("chance", "accuracy").value, abs=0.02)


# --- temporal order ------------------------------------------------------------------------------


def _relevant_positions(x):
    return [np.flatnonzero(row >= temporal_order.X) for row in x]


@pytest.mark.parametrize("k", [2, 3])
def test_temporal_order_class_is_the_order_of_the_relevant_symbols(k):
    T = 60
    spec = describe("temporal_order", T, n_relevant=k)
    x, y = generate("temporal_order", T, 3000, seed=0, n_relevant=k)
    assert np.all(x[:, 0] == temporal_order.START) and np.all(x[:, -1] == temporal_order.TRIGGER)
    positions = _relevant_positions(x)
    assert all(len(p) == k for p in positions)
    for j, (lo, hi) in enumerate(temporal_order.windows(T, k)):
        slot = np.array([p[j] for p in positions])
        assert slot.min() == lo and slot.max() == hi  # every position of the window occurs, none outside
    symbols = np.array([x[i, p] - temporal_order.X for i, p in enumerate(positions)])  # 0 X, 1 Y
    np.testing.assert_array_equal(y, symbols @ 2 ** np.arange(k - 1, -1, -1))
    assert np.bincount(y, minlength=2**k).min() > 3000 / 2**k * 0.8
    first = np.array([p[0] for p in positions])
    assert (T - 1 - first).min() == spec.distance


@pytest.mark.parametrize("k, ceiling", [(2, 0.75), (3, 0.5)])
def test_temporal_order_bag_of_words_reaches_its_ceiling_and_no_more(k, ceiling):
    from sklearn.linear_model import LogisticRegression

    T = 40
    assert describe("temporal_order", T, n_relevant=k).baseline("bag_of_words_max", "accuracy").value == ceiling

    def counts(x):
        return np.stack([np.bincount(row, minlength=len(temporal_order.VOCABULARY)) for row in x])

    x, y = generate("temporal_order", T, 4000, seed=0, n_relevant=k)
    x_test, y_test = generate("temporal_order", T, 4000, seed=0, n_relevant=k, split="test")
    model = LogisticRegression(max_iter=2000).fit(counts(x), y)
    assert ceiling - 0.04 < model.score(counts(x_test), y_test) < ceiling + 0.03


def test_temporal_order_windows_fit_from_the_shortest_length():
    for k in (2, 3):
        for T in range(temporal_order.MIN_SEQ_LEN, 300):
            bounds = temporal_order.windows(T, k)
            assert bounds[0][0] >= 1 and bounds[-1][1] <= T - 2
            assert all(a[1] < b[0] for a, b in zip(bounds, bounds[1:]))
    assert temporal_order.windows(100, 2) == [(10, 20), (50, 60)]  # HS97's positions
    assert temporal_order.windows(100, 3) == [(10, 20), (33, 43), (66, 76)]


# --- negation ------------------------------------------------------------------------------------


def _negation_parts(spec, x):
    """Per sentence: position of the sentiment word, its polarity, position of the negator (or -1)."""
    tokens = spec.inputs.vocabulary
    positive = np.isin(x, [tokens.index(w) for w in negation.POSITIVE])
    sentiment = positive | np.isin(x, [tokens.index(w) for w in negation.NEGATIVE])
    negators = np.isin(x, [tokens.index(w) for w in negation.NEGATORS])
    assert np.all(sentiment.sum(axis=1) == 1) and np.all(negators.sum(axis=1) <= 1)
    word_at = sentiment.argmax(axis=1)
    negator_at = np.where(negators.any(axis=1), negators.argmax(axis=1), -1)
    return word_at, positive.any(axis=1), negator_at


@pytest.mark.parametrize("gap", [1, 7])
def test_negation_label_flips_with_the_order_of_negator_and_word(gap):
    spec = describe("negation", 20, gap=gap)
    x, y = generate("negation", 20, 3000, seed=0, gap=gap)
    lengths = spec.lengths(x)
    assert lengths.min() == gap + 3 and lengths.max() == 20
    assert np.all(x[:, 0] == vocabulary.BOS) and np.all(x[np.arange(len(x)), lengths - 1] == vocabulary.EOS)
    word_at, positive, negator_at = _negation_parts(spec, x)
    assert np.all(negator_at >= 0)  # negated_fraction defaults to 1
    assert np.all(np.abs(word_at - negator_at) == gap) and spec.distance == gap
    negator_first = negator_at < word_at
    np.testing.assert_array_equal(y, positive ^ negator_first)
    for polarity in (True, False):  # both orders of the same words occur equally often (with opposite labels)
        assert abs(negator_first[positive == polarity].mean() - 0.5) < 0.05


@pytest.mark.parametrize("negated_fraction", [1.0, 0.5, 0.0])
def test_negation_bag_of_words_is_at_chance_on_the_order_dependent_sentences(negated_fraction):
    from sklearn.linear_model import LogisticRegression

    params = {"gap": 3, "negated_fraction": negated_fraction, "n_fillers": 30}  # few fillers: a fast fit
    spec = describe("negation", 16, **params)
    ceiling = spec.baseline("bag_of_words_max", "accuracy").value
    assert ceiling == 1 - negated_fraction / 2

    def counts(x):
        return np.stack([np.bincount(row, minlength=spec.inputs.size) for row in x])

    x, y = generate("negation", 16, 3000, seed=0, **params)
    x_test, y_test = generate("negation", 16, 3000, seed=0, split="test", **params)
    model = LogisticRegression(max_iter=2000).fit(counts(x), y)
    assert ceiling - 0.05 < model.score(counts(x_test), y_test) < ceiling + 0.04


def test_negation_rare_fillers_become_unk_by_the_frequency_cut_off():
    loose, strict = describe("negation", 30, min_count=1), describe("negation", 30, min_count=20)
    assert strict.inputs.size < loose.inputs.size <= 4 + len(negation.NEGATORS + negation.POSITIVE + negation.NEGATIVE) + 500
    assert strict.inputs.vocabulary[:4] == vocabulary.SPECIALS
    x, _ = generate("negation", 30, 500, seed=0, min_count=20)
    x_loose, _ = generate("negation", 30, 500, seed=0, min_count=1)
    unk_strict, unk_loose = (x == vocabulary.UNK).mean(), (x_loose == vocabulary.UNK).mean()
    assert unk_strict > unk_loose and unk_strict > 0.01


# --- parity --------------------------------------------------------------------------------------


def test_parity_counts_ones_and_tests_on_longer_strings():
    L = 12
    spec = describe("parity", L)
    assert spec.max_steps == 4 * L and spec.distance == L - 1
    for split, (shortest, longest) in {"train": (1, L), "test": (L + 1, 4 * L)}.items():
        x, y = generate("parity", L, 3000, seed=0, split=split)
        lengths = spec.lengths(x)
        assert lengths.min() == shortest and lengths.max() == longest
        np.testing.assert_array_equal(y, (x == 2).sum(axis=1) % 2)
        assert abs(y.mean() - spec.baseline("chance", "accuracy").value) < 0.04


# --- listops -------------------------------------------------------------------------------------


def _evaluate_listops(tokens):
    """A separate stack evaluator of NYU token strings; returns (value, deepest nesting, argument counts)."""
    stack, depth, arities = [], 0, []
    for token in tokens:
        if token.startswith("["):
            stack.append((token, []))
            depth = max(depth, len(stack))
        elif token == "]":
            op, args = stack.pop()
            arities.append(len(args))
            value = {"[MIN": min(args), "[MAX": max(args), "[MED": int(np.median(args)), "[SM": sum(args) % 10}[op]
            if not stack:
                return value, depth, arities
            stack[-1][1].append(value)
        else:
            stack[-1][1].append(int(token))
    raise AssertionError("unclosed expression")


def test_listops_targets_are_the_values_of_the_expressions():
    params = {"max_depth": 4, "max_args": 4, "op_p": 0.4, "min_len": 10}
    spec = describe("listops", 60, **params)
    x, y = generate("listops", 60, 500, seed=0, **params)
    lengths = spec.lengths(x)
    assert lengths.min() >= 10 and lengths.max() <= 60
    depths = []
    for row, length, target in zip(x, lengths, y):
        value, depth, arities = _evaluate_listops([spec.inputs.vocabulary[i] for i in row[:length]])
        assert value == target
        assert 2 <= min(arities) and max(arities) <= 4
        depths.append(depth)
    assert max(depths) == 4
    assert set(y) == set(range(10))


def test_listops_majority_baseline_matches_fresh_data():
    spec = describe("listops", 50)
    _, y = generate("listops", 50, 4000, seed=7, split="test")
    assert np.bincount(y).max() / len(y) == pytest.approx(spec.baseline("majority", "accuracy").value, abs=0.02)
    assert spec.baseline("chance", "accuracy").value == 0.1


# --- digits --------------------------------------------------------------------------------------


def test_digits_splits_are_fixed_disjoint_and_stratified():
    spec = describe("digits", 64)
    assert spec.split_sizes == {"train": 1438, "test": 359}
    data = digits.splits()
    train_images = {row.tobytes() for row in data["train"][0]}
    overlap = sum(row.tobytes() in train_images for row in data["test"][0])
    assert overlap <= 2  # the data set itself has a few duplicate images; the splits share no index
    np.testing.assert_allclose(np.bincount(data["test"][1]) / np.bincount(np.concatenate([data["train"][1], data["test"][1]])),
                               0.2, atol=0.01)
    x, y = generate("digits", 64, 359, seed=4, split="test")
    assert sorted(map(bytes, x[:, :, 0])) == sorted(map(bytes, data["test"][0]))
    assert x.min() == 0.0 and x.max() == 1.0 and spec.distance == 63


def test_digits_shuffled_control_uses_one_fixed_permutation():
    x, y = generate("digits", 64, 100, seed=1)
    shuffled, y_shuffled = generate("digits", 64, 100, seed=1, shuffled=True)
    np.testing.assert_array_equal(y, y_shuffled)
    order = digits.permutation()
    assert sorted(order) == list(range(64)) and not np.array_equal(order, np.arange(64))
    np.testing.assert_array_equal(shuffled, x[:, order])
    np.testing.assert_array_equal(order, digits.permutation())


# --- charlm --------------------------------------------------------------------------------------


def test_charlm_rows_are_contiguous_streams_with_next_token_targets():
    T = 64
    spec = describe("charlm", T)
    x, y = generate("charlm", T, 8, seed=0)
    assert x.shape == y.shape and x.shape[1] % T == 0
    assert x.shape[1] * 8 > spec.split_sizes["train"] - 10 * T  # the rows cover the split but for a remainder
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    np.testing.assert_array_equal(y[:-1, -1], x[1:, 0])  # row i continues where row i - 1 ends
    assert vocabulary.decode(x[3, :200], spec.inputs.vocabulary) in "".join(pydoc_topics())
    test_a, test_b = generate("charlm", T, 4, seed=0, split="test"), generate("charlm", T, 4, seed=9, split="test")
    np.testing.assert_array_equal(test_a[0], test_b[0])  # every seed is scored on the same text


def pydoc_topics():
    from pydoc_data.topics import topics

    return [topics[key] for key in sorted(topics)]


def test_charlm_records_the_corpus_and_marks_documents():
    spec = describe("charlm", 32)
    text = "\n".join(pydoc_topics())
    assert spec.data["corpus_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert spec.data["corpus_characters"] == len(text)
    stream = charlm.corpus().ids
    assert (stream == vocabulary.BOS).sum() == (stream == vocabulary.EOS).sum() == len(pydoc_topics())
    assert spec.inputs.token_id("<bos>") == vocabulary.BOS and spec.inputs.token_id("<eos>") == vocabulary.EOS
    assert sum(spec.split_sizes.values()) == len(stream) == len(text) - (len(pydoc_topics()) - 1) + 2 * len(pydoc_topics())


def test_charlm_baselines_order_and_values():
    spec = describe("charlm", 32)
    bpc = {baseline.name: baseline.value for baseline in spec.baselines}
    assert bpc["uniform"] == pytest.approx(math.log2(spec.inputs.size - 1))
    assert bpc["uniform"] > bpc["unigram"] > bpc["markov1"] > bpc["markov2"] > bpc["markov3"] > 1.5


def test_markov_bpc_against_hand_counts():
    # train "0 1 0 1 0 1 0" then test; order 1: after 0 always 1, after 1 always 0
    ids = np.array([0, 1, 0, 1, 0, 1, 0, 1, 0, 2])
    cut, k, classes = 7, 0.5, 3
    # test predictions: ids[8] = 0 after 1 and ids[9] = 2 after 0; train transitions 0->1 x3, 1->0 x3
    expected = -(math.log2((3 + k) / (3 + k * classes)) + math.log2((0 + k) / (3 + k * classes))) / 2
    assert charlm.markov_bpc(ids, cut, 1, classes, add_k=k) == pytest.approx(expected)
    # unigram: train counts 0 x4, 1 x3
    expected = -(math.log2((4 + k) / (7 + k * classes)) + math.log2((0 + k) / (7 + k * classes))) / 2
    assert charlm.markov_bpc(ids, cut, 0, classes, add_k=k) == pytest.approx(expected)


# --- metrics -------------------------------------------------------------------------------------


def test_metrics_of_known_outputs():
    spec = describe("temporal_order", 20)
    targets = np.array([0, 1, 2, 3])
    logits = np.log(np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1], [0.7, 0.1, 0.1, 0.1], [0.25] * 4]))
    assert spec.evaluate(logits, targets) == {"accuracy": 0.5}
    copy = describe("copy", 5, n_symbols=3, n_recall=2)
    logits = np.zeros((1, 9, 4))
    value = copy.evaluate(logits, np.zeros((1, 9), dtype=np.int64))
    assert value["cross_entropy"] == pytest.approx(math.log(4)) and value["accuracy"] == 1.0
    lm = describe("charlm", 8)
    uniform = np.zeros((2, 16, lm.target.num_classes))
    assert lm.evaluate(uniform, np.ones((2, 16), dtype=np.int64))["bpc"] == pytest.approx(math.log2(lm.target.num_classes))
    with pytest.raises(ValueError, match=r"\(4, 3\)"):
        spec.evaluate(np.zeros((4, 3)), targets)


def test_the_tasks_package_imports_neither_torch_nor_scikit_learn():
    code = "import sys, rnnbench.harness.tasks; print(sorted({'torch', 'sklearn'} & set(sys.modules)))"
    root = Path(__file__).resolve().parent.parent  # python -c puts the working directory first on the path
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_specs_are_read_only_and_pickle(name):
    seq_len, params = CONFIGS[name]
    spec = describe(name, seq_len, **params)
    restored = pickle.loads(pickle.dumps(spec))
    assert restored == spec and restored.params_json == spec.params_json
    with pytest.raises(TypeError):
        spec.params["seq_len"] = 1
