"""Regenerate the summer_lane scenario: a 2 s driving bag, an untrained model and the golden outputs.

    python test/bags/summer_lane/generate.py            # bag + model + golden (re-records the bag)
    python test/bags/summer_lane/generate.py --golden   # golden only, from the committed bag and model
    python test/bags/summer_lane/generate.py --compare  # replay, print the differences to golden.npz

The bag is recorded in the MuJoCo world (``summer`` scene, expert driver with its default perturbations,
seed 0, 60 frames of 64x128 at 30 Hz, IMU at 200 Hz), then rewritten with the camera as
sensor_msgs/CompressedImage (JPEG quality 90) to keep it small (the replay decodes both transports);
everything else is copied unchanged. The model is a random-weight model file (its card says UNTRAINED):
the golden outputs pin down the replay and runtime maths, not driving quality. Rerun with ``--golden``
after an intended change of the runtime, and review the diff of the commands in the commit.

Tests compare golden.npz only through the tolerances in thresholds.yaml: another CPU (or
``ONEDNN_MAX_CPU_ISA=AVX2`` / ``OPENBLAS_CORETYPE=Haswell`` on this one) moves the float32 outputs by an
ulp or so. Do not regenerate the golden because of such a difference: ``--compare`` (also printed by
``--golden`` before it overwrites) shows the largest difference per array next to its tolerance; run it
under those variables when re-measuring the tolerances.
"""
import argparse
import io
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
BAG = HERE / 'bag'
MODEL = HERE / 'model.json'
GOLDEN = HERE / 'golden.npz'
SECONDS = 2.0
JPEG_QUALITY = 90


def record_bag():
    from PIL import Image as PILImage

    from liquid_controller.data.bag import BagWriter
    from liquid_controller.data.bag_source import open_bag_source
    from liquid_controller.data.recording import record_expert
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / 'raw'
        record_expert('summer', minutes=SECONDS / 60.0, out=raw, seed=0, progress=False)
        source = open_bag_source(raw)
        shutil.rmtree(BAG, ignore_errors=True)
        with BagWriter(BAG) as out:
            for name, info in source.topics.items():
                if name == '/camera/image_raw':
                    out.add_topic('/camera/image_raw/compressed', 'sensor_msgs/msg/CompressedImage', qos='image')
                else:
                    out.add_topic(name, info.msgtype, qos=info.offered_qos[0] if info.offered_qos else None)
            out.set_custom_data('liquid_controller.scenario', 'summer_lane: see test/bags/summer_lane/generate.py')
            for topic, stamp_ns, msgtype, data in source.messages():
                if topic == '/camera/image_raw':
                    from liquid_controller.messages import convert
                    msg = store.deserialize_cdr(data, msgtype)
                    buf = io.BytesIO()
                    PILImage.fromarray(convert.decode_image(msg)).save(buf, 'JPEG', quality=JPEG_QUALITY)
                    Compressed = store.types['sensor_msgs/msg/CompressedImage']
                    import numpy as np
                    cmsg = Compressed(header=msg.header, format='rgb8; jpeg compressed rgb8',
                                      data=np.frombuffer(buf.getvalue(), dtype=np.uint8))
                    out.write('/camera/image_raw/compressed', stamp_ns, cmsg)
                else:
                    out.write(topic, stamp_ns, data)
        source.close()


def make_model():
    from liquid_controller.runtime.model_file import create_random_model
    create_random_model(MODEL, name='summer_lane_untrained', seed=0)


def replay():
    from liquid_controller.data.replay import replay_bag
    from liquid_controller.testing import load_scenario
    scenario = load_scenario(HERE)  # the topics and tolerances of thresholds.yaml
    return scenario, replay_bag(scenario.bag, scenario.model, config=scenario.replay_config())


def compare(scenario, result):
    """Print max |replay - golden.npz| per array with its tolerance; True when within all of them."""
    import numpy as np
    from liquid_controller.testing import assert_matches_golden
    from liquid_controller.testing.regression import COMPARED, _tolerances
    if not GOLDEN.exists():
        print(f'{GOLDEN} does not exist yet')
        return False
    with np.load(GOLDEN) as data:
        golden = {k: data[k] for k in data.files}
    if result.frames != golden['stamps'].shape[0]:
        print(f'replay has {result.frames} frames, golden {golden["stamps"].shape[0]}')
        return False
    tol = _tolerances(scenario.tolerances)
    print(f'max |replay - {GOLDEN.name}|:')
    print(f'  stamps   {np.abs(result.stamps - golden["stamps"]).max(initial=0):.3g} s')
    for name in COMPARED:
        a, b = getattr(result, name).astype(np.float64), golden[name].astype(np.float64)
        t = tol[name]
        print(f'  {name:8s} {np.abs(a - b).max(initial=0):.3g}  ({int((a != b).sum())} of {a.size} values differ; '
              f'tolerance atol {t.atol:g} + rtol {t.rtol:g} * |golden|)')
    statuses = [str(s) for s in golden['status'].tolist()]
    print(f'  status   {"equal" if result.status == statuses else "DIFFERENT"}')
    try:
        assert_matches_golden(result, golden, scenario.tolerances, statuses_equal=scenario.statuses_equal)
    except AssertionError as exc:
        print(f'outside the tolerances of thresholds.yaml: {exc}')
        return False
    print('within the tolerances of thresholds.yaml')
    return True


def make_golden():
    scenario, result = replay()
    if GOLDEN.exists():
        compare(scenario, result)  # what the new golden changes (an ulp or so: only another CPU)
    result.save_npz(GOLDEN)
    print(result.format_metrics())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--golden', action='store_true', help='only regenerate golden.npz')
    parser.add_argument('--compare', action='store_true',
                        help='write nothing: replay and print the differences to golden.npz (exit 1 when '
                             'outside the tolerances of thresholds.yaml)')
    args = parser.parse_args(argv)
    if args.compare:
        return 0 if compare(*replay()) else 1
    if not args.golden:
        record_bag()
        make_model()
    make_golden()
    return 0


if __name__ == '__main__':
    sys.exit(main())
