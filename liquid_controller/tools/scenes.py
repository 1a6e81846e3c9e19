"""`liquid-controller scenes generate --family {appearance,shape,both} --count N --seed S --out DIR`:
seeded procedural scenes (new looks, new tracks, or both), each checked drivable by the expert.

Thin: calls :mod:`liquid_controller.sim.scene_generator`. Writes one readable YAML file per scene
(load it with ``--scenes DIR/NAME.yaml`` in evaluate, or edit it) and ``DIR/contact_sheet.png``, one
camera frame per scene. The same family, seed and count always give the same files.
"""
import shlex
import sys
from pathlib import Path


def register(sub):
    """Add the `scenes` subcommand (with its `generate` action)."""
    p = sub.add_parser('scenes', help='generate procedural scenes (new looks, new tracks)',
                       description='Procedural scenes for training and held-out evaluation.')
    actions = p.add_subparsers(dest='action', metavar='ACTION', required=True,
                               help='generate: write N seeded scenes and a contact sheet')
    g = actions.add_parser('generate', help='write N generated scene YAML files and a contact sheet',
                           description='Write N seeded scenes of a family (appearance: the training '
                                       'track with new looks; shape: new tracks in the training looks; '
                                       'both) as YAML files, plus contact_sheet.png. Every track is '
                                       'driven by the expert and redrawn unless it completes a lap '
                                       'cleanly.')
    g.add_argument('--family', required=True, choices=('appearance', 'shape', 'both'),
                   help='appearance: training track, new looks; shape: new tracks, training looks; both')
    g.add_argument('--count', type=int, required=True, metavar='N', help='number of scenes')
    g.add_argument('--seed', type=int, required=True, metavar='S', help='generator seed (>= 0)')
    g.add_argument('--out', required=True, metavar='DIR', help='output folder')
    g.add_argument('--min-radius', type=float, default=1.2, metavar='M',
                   help='smallest corner radius of new tracks, m (default 1.2)')
    g.add_argument('--max-radius', type=float, default=5.0, metavar='M',
                   help='largest corner radius of new tracks, m (default 5.0)')
    g.add_argument('--lane-width', default='0.8,1.4', metavar='MIN,MAX',
                   help='lane width range of new tracks, m (default 0.8,1.4)')
    g.add_argument('--no-sheet', action='store_true', help='skip the contact sheet (no rendering)')
    g.add_argument('--quiet', action='store_true', help='no progress bar')
    g.set_defaults(func=run)


def run(args):
    """Run `scenes generate`; returns the exit code (1 with a one-line error on bad input)."""
    from liquid_controller.errors import InputError, SceneError
    from liquid_controller.sim import scene_generator as sg
    from liquid_controller.sim.rendering import RenderBackendError
    try:
        try:
            lane = tuple(float(x) for x in args.lane_width.split(','))
        except ValueError:
            raise InputError('lane-width', args.lane_width, 'expected MIN,MAX in metres') from None
        config = sg.GeneratorConfig(corner_radius=(args.min_radius, args.max_radius), lane_width=lane)
        generated = sg.generate_scenes(args.family, args.count, args.seed, config,
                                       progress=not args.quiet)
        command = shlex.join(['liquid-controller', 'scenes', 'generate', '--family', args.family,
                              '--count', str(args.count), '--seed', str(args.seed), '--out', args.out]
                             + (['--min-radius', f'{args.min_radius:g}'] if args.min_radius != 1.2 else [])
                             + (['--max-radius', f'{args.max_radius:g}'] if args.max_radius != 5.0 else [])
                             + (['--lane-width', args.lane_width] if args.lane_width != '0.8,1.4' else []))
        out = Path(args.out)
        paths = [sg.write_scene(g, out, command) for g in generated]
        sheet = None if args.no_sheet else sg.contact_sheet(generated, out / 'contact_sheet.png')
    except (InputError, SceneError, RenderBackendError) as exc:
        print(f'liquid-controller scenes: error: {exc}', file=sys.stderr)
        return 1
    for g, path in zip(generated, paths):
        f = g.features
        print(f'{path}  {f["left_corners"]} left / {f["right_corners"]} right corners, '
              f'{f["hairpins"]} hairpin(s), '
              f'min radius {f["min_radius_m"]} m, lane {g.scene.track.lane_width:g} m, '
              f'{g.scene.track.direction}')
    if sheet:
        print(f'contact sheet: {sheet}')
    return 0
