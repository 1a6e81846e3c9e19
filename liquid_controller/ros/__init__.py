"""Layer 4: rclpy nodes and message conversion only. No maths that the runtime lacks."""
