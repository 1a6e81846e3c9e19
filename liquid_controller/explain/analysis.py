"""Explain a driving policy: neuron activity, attention maps and decision trees (issue 8).

Pipeline (every model type: cfc, ltc, lstm, cnn)::

    trace = run_bag(model, bag)                      # or run_sim(model, scene, seconds)
    groups = activity_groups(model.policy, trace)    # sensory / inter / command / motor (liquid)
    X, names = tree_features(model.policy, trace)    # command neurons (liquid), hidden h (lstm), ...
    fit = fit_tree(X, trace.nominal[:, 1], names, max_leaves=16)   # readable rules + held-out R^2
    att = attention_metrics(model.policy, trace)     # road share (sim runs), SSIM stability

Every frame goes through the runtime :class:`~liquid_controller.runtime.controller.Controller`, so the
neuron activity is exactly what the robot's network does (same preprocessing, dt handling, resets).
The explained output is the policy's *nominal* command (before rate limiting and the safety filter):
the tree describes the network, not the filter.

Decision trees follow Wang et al. (arXiv 2210.06650): a regression tree on neuron activity predicting
the command; fidelity = R^2 on held-out frames (whole contiguous stretches of the run, so neighbouring
frames do not leak between train and test), reported against the number of leaves.

For the comparison table (``liquid-controller compare``): :func:`attention_columns` returns
``{'attention_on_road', 'saliency_ssim', ...}`` for one model and scene from a short simulator run.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from liquid_controller.errors import InputError
from liquid_controller.messages.diagnostics import neuron_labels
from liquid_controller.policy import saliency as sal

__all__ = ['r2_comment', 'HOLDOUT_TEXT', 'ATTENTION_COLUMNS', 'Trace', 'run_bag', 'run_sim', 'sensory_inputs', 'activity_groups', 'tree_features',
           'TreeFit', 'fit_tree', 'fidelity_curve', 'attention_metrics', 'attention_columns', 'frame_attention',
           'plot_neuron_activity', 'plot_tree', 'plot_fidelity', 'save_attention_examples',
           'ExplainResult', 'explain_model', 'run_explanation', 'write_summary', 'saliency_map',
           'DEFAULT_LEAF_COUNTS', 'SALIENCY_METHODS']

DEFAULT_LEAF_COUNTS = (2, 4, 8, 16, 32)
SALIENCY_METHODS = ('visual_backprop', 'smoothgrad', 'gradient')
COMMAND_NAMES = ('v', 'w')


# -------------------------------------------------------------------------------------------------
# Running a model: bag or simulator, always through the runtime Controller
# -------------------------------------------------------------------------------------------------
@dataclass
class Trace:
    """What one run produced, one row per processed frame (T frames).

    stamps (T,) s; dt (T,) s fed to the network; frames (T, H, W, 3) uint8; imu (T, 6) normalised IMU
    features the network saw; neurons (T, S) state after the step; state_before (T, S) state before
    the step (for gradient saliency); nominal (T, 2) policy command (v, w); command (T, 2) filtered
    command; status (T,) controller status strings; road_masks (T, H, W) bool or None (sim runs only);
    truth (T, 2) lane offset m, heading error rad or None; source: a description of the run.
    """

    stamps: np.ndarray
    dt: np.ndarray
    frames: np.ndarray
    imu: np.ndarray
    neurons: np.ndarray
    state_before: np.ndarray
    nominal: np.ndarray
    command: np.ndarray
    status: list
    road_masks: Optional[np.ndarray] = None
    truth: Optional[np.ndarray] = None
    source: str = ''

    def __len__(self):
        return int(self.stamps.shape[0])


class _Collector:
    """Feeds sensor readings to a Controller exactly as the node does (its frame assembler and
    settings) and keeps the rows of the good (policy) steps.

    ``settings``: :class:`~liquid_controller.runtime.settings.Settings` (None: config/controller.yaml).
    """

    def __init__(self, model, settings=None):
        from liquid_controller.runtime.controller import Controller
        from liquid_controller.runtime.settings import load_settings
        torch.set_num_threads(1)
        settings = settings if settings is not None else load_settings()
        self.controller = Controller(model, settings.controller_config(), settings.safety_config())
        self.controller.start(now=0.0)
        self._now = 0.0
        # readings arrive at their stamps (bag and simulator time alike)
        self.assembler = settings.frame_assembler(clock=lambda: self._now)
        self.rows = {k: [] for k in ('stamps', 'dt', 'frames', 'imu', 'neurons', 'state_before',
                                     'nominal', 'command', 'status', 'road_masks', 'truth')}

    def add_imu(self, stamps, gyro, accel):
        """IMU samples (N,), (N,3), (N,3) that arrived before the next frame."""
        for s, g, a in zip(stamps, gyro, accel):
            self.assembler.add_imu(float(s), g, a)

    def step(self, frame, stamp, speed=None, mask=None, truth=None):
        """One camera frame (odometry ``speed`` stamped with it, if any); the Controller's output."""
        from liquid_controller.runtime.controller import MeasuredState, OK, RESET
        self._now = stamp
        if speed is not None:
            self.assembler.set_reading('odom', stamp, float(speed))
        before = self.controller.neurons().copy()
        try:
            inputs = self.assembler.assemble(stamp)
        except InputError as exc:                        # clock skew: braking, nothing to explain
            return self.controller.reject(str(exc), now=stamp)
        out = self.controller.step(frame, stamp, imu=inputs.imu,
                                   measured=MeasuredState(speed=inputs.speed, range=inputs.range),
                                   now=stamp)
        if out.status not in (OK, RESET):
            return out                                   # braking / dropped: no network step to explain
        if out.status == RESET:
            before = np.zeros_like(before)               # the step ran from the reset state
        r = self.rows
        r['stamps'].append(float(stamp))
        r['dt'].append(float(out.dt))
        r['frames'].append(frame)
        r['imu'].append(out.imu_features)              # what the Controller fed the network
        r['neurons'].append(out.neurons)
        r['state_before'].append(before)
        r['nominal'].append(out.nominal)
        r['command'].append(out.command)
        r['status'].append(out.status)
        if mask is not None:
            r['road_masks'].append(np.asarray(mask, dtype=bool))
        if truth is not None:
            r['truth'].append(np.asarray(truth, dtype=np.float64))
        return out

    def trace(self, source):
        r = self.rows
        if not r['stamps']:
            raise InputError('run', source, 'no frame produced a policy step (check topics and image size)')
        n = len(r['stamps'])
        return Trace(stamps=np.asarray(r['stamps']), dt=np.asarray(r['dt']), frames=np.stack(r['frames']),
                     imu=np.stack(r['imu']), neurons=np.stack(r['neurons']),
                     state_before=np.stack(r['state_before']), nominal=np.stack(r['nominal']),
                     command=np.stack(r['command']), status=list(r['status']),
                     road_masks=np.stack(r['road_masks']) if len(r['road_masks']) == n else None,
                     truth=np.stack(r['truth']) if len(r['truth']) == n else None, source=source)


