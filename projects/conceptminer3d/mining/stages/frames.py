"""Stage 1: frame records from a v2 info pickle (one per sample token × camera)."""

from __future__ import annotations

import glob
import json
import os
import pickle
from typing import Dict, List, Optional, Sequence

from ...registry import FRAME_SOURCES
from ..contracts import FRAME_STATUS_MISSING, FRAME_STATUS_OK, Frame

NUSCENES_CAMERAS = ('CAM_FRONT', 'CAM_FRONT_RIGHT', 'CAM_FRONT_LEFT', 'CAM_BACK', 'CAM_BACK_LEFT', 'CAM_BACK_RIGHT')


class InfoPickleError(ValueError):
    """The info pickle is missing, unreadable, or not in mmdet3d's v2 format."""

    user_error = True  # the tools print its message as one line (conceptminer3d.cli)


def resolve_ann_file(data_root: str, ann_file: str) -> str:
    """``ann_file`` as given if it is absolute or exists, else relative to ``data_root``
    (as mmdet3d datasets read it)."""
    return ann_file if os.path.isabs(ann_file) or os.path.isfile(ann_file) else os.path.join(data_root, ann_file)


def load_info_pickle(path: str) -> dict:
    if not os.path.isfile(path):
        raise InfoPickleError(f'info pickle not found: {path}')
    try:
        with open(path, 'rb') as f:
            infos = pickle.load(f)
    except Exception as err:  # any unpickling failure means the same thing to the user
        raise InfoPickleError(f'cannot read info pickle {path}: {type(err).__name__}: {err}') from err
    if not isinstance(infos, dict) or 'data_list' not in infos:
        keys = sorted(infos) if isinstance(infos, dict) else type(infos).__name__
        raise InfoPickleError(
            f'{path} is not an mmdet3d v2 info pickle (no data_list; found {keys}). '
            'Convert old pickles with mmdet3d tools/dataset_converters/update_infos_to_v2.py'
        )
    return infos


def scene_tokens_from_tables(data_root: str, version: Optional[str] = None) -> Dict[str, str]:
    """sample token → scene token from the devkit's sample.json, if the tables are there.

    The v2 info pickle carries no scene token; reading sample.json directly avoids
    building a whole NuScenes object (minutes on trainval) for one column."""
    candidates = [os.path.join(data_root, version, 'sample.json')] if version else []
    candidates += sorted(glob.glob(os.path.join(data_root, 'v1.0-*', 'sample.json')))
    for path in candidates:
        if os.path.isfile(path):
            with open(path) as f:
                return {s['token']: s['scene_token'] for s in json.load(f)}
    return {}


@FRAME_SOURCES.register_module()
class InfoPickleFrames:
    """Frames of the chosen cameras, with image paths resolved the way mmdet3d resolves them:
    ``data_root / data_prefix[camera] / images[camera]['img_path']``.

    A frame whose image file is absent gets status ``missing`` (a counted skip, not an
    error); a pickle that is unreadable, not v2, or lacks a camera raises ``InfoPickleError``.

    Args:
        cameras (Sequence[str]): camera channels to mine, in output order.
        data_prefix (dict, optional): camera → image directory relative to ``data_root``;
            cameras not given default to ``samples/<camera>``, as in mmdet3d's nuScenes configs.
    """

    def __init__(self, cameras: Sequence[str] = NUSCENES_CAMERAS, data_prefix: Optional[Dict[str, str]] = None):
        if not cameras:
            raise ValueError('no cameras selected')
        self.cameras = tuple(cameras)
        self.data_prefix = {cam: f'samples/{cam}' for cam in self.cameras}
        self.data_prefix.update(data_prefix or {})

    def load(self, data_root: str, ann_file: str) -> List[Frame]:
        if not os.path.isdir(data_root):
            raise FileNotFoundError(f'data root not found: {data_root}')
        path = resolve_ann_file(data_root, ann_file)
        infos = load_info_pickle(path)
        version = infos.get('metainfo', {}).get('version')
        scenes = scene_tokens_from_tables(data_root, version)
        frames = []
        for position, info in enumerate(infos['data_list']):
            token = info.get('token')
            if not token:
                raise InfoPickleError(f'{path}: data_list[{position}] has no sample token')
            images = info.get('images', {})
            for cam in self.cameras:
                image = images.get(cam)
                if not image or not image.get('img_path'):
                    raise InfoPickleError(f'{path}: sample {token} has no image for {cam}')
                img_path = os.path.join(data_root, self.data_prefix[cam], image['img_path'])
                seconds = float(image.get('timestamp', info.get('timestamp', 0.0)))  # v2 stores seconds
                frames.append(
                    Frame(
                        token,
                        scenes.get(token, ''),
                        int(info.get('sample_idx', position)),
                        cam,
                        img_path,
                        int(round(seconds * 1e6)),
                        FRAME_STATUS_OK if os.path.isfile(img_path) else FRAME_STATUS_MISSING,
                    )
                )
        return frames
