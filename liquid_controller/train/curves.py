"""Learning-curve plot (PNG, matplotlib Agg) from a training history."""
from pathlib import Path


def plot_learning_curves(history, path, title=''):
    """Write a PNG: per-step training loss (light) and per-epoch train/validation loss (left), and the
    validation command errors (right). ``history``: {'steps': [(step, loss)], 'epochs': [dict]}."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    epochs = history.get('epochs', [])
    steps = history.get('steps', [])
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    if steps:
        s, loss = zip(*steps)
        ax.plot(s, loss, color='0.75', lw=0.8, label='train (per step)')
    if epochs:
        ends = [e['step'] for e in epochs]
        ax.plot(ends, [e['train_loss'] for e in epochs], 'o-', label='train (epoch mean)')
        val = [(e['step'], e['val_loss']) for e in epochs if e.get('val_loss') is not None]
        if val:
            ax.plot(*zip(*val), 's-', label='validation')
            best = min(val, key=lambda p: p[1])
            ax.plot(*best, marker='*', ms=14, color='gold', mec='k', ls='', label='best')
        mae = [(e['step'], e['val_mae_v'], e['val_mae_w']) for e in epochs if e.get('val_mae_v') is not None]
        if mae:
            ep, mv, mw = zip(*mae)
            ax2.plot(ep, mv, 'o-', label='|v - v_rec| (m/s)')
            ax2.plot(ep, mw, 's-', label='|w - w_rec| (rad/s)')
            ax2.set_xlabel('step (end of each epoch)')
            ax2.set_ylabel('validation mean abs. error')
            ax2.legend()
            ax2.grid(alpha=0.3)
    ax.set_xlabel('step')
    ax.set_ylabel('loss')
    if steps and min(l for _, l in steps) > 0:
        ax.set_yscale('log')
    ax.grid(alpha=0.3)
    ax.legend()
    if not epochs or not any(e.get('val_mae_v') is not None for e in epochs):
        ax2.text(0.5, 0.5, 'no validation set', ha='center', va='center', transform=ax2.transAxes)
        ax2.set_axis_off()
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