def run_bag(model, bag, max_frames=None, progress=False, dataset_config=None, settings=None) -> Trace:
    """Replay a rosbag2 bag's camera + IMU through the Controller of ``model`` (a LoadedModel).

    Frames and IMU samples go in stamp order through the node's frame assembler, with the node's
    ``settings`` (None: config/controller.yaml; a bag without IMU samples is explained with
    ``require_imu`` off, since every frame would otherwise be refused).
    ``dataset_config``: a :class:`~liquid_controller.data.dataset.DatasetConfig` naming the topics
    (default: the recorder's; the image size is taken from the model card).
    """
    from liquid_controller.data.dataset import DatasetConfig, read_bag_streams
    from liquid_controller.runtime.settings import Settings, load_settings
    h, w = model.image_size
    cfg = dataset_config or DatasetConfig(image_height=h, image_width=w)
    if (cfg.image_height, cfg.image_width) != (h, w):
        raise InputError('dataset_config.image_size', (cfg.image_height, cfg.image_width),
                         f'must match the model card ({h}, {w})')
    streams, _ = read_bag_streams(bag, cfg, progress=progress)
    order = np.argsort(streams.frames.stamps, kind='stable')
    if max_frames is not None:
        order = order[:int(max_frames)]
    imu_t = streams.imu.stamps
    imu_order = np.argsort(imu_t, kind='stable')
    imu_t, imu_v = imu_t[imu_order], streams.imu.values[imu_order]
    truth_at = _truth_lookup(streams.truth)
    settings = settings if settings is not None else load_settings()
    if imu_t.size == 0:
        settings = Settings({**settings.values, 'require_imu': False})
    col = _Collector(model, settings)
    lo = 0
    for i in _progress(order, 'explain: bag frames', progress):
        t = float(streams.frames.stamps[i])
        hi = int(np.searchsorted(imu_t, t, side='right'))
        if hi > lo:                                      # the samples stamped up to this frame
            col.add_imu(imu_t[lo:hi], imu_v[lo:hi, :3], imu_v[lo:hi, 3:])
            lo = hi
        col.step(streams.frames.values[i], t, truth=truth_at(t))
    return col.trace(f'bag {bag}')


def _truth_lookup(truth):
    if truth is None or len(truth) == 0:
        return lambda t: None
    order = np.argsort(truth.stamps)
    st, vals = truth.stamps[order], truth.values[order]

    def at(t):
        k = int(np.clip(np.searchsorted(st, t), 0, len(st) - 1))
        if k > 0 and abs(st[k - 1] - t) < abs(st[k] - t):
            k -= 1
        return vals[k] if abs(st[k] - t) < 0.1 else None
    return at


