"""The viewer's AI: controller, panel, CAM overlay, study-tree column, inference worker."""
