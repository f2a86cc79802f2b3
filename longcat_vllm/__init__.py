"""vLLM adapter: registers LongCat-Flash model classes built from vLLM's layers and longcat_common."""
