"""How a selection evaluation (``evaluation.evaluate_selection``'s result, ``selection_eval.json``) is
shown: terminal tables and a plot.

Apart from ``evaluation`` because they only read the result dict: nothing here measures.
"""

from __future__ import annotations

from typing import List, Mapping, Sequence

__all__ = ['format_selection_table', 'plot_selection_eval']


def _cell(entry: Mapping) -> str:
    ratio = f'{entry["ratio"]:.2f}x' if entry['ratio'] is not None else '-'
    return f'{entry["value"]} ({ratio}, p{entry["percentile"]:.0f})'


def format_selection_table(result: Mapping) -> str:
    """The evaluation as terminal tables: one row per subset, then rare and Target classes by subset."""
    rows = [
        (
            'subset',
            'unit',
            'samples',
            'rare instances (x random, percentile)',
            'random 95%',
            'oracle',
            'of oracle value',
            'entropy (random)',
            'Target slots: real / false (poster, look-alike, other)',
        )
    ]
    for name, s in result['subsets'].items():
        rare = s['groups']['rare']['instances']
        fp = s['false_positives']
        rows.append(
            (
                name,
                s['unit'],
                str(s['samples']),
                _cell(rare),
                f'{rare["random"]["low"]:.0f}-{rare["random"]["high"]:.0f}',
                str(s['oracle']['rare_instances']),
                f'{s["oracle"]["share_of_value"]:.2f}' if s['oracle']['share_of_value'] is not None else '-',
                f'{s["entropy"]["value"]:.2f} ({s["entropy"]["random_mean"]:.2f})',
                (
                    f'{fp["real"]} / {fp["false_positive"]} ({fp["poster"]}, {fp["lookalike"]}, {fp["other"]})'
                    + (f', {fp["unchecked"]} unchecked' if fp['unchecked'] else '')
                    if fp and fp['slots']
                    else '-'
                ),
            )
        )
    shown = list(dict.fromkeys(result['rare_classes'] + result['target_classes']))
    names = list(result['subsets'])
    per_class = [('class (train instances)', *names)]
    for c in shown + ['rare'] + (['target'] if result['target_classes'] else []):
        total = result['train']['instances'].get(c)
        label = f'{c} ({total})' if total is not None else c
        per_class.append((label, *(_cell(result['subsets'][n]['groups'][c]['instances']) for n in names)))
    return (
        f'Rare classes (the {len(result["rare_classes"])} least frequent): {", ".join(result["rare_classes"])}; '
        f'Target classes: {", ".join(result["target_classes"]) or "none"}; {result["draws"]} random draws per subset\n'
        + _text_table(rows)
        + '\n\n3D instances per class (x random mean, percentile among the draws)\n'
        + _text_table(per_class)
    )


def _text_table(rows: List[Sequence[str]]) -> str:
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    lines = ['  '.join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, '  '.join('-' * w for w in widths))
    return '\n'.join(lines)


def plot_selection_eval(result: Mapping, path: str) -> str:
    """Rare-class instances per subset against random's 95% interval and the oracle's."""
    import matplotlib

    matplotlib.use('Agg')  # no display on training machines
    import matplotlib.pyplot as plt

    names = list(result['subsets'])
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(names) + 2), 4.0))
    for x, name in enumerate(names):
        s = result['subsets'][name]
        rare = s['groups']['rare']['instances']
        ax.bar(x, rare['value'], 0.6, color='tab:blue')
        ax.plot([x - 0.35, x + 0.35], [rare['random']['mean']] * 2, color='black', linewidth=1)
        ax.fill_between([x - 0.35, x + 0.35], rare['random']['low'], rare['random']['high'], color='grey', alpha=0.3)
        ax.plot(x, s['oracle']['rare_instances'], marker='*', color='tab:orange', markersize=10)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=25, ha='right')
    ax.set_ylabel(f'3D instances of {", ".join(result["rare_classes"])}')
    ax.set_title(
        'Rare-class instances: subset (bar), random draws (mean, 95% band), label oracle (star)', fontsize='medium'
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
