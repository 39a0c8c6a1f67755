"""Plain-Python pipelines: the config tree, camera readers, patrols and the fleet that runs them."""