def run_sim(model, scene='summer', seconds=3.0, seed=0, driver='expert', progress=False,
            settings=None) -> Trace:
    """Run ``model`` in the ROS-free simulator and collect a Trace with ground-truth road masks.

    driver 'expert': the privileged expert drives and the model watches (open loop: every model sees
    the same views, which makes attention measures comparable across models); 'model': the
    Controller's filtered command drives (closed loop).
    """
    from liquid_controller.sim import DrivingWorld, ExpertDriver, WorldConfig, run_episode
    if driver not in ('expert', 'model'):
        raise InputError('driver', driver, "must be 'expert' or 'model'")
    if not isinstance(seconds, (int, float)) or not 0 < seconds <= 3600:
        raise InputError('seconds', seconds, 'must be in (0, 3600]')
    h, w = model.image_size
    world = DrivingWorld(WorldConfig(camera_height=h, camera_width=w))
    col = _Collector(model, settings)
    try:
        expert = None

        def drive(obs, truth):
            nonlocal expert
            if expert is None:
                expert = ExpertDriver(world.scene, seed=seed)
            imu = obs.imu
            col.add_imu(imu.stamps, imu.angular_velocity, imu.linear_acceleration)
            out = col.step(obs.image, obs.stamp, speed=obs.odometry.v, mask=world.road_mask(),
                           truth=(truth.lateral_offset, truth.heading_error))
            expert_cmd = expert.command(truth)
            return tuple(out.command) if driver == 'model' else expert_cmd

        run_episode(world, drive, scene=scene, seconds=float(seconds), seed=seed, progress=progress)
    finally:
        world.close()
    return col.trace(f'sim {scene} seed {seed} {seconds:g} s ({driver} driving)')


def _progress(items, desc, enabled):
    from tqdm import tqdm
    return tqdm(items, desc=desc, disable=not enabled, leave=False)


# -------------------------------------------------------------------------------------------------
# Neuron activity
# -------------------------------------------------------------------------------------------------
def sensory_inputs(policy, trace, batch=256):
    """The network's inputs per frame (T, F) and their names: conv features f0.. (cfc/ltc/lstm) or the
    PilotNet latent l0.. (cnn), then the IMU features as the network sees them (scaled, clipped)."""
    c = policy.config
    feats = []
    with torch.no_grad():
        for a in range(0, len(trace), batch):
            x = torch.from_numpy(trace.frames[a:a + batch]).permute(0, 3, 1, 2).float() / 255.0  # (b,3,H,W)
            imu = policy._imu_features(torch.from_numpy(trace.imu[a:a + batch]).float())         # (b, imu)
            if c.core == 'cnn':
                f = policy.core(x, imu)                                    # (b, 10) PilotNet latent
            else:
                f = policy.head(x)                                         # (b, feature_size)
            feats.append(torch.cat([f, imu], dim=1).numpy())
    prefix = 'l' if c.core == 'cnn' else 'f'
    n_img = feats[0].shape[1] - c.imu_size
    from liquid_controller.runtime.model_file import IMU_FEATURES
    imu_names = list(IMU_FEATURES[:c.imu_size]) if c.imu_size <= 6 else [f'imu{i}' for i in range(c.imu_size)]
    return np.concatenate(feats), [f'{prefix}{i}' for i in range(n_img)] + imu_names


def activity_groups(policy, trace):
    """{group: (values (T, n), names)} in display order: sensory, then the policy's neuron groups.

    Neurons are named as the controller node names them on ``~/neurons`` and replay writes them into
    its output bags (:func:`liquid_controller.messages.diagnostics.neuron_labels`): the group name and
    the rank within the group, ``motor0, motor1, command0.., inter0..`` for liquid cores,
    ``hidden0.., cell0..`` for the LSTM, so a neuron in a plot, a tree rule and a Foxglove panel is
    the same name.
    """
    x, names = sensory_inputs(policy, trace)
    groups = {'sensory': (x, names)}
    labels = policy.neuron_groups()
    size = trace.neurons.shape[1]
    node_names = neuron_labels({g: [int(i) for i in idx] for g, idx in labels.items()}, size)
    for g in ('inter', 'command', 'motor', 'hidden', 'cell'):
        if g in labels and len(labels[g]):
            idx = [int(i) for i in labels[g]]
            groups[g] = (trace.neurons[:, idx], [node_names[i] for i in idx])
    return groups


