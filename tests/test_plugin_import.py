"""Importing the plugin: mining pays for no training-side import, and training still finds
every module and gets the checkpoint shim, whatever was imported or searched first."""

import json
import subprocess
import sys

import pytest

HEAVY = ('mmdet3d.datasets', 'mmdet.models', 'mmengine.runner', 'conceptminer3d.datasets', 'conceptminer3d.hooks')

FIND_TRAINING_MODULES = """
from mmdet3d.registry import DATASETS, DATA_SAMPLERS, HOOKS
from mmengine.registry import init_default_scope
init_default_scope('mmdet3d')
found = [DATASETS.get('SubsetCBGSDataset'), DATASETS.get('SubsetNuScenesDataset'),
         DATA_SAMPLERS.get('RareConceptSampler'), HOOKS.get('DataMiningHook')]
from mmengine.runner import checkpoint
result['found'] = [f'{cls.__module__}.{cls.__name__}' for cls in found]
result['checkpoint_torch'] = type(checkpoint.torch).__name__
"""


def _run(code):
    out = subprocess.run([sys.executable, '-c', f'result = {{}}\n{code}\nimport json; print(json.dumps(result))'],
                         check=True, capture_output=True, text=True).stdout  # fmt: skip
    return json.loads(out.strip().splitlines()[-1])


EXPECTED = [
    'conceptminer3d.datasets.subset_cbgs_dataset.SubsetCBGSDataset',
    'conceptminer3d.datasets.subset_nuscenes_dataset.SubsetNuScenesDataset',
    'conceptminer3d.samplers.rare_concept_sampler.RareConceptSampler',
    'conceptminer3d.hooks.data_mining_hook.DataMiningHook',
]


def test_mining_imports_nothing_of_training_and_training_finds_everything():
    result = _run(
        'import sys\n'
        'import conceptminer3d.apis, conceptminer3d.mining, conceptminer3d.report\n'
        f'result["imported"] = [m for m in {HEAVY!r} if m in sys.modules]\n' + FIND_TRAINING_MODULES
    )
    assert result['imported'] == []
    assert result['found'] == EXPECTED
    assert result['checkpoint_torch'] == '_TorchWithTrustedCheckpoints'


@pytest.mark.parametrize(
    'before',
    [
        'from mmengine.runner import Runner',  # mmdet3d's tools/train.py, before custom_imports
        "from mmdet3d.registry import DATASETS, HOOKS, DATA_SAMPLERS\n"
        "from mmengine.registry import init_default_scope\n"
        "init_default_scope('mmdet3d')\n"
        "DATASETS.get('CBGSDataset'); HOOKS.get('CheckpointHook'); DATA_SAMPLERS.get('DefaultSampler')",
    ],
    ids=['runner_imported_first', 'registries_searched_first'],
)
def test_plugin_imported_late_still_registers_and_patches(before):
    result = _run(f'{before}\nimport conceptminer3d\n' + FIND_TRAINING_MODULES)
    assert result['found'] == EXPECTED
    assert result['checkpoint_torch'] == '_TorchWithTrustedCheckpoints'
