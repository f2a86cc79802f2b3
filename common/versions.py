"""The one engine-version check both adapters run once at registration (longcat_vllm/compat.py,
longcat_sglang/compat.py hold each engine's range)."""

from packaging.specifiers import SpecifierSet


def version_problem(engine: str, installed: str, supported: str, transformers: dict[str, str]) -> str | None:
    """The warning line for ``installed`` outside ``supported`` (a PEP 440 specifier), None inside it.
    ``transformers``: release -> the transformers version or range that release pins."""
    if SpecifierSet(supported).contains(installed, prereleases=True):
        return None
    pins = ", ".join(f"{release}: {pin}" for release, pin in transformers.items())
    return (f"longcat-flash-plugins: {engine} {installed} is outside the supported range {supported} "
            f"(transformers per release: {pins}); LongCat is served by our classes, untested on this release")
