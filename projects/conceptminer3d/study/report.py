"""The terminal tables of a summary: one line per arm (mAP, NDS, ratios, train set size), then
per-class AP with the classes rarest first. Arm columns are split into blocks so that no line
is wider than ``width``."""

from __future__ import annotations

from typing import List, Optional, Sequence

from .sensitivity import sensitivity_lines

__all__ = ['format_report']

RARE_CLASSES_SHOWN = 5  # the check's verdict is printed for the rarest classes


def _num(value: Optional[float], digits: int = 3) -> str:
    return '—' if value is None else f'{value:.{digits}f}'


def _mean_std(stat: dict) -> str:
    if not stat['n']:
        return '—'
    return _num(stat['mean']) + ('' if stat['std'] is None else f'±{_num(stat["std"])}')


def _ratio(stat: dict) -> str:
    return '—' if stat.get('ratio_to_full') is None else f'{stat["ratio_to_full"]:.2f}'


def _grid(rows: Sequence[Sequence[str]], right: Sequence[bool]) -> List[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for k, row in enumerate(rows):
        cells = [cell.rjust(w) if r else cell.ljust(w) for cell, w, r in zip(row, widths, right)]
        lines.append('  '.join(cells).rstrip())
        if k == 0:
            lines.append('  '.join('-' * w for w in widths))
    return lines


def _arms_table(summary: dict) -> List[str]:
    rows = [['arm', 'seeds', 'train samples', 'mAP', 'NDS', 'mAP/full', 'NDS/full']]
    for arm, entry in summary['arms'].items():
        samples = entry['num_train_samples']
        rows.append(
            [
                arm,
                str(entry['mAP']['n']),
                '?' if samples is None else str(samples),
                _mean_std(entry['mAP']),
                _mean_std(entry['NDS']),
                _ratio(entry['mAP']),
                _ratio(entry['NDS']),
            ]
        )
    return _grid(rows, [False] + [True] * 6)


def _class_cell(entry: dict, cls: str) -> str:
    stat = entry['AP'][cls]
    instances = entry.get('instances')
    count = '?' if instances is None else str(instances.get(cls, 0))
    return f'{_mean_std(stat)} ×{_ratio(stat)} n={count}'


def _class_tables(summary: dict, width: int) -> List[str]:
    classes = summary['classes']
    full = summary.get('full_train_instances') or {}
    first = [f'{c} ({full[c]})' if c in full else c for c in classes]
    arms = list(summary['arms'])
    first_width = max(len(x) for x in first + ['class (n full)'])
    cell_widths = {a: max(len(a), *(len(_class_cell(summary['arms'][a], c)) for c in classes)) for a in arms}
    blocks, block, used = [], [], first_width
    for arm in arms:
        if block and used + 2 + cell_widths[arm] > width:
            blocks.append(block)
            block, used = [], first_width
        block.append(arm)
        used += 2 + cell_widths[arm]
    blocks.append(block)
    lines = []
    for block in blocks:
        rows = [['class (n full)', *block]]
        rows += [[label, *(_class_cell(summary['arms'][a], c) for a in block)] for label, c in zip(first, classes)]
        if lines:
            lines.append('')
        lines += _grid(rows, [False] + [True] * len(block))
    return lines


def format_report(summary: dict, width: int = 120) -> str:
    schedule = summary.get('schedule')
    shown = 'mixed' if schedule == 'mixed' else ', '.join(f'{v} {k}' for k, v in (schedule or {}).items()) or '?'
    head = [
        f'{summary.get("world") or "?"} world, {shown} per run'
        + (f', {summary["matched"]}-matched' if summary.get('matched') else '')
        + '; mean±std over seeds; ratios are to the full arm\'s mean'
    ]
    if summary.get('quick'):
        head.append('--quick: a plumbing check on a tiny world, not evidence about the arms')
    if summary.get('sensitivity'):
        head += sensitivity_lines(summary['sensitivity'], summary['classes'][:RARE_CLASSES_SHOWN])
    lines = head + [''] + _arms_table(summary) + ['']
    lines.append(
        'Per-class AP (mean over distance thresholds), rarest class first; ×ratio to full; '
        'n = 3D instances in the arm\'s train set'
    )
    lines += _class_tables(summary, width) if summary['classes'] else ['(no per-class AP in the metric logs)']
    return '\n'.join(lines)
