from setuptools import setup

setup(
    name="longcat-flash-plugins",
    version="0.1.0",
    description="vLLM and SGLang plugins serving Meituan's LongCat-Flash models",
    python_requires=">=3.10",
    # common/ installs as longcat_common: a top-level "common" package would collide.
    package_dir={"longcat_common": "common", "longcat_vllm": "longcat_vllm", "longcat_sglang": "longcat_sglang"},
    packages=["longcat_common", "longcat_vllm", "longcat_sglang"],
    install_requires=["torch", "safetensors"],
    extras_require={
        "vllm": ["vllm>=0.32,<0.33"],
        "sglang": ["sglang==0.5.23"],
        "test": ["pytest", "transformers==5.19.0", "tokenizers", "openai", "requests"],
    },
    entry_points={
        "vllm.general_plugins": ["longcat_flash = longcat_vllm.plugin:register"],
        # loaded before the API server validates --tool-call-parser (longcat_vllm/plugin.py)
        "vllm.platform_plugins": ["longcat_flash_parsers = longcat_vllm.plugin:register_parsers_as_platform_plugin"],
        "vllm.stat_logger_plugins": ["longcat_flash_metrics = longcat_vllm.metrics:LongcatStatLogger"],
        "sglang.srt.plugins": ["longcat_flash = longcat_sglang.plugin:register"],
    },
)
