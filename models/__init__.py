"""Pure scoring for formwise: the knowledge base as arrays, profiles as features, and the
vectorized engine that ranks forms and applies the hard safety rules. Never imports Flask."""
