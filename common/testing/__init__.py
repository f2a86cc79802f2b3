"""Test-checkpoint generator (``python -m longcat_common.testing.tiny OUT_DIR``): tiny LongCat checkpoints
with a tokenizer and chat templates, made locally; not imported by the runtime modules."""
