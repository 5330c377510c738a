"""What a toy world is made of: ``ToyWorldConfig`` (sizes, seed, realism knobs) and its presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Dict, List, Tuple

from nuscenes.utils import splits

_VERSIONS = {'v1.0-mini': (splits.mini_train, splits.mini_val), 'v1.0-trainval': (splits.train, splits.val)}


@dataclass(frozen=True)
class ToyWorldConfig:
    version: str = 'v1.0-mini'
    train_scenes: int = 8
    val_scenes: int = 2
    samples_per_scene: int = 10
    sweeps_per_sample: int = 2  # lidar-only frames between keyframes (nuScenes has 9)
    image_width: int = 800
    image_height: int = 450
    points_per_frame: int = 8000
    jpeg_quality: int = 90
    seed: int = 0
    # Realism knobs. Their defaults reproduce the original world byte for byte; the
    # 'benchmark' preset turns them on.
    class_mix: str = 'themes'  # 'themes': city / road works / cyclists scenes; 'nuscenes': see below
    class_clustering: float = 0.0  # 'nuscenes' mix: variance of the per-scene class factors
    objects_per_scene: Tuple[int, int] = (28, 44)  # [low, high)
    separate_objects: bool = False  # no two boxes meet during a scene (lanes alone let some overlap)
    occlusion: bool = False  # lidar shadows; visibility levels from what the lidar sees
    lookalike_rate: float = 0.0  # scales catalog.LOOKALIKES (common classes in rare colours)
    posters_per_scene: float = 0.0  # mean number of unlabelled cut-outs of rare classes

    def record(self) -> dict:
        """The config as written to toy_world.json. Knobs at their defaults are left out, so a
        default world's toy_world.json has the bytes it had before the knobs existed."""
        out = asdict(self)
        for f in fields(self):
            if f.name in _KNOBS and getattr(self, f.name) == f.default:
                del out[f.name]
        return out

    def validate(self) -> None:
        if self.version not in _VERSIONS:
            raise ValueError(f'version must be one of {sorted(_VERSIONS)}, got {self.version!r}')
        train, val = _VERSIONS[self.version]
        if not (1 <= self.train_scenes <= len(train) and 1 <= self.val_scenes <= len(val)):
            raise ValueError(
                f'{self.version} has {len(train)} train and {len(val)} val scene names; '
                f'asked for {self.train_scenes} and {self.val_scenes} '
                "(use version='v1.0-trainval' for larger worlds)"
            )
        if self.samples_per_scene < 2 or self.image_width < 64 or self.image_height < 36:
            raise ValueError('need at least 2 samples per scene and images of at least 64×36')
        if self.class_mix not in ('themes', 'nuscenes'):
            raise ValueError(f"class_mix must be 'themes' or 'nuscenes', got {self.class_mix!r}")
        low, high = self.objects_per_scene
        if not 1 <= low < high:
            raise ValueError(
                f'objects_per_scene must be [low, high) with 1 <= low < high, got {self.objects_per_scene}'
            )
        if min(self.class_clustering, self.lookalike_rate, self.posters_per_scene) < 0:
            raise ValueError('class_clustering, lookalike_rate and posters_per_scene must be >= 0')

    def scene_names(self) -> List[str]:
        train, val = _VERSIONS[self.version]
        return list(train[: self.train_scenes]) + list(val[: self.val_scenes])


_KNOBS = (
    'class_mix',
    'class_clustering',
    'objects_per_scene',
    'separate_objects',
    'occlusion',
    'lookalike_rate',
    'posters_per_scene',
)

PRESETS: Dict[str, ToyWorldConfig] = {
    # For evidence that mined subsets beat random ones: big enough for the toy CenterPoint to
    # learn the common classes, nuScenes' long tail spread over many scenes, occlusion, and
    # camera distractors so that camera-only mining cannot be perfect.
    'benchmark': ToyWorldConfig(
        version='v1.0-trainval',
        train_scenes=80,
        # enough val scenes that every rare class has >= 150 val boxes with lidar points, so that
        # rare-class AP is not decided by a few dozen objects (docs/benchmarks.md)
        val_scenes=120,
        samples_per_scene=5,
        image_width=400,
        image_height=225,
        points_per_frame=8000,
        class_mix='nuscenes',
        class_clustering=0.5,
        objects_per_scene=(36, 52),
        separate_objects=True,
        occlusion=True,
        lookalike_rate=1.0,
        posters_per_scene=1.5,
    ),
}
