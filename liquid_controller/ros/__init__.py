"""Layer 7: the rclpy nodes (controller_node, sim_node, the episode monitor, the DDS bag player and topic
recorder) and the helpers that start and drive them (lifecycle client, process bringup). Thin adapters:
messages in, the layers below do the work, messages out."""
