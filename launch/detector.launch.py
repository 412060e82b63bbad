"""Start the SUHD spiking detector, optionally with the synthetic camera and rviz2.

    ros2 launch suhd_ros detector.launch.py image:=/camera/image_raw
    ros2 launch suhd_ros detector.launch.py use_sim_camera:=true use_rviz:=true
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import EnvironmentVariable, LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description():
    share = get_package_share_directory("suhd_ros")
    image = LaunchConfiguration("image")
    namespace = LaunchConfiguration("namespace")
    fastdds_profile = LaunchConfiguration("fastdds_profile")
    # a profile the user has set already wins; Humble's Fast DDS reads the FASTRTPS_ name
    user_profile = EnvironmentVariable(
        "FASTDDS_DEFAULT_PROFILES_FILE",
        default_value=EnvironmentVariable(
            "FASTRTPS_DEFAULT_PROFILES_FILE",
            default_value=os.path.join(share, "config", "fastdds_large_images.xml")))

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
            "use_sim_camera", default_value="false",
            description="also start suhd_camera, publishing synthetic scenes on 'image'"),
        DeclareLaunchArgument(
            "use_rviz", default_value="false",
            description="also start rviz2 showing the overlay image"),
        DeclareLaunchArgument(
            "autostart", default_value="true",
            description="configure and activate the lifecycle node by itself at start"),
        DeclareLaunchArgument(
            "fastdds_profile", default_value=user_profile,
            description="Fast DDS XML profile for the nodes started here; the default keeps a "
                        "profile already in the environment, else uses the package's, whose "
                        "large shared-memory segment carries full camera images (see the file)"),
    ]
    environment = [
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", fastdds_profile),
        SetEnvironmentVariable("FASTRTPS_DEFAULT_PROFILES_FILE", fastdds_profile),  # Humble
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
            },
        ],
        remappings=[("image", image)],
    )
    camera = Node(
        package="suhd_ros",
        executable="suhd_camera",
        name="suhd_camera",
        output="screen",
        remappings=[("image", image)],
        condition=IfCondition(LaunchConfiguration("use_sim_camera")),
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        arguments=["-d", os.path.join(share, "config", "suhd.rviz")],
        condition=IfCondition(LaunchConfiguration("use_rviz")),
    )
    return LaunchDescription([*arguments, *environment, detector, camera, rviz])
