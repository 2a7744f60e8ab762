"""What the node tells its operators: health, metrics, operational and environmental monitoring."""