def tree_features(policy, trace, include_inputs=()):
    """Features for the decision tree and their names.

    Liquid cores: the command neurons (Wang et al.: the command layer is where the NCP decides).
    LSTM: the hidden vector h (what its readout sees). CNN: the PilotNet latent (10 features).
    ``include_inputs``: extra sensory input names (e.g. 'gyro_z', 'f3') appended as features.
    """
    groups = activity_groups(policy, trace)
    key = {'cfc': 'command', 'ltc': 'command', 'lstm': 'hidden', 'cnn': 'sensory'}[policy.config.core]
    x, names = groups[key]
    if policy.config.core == 'cnn':
        keep = [i for i, n in enumerate(names) if n.startswith('l')]
        x, names = x[:, keep], [names[i] for i in keep]
    names = list(names)
    if include_inputs:
        sx, snames = groups['sensory']
        for n in include_inputs:
            if n not in snames:
                raise InputError('include_inputs', n, f'not a sensory input; known: {snames}')
            x = np.concatenate([x, sx[:, [snames.index(n)]]], axis=1)
            names.append(n)
    return x, names


# -------------------------------------------------------------------------------------------------
# Decision trees
# -------------------------------------------------------------------------------------------------
@dataclass
class TreeFit:
    """A fitted regression tree: rules text, size and fidelity (R^2) on train and held-out rows."""

    tree: object
    feature_names: list
    target_name: str
    leaves: int
    r2_train: float
    r2_test: float
    rules: str
    n_train: int
    n_test: int
    holdout: str = 'blocks'

    def to_dict(self):
        d = {k: getattr(self, k) for k in ('feature_names', 'target_name', 'leaves', 'r2_train',
                                           'r2_test', 'rules', 'n_train', 'n_test', 'holdout')}
        d['holdout_text'] = HOLDOUT_TEXT.get(self.holdout, self.holdout)
        d['r2_comment'] = r2_comment(self.r2_test)
        return d


HOLDOUTS = ('blocks', 'tail')
_BLOCKS = 10
# How each hold-out is described in the report and summary (item 10: "held out: blocks stretches").
HOLDOUT_TEXT = {
    'blocks': 'every third of 10 contiguous blocks of the run (whole stretches of driving)',
    'tail': 'the last part of the run (one contiguous stretch)',
}


def r2_comment(r2):
    """One sentence saying what a held-out R^2 (fidelity) means for reading the tree's rules."""
    if r2 is None or not math.isfinite(r2):
        return 'undefined: the command is constant over the held-out frames, so there is nothing to explain'
    if r2 >= 0.9:
        return 'high: the rules reproduce the command on frames the tree never saw'
    if r2 >= 0.5:
        return 'moderate: the rules capture the main trend; details of the command depend on more'
    if r2 >= 0.0:
        return (f'low: the tree explains only {100 * r2:.0f}% of the held-out variance, so its rules are '
                'rough tendencies, not how the network decides (typical for a command that barely '
                'varies, such as a near-constant cruise speed, or one driven by features not given)')
    return ('worse than predicting the mean: the rules do not carry over to held-out driving; do not '
            'read them as an explanation')


def _split(n, test_fraction, holdout='blocks'):
    """Boolean test mask over n frames. 'tail': the last ``test_fraction`` of the run. 'blocks': the run
    cut into 10 contiguous blocks, every k-th block held out (about ``test_fraction``): whole stretches
    of driving are held out (little leakage between neighbouring frames) yet they sample the whole run
    (a short bag's tail alone may be one curve the tree never saw)."""
    if not 0 < test_fraction < 1:
        raise InputError('test_fraction', test_fraction, 'must be in (0, 1)')
    if holdout not in HOLDOUTS:
        raise InputError('holdout', holdout, f'must be one of {HOLDOUTS}')
    test = np.zeros(n, dtype=bool)
    if holdout == 'tail' or n < 4 * _BLOCKS:
        test[n - max(1, int(round(n * test_fraction))):] = True
    else:
        block = np.arange(n) * _BLOCKS // n                    # block id 0..9 of each frame
        step = max(2, int(round(1.0 / test_fraction)))
        test = (block % step) == step - 1
    if (~test).sum() < 2 or test.sum() < 1:
        raise InputError('rows', n, f'too few frames for a train/test split at test_fraction={test_fraction}')
    return test


def _r2(y, pred):
    """R^2; NaN when the target is constant (fidelity is undefined, not perfect)."""
    ss = float(((y - y.mean()) ** 2).sum())
    return float('nan') if ss <= 1e-24 else 1.0 - float(((y - pred) ** 2).sum()) / ss


