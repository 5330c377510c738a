"""Which train samples go into a mined subset: "Random r% + Target t%".

Pure functions of the mining tables and the train pickle's sample list, seeded, so the
same inputs and seed always give the same subset. What the Target slots are chosen by is
``evidence``'s; the random and coreset baselines are ``baselines``'.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import sparse

from ..mining.contracts import GROUP_RARE, GROUP_TARGET
from .coverage import SqrtCoverage
from .evidence import ConceptEvidence

REASON_TARGET, REASON_RARE, REASON_FILL, REASON_RANDOM = 'target', 'rare_topup', 'fill_topup', 'random'
REASON_CORESET = 'coreset'  # the coreset baseline's samples (no manifest of their own)
UNITS = ('sample', 'scene')
SELECTIONS = ('coverage', 'ranked', 'uniform')


@dataclass(frozen=True)
class SubsetSpec:
    """What a mined subset holds: "Random ``random_ratio`` + Target ``target_ratio``".

    These field defaults are the only ones: mining configs (``subsets=dict(...)``),
    ``DataMiningHook`` and ``tools/build_subsets.py`` set only what they change.

    Args:
        target_ratio (float): share of the train set drawn from samples with a Target crop.
        random_ratio (float): share drawn uniformly from the rest.
        unit (str): ``'sample'``, or ``'scene'`` to take whole scenes (by scene token).
        seed (int): seed of every draw: the mined subset's, the random baseline's and the
            coreset's first centre.
        selection (str): how the Target slots are filled. ``'coverage'``: the set of samples
            that maximises the rarity-weighted square-root coverage of the target concepts'
            evidence (``coverage.SqrtCoverage``: diminishing returns per concept, so the slots
            spread over the concepts; the default, because it caught the most rare objects:
            ``tools/evaluate_selection.py``, docs/benchmarks.md); ``'ranked'``: samples in order
            of their strongest rare Target crop (``target_scores``); ``'uniform'``: drawn
            uniformly among the samples with a Target crop (the original rule).
        concept_quota (bool): with ``'ranked'``, split the Target slots evenly across the
            target concepts, so that one frequent target cannot take them all.
        diversity (float): with ``'coverage'``, the weight of a second term that rewards
            covering each concept's clusters of crop embeddings (``DIVERSITY_CLUSTERS`` per
            concept); 0 turns it off (it moved the rare objects caught by −2% and +4% on two
            benchmark worlds: not a clear gain). A source without embeddings (the annotation
            source) has no clusters and ignores it.
    """

    target_ratio: float = 0.1
    random_ratio: float = 0.1
    unit: str = 'sample'
    seed: int = 0
    selection: str = 'coverage'
    concept_quota: bool = False
    diversity: float = 0.0

    def __post_init__(self):
        if not (
            0 <= self.target_ratio <= 1
            and 0 <= self.random_ratio <= 1
            and 0 < self.target_ratio + self.random_ratio <= 1
        ):
            raise ValueError(
                f'ratios must be in [0, 1] with 0 < sum <= 1, got target={self.target_ratio}, '
                f'random={self.random_ratio}'
            )
        if self.unit not in UNITS:
            raise ValueError(f'unit must be one of {UNITS}, got {self.unit!r}')
        if self.selection not in SELECTIONS:
            raise ValueError(f'selection must be one of {SELECTIONS}, got {self.selection!r}')
        if self.concept_quota and self.selection != 'ranked':
            raise ValueError(
                "concept_quota splits the ranked Target slots: it needs selection='ranked' (the default, "
                "'coverage', spreads the slots over the concepts by itself)"
            )
        if not 0 <= self.diversity <= 1:
            raise ValueError(f'diversity must be in [0, 1], got {self.diversity}')
        if self.diversity and self.selection != 'coverage':
            raise ValueError("diversity is a term of the coverage objective: it needs selection='coverage'")

    @property
    def name(self) -> str:
        # The rule is part of the name so that subsets made by different rules can live in one
        # mining dir (mining is the expensive part, and its cache lives there). The default
        # rule's subset carries no suffix: it is the one the subset configs train on.
        default = next(f.default for f in dataclasses.fields(self) if f.name == 'selection')
        suffix = '' if self.selection == default else f'_{self.selection}'
        suffix += '_quota' if self.concept_quota else ''
        suffix += f'_diversity{round(self.diversity * 100)}' if self.diversity else ''
        return f'random{round(self.random_ratio * 100)}_target{round(self.target_ratio * 100)}{suffix}'

    @property
    def baseline_name(self) -> str:
        return f'random{self._size_pct}'

    @property
    def coreset_name(self) -> str:
        return f'coreset{self._size_pct}'

    @property
    def _size_pct(self) -> int:
        return round((self.random_ratio + self.target_ratio) * 100)


@dataclass
class Selection:
    indices: List[int]  # positions in the train pickle, ascending
    reasons: Dict[int, str]
    shortfall: Dict[str, int] = field(default_factory=dict)  # target slots filled from Rare / the rest
    # ranked: (concept, its score); coverage: (the concept that gave most of the pick's gain, the gain)
    chosen_by: Dict[int, Tuple[str, float]] = field(default_factory=dict)
    coverage: dict = field(default_factory=dict)  # coverage: the objective's value, gains, per concept


def _attributed_picks(fit: SqrtCoverage, unit_evidence: sparse.csr_matrix, evidence: ConceptEvidence):
    """Each pick of ``fit`` as (unit row, the concept that gained most from it, its gain)."""
    names = sorted(set(evidence.concepts))
    feature_concept = np.array([names.index(c) for c in evidence.concepts], np.int64)  # int when empty too
    totals = np.zeros(len(evidence.weights))
    for k, gain in zip(fit.ranking_, fit.gains_):
        row = unit_evidence.getrow(k)
        cols, x = row.indices, row.data
        now = totals[cols]
        parts = np.bincount(
            feature_concept[cols], evidence.weights[cols] * x / (np.sqrt(now + x) + np.sqrt(now)), minlength=len(names)
        )
        totals[cols] += x
        yield int(k), names[int(np.argmax(parts))], float(gain)


def _coverage_record(fit: SqrtCoverage, unit_evidence, evidence: ConceptEvidence, sizes: np.ndarray, picks) -> dict:
    """What the manifest says of a coverage selection: its value, each pick's gain, and per
    concept the samples it won, the evidence taken and available, and its part of the value."""
    names = sorted(set(evidence.concepts))
    feature_concept = np.array([names.index(c) for c in evidence.concepts], np.int64)  # int when empty too
    per_feature = evidence.weights * np.sqrt(fit.totals_)
    value = np.bincount(feature_concept, per_feature, minlength=len(names))
    available = np.asarray(unit_evidence.sum(axis=0)).reshape(-1)
    slots = Counter()
    for k, concept, _ in picks:  # _attributed_picks
        slots[concept] += int(sizes[k])
    own = {evidence.concepts[f]: f for f, cluster in enumerate(evidence.clusters) if cluster < 0}
    return dict(
        value=round(fit.value_, 6),
        picks=len(fit.ranking_),
        gains=[round(float(g), 6) for g in fit.gains_],
        concepts={
            c: dict(
                weight=round(float(evidence.weights[f]), 6),
                slots=slots.get(c, 0),
                evidence=round(float(fit.totals_[f]), 4),
                evidence_available=round(float(available[f]), 4),
                value=round(float(value[names.index(c)]), 6),
            )
            for c, f in own.items()
        },
    )


def _best(scores: Dict[str, float]) -> Tuple[str, float]:
    return min(scores.items(), key=lambda item: (-item[1], item[0]))


def select_mined(
    sample_groups: Dict[int, set],
    scene_of: Sequence[str],
    spec: SubsetSpec,
    scores: Optional[Dict[int, Dict[str, float]]] = None,
    evidence: Optional[ConceptEvidence] = None,
) -> Selection:
    """``sample_groups``: train position → set of crop groups found in that sample;
    ``scores``: ``target_scores`` (needed by ``selection='ranked'``); ``evidence``:
    ``target_evidence`` (needed by ``selection='coverage'``).

    Target slots: round(target_ratio·N) samples with a Target crop, by ``spec.selection``;
    a shortfall is topped up from samples with a Rare crop, then from the rest (uniformly).
    Random slots: round(random_ratio·N) drawn uniformly from what remains. In scene mode the
    same rules pick whole scenes (a scene counts as Target/Rare if any of its samples is; it
    ranks by its best sample, or brings the evidence of all its samples to the coverage, which
    then weighs its gain per sample) until each quota of samples is reached."""
    if spec.selection == 'ranked' and scores is None:
        raise ValueError("selection='ranked' needs the target crops' scores (target_scores)")
    if spec.selection == 'coverage' and evidence is None:
        raise ValueError("selection='coverage' needs the target crops' evidence (target_evidence)")
    n = len(scene_of)
    rng = np.random.default_rng(spec.seed)
    n_target, n_random = round(spec.target_ratio * n), round(spec.random_ratio * n)
    has = lambda i, g: g in sample_groups.get(i, ())  # noqa: E731
    if spec.unit == 'sample':
        units = {i: [i] for i in range(n)}
    else:
        units = {}
        for i, scene in enumerate(scene_of):
            if not scene:
                raise ValueError(f'sample {i} has no scene token; scene mode needs the devkit tables')
            units.setdefault(scene, []).append(i)
    tiers = [
        (REASON_TARGET, [u for u, idx in units.items() if any(has(i, GROUP_TARGET) for i in idx)]),
        (REASON_RARE, [u for u, idx in units.items() if any(has(i, GROUP_RARE) for i in idx)]),
        (REASON_FILL, list(units)),
    ]
    chosen: Dict[int, str] = {}
    chosen_by: Dict[int, Tuple[str, float]] = {}
    taken_units: set = set()
    shortfall: Dict[str, int] = {}

    def fits(u, got, quota):
        return not (spec.unit == 'scene' and got + len(units[u]) > quota and got > 0)  # try a smaller scene

    def take_unit(u, reason, why=None):
        taken_units.add(u)
        for i in units[u]:
            chosen[i] = reason
            if why:
                chosen_by[i] = why
        return len(units[u])

    def shuffled(pool):
        available = sorted(u for u in pool if u not in taken_units)
        return [available[i] for i in rng.permutation(len(available))]

    def take(pool, quota, reason):
        got = 0
        for u in shuffled(pool):
            if got >= quota:
                break
            if fits(u, got, quota):
                got += take_unit(u, reason)
        return got

    def take_ranked(pool, quota):
        # The uniform rule's own permutation orders the ties: ties fall by the seed, and the
        # tiers after this one see the same RNG state as under 'uniform'.
        order = shuffled(pool)
        unit_scores = {}
        for u in order:
            best = unit_scores[u] = {}
            for i in units[u]:
                for concept, value in scores.get(i, {}).items():
                    best[concept] = max(best.get(concept, value), value)
            if not best:
                raise ValueError(f'{u!r} has a Target crop but no score: give the target_scores of the same crops')
        got = 0
        if not spec.concept_quota:
            for u in sorted(order, key=lambda u: -_best(unit_scores[u])[1]):  # stable: ties keep the draw
                if got >= quota:
                    break
                if fits(u, got, quota):
                    got += take_unit(u, REASON_TARGET, _best(unit_scores[u]))
            return got
        # Per-concept quota: the next slot goes to the concept holding the fewest so far (ties: the
        # concept with the stronger best candidate, then by name), which splits the slots evenly and
        # hands the share of a concept that runs out of candidates on to the others.
        concepts = sorted(
            {c for s in unit_scores.values() for c in s},
            key=lambda c: (-max(s.get(c, -1.0) for s in unit_scores.values()), c),
        )
        queues = {
            c: deque(sorted((u for u in order if c in unit_scores[u]), key=lambda u: -unit_scores[u][c]))
            for c in concepts
        }
        held = dict.fromkeys(concepts, 0)
        rank = {c: k for k, c in enumerate(concepts)}
        while got < quota and queues:
            concept = min(queues, key=lambda c: (held[c], rank[c]))
            queue = queues[concept]
            while queue and (queue[0] in taken_units or not fits(queue[0], got, quota)):
                queue.popleft()  # a scene that does not fit now never will: got only grows
            if not queue:
                del queues[concept]
                continue
            u = queue.popleft()
            size = take_unit(u, REASON_TARGET, (concept, unit_scores[u][concept]))
            held[concept] += size
            got += size
        return got

    coverage: dict = {}

    def take_coverage(pool, quota):
        order = shuffled(pool)  # the seeded draw breaks ties, as in take_ranked
        members = [(k, i) for k, u in enumerate(order) for i in units[u]]
        to_unit = sparse.csr_matrix(
            (np.ones(len(members)), ([k for k, _ in members], [i for _, i in members])), shape=(len(order), n)
        )
        unit_evidence = (to_unit @ evidence.matrix).tocsr()
        sizes = np.array([len(units[u]) for u in order], np.float64)
        fit = SqrtCoverage(quota, evidence.weights, overshoot_first=spec.unit == 'scene').fit(unit_evidence, sizes)
        picks = list(_attributed_picks(fit, unit_evidence, evidence))
        got = sum(take_unit(order[k], REASON_TARGET, (concept, gain)) for k, concept, gain in picks)
        coverage.update(_coverage_record(fit, unit_evidence, evidence, sizes, picks))
        return got

    filled = 0
    for reason, pool in tiers:
        if reason == REASON_TARGET and spec.selection == 'coverage':
            got = take_coverage(pool, n_target)
        elif reason == REASON_TARGET and spec.selection == 'ranked':
            got = take_ranked(pool, n_target)
        else:
            got = take(pool, n_target - filled, reason)
        if reason != REASON_TARGET and got:
            shortfall[reason] = got
        filled += got
        if filled >= n_target:
            break
    take(list(units), n_random, REASON_RANDOM)
    return Selection(sorted(chosen), chosen, shortfall, chosen_by, coverage)
