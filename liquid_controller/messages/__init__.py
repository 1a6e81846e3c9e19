"""Layer 5: ROS message conversion (sensor_msgs / geometry_msgs / nav_msgs <-> numpy), the layouts of the
debug and diagnostics messages, and the QoS profiles. Used by the nodes (ros/) and by everything that
reads or writes bags (data/). rclpy message modules are imported lazily, so the decoders also work on
messages deserialised from bags without a ROS install."""
