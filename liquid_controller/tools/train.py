"""`liquid-controller train --config FILE --bags PATH... --out models/NAME`: train a policy from bags.

Thin: parses arguments and calls :func:`liquid_controller.train.trainer.train`. Prepared data is cached
(``--cache``), checkpoints and learning curves go to ``--run-dir``; ``--resume`` continues a run.
"""
import json
import sys
from pathlib import Path


def register(sub):
    """Add the `train` subcommand."""
    p = sub.add_parser('train', help='train a policy from rosbag2 bags (camera, IMU, cmd_vel)',
                       description='Train a driving policy from rosbag2 bags and write models/NAME.json '
                                   '+ .safetensors.')
    p.add_argument('--config', required=True, metavar='FILE',
                   help='training config YAML (e.g. config/train_cfc.yaml; a bare name is looked up '
                        'in the package config/ folder)')
    p.add_argument('--bags', required=True, nargs='+', metavar='PATH',
                   help='bag directories, or folders searched for bags')
    p.add_argument('--out', required=True, metavar='PATH',
                   help='model file to write, e.g. models/cfc_mine (an existing one only with --force)')
    p.add_argument('--force', action='store_true',
                   help='overwrite the model file --out when it already exists')
    p.add_argument('--run-dir', metavar='DIR', help='checkpoints, config and curves (default out/train/NAME)')
    p.add_argument('--cache', metavar='DIR', help='prepared-data cache (default out/cache)')
    p.add_argument('--resume', action='store_true',
                   help='continue from the checkpoint in --run-dir (an error when there is none)')
    p.add_argument('--prepare-only', action='store_true', help='only decode and cache the bags')
    p.add_argument('--max-steps', type=int, metavar='N', help='override train.max_steps')
    p.add_argument('--epochs', type=int, metavar='N', help='override train.epochs')
    p.add_argument('--device', choices=('auto', 'cpu', 'cuda'), help='override train.device')
    p.add_argument('--seed', type=int, help='override train.seed (data order, augmentation)')
    p.add_argument('--quiet', action='store_true', help='no progress bars')
    p.set_defaults(func=run)


def _config_path(value):
    path = Path(value)
    if path.exists() or path.parent != Path('.'):
        return path
    from liquid_controller.paths import config_file
    return config_file(value if value.endswith(('.yaml', '.yml')) else value + '.yaml')


def model_files(out):
    """(card, weights) paths save_model writes for ``--out`` (its naming rule)."""
    out = Path(out)
    card = out.with_suffix('.json') if out.suffix in ('', '.json', '.safetensors') else Path(str(out) + '.json')
    return card, card.with_suffix('.safetensors')


def _log(line):
    print(line, file=sys.stderr if line.startswith('warning:') else sys.stdout, flush=True)


def run(args):
    from liquid_controller.errors import BagError, InputError, ModelFileError
    from liquid_controller.train.config import TrainConfig
    try:
        config = TrainConfig.load(_config_path(args.config))
        overrides = {k: getattr(args, k) for k in ('max_steps', 'epochs', 'device', 'seed')
                     if getattr(args, k) is not None}
        if overrides:
            data = config.to_dict()
            data['train'].update(overrides)
            config = TrainConfig.from_dict(data)
        out = Path(args.out)
        run_dir = Path(args.run_dir) if args.run_dir else Path('out') / 'train' / out.name
        cache_dir = Path(args.cache) if args.cache else Path('out') / 'cache'
        from liquid_controller.data.dataset import find_bags
        find_bags(args.bags)                     # cheap: a missing bag is named before anything else
        if not args.prepare_only:
            existing = [p for p in model_files(out) if p.exists()]
            if existing and not args.force:
                print(f'liquid-controller train: error: {existing[0]} already exists; pass --force to '
                      'overwrite it, or choose another --out', file=sys.stderr)
                return 1
            from liquid_controller.train import checkpoint as ckpt
            if args.resume and not ckpt.has_checkpoint(run_dir):
                print(f'liquid-controller train: error: --resume: no checkpoint in {run_dir} '
                      f'({ckpt.STATE_FILE} missing); run without --resume to start a new run, or pass '
                      'the --run-dir of the run to continue', file=sys.stderr)
                return 1
        if args.prepare_only:
            from liquid_controller.data.dataset import prepare
            prepared = prepare(args.bags, cache_dir, config.dataset, progress=not args.quiet)
            print(json.dumps({'cache': str(cache_dir), 'built': prepared.built, 'reused': prepared.reused,
                              **prepared.summary()}, indent=1))
            return 0
        from liquid_controller.train.trainer import train
        result = train(config, args.bags, out, run_dir=run_dir, cache_dir=cache_dir, resume=args.resume,
                       progress=not args.quiet, log=_log)
    except (InputError, BagError, ModelFileError) as exc:
        print(f'liquid-controller train: error: {exc}', file=sys.stderr)
        return 1
    if result.rank != 0:
        return 0                                  # under torchrun, rank 0 reports for all processes
    shown = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in result.metrics.items()}
    print(f'model: {result.model_path}  steps: {result.steps}  stopped: {result.stopped}')
    print(f'curves: {result.curves_path}  checkpoints: {result.run_dir}')
    print('metrics: ' + json.dumps(shown))
    return 0
