"""Engine-free LongCat-Flash layer logic shared by the vLLM and SGLang adapters."""

__version__ = "0.1.0"
