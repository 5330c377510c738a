"""Every command in tools/ answers an error the user can fix with one `error:` line and status 2,
shows the traceback with --debug (or CONCEPTMINER3D_DEBUG=1), and keeps it for a bug."""

import glob
import os
import subprocess
import sys

import numpy as np
import pytest

from conceptminer3d.cli import is_user_error
from conceptminer3d.mining.models.model_loading import ModelUnavailableError
from conceptminer3d.mining.stages.concepts import ConceptVocabulary
from conceptminer3d.mining.stages.frames import InfoPickleError

from helpers import REPO

TOOLS = os.path.join(REPO, 'tools')


def _run(args, env=None):
    out = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=REPO, env={**os.environ, **(env or {})}
    )
    return out.returncode, [line for line in out.stderr.splitlines() if line.strip()]


@pytest.fixture(scope='module')
def garbage(tmp_path_factory):
    root = tmp_path_factory.mktemp('cli')
    (root / 'garbage.pkl').write_bytes(b'not a pickle')
    return root


MINE = ['mine.py', 'configs/mining/toy.py', '--work-dir', '{tmp}/w']
CASES = [
    ([*MINE, '--data-root', '/nonexistent', '--ann-file', 'x.pkl'], 'data root not found: /nonexistent'),
    ([*MINE, '--data-root', '{tmp}', '--ann-file', 'garbage.pkl'], 'cannot read info pickle'),
    (['build_subsets.py', '/nonexistent', '--train-pkl', '{tmp}/garbage.pkl'], 'cannot read info pickle'),
    (['report.py', '/nonexistent'], 'holds no finished mining run'),
    (['evaluate_selection.py', '/nonexistent'], 'not found'),
    (['search.py', '/nonexistent', 'a bus'], 'not a finished mining run'),
    (['train.py', '/nonexistent.py'], 'config file not found'),
    (['test.py', '/nonexistent.py', 'ckpt.pth'], 'config file not found'),
    (['make_toy_nuscenes.py', '--out', '{tmp}'], '--overwrite'),
    (['prepare_nuscenes.py', '--data-root', '/nonexistent'], 'no v1.0-trainval tables at /nonexistent/v1.0-trainval'),
]  # fmt: skip


@pytest.mark.parametrize('args, message', CASES, ids=[c[0][0] + str(i) for i, c in enumerate(CASES)])
def test_a_user_error_is_one_line_with_status_2(args, message, garbage):
    args = [os.path.join(TOOLS, args[0]), *(a.format(tmp=garbage) for a in args[1:])]
    code, lines = _run(args)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith('error: ') and message in lines[0]


def test_debug_shows_the_traceback(garbage):
    args = [os.path.join(TOOLS, 'report.py'), '/nonexistent']
    for extra, env in ((['--debug'], None), ([], {'CONCEPTMINER3D_DEBUG': '1'})):
        code, lines = _run([*args, *extra], env)
        assert code == 1 and lines[0].startswith('Traceback') and lines[-1].startswith('FileNotFoundError: ')
        assert 'holds no finished mining run' in lines[-1]


def test_every_tool_but_the_bare_models_script_ends_through_the_runner():
    bare = os.path.join(TOOLS, 'benchmark_bare_models.py')  # a user's minimal script: no plugin import
    for path in sorted(glob.glob(os.path.join(TOOLS, '*.py'))):
        with open(path) as f:
            source = f.read()
        assert (path == bare) != source.rstrip().endswith('run_tool(main)'), path


def test_the_packages_own_value_errors_are_the_users_and_librarys_are_bugs():
    with pytest.raises(ValueError) as ours:
        ConceptVocabulary(concepts=['car'], target=['car'], common=[], prompt_template='no placeholder')
    assert is_user_error(ours.value)
    with pytest.raises(ValueError) as library:
        np.reshape(np.arange(3), (2, 2))
    assert not is_user_error(library.value)
    assert not is_user_error(RuntimeError('a bug')) and is_user_error(FileNotFoundError('a path'))
    # the package's marked classes, wherever they are raised
    assert is_user_error(ModelUnavailableError('yolov8l.pt', 'not found', 'download it'))
    assert is_user_error(InfoPickleError('not a v2 info pickle'))
