"""3D scenes (glTF/GLB) and 3D Tiles 1.1 tilesets of the twin's layers; no HTTP here."""

from scenes.frame import LocalFrame
from scenes.layers import SCENE_LAYERS, SceneOptions
from scenes.scene import Scene, build_scene, parse_scene_layers

__all__ = ["LocalFrame", "SCENE_LAYERS", "Scene", "SceneOptions", "build_scene", "parse_scene_layers"]
