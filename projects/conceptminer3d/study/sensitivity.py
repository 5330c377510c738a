"""Whether a study can tell data apart at all: the full train set must beat a random subset by
more than the seeds' own spread, or no difference between arms is evidence.

The check (``sensitivity``): ``full`` beats ``random20`` in mAP by more than ``FACTOR`` × the
larger of their standard deviations over seeds. The margin is the mean of the per-seed
differences where both arms ran the same seeds (paired: a seed's luck of initialisation and
sampling cancels), else the difference of the means. The same for each class's AP with that
class's own spread, so a study may tell data apart on cars but not on bicycles.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

__all__ = ['FACTOR', 'REFERENCE_ARMS', 'sensitivity', 'sensitivity_lines']

FACTOR = 3.0
REFERENCE_ARMS = ('full', 'random20')  # the most data against the same amount, drawn at random


def _std(values: Sequence[float]) -> Optional[float]:
    if len(values) < 2:
        return None
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _check(full_runs: List[dict], other_runs: List[dict], get, factor: float) -> dict:
    full = {r['seed']: get(r) for r in full_runs if get(r) is not None}
    other = {r['seed']: get(r) for r in other_runs if get(r) is not None}
    paired = sorted(s for s in full if s in other and s is not None)
    if len(paired) >= 2:
        margin = sum(full[s] - other[s] for s in paired) / len(paired)
    elif full and other:
        margin = sum(full.values()) / len(full) - sum(other.values()) / len(other)
    else:
        margin = None
    stds = [_std(list(full.values())), _std(list(other.values()))]
    spread = max(stds) if None not in stds else None
    threshold = factor * spread if spread is not None else None
    passed = None if margin is None or threshold is None else margin > threshold
    return dict(
        margin=margin,
        threshold=threshold,
        full_std=stds[0],
        other_std=stds[1],
        paired_seeds=paired if len(paired) >= 2 else [],
        passed=passed,
    )


def sensitivity(summary: dict, factor: float = FACTOR, arms: Sequence[str] = REFERENCE_ARMS) -> dict:
    """The check on a ``summarize`` result: ``dict(passed, reason, mAP=..., classes={...})``.

    ``passed`` is True or False, or None when it cannot be decided (an arm missing, or fewer
    than two seeds in one of them: no spread to compare with). Each entry holds the ``margin``
    (full minus the other arm), the ``threshold`` (``factor`` × the larger std), both stds, the
    seeds the margin was paired on and its own ``passed``.
    """
    full_arm, other_arm = arms
    table = summary.get('arms') or {}
    if full_arm not in table or other_arm not in table:
        return dict(
            passed=None,
            factor=factor,
            arms=list(arms),
            reason=f'needs the {full_arm} and {other_arm} arms',
            mAP=None,
            classes={},
        )
    full_runs, other_runs = table[full_arm]['runs'], table[other_arm]['runs']
    overall = _check(full_runs, other_runs, lambda r: r['mAP'], factor)
    classes: Dict[str, dict] = {
        c: _check(full_runs, other_runs, lambda r, c=c: r['AP'].get(c), factor) for c in summary.get('classes', [])
    }
    if overall['passed'] is None:
        reason = f'needs at least two seeds of {full_arm} and of {other_arm} (a spread to compare with)'
    elif overall['passed']:
        reason = (
            f'{full_arm} beats {other_arm} in mAP by {overall["margin"]:.3f}, more than {factor:g} x the larger '
            f'seed std ({overall["threshold"]:.3f})'
        )
    else:
        reason = (
            f'{full_arm} beats {other_arm} in mAP by {overall["margin"]:.3f}, not more than {factor:g} x the larger '
            f'seed std ({overall["threshold"]:.3f})'
        )
    return dict(passed=overall['passed'], factor=factor, arms=list(arms), reason=reason, mAP=overall, classes=classes)


def _num(value: Optional[float]) -> str:
    return '—' if value is None else f'{value:.3f}'


def sensitivity_lines(check: dict, rare_classes: Sequence[str] = ()) -> List[str]:
    """The verdict for the terminal: one line, plus a warning when it failed, plus the classes."""
    full_arm, other_arm = check['arms']
    if check['passed'] is None:
        verdict = f'Can this study tell data apart? Undecided: {check["reason"]}.'
    elif check['passed']:
        verdict = f'This study can tell data apart: {check["reason"]}.'
    else:
        verdict = (
            f'THIS STUDY CANNOT TELL DATA APART: {check["reason"]}. '
            'The differences between arms below are not evidence.'
        )
    lines = [verdict]
    shown = [c for c in rare_classes if c in check['classes']]
    if shown:
        cells = []
        for c in shown:
            entry = check['classes'][c]
            mark = {True: 'yes', False: 'no', None: '?'}[entry['passed']]
            cells.append(f'{c} {mark} ({_num(entry["margin"])} vs {_num(entry["threshold"])})')
        lines.append(f'Per class, {full_arm} - {other_arm} AP vs {check["factor"]:g} x std: ' + '; '.join(cells))
    return lines
