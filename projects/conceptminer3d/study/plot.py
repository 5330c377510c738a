"""Per-class AP by arm, classes rarest first, with the spread over seeds as error bars."""

from __future__ import annotations

__all__ = ['plot_summary']


def plot_summary(summary: dict, path: str) -> str:
    import matplotlib

    matplotlib.use('Agg')  # no display on training machines
    import matplotlib.pyplot as plt

    groups = list(summary['classes']) + ['mAP', 'NDS']
    arms = list(summary['arms'])
    width = 0.8 / max(1, len(arms))
    fig, ax = plt.subplots(figsize=(min(18.0, max(8.0, len(groups) * (0.4 + 0.15 * len(arms)))), 4.5))
    for k, arm in enumerate(arms):
        entry = summary['arms'][arm]
        stats = [entry['AP'][c] for c in summary['classes']] + [entry['mAP'], entry['NDS']]
        means = [s['mean'] if s['mean'] is not None else 0.0 for s in stats]
        errors = [s['std'] or 0.0 for s in stats]
        xs = [i + (k - (len(arms) - 1) / 2) * width for i in range(len(groups))]
        ax.bar(xs, means, width, yerr=errors, capsize=2, label=f'{arm} (n={entry["mAP"]["n"]})')
    ax.axvline(len(summary['classes']) - 0.5, color='grey', linewidth=0.8, linestyle=':')
    ax.set_xticks(range(len(groups)))
    full = summary.get('full_train_instances') or {}
    ax.set_xticklabels([f'{g} ({full[g]})' if g in full else g for g in groups], rotation=30, ha='right')
    ax.set_ylabel('AP (mean over thresholds), mAP, NDS')
    order = ', rarest first (n in full train set)' if full else ''
    ax.set_title(f'Per-class AP by arm{order}; error bars: std over seeds', fontsize='medium')
    ax.set_ylim(0, 1)
    ax.legend(fontsize='small', loc='upper left', bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
