"""Importing the plugin: mining pays for no training-side import, and training still finds
every module and gets the checkpoint shim, whatever was imported or searched first."""

import json
import subprocess
import sys

import pytest

HEAVY = (
    'mmdet3d.datasets',
    'mmdet.models',
    'mmengine.runner',
    'conceptminer3d.datasets',
    'conceptminer3d.hooks',
    'conceptminer3d.metrics',
)

FIND_TRAINING_MODULES = """
from mmdet3d.registry import DATASETS, DATA_SAMPLERS, HOOKS, METRICS
from mmengine.registry import init_default_scope
init_default_scope('mmdet3d')
found = [DATASETS.get('SubsetCBGSDataset'), DATASETS.get('SubsetNuScenesDataset'),
         DATA_SAMPLERS.get('RareConceptSampler'), HOOKS.get('DataMiningHook'),
         METRICS.get('VectorizedNuScenesMetric')]
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
    'conceptminer3d.metrics.nuscenes_metric.VectorizedNuScenesMetric',
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


def test_config_text_is_formatted_once_per_content():
    """mmengine formats a config with yapf on every pretty_text; the shim keeps the text of a
    content it has formatted, and formats a changed config anew."""
    result = _run(
        'import conceptminer3d\n'
        'from unittest import mock\n'
        'from mmengine.config import Config\n'
        'from mmengine.config import config as config_module\n'
        'cfg = Config(dict(model=dict(type="X", layers=[1, 2]), lr=0.1))\n'
        'with mock.patch.object(config_module, "FormatCode", wraps=config_module.FormatCode) as formatting:\n'
        '    first, again = cfg.pretty_text, cfg.pretty_text\n'
        '    result["calls_for_two_reads"] = formatting.call_count\n'
        '    cfg.lr = 0.2\n'
        '    result["changed"] = cfg.pretty_text\n'
        '    result["calls_after_change"] = formatting.call_count\n'
        'result["same"] = first == again\n'
        'result["first"] = first\n'
    )
    assert result['same'] and result['calls_for_two_reads'] == 1 and result['calls_after_change'] == 2
    assert 'lr = 0.1' in result['first'] and 'lr = 0.2' in result['changed']
