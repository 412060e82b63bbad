"""The launch file, read without `launch` (not installable here): it parses, documents every
argument, and names only executables, config and rviz files that the package installs."""

from __future__ import annotations

import ast
import importlib
import os
import runpy
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import rclpy
import setuptools
import yaml
from rclpy.parameter import Parameter

from suhd_ros.paths import package_installed
from suhd_ros.ros.detector_node import SuhdDetectorNode

from conftest import REPO

LAUNCH = REPO / "launch" / "detector.launch.py"
PACKAGE = "suhd_ros"


@pytest.fixture(scope="module")
def tree() -> ast.Module:
    return ast.parse(LAUNCH.read_text(), filename=str(LAUNCH))


@pytest.fixture(scope="module")
def setup_kwargs() -> dict:
    """What setup.py passes to setup(), its globs evaluated in the source checkout."""
    captured: dict = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(setuptools, "setup", lambda **kwargs: captured.update(kwargs))
        patch.chdir(REPO)
        runpy.run_path(str(REPO / "setup.py"), run_name="__main__")
    return captured


@pytest.fixture(scope="module")
def installed(setup_kwargs: dict) -> dict[str, Path]:
    """Install-tree path (share/suhd_ros/...) -> source file, from setup.py's data_files."""
    return {f"{destination}/{Path(source).name}": REPO / source
            for destination, sources in setup_kwargs["data_files"] for source in sources}


def _calls(tree: ast.AST, name: str) -> Iterator[ast.Call]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if called == name:
                yield node


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _argument_defaults(tree: ast.Module) -> dict[str, ast.expr | None]:
    return {ast.literal_eval(call.args[0]): _keyword(call, "default_value")
            for call in _calls(tree, "DeclareLaunchArgument")}


def test_defines_generate_launch_description(tree: ast.Module) -> None:
    functions = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert "generate_launch_description" in functions


# what the launch file may import: names that exist since Humble (checked against the Humble
# sources of launch and launch_ros), so the file runs on Humble, Jazzy and Kilted alike
HUMBLE_API = {
    "launch": {"LaunchDescription"},
    "launch.actions": {"DeclareLaunchArgument", "LogInfo", "OpaqueFunction",
                       "SetEnvironmentVariable", "UnsetEnvironmentVariable"},
    "launch.conditions": {"IfCondition"},
    "launch.substitutions": {"LaunchConfiguration"},
    "launch_ros.actions": {"Node"},
    "launch_ros.parameter_descriptions": {"ParameterValue"},
    "ament_index_python.packages": {"get_package_share_directory"},
    # the package's own logic, unit-tested here (test_fastdds.py, test_paths below)
    "suhd_ros.paths": {"package_installed"},
    "suhd_ros.ros.fastdds": {"profile_environment"},
}


def test_imports_only_apis_present_since_humble(tree: ast.Module) -> None:
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names = {alias.name for alias in node.names}
            assert names <= HUMBLE_API.get(node.module, set()), (node.module, names)
        elif isinstance(node, ast.Import):
            assert {alias.name for alias in node.names} <= {"os"}


def _function(tree: ast.Module, name: str) -> ast.FunctionDef:
    return next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)


def test_fastdds_profile_is_set_under_the_one_name_the_package_chooses(tree: ast.Module) -> None:
    """No variable name is hard-coded: profile_environment (test_fastdds.py) picks the name
    per distro and keeps the user's profile; the argument only overrides it."""
    assert not [call for call in _calls(tree, "SetEnvironmentVariable")
                if isinstance(call.args[0], ast.Constant)]
    body = ast.unparse(_function(tree, "_fastdds_profile"))
    assert "profile_environment(requested, os.environ)" in body
    assert "UnsetEnvironmentVariable(name) if value is None" in body  # the other name goes
    assert "LaunchConfiguration('fastdds_profile').perform(context)" in body
    opaque = [ast.unparse(_keyword(c, "function")) for c in _calls(tree, "OpaqueFunction")]
    assert "_fastdds_profile" in opaque
    default = _argument_defaults(tree)["fastdds_profile"]
    assert ast.literal_eval(default) == ""  # --show-args shows '' and the description says why
    description = ast.literal_eval(_keyword(next(
        c for c in _calls(tree, "DeclareLaunchArgument")
        if ast.literal_eval(c.args[0]) == "fastdds_profile"), "description"))
    for said in ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE", "empty",
                 "fastdds_large_images.xml", "Jazzy", "Kilted"):
        assert said in description, said


