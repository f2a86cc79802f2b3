"""`pip install .` (what the README says) into this vLLM environment changes none of its packages."""

from tests.install_check import packages_pip_would_change


def test_installing_the_plugin_changes_no_package_of_the_engine_environment():
    assert packages_pip_would_change() == {}
