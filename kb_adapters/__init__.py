"""Built-in KB adapters (wikidata, sql, jsonl, csv), registered through the ``glinker.kb_adapters`` entry points."""
