"""The OOD monitor's statistics, measured on the training data at the end of training.

The trained policy is streamed over every training episode frame by frame (episodes side by side in a
batch, each with its own state), exactly as the runtime
Controller feeds it (same IMU normalisation, dt clipped to ``max_dt``, state carried from a reset at the
episode start), and the vector the monitor models is collected per frame:

- ``neurons``: the recurrent state after the step (the 19 liquid neurons of the flagship; h and c of
  the LSTM). What the runtime Controller hands out as ``ControllerOutput.neurons``.
- ``features``: the perception head's output (the CNN's latent for the feed-forward baseline). What
  ``DrivingPolicy.step_with_features`` hands the runtime (``ControllerOutput.features``); collected
  here with the same method, so both read the very same tensor.

:func:`liquid_controller.runtime.ood.fit_gaussian_monitor` then fits and calibrates the monitor.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import default_collate

from liquid_controller.errors import InputError
from liquid_controller.runtime.ood import FEATURE_SOURCES, fit_gaussian_monitor, resolve_source

__all__ = ['collect_features', 'calibrate_ood', 'calibrate_model', 'default_source', 'WINDOW', 'QUANTILE']

# Defaults of the monitor made at the end of training: smoothing over 10 frames (1/3 s at 30 Hz) and a
# threshold at the 99.5% quantile of training frames (a 0.5% false-alarm rate on the training data).
WINDOW = 10
QUANTILE = 0.995


def default_source(policy) -> str:
    """'neurons' for a recurrent core, 'features' for the feed-forward CNN (it has no state)."""
    return resolve_source(None, policy.state_size)


@torch.no_grad()
def collect_features(policy, dataset, source, progress=False, batch_size=16):
    """Per-episode (T_i, D) float64 arrays of the monitored vector.

    dataset: a SequenceDataset whose windows are whole episodes (``seq_len`` = the longest episode,
    stride too), so each item is one episode from its first frame; padding is dropped.
    ``batch_size`` episodes are streamed side by side, each row with its own state (the same step as
    one at a time, 5.5x faster measured on 2 CPU cores: the conv head runs on a batch).
    """
    from liquid_controller.runtime.preprocess import images_to_tensor
    if source not in FEATURE_SOURCES:
        raise InputError('source', source, f'must be one of {FEATURE_SOURCES}')
    if source == 'neurons' and policy.state_size == 0:
        raise InputError('source', source, f'the {policy.config.core} core has no recurrent state')
    was_training = policy.training
    policy.eval()
    out = []
    try:
        from tqdm import tqdm
        bar = tqdm(total=len(dataset), desc='OOD statistics', unit='episode', disable=not progress)
        for first in range(0, len(dataset), batch_size):
            item = default_collate([dataset[i] for i in range(first, min(first + batch_size, len(dataset)))])
            lengths = item['mask'].sum(dim=1).tolist()                         # (B,) frames per episode
            state, rows = None, [[] for _ in lengths]
            for t in range(int(max(lengths))):
                images = images_to_tensor(item['images'][:, t].numpy())       # (B, 3, H, W)
                _, state, features = policy.step_with_features(images, item['imu'][:, t],
                                                               item['dt'][:, t], state)
                vec = (state if source == 'neurons' else features).double().cpu().numpy()  # (B, D)
                for b, n in enumerate(lengths):
                    if t < n:                                                  # padding is dropped
                        rows[b].append(vec[b])
            out += [np.stack(r) for r in rows]                                 # (T_i, D) each
            bar.update(len(lengths))
        bar.close()
    finally:
        policy.train(was_training)
    return out


def calibrate_ood(policy, episodes, imu_mean, imu_std, max_dt, source=None, window=WINDOW, quantile=QUANTILE,
                  progress=False):
    """Fit the monitor on the training ``episodes`` (data.dataset Episodes). Returns OodStatistics."""
    from liquid_controller.data.dataset import SequenceDataset
    source = source or default_source(policy)
    longest = max(len(e) for e in episodes)
    dataset = SequenceDataset(episodes, longest, longest, imu_mean=imu_mean, imu_std=imu_std, max_dt=max_dt)
    features = collect_features(policy, dataset, source, progress=progress)
    return fit_gaussian_monitor(features, source, window=window, quantile=quantile)


def calibrate_model(model, bags, cache_dir, window=WINDOW, quantile=QUANTILE, source=None, progress=True):
    """Fit the OOD monitor of an existing model on recorded driving (``bags``: bag folders, e.g. its
    training data) and store it in the model's card (weights untouched). Returns OodStatistics.

    ``source``: the vector the monitor models, 'neurons' (the recurrent state) or 'features' (the
    perception features; the only choice for the cnn, which has no state); None: :func:`default_source`.

    The bags are decoded with the dataset settings the model was trained with (its card's training
    record) or, without one, the defaults with the card's image size and topics. The IMU is
    normalised with the card's statistics and dt clipped like the runtime Controller.
    """
    from liquid_controller.data.dataset import DatasetConfig, load_episodes, prepare
    from liquid_controller.runtime.controller import ControllerConfig
    from liquid_controller.runtime.model_file import load_model, set_ood_statistics
    loaded = load_model(model)
    card = loaded.card
    # 'neurons' for a model without state is refused; the cnn gets 'features'
    source = resolve_source(source, loaded.policy.state_size,
                            f'model {card.name!r} ({loaded.policy.config.core})')
    dataset = dict((card.training.get('config') or {}).get('dataset') or {})
    dataset.update(image_height=card.input.image_height, image_width=card.input.image_width,
                   camera_topic=card.topics.get('image', 'camera/image_raw'),
                   imu_topic=card.topics.get('imu', 'imu/data'))
    prepared = prepare(bags, cache_dir, DatasetConfig.from_dict(dataset), progress=progress)
    episodes = load_episodes(prepared)
    if not episodes:
        raise InputError('bags', [str(b) for b in bags], 'no usable driving in these bags')
    stats = calibrate_ood(loaded.policy, episodes, card.input.imu_mean, card.input.imu_std,
                          ControllerConfig().max_dt, source=source, window=window, quantile=quantile,
                          progress=progress)
    set_ood_statistics(loaded.json_path, stats.to_dict())
    return stats
