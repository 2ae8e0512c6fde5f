"""Pure scoring for formwise, never importing Flask, in three rooms:

- ``knowledge``: the knowledge base in ``formwise.data`` loaded and checked (forms, rules,
  medicines, clinical codes, interface texts) and the contract's vocabularies;
- ``engine``: profiles as features, the compiled kernel that scores, masks, ranks and doses,
  the answers built from its arrays, medicine matching and the timing plan;
- ``learning``: the ranker that learns the engine's weights, its training and the artifact
  file the service loads.

``recommender.Recommender`` puts them together: the one entry point every adapter calls."""
