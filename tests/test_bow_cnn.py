"""The non-recurrent encoders: bag-of-words is order-free; the CNN's reach is its receptive field."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnbench.baselines.bow import BagOfWordsEncoder
from rnnbench.baselines.cnn import CNNEncoder

INPUT_SIZE, HIDDEN, VOCAB = 6, 16, 11


def _input(steps, batch, tokens, seed=0):
    """Token ids ``(T, B)`` in ``[0, VOCAB)`` or dense float64 ``(T, B, INPUT_SIZE)``."""
    generator = torch.Generator().manual_seed(seed)
    if tokens:
        return torch.randint(0, VOCAB, (steps, batch), generator=generator)
    return torch.randn(steps, batch, INPUT_SIZE, generator=generator, dtype=torch.float64)


def _encoder(encoder_class, tokens, **options):
    torch.manual_seed(0)
    return encoder_class(INPUT_SIZE, HIDDEN, vocab_size=VOCAB if tokens else None, **options).double()


# ---- bag of words -----------------------------------------------------------------------------


@pytest.mark.parametrize("tokens", [False, True], ids=["dense", "tokens"])
@pytest.mark.parametrize("pooling", ["sum", "mean"])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_bow_is_invariant_to_permuting_time_steps(pooling, tokens, data):
    steps = data.draw(st.integers(1, 20), label="T")
    batch = data.draw(st.integers(1, 4), label="B")
    order = data.draw(st.permutations(range(steps)), label="permutation")
    encoder = _encoder(BagOfWordsEncoder, tokens, pooling=pooling)
    x = _input(steps, batch, tokens, seed=data.draw(st.integers(0, 2**16), label="seed"))
    features = encoder(x)
    assert features.shape == (batch, HIDDEN)
    torch.testing.assert_close(encoder(x[list(order)]), features, rtol=1e-12, atol=1e-12)


def test_bow_pools_per_step_embeddings():
    x = _input(7, 3, tokens=False)
    mean = _encoder(BagOfWordsEncoder, False, pooling="mean")
    total = _encoder(BagOfWordsEncoder, False, pooling="sum")
    steps = torch.nn.functional.linear(x, mean.embed.project.weight, mean.embed.project.bias)
    torch.testing.assert_close(mean(x), steps.mean(dim=0))
    torch.testing.assert_close(total(x), 7 * mean(x))


def test_bow_embeds_token_ids():
    encoder = _encoder(BagOfWordsEncoder, True, pooling="sum")
    x = torch.tensor([[2, 5], [2, 0]])
    table = encoder.embed.project.weight
    torch.testing.assert_close(encoder(x), torch.stack([2 * table[2], table[5] + table[0]]))


# ---- CNN receptive field ----------------------------------------------------------------------


# (kernel_size, dilation_base, num_layers) and the receptive field 1 + sum_l (k-1)*base**l
RECEPTIVE_FIELDS = [((3, 1, 2), 5), ((3, 2, 2), 7), ((3, 3, 3), 27), ((2, 2, 3), 8), ((5, 4, 1), 5), ((1, 1, 3), 1)]


@pytest.mark.parametrize("config, receptive_field", RECEPTIVE_FIELDS, ids=[str(c) for c, _ in RECEPTIVE_FIELDS])
def test_cnn_receptive_field_property(config, receptive_field):
    kernel_size, dilation_base, num_layers = config
    encoder = CNNEncoder(INPUT_SIZE, HIDDEN, num_layers, kernel_size, dilation_base)
    assert encoder.receptive_field == receptive_field


def _changed_positions(encoder, x, perturbed):
    """Output positions whose features differ between ``x`` and ``perturbed``."""
    with torch.no_grad():
        difference = (encoder.features(perturbed) - encoder.features(x)).abs().amax(dim=(1, 2))
    return set(torch.nonzero(difference > 1e-9).flatten().tolist())


@pytest.mark.parametrize("tokens", [False, True], ids=["dense", "tokens"])
@pytest.mark.parametrize("config, receptive_field", RECEPTIVE_FIELDS, ids=[str(c) for c, _ in RECEPTIVE_FIELDS])
def test_cnn_impulse_reaches_exactly_the_receptive_field(config, receptive_field, tokens):
    kernel_size, dilation_base, num_layers = config
    encoder = _encoder(CNNEncoder, tokens, num_layers=num_layers, kernel_size=kernel_size, dilation_base=dilation_base)
    steps, impulse = receptive_field + 9, 4
    x = _input(steps, 2, tokens)
    perturbed = x.clone()
    perturbed[impulse] = (x[impulse] + 1) % VOCAB if tokens else x[impulse] + 3.0
    # causal padding: step s reaches output positions s .. s + receptive_field - 1
    assert _changed_positions(encoder, x, perturbed) == set(range(impulse, impulse + receptive_field))
    # near the end, the window is cut off by the sequence length
    late = steps - 2
    perturbed = x.clone()
    perturbed[late] = (x[late] + 1) % VOCAB if tokens else x[late] + 3.0
    assert _changed_positions(encoder, x, perturbed) == set(range(late, min(steps, late + receptive_field)))


def test_cnn_forward_is_max_over_time_of_features():
    encoder = _encoder(CNNEncoder, False, dilation_base=2)
    x = _input(10, 3, tokens=False)
    features = encoder.features(x)
    assert features.shape == (10, 3, HIDDEN)
    torch.testing.assert_close(encoder(x), features.amax(dim=0))


# ---- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options, message",
    [
        ({"pooling": "max"}, r"pooling must be one of \('sum', 'mean'\), got 'max'"),
        ({"hidden_size": 0}, r"hidden_size must be a positive integer, got 0"),
        ({"input_size": 2.5}, r"input_size must be a positive integer, got 2.5"),
        ({"vocab_size": -3}, r"vocab_size must be a positive integer, got -3"),
    ],
)
def test_bow_rejects_bad_constructor_arguments(options, message):
    with pytest.raises(ValueError, match=message):
        BagOfWordsEncoder(**{"input_size": INPUT_SIZE, "hidden_size": HIDDEN, **options})


@pytest.mark.parametrize(
    "options, message",
    [
        ({"kernel_size": 0}, r"kernel_size must be a positive integer, got 0"),
        ({"dilation_base": 0}, r"dilation_base must be a positive integer, got 0"),
        ({"kernel_size": 2, "dilation_base": 3}, r"dilation_base must be at most kernel_size=2 .*, got 3"),
        ({"num_layers": True}, r"num_layers must be a positive integer, got True"),
        ({"hidden_size": -1}, r"hidden_size must be a positive integer, got -1"),
        ({"vocab_size": 0}, r"vocab_size must be a positive integer, got 0"),
    ],
)
def test_cnn_rejects_bad_constructor_arguments(options, message):
    with pytest.raises(ValueError, match=message):
        CNNEncoder(**{"input_size": INPUT_SIZE, "hidden_size": HIDDEN, **options})


@pytest.mark.parametrize("encoder_class", [BagOfWordsEncoder, CNNEncoder])
@pytest.mark.parametrize(
    "tokens, x, error, message",
    [
        (False, torch.zeros(4, 2, INPUT_SIZE + 1, dtype=torch.float64), ValueError, r"x.size\(-1\) must be equal to input_size=6, got 7"),
        (False, torch.zeros(4, INPUT_SIZE, dtype=torch.float64), ValueError, r"x must have 3 dimensions \(T, B, input_size\), got shape \(4, 6\)"),
        (False, torch.zeros(0, 2, INPUT_SIZE, dtype=torch.float64), ValueError, r"x must have at least one time step, got shape \(0, 2, 6\)"),
        (False, torch.zeros(4, 2, INPUT_SIZE, dtype=torch.float32), TypeError, r"x must have dtype torch.float64 like the parameters, got torch.float32"),
        (True, torch.zeros(4, 2, 1, dtype=torch.int64), ValueError, r"token ids x must have 2 dimensions \(T, B\), got shape \(4, 2, 1\)"),
        (True, torch.zeros(4, 2), TypeError, r"token ids x must be an integer tensor, got dtype torch.float32"),
        (True, torch.tensor([[0, 11]]), ValueError, r"token ids must be in \[0, vocab_size=11\), got values in \[0, 11\]"),
        (True, torch.tensor([[-1, 3]]), ValueError, r"token ids must be in \[0, vocab_size=11\), got values in \[-1, 3\]"),
    ],
    ids=["width", "rank", "empty", "dtype", "token_rank", "token_dtype", "token_too_large", "token_negative"],
)
def test_encoders_reject_bad_input(encoder_class, tokens, x, error, message):
    encoder = _encoder(encoder_class, tokens)
    with pytest.raises(error, match=message):
        encoder(x)