def fit_tree(x, y, feature_names, max_leaves=16, test_fraction=0.3, target_name='w', seed=0,
             holdout='blocks', decimals=2) -> TreeFit:
    """Fit a regression tree with at most ``max_leaves`` leaves on the training frames and score it on
    held-out frames (see ``_split``: 'blocks' or 'tail', about ``test_fraction`` of them).
    x (T, F) features in time order, y (T,) the command. ``rules`` is sklearn's export_text with
    ``decimals`` digits in thresholds and values."""
    from sklearn.tree import DecisionTreeRegressor, export_text
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise InputError('x', x.shape, f'must be (T, F) with T = len(y) = {y.shape[0]}')
    if len(feature_names) != x.shape[1]:
        raise InputError('feature_names', len(feature_names), f'must name the {x.shape[1]} columns')
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise InputError('x, y', 'non-finite', 'must be finite')
    if isinstance(max_leaves, bool) or not isinstance(max_leaves, (int, np.integer)) or max_leaves < 2:
        raise InputError('max_leaves', max_leaves, 'must be an integer >= 2')
    test = _split(len(y), test_fraction, holdout)
    if holdout == 'blocks' and len(y) < 4 * _BLOCKS:
        holdout = 'tail'  # what _split does for short runs: say what was actually held out
    tree = DecisionTreeRegressor(max_leaf_nodes=int(max_leaves), random_state=seed)
    tree.fit(x[~test], y[~test])
    rules = export_text(tree, feature_names=list(feature_names), decimals=decimals)
    return TreeFit(tree=tree, feature_names=list(feature_names), target_name=target_name,
                   leaves=int(tree.get_n_leaves()), r2_train=_r2(y[~test], tree.predict(x[~test])),
                   r2_test=_r2(y[test], tree.predict(x[test])), rules=rules,
                   n_train=int((~test).sum()), n_test=int(test.sum()), holdout=holdout)


def fidelity_curve(x, y, feature_names, leaf_counts=DEFAULT_LEAF_COUNTS, test_fraction=0.3, holdout='blocks'):
    """Held-out R^2 against tree size: [{'max_leaves', 'leaves', 'r2_train', 'r2_test'}, ...]."""
    out = []
    for k in leaf_counts:
        f = fit_tree(x, y, feature_names, max_leaves=int(k), test_fraction=test_fraction, holdout=holdout)
        out.append({'max_leaves': int(k), 'leaves': f.leaves, 'r2_train': f.r2_train, 'r2_test': f.r2_test})
    return out


# -------------------------------------------------------------------------------------------------
# Attention measures
# -------------------------------------------------------------------------------------------------
def saliency_map(policy, trace, i, method='visual_backprop', samples=8, seed=0, frame=None):
    """Saliency (H, W) in [0, 1] of frame ``i`` of a trace (or of ``frame`` replacing its image)."""
    image = trace.frames[i] if frame is None else frame
    if method == 'visual_backprop':
        return sal.visual_backprop(policy, image)
    if method in ('smoothgrad', 'gradient'):
        return sal.gradient_saliency(policy, image, imu=trace.imu[i], state=trace.state_before[i],
                                     dt=float(trace.dt[i]), samples=samples if method == 'smoothgrad' else 1,
                                     seed=seed)
    raise InputError('method', method, f'must be one of {SALIENCY_METHODS}')


def _noisy(frame, std, rng):
    noisy = frame.astype(np.float64) + rng.normal(0.0, std * 255.0, frame.shape)
    return np.clip(noisy + 0.5, 0, 255).astype(np.uint8)


def attention_metrics(policy, trace, method='visual_backprop', max_frames=30, noise_std=0.05,
                      samples=8, seed=0) -> dict:
    """Attention-on-road share and saliency stability on up to ``max_frames`` evenly spaced frames.

    attention_on_road: mean share of saliency mass on the ground-truth road mask (NaN without masks).
    saliency_ssim: mean SSIM between the saliency of the clean frame and of the frame with Gaussian
    pixel noise of standard deviation ``noise_std`` (fraction of full scale), as in the NCP paper's
    robustness analysis (1 = unchanged by noise).
    """
    if method not in SALIENCY_METHODS:
        raise InputError('method', method, f'must be one of {SALIENCY_METHODS}')
    n = len(trace)
    idx = np.unique(np.linspace(0, n - 1, min(int(max_frames), n)).round().astype(int))
    rng = np.random.default_rng(seed)
    shares, ssims = [], []
    for i in idx:
        m = saliency_map(policy, trace, i, method, samples, seed)
        if trace.road_masks is not None:
            shares.append(sal.road_attention_share(m, trace.road_masks[i]))
        noisy = _noisy(trace.frames[i], noise_std, rng)
        m_noisy = saliency_map(policy, trace, i, method, samples, seed, frame=noisy)
        ssims.append(sal.ssim(m, m_noisy))
    shares = np.asarray(shares, dtype=np.float64)
    road_frac = float(np.mean([trace.road_masks[i].mean() for i in idx])) if trace.road_masks is not None \
        else float('nan')
    return {'method': method, 'frames': int(idx.size), 'noise_std': float(noise_std),
            'attention_on_road': float(np.nanmean(shares)) if np.isfinite(shares).any() else float('nan'),
            'road_pixel_fraction': road_frac,
            'saliency_ssim': float(np.mean(ssims)), 'saliency_ssim_min': float(np.min(ssims))}


