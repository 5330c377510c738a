"""What one mining run knows as it goes, handed from stage to stage: its frames and their
images' identities, and the captions it plans (the pipeline itself keeps only its
configuration, its models and the run's counters)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import pyarrow as pa

from ..contracts import Frame
from .cache import ItemCache

__all__ = ['CaptionPlan', 'MiningRun']


@dataclass
class MiningRun:
    """What one run knows once its frames are read."""

    frames: List[Frame]
    threads: int  # torch intra-op threads the models run with
    image_digests: Dict[str, str] = field(default_factory=dict)  # frame id -> image content digest
    detection_cache: Optional[ItemCache] = None  # detect_and_embed's; its key is part of the captions'

    @property
    def frame_paths(self) -> Dict[Tuple[str, str], str]:
        return {(f.sample_token, f.camera): f.img_path for f in self.frames}


@dataclass
class CaptionPlan:
    """The captions a run needs (decided by the main rank, shared with every rank)."""

    cache: Optional[ItemCache]  # None: captions off
    selected_items: List[str]  # every caption-selected crop's cache item, in table order (main rank)
    todo: Optional[pa.Table]  # the crops no cache shard holds, sorted by frame
    todo_items: List[str]
    first_shard: int
