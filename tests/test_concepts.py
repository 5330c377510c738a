import os

import numpy as np
import pytest
from mmengine.config import Config

from conceptminer3d.mining.stages.concepts import (
    NUSCENES_CLASSES,
    ConceptVocabulary,
    adaptive_text_weight,
    assign_groups,
    score_concepts,
    top_concepts,
    top_k,
)

from helpers import REPO


def _unit(v):
    v = np.asarray(v, float)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_score_matches_a_hand_computed_example():
    concepts = _unit([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    image = _unit([[3, 4, 0]])  # cos with concepts: 0.6, 0.8, 0
    caption = _unit([[0, 0, 1]])  # cos with concepts: 0, 0, 1
    scores, w, agreement = score_concepts(image, caption, concepts, weight_text=0.25)
    np.testing.assert_allclose(scores, [[0.75 * 0.6, 0.75 * 0.8, 0.25 * 1.0]], atol=1e-6)
    np.testing.assert_allclose(w, [0.25])
    np.testing.assert_allclose(agreement, [0.0], atol=1e-7)
    # adaptive: cos(image, caption) = 0 → q = 0.2/0.7, w = 0.2 + 0.6·q
    scores, w, _ = score_concepts(image, caption, concepts, weight_text='adaptive')
    expected_w = 0.2 + 0.6 * (0.2 / 0.7)
    np.testing.assert_allclose(w, [expected_w], atol=1e-6)
    np.testing.assert_allclose(scores[0, 2], expected_w, atol=1e-6)
    np.testing.assert_allclose(scores[0, 1], (1 - expected_w) * 0.8, atol=1e-6)


def test_top_concepts_in_blocks_equals_scoring_all_rows_at_once(tmp_path):
    rng = np.random.default_rng(0)
    embeddings = np.lib.format.open_memmap(tmp_path / 'e.npy', mode='w+', dtype=np.float32, shape=(50, 8))
    embeddings[:] = _unit(rng.standard_normal((50, 8)))
    rows = rng.permutation(50)[:23]
    captions = _unit(rng.standard_normal((23, 8))).astype(np.float32)
    concepts = _unit(rng.standard_normal((6, 8))).astype(np.float32)
    scores, w, agreement = score_concepts(embeddings[rows], captions, concepts, 'adaptive')
    order, values = top_k(scores, 3)
    got = top_concepts(embeddings, rows, captions, concepts, 'adaptive', 3, block_rows=5)
    np.testing.assert_array_equal(got[0], order)
    np.testing.assert_allclose(got[1], values, rtol=1e-6)
    np.testing.assert_allclose(got[2], w, rtol=1e-6)
    np.testing.assert_allclose(got[3], agreement, rtol=1e-6)
    # No captions: cos(image, concept) alone, whatever the text weight, and no agreement.
    order, values, w, agreement = top_concepts(embeddings, rows, None, concepts, 0.7, 10, block_rows=4)
    assert order.shape == (23, 6) and (w == 0).all() and np.isnan(agreement).all()
    np.testing.assert_allclose(values[:, 0], (embeddings[rows] @ concepts.T).max(axis=1), rtol=1e-6)


def test_adaptive_weight_is_clipped_to_its_range():
    cos = np.array([-1.0, -0.2, 0.15, 0.5, 1.0])
    np.testing.assert_allclose(adaptive_text_weight(cos), [0.2, 0.2, 0.5, 0.8, 0.8], atol=1e-6)


def test_top_k_orders_best_first_and_breaks_ties_by_vocabulary_order():
    idx, vals = top_k(np.array([[0.1, 0.5, 0.5, 0.9]]), 3)
    assert idx.tolist() == [[3, 1, 2]] and vals.tolist() == [[0.9, 0.5, 0.5]]
    assert top_k(np.zeros((2, 2)), 5)[0].shape == (2, 2)


def test_grouping_rules():
    vocab = ConceptVocabulary(
        concepts=('car', 'truck', 'dog', 'pedestrian'), target=('truck',), common=('car', 'pedestrian')
    )
    assert assign_groups(['truck', 'dog', 'car', 'pedestrian'], vocab) == ['Target', 'Rare', 'Common', 'Common']
    assert vocab.prompts()[0] == 'a photo of a car'


@pytest.mark.parametrize(
    'kwargs, message',
    [
        (dict(concepts=()), 'empty'),
        (dict(concepts=('car', 'car')), 'duplicates'),
        (dict(concepts=('car',), target=('truck',)), 'not in the vocabulary'),
        (dict(concepts=('car',), prompt_template='photo'), "'{}'"),
    ],
)
def test_bad_vocabularies_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ConceptVocabulary(**dict(dict(target=(), common=()), **kwargs))


def test_default_mining_vocabulary_starts_with_the_nuscenes_classes():
    """The config's vocabulary is the one written list; the package's class list must agree."""
    vocabulary = Config.fromfile(os.path.join(REPO, 'configs', 'mining', 'default.py')).concepts.vocabulary
    ConceptVocabulary(**vocabulary)
    assert tuple(vocabulary.concepts[: len(NUSCENES_CLASSES)]) == NUSCENES_CLASSES


def test_bad_text_weight_is_refused():
    with pytest.raises(ValueError, match='weight_text'):
        score_concepts(np.ones((1, 2)), np.ones((1, 2)), np.ones((1, 2)), weight_text=1.5)