def frame_attention(policy, frame, road_mask=None, method='visual_backprop', noise_std=0.05, seed=0,
                    **gradient_kwargs) -> dict:
    """Attention measures of one camera frame, for callers that run their own loop (e.g. a closed-loop
    evaluation with ``world.road_mask()`` at hand).

    frame (H, W, 3) uint8; road_mask (H, W) bool or None; ``gradient_kwargs`` (imu, state, dt,
    samples) go to the gradient methods. Returns {'attention_on_road' (NaN without a mask),
    'saliency_ssim'}; average them over frames for a table row.
    """
    if method not in SALIENCY_METHODS:
        raise InputError('method', method, f'must be one of {SALIENCY_METHODS}')

    def saliency(img):
        if method == 'visual_backprop':
            return sal.visual_backprop(policy, img)
        kw = dict(gradient_kwargs)
        kw.setdefault('samples', 8 if method == 'smoothgrad' else 1)
        return sal.gradient_saliency(policy, img, seed=seed, **kw)

    m = saliency(frame)
    noisy = saliency(_noisy(frame, noise_std, np.random.default_rng(seed)))
    share = sal.road_attention_share(m, road_mask) if road_mask is not None else float('nan')
    return {'attention_on_road': share, 'saliency_ssim': sal.ssim(m, noisy)}


def attention_columns(model, scene='summer', seconds=3.0, seed=0, method='visual_backprop',
                      max_frames=30, noise_std=0.05) -> dict:
    """Comparison-table columns for one model (LoadedModel or model path/name) and scene.

    Runs the simulator for ``seconds`` with the expert driving (every model sees the same views) and
    returns {'attention_on_road', 'saliency_ssim', 'road_pixel_fraction', 'method', 'frames', ...}.
    ``road_pixel_fraction`` is the chance level: a map spread evenly scores that share.
    """
    if not hasattr(model, 'policy'):
        from liquid_controller.runtime.model_file import load_model
        model = load_model(model)
    trace = run_sim(model, scene=scene, seconds=seconds, seed=seed, driver='expert')
    out = attention_metrics(model.policy, trace, method=method, max_frames=max_frames,
                            noise_std=noise_std, seed=seed)
    out['scene'] = scene if isinstance(scene, str) else str(scene)
    return out


# -------------------------------------------------------------------------------------------------
# Plots (matplotlib, Agg)
# -------------------------------------------------------------------------------------------------
def _plt():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def plot_neuron_activity(groups, stamps, nominal, path, title=''):
    """One panel per group (sensory, inter, command, motor / hidden, cell), every neuron's value over
    time, plus the nominal command. Large groups (> 24 signals) are drawn as a heat map."""
    plt = _plt()
    names = list(groups)
    fig, axes = plt.subplots(len(names) + 1, 1, figsize=(10, 2.0 * (len(names) + 1)), sharex=True,
                             squeeze=False)
    t = np.asarray(stamps) - stamps[0]
    for ax, g in zip(axes[:, 0], names):
        values, labels = groups[g]
        if values.shape[1] > 24:
            # z-score each signal: inputs differ in scale (gravity ~1 after scaling, features ~0.1)
            z = (values - values.mean(axis=0)) / np.maximum(values.std(axis=0), 1e-9)
            im = ax.imshow(z.T, aspect='auto', cmap='coolwarm', interpolation='nearest',
                           extent=(t[0], t[-1] if len(t) > 1 else 1.0, values.shape[1] - 0.5, -0.5))
            fig.colorbar(im, ax=ax, pad=0.01)
            ax.set_ylabel(f'{g} ({values.shape[1]})\nz-scored')
        else:
            for k in range(values.shape[1]):
                ax.plot(t, values[:, k], lw=1.0, label=labels[k])
            ax.set_ylabel(g)
            ax.legend(fontsize=6, ncol=min(10, values.shape[1]), loc='upper right')
        ax.grid(alpha=0.3)
    ax = axes[-1, 0]
    ax.plot(t, nominal[:, 0], label='v (m/s)')
    ax.plot(t, nominal[:, 1], label='w (rad/s)')
    ax.set_ylabel('command')
    ax.set_xlabel('time (s)')
    ax.legend(fontsize=7, loc='upper right')
    ax.grid(alpha=0.3)
    fig.suptitle(title or 'Neuron activity by layer')
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)


TREE_DIAGRAM_DEPTH = 3      # levels drawn: 8 boxes across at most, readable at page width
TREE_DIAGRAM_WIDTH_IN = 11.0  # inches at 100 dpi: 1100 px, about the width of a report page


