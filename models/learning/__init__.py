"""Learning the engine's weights: the pairwise ranker, its training on judged cases and
reported outcomes, and the artifact file the service loads."""
