"""Start the SUHD spiking detector, optionally with the synthetic camera and rviz2.

    ros2 launch suhd_ros detector.launch.py image:=/camera/image_raw
    ros2 launch suhd_ros detector.launch.py use_sim_camera:=true use_rviz:=true
    ros2 launch suhd_ros detector.launch.py use_sim_camera:=true tracker:=ocsort depth:=true

Stop it with one Ctrl-C, or SIGINT to the `ros2 launch` process (systemd: KillSignal=SIGINT;
docker: STOPSIGNAL SIGINT): launch then stops the nodes it started, and they exit with status 0.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    LogInfo,
    OpaqueFunction,
    SetEnvironmentVariable,
    UnsetEnvironmentVariable,
)
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from suhd_ros.paths import package_installed
from suhd_ros.ros.fastdds import profile_environment


def _fastdds_profile(context):
    """Only the variable this distro's Fast DDS reads (FASTRTPS_ up to Jazzy, FASTDDS_ after);
    the other name is unset: it is ignored there, or makes Fast DDS 3 warn from every node."""
    requested = LaunchConfiguration("fastdds_profile").perform(context)
    return [UnsetEnvironmentVariable(name) if value is None else SetEnvironmentVariable(name, value)
            for name, value in profile_environment(requested, os.environ).items()]


def _rviz(context, share):
    """rviz2 if it is installed, else a warning and none: the detector runs headless anyway,
    and a failed lookup after the nodes had started used to leave them orphaned."""
    if not package_installed("rviz2"):
        return [LogInfo(msg="use_rviz:=true, but rviz2 is not installed (apt install "
                            "ros-$ROS_DISTRO-rviz2): starting without it")]
    return [Node(package="rviz2", executable="rviz2", name="rviz2",
                 arguments=["-d", os.path.join(share, "config", "suhd.rviz")])]


def generate_launch_description():
    share = get_package_share_directory("suhd_ros")
    image = LaunchConfiguration("image")
    topics = [("image", image), ("depth/image", LaunchConfiguration("depth_image")),
              ("camera_info", LaunchConfiguration("camera_info"))]
    namespace = LaunchConfiguration("namespace")

    arguments = [
        DeclareLaunchArgument(
            "image", default_value="/camera/image_raw",
            description="sensor_msgs/Image topic to detect on (remapped onto the node's 'image')"),
        DeclareLaunchArgument(
            "model_path", default_value="",
            description="model file: absolute, or relative to the package's models/; "
                        "empty = the embedded default model"),
        DeclareLaunchArgument(
            "device", default_value="auto",
            description="auto, cpu, cuda or cuda:N (falls back to the CPU with a warning)"),
        DeclareLaunchArgument(
            "params_file", default_value=os.path.join(share, "config", "detector.yaml"),
            description="YAML file with the detector's parameters"),
        DeclareLaunchArgument(
            "namespace", default_value="suhd",
            description="namespace of the detector: outputs go to /<namespace>/detections, ..."),
        DeclareLaunchArgument(
            "tracker", default_value="none",
            description="none, ocsort (the best on the validation sequences), bytetrack, "
                        "cbiou, botsort or sort: track ids in Detection2D.id, detections_3d, "
                        "markers and the overlay (requirements/tracking.txt)"),
        DeclareLaunchArgument(
            "depth", default_value="false",
            description="3D: subscribe to the depth image and camera_info and publish "
                        "/<namespace>/detections_3d and /<namespace>/markers"),
        DeclareLaunchArgument(
            "depth_image", default_value="/camera/depth/image_raw",
            description="depth image aligned to 'image' (16UC1 mm or 32FC1 m), used with "
                        "depth:=true"),
        DeclareLaunchArgument(
            "camera_info", default_value="/camera/camera_info",
            description="sensor_msgs/CameraInfo of 'image' (its K), used with depth:=true"),
        DeclareLaunchArgument(
            "use_sim_camera", default_value="false",
            description="also start suhd_camera, publishing synthetic scenes on 'image' (with "
                        "depth:=true a moving sequence, with its depth and camera_info on "
                        "'depth_image' and 'camera_info')"),
        DeclareLaunchArgument(
            "use_rviz", default_value="false",
            description="also start rviz2 showing the overlay image and the 3D markers "
                        "(skipped with a warning "
                        "where rviz2 is not installed)"),
        DeclareLaunchArgument(
            "autostart", default_value="true",
            description="configure and activate the lifecycle node by itself at start"),
        DeclareLaunchArgument(
            "fastdds_profile", default_value="",
            description="Fast DDS XML profile for the nodes started here; empty = the profile "
                        "already in the environment (FASTDDS_DEFAULT_PROFILES_FILE or "
                        "FASTRTPS_DEFAULT_PROFILES_FILE, an empty one counting as unset), else "
                        "the package's config/fastdds_large_images.xml, whose large "
                        "shared-memory segment carries full camera images. It is set under the "
                        "one name this distro's Fast DDS reads: FASTRTPS_ up to Jazzy, "
                        "FASTDDS_ from Kilted on"),
    ]

    detector = Node(
        package="suhd_ros",
        executable="suhd_detector",
        name="suhd_detector",
        namespace=namespace,
        output="screen",
        parameters=[
            LaunchConfiguration("params_file"),
            {
                # value_type=str: an empty model_path must stay a string, not become None
                "model_path": ParameterValue(LaunchConfiguration("model_path"), value_type=str),
                "device": ParameterValue(LaunchConfiguration("device"), value_type=str),
                "autostart": ParameterValue(LaunchConfiguration("autostart"), value_type=bool),
                "tracker": ParameterValue(LaunchConfiguration("tracker"), value_type=str),
                "depth": ParameterValue(LaunchConfiguration("depth"), value_type=bool),
            },
        ],
        remappings=topics,
    )
    camera = Node(
        package="suhd_ros",
        executable="suhd_camera",
        name="suhd_camera",
        output="screen",
        # with depth:=true it films a moving sequence with depth and camera_info
        parameters=[{"motion": ParameterValue(LaunchConfiguration("depth"), value_type=bool)}],
        remappings=topics,
        condition=IfCondition(LaunchConfiguration("use_sim_camera")),
    )
    rviz = OpaqueFunction(function=_rviz, args=[share],
                          condition=IfCondition(LaunchConfiguration("use_rviz")))
    # rviz first: whatever its start does, it happens before any of our nodes exists
    return LaunchDescription([*arguments, OpaqueFunction(function=_fastdds_profile), rviz,
                              detector, camera])