def plot_tree(fit: TreeFit, path, max_depth=TREE_DIAGRAM_DEPTH):
    """Diagram of a fitted tree as PNG, readable at page width, plus the full rules as text.

    Only the top ``max_depth`` levels are drawn (sklearn.tree.plot_tree; deeper subtrees show as
    "(...)"), on a page-wide figure with a legible font: a 16-leaf tree drawn whole was 2300 px wide,
    unreadable when shrunk into a page. The complete tree is written next to the PNG as
    ``<name>.txt`` (the same rules as ``fit.rules``). Returns the PNG path.
    """
    from sklearn.tree import plot_tree as sk_plot_tree
    if isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 1:
        raise InputError('max_depth', max_depth, 'must be an integer >= 1')
    plt = _plt()
    depth = int(fit.tree.get_depth())
    shown = min(depth, max_depth)
    fig, ax = plt.subplots(figsize=(TREE_DIAGRAM_WIDTH_IN, 1.4 + 1.3 * (shown + 1)))
    sk_plot_tree(fit.tree, feature_names=fit.feature_names, filled=True, rounded=True, precision=2,
                 fontsize=7, ax=ax, impurity=False, max_depth=max_depth, proportion=True)
    levels = f'all {depth} levels' if depth <= max_depth else f'top {shown} of {depth} levels'
    ax.set_title(f'{fit.target_name}: {fit.leaves} leaves ({levels}; full rules in {Path(path).stem}.txt), '
                 f'held-out R^2 = {fit.r2_test:.2f}', fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    Path(path).with_suffix('.txt').write_text(
        f'# {fit.target_name}: {fit.leaves} leaves, held-out R^2 = {fit.r2_test:.3f} '
        f'({r2_comment(fit.r2_test)})\n{fit.rules}')
    return Path(path)


def plot_fidelity(curves, path):
    """Held-out R^2 against number of leaves; ``curves`` = {label: fidelity_curve(...)}."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, rows in curves.items():
        ax.plot([r['leaves'] for r in rows], [r['r2_test'] for r in rows], 'o-', label=label)
    ax.set_xscale('log', base=2)
    ax.set_xlabel('leaves')
    ax.set_ylabel('held-out R^2 (fidelity)')
    ax.axhline(0.9, color='grey', ls='--', lw=0.8)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)


def save_attention_examples(policy, trace, path, count=3, samples=8):
    """Grid PNG: for ``count`` evenly spaced frames, the frame, the VisualBackProp overlay, the
    SmoothGrad overlay and (sim runs) the road mask."""
    from PIL import Image
    n = len(trace)
    idx = np.unique(np.linspace(0, n - 1, min(count, n)).round().astype(int))
    rows = []
    for i in idx:
        f = trace.frames[i]
        tiles = [f, sal.attention_overlay(f, saliency_map(policy, trace, i, 'visual_backprop')),
                 sal.attention_overlay(f, saliency_map(policy, trace, i, 'smoothgrad', samples=samples))]
        if trace.road_masks is not None:
            tiles.append(np.repeat((trace.road_masks[i][..., None] * 255).astype(np.uint8), 3, axis=2))
        rows.append(np.concatenate(tiles, axis=1))
    grid = np.concatenate(rows, axis=0)
    scale = max(1, 1024 // grid.shape[1])                      # small frames: enlarge for viewing
    img = Image.fromarray(grid)
    if scale > 1:
        img = img.resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST)
    labels = ATTENTION_COLUMNS[:len(tiles)]
    _label_columns(img, labels, tile_width=trace.frames[idx[0]].shape[1] * scale).save(path)
    return Path(path)


# Column titles of attention.png, in the order save_attention_examples draws the tiles.
ATTENTION_COLUMNS = ('camera frame', 'VisualBackProp', 'SmoothGrad', 'road mask (ground truth)')
ATTENTION_HEADER_PX = 24


def _label_columns(img, labels, tile_width):
    """``img`` with a white header band naming each column (one label per ``tile_width`` pixels)."""
    from PIL import Image, ImageDraw, ImageFont
    out = Image.new('RGB', (img.width, img.height + ATTENTION_HEADER_PX), 'white')
    out.paste(img, (0, ATTENTION_HEADER_PX))
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default(size=14)
    for i, label in enumerate(labels):
        left, _, right, _ = draw.textbbox((0, 0), label, font=font)
        x = i * tile_width + max(2, (tile_width - (right - left)) // 2)
        draw.text((x, 4), label, fill='black', font=font)
    return out


# -------------------------------------------------------------------------------------------------
# The whole analysis for one model
# -------------------------------------------------------------------------------------------------
@dataclass
class ExplainResult:
    """Everything the report shows for one model (paths to PNGs, numbers, rules)."""

    name: str
    card: dict
    source: str
    frames: int
    tree: dict
    fidelity: list
    attention: dict
    images: dict = field(default_factory=dict)       # label -> PNG path
    baseline: Optional['ExplainResult'] = None

    def to_dict(self):
        d = {k: getattr(self, k) for k in ('name', 'source', 'frames', 'tree', 'fidelity', 'attention')}
        d['images'] = {k: str(v) for k, v in self.images.items()}
        d['card'] = {k: self.card.get(k) for k in ('name', 'untrained', 'description', 'policy', 'wiring')}
        if self.baseline is not None:
            d['baseline'] = self.baseline.to_dict()
        return d


def explain_model(model, out_dir, bag=None, scene=None, sim_seconds=3.0, max_leaves=16,
                  leaf_counts=DEFAULT_LEAF_COUNTS, include_inputs=(), attention_frames=30,
                  noise_std=0.05, max_frames=None, seed=0, progress=False, prefix='',
                  settings=None) -> ExplainResult:
    """Run the whole analysis of one model and write its PNGs into ``out_dir``.

    Data: ``bag`` (replayed through the Controller) and/or ``scene`` (a simulator run of
    ``sim_seconds`` with the expert driving, which also gives the road masks). Trees and activity use
    the bag when given, else the sim run; attention-on-road needs the sim run. ``settings``: the
    controller node's settings (None: config/controller.yaml).
    """
    if bag is None and scene is None:
        raise InputError('bag/scene', None, 'give a bag, a scene, or both')
    if not hasattr(model, 'policy'):
        from liquid_controller.runtime.model_file import load_model
        model = load_model(model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    policy = model.policy.eval()
    name = model.card.name
    sim_trace = run_sim(model, scene=scene, seconds=sim_seconds, seed=seed, progress=progress,
                        settings=settings) if scene is not None else None
    trace = run_bag(model, bag, max_frames=max_frames, progress=progress, settings=settings) \
        if bag is not None else sim_trace
    images = {}
    groups = activity_groups(policy, trace)
    images['neuron activity'] = plot_neuron_activity(groups, trace.stamps, trace.nominal,
                                                     out / f'{prefix}neurons.png', f'{name}: neuron activity')
    x, names = tree_features(policy, trace, include_inputs)
    fit = fit_tree(x, trace.nominal[:, 1], names, max_leaves=max_leaves, target_name='w (rad/s)')
    images['decision tree'] = plot_tree(fit, out / f'{prefix}tree.png')  # and {prefix}tree.txt
    fidelity = fidelity_curve(x, trace.nominal[:, 1], names, leaf_counts)
    att_trace = sim_trace if sim_trace is not None else trace
    attention = {m: attention_metrics(policy, att_trace, method=m, max_frames=attention_frames,
                                      noise_std=noise_std, seed=seed)
                 for m in ('visual_backprop', 'smoothgrad')}
    images['attention'] = save_attention_examples(policy, att_trace, out / f'{prefix}attention.png')
    tree = fit.to_dict()
    speed = fit_tree(x, trace.nominal[:, 0], names, max_leaves=max_leaves, target_name='v (m/s)')
    tree['speed_r2_test'] = speed.r2_test
    tree['speed_r2_comment'] = r2_comment(speed.r2_test)
    tree['speed_std'] = float(np.std(trace.nominal[:, 0]))  # how much there was to explain (m/s)
    return ExplainResult(name=name, card=model.card.to_dict(), source=trace.source
                         + (f'; attention on {sim_trace.source}' if sim_trace is not None and bag else ''),
                         frames=len(trace), tree=tree, fidelity=fidelity, attention=attention, images=images)


def write_summary(result: ExplainResult, path):
    """The numbers of an ExplainResult as JSON (NaN written as null)."""
    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v
    Path(path).write_text(json.dumps(clean(result.to_dict()), indent=2) + '\n')
    return Path(path)


def run_explanation(model, out_dir, bag=None, scene=None, baseline=None, progress=False, **kwargs):
    """Explain ``model`` (and optionally a ``baseline`` model, e.g. the LSTM, on the same data) and write
    into ``out_dir``: PNGs, ``fidelity.png`` (both models), ``summary.json`` and ``report.html``.

    ``kwargs`` go to :func:`explain_model` (sim_seconds, max_leaves, leaf_counts, include_inputs,
    attention_frames, noise_std, max_frames, seed). Returns the ExplainResult (baseline attached).
    """
    from liquid_controller.explain.report import write_report
    out = Path(out_dir)
    result = explain_model(model, out, bag=bag, scene=scene, progress=progress, **kwargs)
    curves = {result.name: result.fidelity}
    if baseline is not None:
        base_kwargs = dict(kwargs)
        base_kwargs.pop('include_inputs', None)          # input names differ between model types
        result.baseline = explain_model(baseline, out, bag=bag, scene=scene, progress=progress,
                                        prefix='baseline_', **base_kwargs)
        label = result.baseline.name if result.baseline.name != result.name else f'{result.name} (baseline)'
        curves[label] = result.baseline.fidelity
    result.images['fidelity'] = plot_fidelity(curves, out / 'fidelity.png')
    write_summary(result, out / 'summary.json')
    write_report(result, out / 'report.html')
    return result
