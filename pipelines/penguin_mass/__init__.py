"""A regression pipeline: a penguin's body mass from its species, island, sex and measurements."""
