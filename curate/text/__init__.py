"""Text resources for caption stages: WordNet, closed-class word lists, tokens."""
