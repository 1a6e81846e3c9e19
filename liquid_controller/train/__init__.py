"""Layer 6: the trainer, its configs and model export."""
