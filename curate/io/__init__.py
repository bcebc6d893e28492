"""Readers of input tables and writers of shards, ledgers and uid lists."""
