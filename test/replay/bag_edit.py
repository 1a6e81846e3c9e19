"""Rewrite a bag with edits, for the replay tests: other storage, raw Image instead of JPEG, renamed
topics, dropped topics, swapped stamps, a damaged record. Uses the package's BagWriter and rosbags."""
import numpy as np
from rosbags.typesys import Stores, get_typestore

from liquid_controller.data.bag import BagWriter
from liquid_controller.data.bag_source import open_bag_source

STORE = get_typestore(Stores.ROS2_KILTED)
CAMERA = '/camera/image_raw/compressed'


def read_all(src):
    """[(topic, bag_ns, msgtype, raw)] and {topic: TopicInfo} of a bag."""
    source = open_bag_source(src)
    try:
        return list(source.messages()), dict(source.topics)
    finally:
        source.close()


def rewrite(src, dst, storage='mcap', edit=None, types=None):
    """Copy ``src`` to ``dst``. ``edit(i, topic, bag_ns, msgtype, raw)`` returns None (drop) or
    (topic, bag_ns, msgtype, data) with data raw bytes or a rosbags message; ``types`` gives the type
    of renamed/new topics ({topic: msgtype})."""
    messages, topics = read_all(src)
    events = []
    for i, (topic, ns, msgtype, raw) in enumerate(messages):
        ev = (topic, ns, msgtype, raw) if edit is None else edit(i, topic, ns, msgtype, raw)
        if ev is not None:
            events.append(ev)
    with BagWriter(dst, storage=storage) as out:
        declared = set()
        for topic, ns, msgtype, data in events:
            if topic not in declared:
                info = topics.get(topic)
                qos = info.offered_qos[0] if info is not None and info.offered_qos else None
                out.add_topic(topic, (types or {}).get(topic, msgtype), qos=qos)
                declared.add(topic)
            out.write(topic, ns, data)
    return events


def to_raw_image(i, topic, ns, msgtype, raw):
    """Edit: CompressedImage (JPEG) -> Image rgb8 with the same decoded pixels on /camera/image_raw."""
    if topic != CAMERA:
        return topic, ns, msgtype, raw
    from liquid_controller.messages import convert
    msg = STORE.deserialize_cdr(raw, msgtype)
    pixels = convert.decode_compressed_image(msg)
    Image = STORE.types['sensor_msgs/msg/Image']
    h, w = pixels.shape[:2]
    img = Image(header=msg.header, height=h, width=w, encoding='rgb8', is_bigendian=0, step=w * 3,
                data=np.ascontiguousarray(pixels).reshape(-1))
    return '/camera/image_raw', ns, 'sensor_msgs/msg/Image', img


def with_header_stamp(raw, msgtype, stamp_ns):
    """The message with its header stamp replaced (CDR re-serialised)."""
    msg = STORE.deserialize_cdr(raw, msgtype)
    Time = STORE.types['builtin_interfaces/msg/Time']
    msg.header.stamp = Time(sec=int(stamp_ns // 10**9), nanosec=int(stamp_ns % 10**9))
    return msg