def test_the_environment_is_set_and_rviz_looked_up_before_any_node_starts(
        tree: ast.Module) -> None:
    """A failing rviz2 lookup after our nodes had started left them orphaned."""
    returned = _function(tree, "generate_launch_description").body[-1]
    order = [ast.unparse(e) for e in returned.value.args[0].elts]
    assert order[:2] == ["*arguments", "OpaqueFunction(function=_fastdds_profile)"]
    assert order[2:] == ["rviz", "detector", "camera"]
    rviz = ast.unparse(_function(tree, "_rviz"))
    assert "if not package_installed('rviz2'):" in rviz and "LogInfo(" in rviz
    assert [ast.literal_eval(_keyword(c, "package")) for c in _calls(_function(tree, "_rviz"),
                                                                     "Node")] == ["rviz2"]


def test_package_installed_reads_the_ament_index(monkeypatch: pytest.MonkeyPatch) -> None:
    # a sourced ROS install's index, else the venv's, where the ROS wheels register
    index = os.environ.get("AMENT_PREFIX_PATH") or sys.prefix
    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)
    assert not package_installed("rclpy")  # no index at all: not installed, no error
    monkeypatch.setenv("AMENT_PREFIX_PATH", index)
    assert package_installed("rclpy")
    assert not package_installed("rviz2")


def test_every_argument_has_a_description(tree: ast.Module) -> None:
    calls = list(_calls(tree, "DeclareLaunchArgument"))
    assert calls
    for call in calls:
        description = _keyword(call, "description")
        assert description is not None, ast.literal_eval(call.args[0])
        assert ast.literal_eval(description).strip()


def test_every_launch_configuration_is_declared(tree: ast.Module) -> None:
    used = {ast.literal_eval(call.args[0]) for call in _calls(tree, "LaunchConfiguration")}
    assert used <= set(_argument_defaults(tree))


def test_executables_are_installed_entry_points(tree: ast.Module, setup_kwargs: dict) -> None:
    scripts = dict(line.replace(" ", "").split("=")
                   for line in setup_kwargs["entry_points"]["console_scripts"])
    ours = [call for call in _calls(tree, "Node")
            if ast.literal_eval(_keyword(call, "package")) == PACKAGE]
    assert {ast.literal_eval(_keyword(c, "executable")) for c in ours} == {
        "suhd_detector", "suhd_camera"}
    for call in ours:
        module, function = scripts[ast.literal_eval(_keyword(call, "executable"))].split(":")
        assert callable(getattr(importlib.import_module(module), function))


def test_named_share_files_are_installed(tree: ast.Module, installed: dict[str, Path]) -> None:
    """Every os.path.join(share, ...) in the launch file names a file setup.py installs."""
    joined = [call for call in _calls(tree, "join")
              if isinstance(call.args[0], ast.Name) and call.args[0].id == "share"]
    relative = {"/".join(ast.literal_eval(a) for a in call.args[1:]) for call in joined}
    assert relative >= {"config/detector.yaml", "config/suhd.rviz"}
    for path in relative:
        source = installed.get(f"share/{PACKAGE}/{path}")
        assert source is not None and source.is_file(), path
    assert installed.get(f"share/{PACKAGE}/launch/{LAUNCH.name}") == LAUNCH


def test_rviz_shows_the_overlay_of_the_default_namespace(tree: ast.Module) -> None:
    namespace = ast.literal_eval(_argument_defaults(tree)["namespace"])
    config = yaml.safe_load((REPO / "config" / "suhd.rviz").read_text())
    topics = [d["Topic"]["Value"] for d in config["Visualization Manager"]["Displays"]
              if d["Class"] == "rviz_default_plugins/Image"]
    assert topics == [f"/{namespace}/overlay"]
    markers = [d["Topic"]["Value"] for d in config["Visualization Manager"]["Displays"]
               if d["Class"] == "rviz_default_plugins/MarkerArray"]
    assert markers == [f"/{namespace}/markers"]


def test_params_file_sets_only_declared_parameters_with_their_types() -> None:
    config = yaml.safe_load((REPO / "config" / "detector.yaml").read_text())
    values = config["/**"]["ros__parameters"]
    rclpy.init()
    try:
        node = SuhdDetectorNode(parameter_overrides=[Parameter("autostart", value=False)])
        for name, value in values.items():
            assert node.has_parameter(name), name
            declared = node.get_parameter_or(name)
            assert declared.type_ == Parameter(name, value=value).type_, name
        node.destroy_node()
    finally:
        rclpy.shutdown()
