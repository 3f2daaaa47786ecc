"""The toy world `toyworld` was trained on: its scenes, clips and truth (scene.py) and the classifier that judges
pictures of it (measure.py). numpy only: the CLI, the benchmarks and the tests import it without torch."""
