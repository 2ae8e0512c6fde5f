"""The knowledge base: the sourced files in ``formwise.data`` loaded and checked, the
contract's vocabularies, clinical codes and the interface texts."""
