"""The one vectorized engine: profiles as feature arrays, the compiled kernel that scores,
masks, ranks and doses every form for every profile, the answers built from its arrays,
medicine matching and the timing plan."""
